"""The dense output of a Runge-Kutta-Nystrom step and the first root of a distance along it.

A step's trajectory is interpolated by the quintic Hermite polynomial through its ends'
positions, first and second derivatives (:func:`hermite_coefficients`, accurate to
``O(h^6)``); the signed distance from a surface along it is a polynomial whose first root
in the step (:func:`first_root`) is bracketed between its extrema and located by
safeguarded Newton iterations (:func:`spectrocnn.simulate.navigator.Navigator.locate`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["first_root", "hermite_coefficients", "poly_eval"]


def hermite_coefficients(
    x0: np.ndarray, v0: np.ndarray, a0: np.ndarray, x1: np.ndarray, v1: np.ndarray, a1: np.ndarray
) -> np.ndarray:
    """Power-series coefficients of the quintic Hermite interpolant on ``theta in [0, 1]``.

    Parameters
    ----------
    x0, x1 : ndarray, shape (3, m)
        Positions at ``theta = 0`` and ``1``.
    v0, v1 : ndarray, shape (3, m)
        First derivatives with respect to ``theta``.
    a0, a1 : ndarray, shape (3, m)
        Second derivatives with respect to ``theta``.

    Returns
    -------
    ndarray, shape (6, 3, m)
        ``c`` with ``p(theta) = sum_k c[k] theta^k``.
    """
    c = np.empty((6, *x0.shape))
    d = x1 - x0
    c[0] = x0
    c[1] = v0
    np.multiply(a0, 0.5, out=c[2])
    c[3] = 10.0 * d - 6.0 * v0 - 4.0 * v1 - 1.5 * a0 + 0.5 * a1
    c[4] = -15.0 * d + 8.0 * v0 + 7.0 * v1 + 1.5 * a0 - a1
    c[5] = 6.0 * d - 3.0 * v0 - 3.0 * v1 - 0.5 * a0 + 0.5 * a1
    return c


def poly_eval(c: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and derivative at ``theta`` (m,) of polynomials ``c`` (6, ..., m) (Horner)."""
    p = ((((c[5] * theta + c[4]) * theta + c[3]) * theta + c[2]) * theta + c[1]) * theta + c[0]
    dp = (((5.0 * c[5] * theta + 4.0 * c[4]) * theta + 3.0 * c[3]) * theta + 2.0 * c[2]) * theta
    dp += c[1]
    return p, dp


def _derivative(c: np.ndarray) -> np.ndarray:
    """Coefficients (k - 1, m) of the derivative of polynomials ``c`` (k, m) (power basis)."""
    return c[1:] * np.arange(1, len(c), dtype=np.float64)[:, None]


def _horner(c: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    """Values at ``theta`` (m,) of polynomials ``c`` (k, m) (power basis)."""
    out = c[-1] * theta + c[-2]
    for ck in c[-3::-1]:
        out = out * theta + ck
    return out


def first_root(c: np.ndarray, tol: np.ndarray, h: np.ndarray) -> np.ndarray:
    """First root in ``(0, 1]`` of polynomials ``c`` (k, m), NaN where there is none.

    Parameters
    ----------
    c : ndarray, shape (k, m)
        Power-basis coefficients of ``P(theta)``, a polynomial with the sign of the signed
        distance from a surface along a step's interpolant.
    tol : ndarray, shape (m,)
        A point with ``|P| <= tol`` is on the surface.
    h : ndarray, shape (m,)
        Step lengths [mm] (a bracket shorter than 1e-14 mm ends the search).

    Returns
    -------
    ndarray, shape (m,)

    Notes
    -----
    The stepper keeps the turn of the direction about the field within one step below
    :data:`spectrocnn.simulate.rkn.MAX_TURN_PER_STEP` (< pi/2). Along a helix arc that turns
    by less than pi the distance from a cylinder about the field axis is a sinusoid of the
    turning angle (one extremum at most), and the distance from a plane is a linear function
    plus such a sinusoid, whose second derivative changes sign at most once. So ``P''`` has
    at most one zero ``t2`` in ``[0, 1]``, ``P'`` at most one zero ``c1`` in ``[0, t2]`` and
    one ``c2`` in ``[t2, 1]``, each found by a sign change at the ends, and ``P`` is
    monotonic on ``[0, c1]``, ``[c1, c2]`` and ``[c2, 1]``: the first of these intervals
    whose ends differ in sign brackets the first root. This finds a graze, a surface entered
    and left again within one step, as deep as the root tolerance, wherever in the step it
    lies.
    """
    m = c.shape[1]
    d1 = _derivative(c)
    d2 = _derivative(d1)
    neg0 = c[0] <= 0
    # most pairs: P' of one sign over the step (P'' keeps its sign, P' too): the ends bracket
    lo = np.zeros(m)
    hi = np.ones(m)
    found = (c.sum(axis=0) <= 0) != neg0
    hard = np.flatnonzero(
        ((d2[0] <= 0) != (d2.sum(axis=0) <= 0)) | ((d1[0] <= 0) != (d1.sum(axis=0) <= 0))
    )
    if hard.size:
        lo[hard], hi[hard], found[hard] = _monotonic_bracket(
            c[:, hard], d1[:, hard], d2[:, hard], neg0[hard], h[hard]
        )
    theta = np.full(m, np.nan)
    k = np.flatnonzero(found)
    if k.size:
        theta[k] = _bracketed_root(c[:, k], lo[k], hi[k], neg0[k], tol[k], h[k])
    return theta


def _monotonic_bracket(
    c: np.ndarray, d1: np.ndarray, d2: np.ndarray, neg0: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first piece of ``[0, 1]`` where ``P`` is monotonic and changes sign.

    Parameters
    ----------
    c, d1, d2 : ndarray, shapes (k, m), (k - 1, m), (k - 2, m)
        ``P``, ``P'`` and ``P''`` (power basis).
    neg0 : ndarray of bool, shape (m,)
        ``P(0) <= 0``.
    h : ndarray, shape (m,)
        Step lengths [mm].

    Returns
    -------
    lo, hi : ndarray, shape (m,)
        The bracket (meaningful where ``found``).
    found : ndarray of bool, shape (m,)
        Whether ``P`` changes sign in ``[0, 1]``.
    """
    m = c.shape[1]
    one = np.ones(m)
    zero = np.zeros(m)
    # the zero of P'' (an inflection of P) splits [0, 1] into two intervals where P' is monotonic
    t2 = one.copy()
    k = np.flatnonzero((d2[0] <= 0) != (d2.sum(axis=0) <= 0))
    if k.size:
        t2[k] = _bracketed_root(d2[:, k], zero[k], one[k], d2[0, k] <= 0, zero[k], h[k])
    # the zeros of P' (extrema of P) in [0, t2] and [t2, 1]
    q0, qt, q1 = d1[0], _horner(d1, t2), d1.sum(axis=0)
    c1 = t2.copy()
    k = np.flatnonzero((q0 <= 0) != (qt <= 0))
    if k.size:
        c1[k] = _bracketed_root(d1[:, k], zero[k], t2[k], q0[k] <= 0, zero[k], h[k])
    c2 = one.copy()
    k = np.flatnonzero((qt <= 0) != (q1 <= 0))
    if k.size:
        c2[k] = _bracketed_root(d1[:, k], t2[k], one[k], qt[k] <= 0, zero[k], h[k])
    # the first monotonic piece whose ends differ in sign
    lo = np.full(m, np.nan)
    hi = np.full(m, np.nan)
    a = zero
    for b in (c1, c2, one):
        new = np.isnan(lo) & ((_horner(c, b) <= 0) != neg0)
        lo = np.where(new, a, lo)
        hi = np.where(new, b, hi)
        a = b
    return lo, hi, ~np.isnan(lo)


def _bracketed_root(
    c: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    neg_lo: np.ndarray,
    tol: np.ndarray,
    h: np.ndarray,
) -> np.ndarray:
    """Root of polynomials ``c`` (k, m) in brackets ``[lo, hi]`` by safeguarded Newton.

    Parameters
    ----------
    c : ndarray, shape (k, m)
        Power-basis coefficients; ``P(lo)`` and ``P(hi)`` differ in sign.
    lo, hi : ndarray, shape (m,)
        The brackets.
    neg_lo : ndarray of bool, shape (m,)
        ``P(lo) <= 0``.
    tol : ndarray, shape (m,)
        Iterations stop at ``|P| <= tol``.
    h : ndarray, shape (m,)
        Step lengths [mm]; iterations also stop when the bracket is shorter than 1e-14 mm.

    Returns
    -------
    ndarray, shape (m,)

    Notes
    -----
    Starts at the secant root of the bracket; a Newton step that leaves the current
    bracket is replaced by bisection.
    """
    dc = _derivative(c)
    lo, hi = lo.copy(), hi.copy()
    p_lo, p_hi = _horner(c, lo), _horner(c, hi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = p_lo / (p_lo - p_hi)  # the secant's root, refined on the cubic through P, P'
        w = hi - lo
        s0, s1 = _horner(dc, lo) * w, _horner(dc, hi) * w
        k2, k3 = 3.0 * (p_hi - p_lo) - 2.0 * s0 - s1, 2.0 * (p_lo - p_hi) + s0 + s1
        for _ in range(3):
            u = u - (((k3 * u + k2) * u + s0) * u + p_lo) / ((3.0 * k3 * u + 2.0 * k2) * u + s0)
        theta = lo + u * w
    theta = np.where((theta > lo) & (theta < hi), theta, 0.5 * (lo + hi))
    rows: np.ndarray | None = None  # None: every pair still iterates (no copies)
    n_todo = len(lo)
    for _ in range(200):
        if rows is None:
            cc, dd, th, lo_, hi_, tl, hr, nl = c, dc, theta, lo, hi, tol, h, neg_lo
        else:
            cc, dd, th, lo_, hi_ = c[:, rows], dc[:, rows], theta[rows], lo[rows], hi[rows]
            tl, hr, nl = tol[rows], h[rows], neg_lo[rows]
        g = _horner(cc, th)
        gp = _horner(dd, th)
        done = (np.abs(g) <= tl) | ((hi_ - lo_) * hr < 1e-14)
        same = (g <= 0) == nl
        lo_ = np.where(same, th, lo_)
        hi_ = np.where(same, hi_, th)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = th - g / gp
        new = np.where((new > lo_) & (new < hi_), new, 0.5 * (lo_ + hi_))
        new = np.where(done, th, new)
        if rows is None:
            lo, hi, theta = lo_, hi_, new
        else:
            lo[rows], hi[rows], theta[rows] = lo_, hi_, new
        n_done = int(np.count_nonzero(done))
        if n_done == len(th):
            break
        if n_done:  # iterate only the unconverged pairs once enough have converged
            if rows is None and 4 * n_done >= n_todo:
                rows = np.flatnonzero(~done)
            elif rows is not None:
                rows = rows[~done]
    return theta
