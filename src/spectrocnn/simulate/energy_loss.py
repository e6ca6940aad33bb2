"""Ionisation energy loss at layer crossings: the Bethe mean and Landau fluctuations.

On layers with ``energy_loss`` a crossing draws a loss (:func:`energy_loss_at_layers`)
with the Bethe mean (:func:`bethe_dedx`) and the Landau most probable value
(:func:`landau_mpv`), its straggling function built by :func:`straggling`. References are
to the PDG Review of Particle Physics, chapter 34 "Passage of particles through matter"
(R.L. Workman et al., PTEP 2022, 083C01, and its 2024 update, S. Navas et al., Phys. Rev. D
110, 030001). The material constants come in a
:class:`~spectrocnn.simulate.material.Material`.
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from spectrocnn.simulate.material import Material

__all__ = [
    "ELECTRON_MASS_MEV",
    "K_MEV_CM2_PER_MOL",
    "LANDAU_J",
    "LANDAU_LAMBDA_MP",
    "LANDAU_LOC",
    "LANDAU_SCALE",
    "MIN_BETA_GAMMA",
    "bethe_dedx",
    "density_effect",
    "energy_loss_at_layers",
    "landau_mpv",
    "landau_xi",
    "straggling",
]

#: ``K = 4 pi N_A r_e^2 m_e c^2`` [MeV cm^2/mol] (PDG Review table 34.1).
K_MEV_CM2_PER_MOL = 0.307075
#: Electron mass ``m_e c^2`` [MeV] (PDG).
ELECTRON_MASS_MEV = 0.51099895
#: Below this ``beta gamma`` the Bethe formula is outside its range of validity (PDG
#: Review 34.2.3: 0.1 < beta gamma < 1000 for intermediate-Z materials); a particle
#: arriving slower is taken to stop in the layer. A proton at beta gamma = 0.1 (4.7 MeV
#: kinetic energy) has a CSDA range of about 0.2 mm in silicon (PDG/NIST PSTAR), less
#: than a 0.3 mm sensor.
MIN_BETA_GAMMA = 0.1
#: Most probable value of Landau's variable lambda, the mode of Landau's
#: ``phi(lambda) = (1/pi) int_0^inf exp(-t ln t - lambda t) sin(pi t) dt`` (its full width
#: at half maximum is 4.018, PDG Review 34.2.9: ``w = 4.018 xi``). SciPy's standard
#: ``scipy.stats.landau`` (Boost's, mode -0.4293) is the ``c = 1`` member of the
#: (mu, c) family; Landau's phi is ``c = pi/2``, i.e. ``scipy.stats.landau(loc=LANDAU_LOC,
#: scale=LANDAU_SCALE)`` with ``loc = (2c/pi) ln c = ln(pi/2)``.
LANDAU_LAMBDA_MP = -0.22278298
#: ``loc`` of ``scipy.stats.landau`` that gives Landau's phi(lambda).
LANDAU_LOC = math.log(math.pi / 2.0)
#: ``scale`` of ``scipy.stats.landau`` that gives Landau's phi(lambda).
LANDAU_SCALE = math.pi / 2.0
#: The constant j of the Landau-Vavilov most probable energy loss (PDG Review eq. 34.12).
LANDAU_J = 0.200


def density_effect(beta_gamma: np.ndarray, mat: Material) -> np.ndarray:
    """Density-effect correction ``delta(beta gamma)`` (PDG Review eq. 34.7, Sternheimer).

    With ``x = log10(beta gamma)``: ``2 ln10 x - C_bar`` for ``x >= x1``;
    ``2 ln10 x - C_bar + a (x1 - x)^k`` for ``x0 <= x < x1``; ``delta0 10^(2 (x - x0))``
    for ``x < x0``.
    """
    x = np.log10(np.asarray(beta_gamma, dtype=np.float64))
    ln10 = math.log(10.0)
    high = 2.0 * ln10 * x - mat.C_bar
    mid = high + mat.a * np.clip(mat.x1 - x, 0.0, None) ** mat.k
    low = mat.delta0 * 10.0 ** (2.0 * (x - mat.x0))
    return np.where(x >= mat.x1, high, np.where(x >= mat.x0, mid, low))


def _wmax_MeV(beta_gamma: np.ndarray, gamma: np.ndarray, mass_MeV: np.ndarray) -> np.ndarray:
    """Largest energy transfer to an electron in one collision (PDG Review eq. 34.4) [MeV]."""
    r = ELECTRON_MASS_MEV / mass_MeV
    return 2.0 * ELECTRON_MASS_MEV * beta_gamma**2 / (1.0 + 2.0 * gamma * r + r * r)


def bethe_dedx(
    p_GeV: np.ndarray, mass_GeV: np.ndarray, charge: np.ndarray, mat: Material
) -> np.ndarray:
    """Mean mass stopping power, the Bethe formula (PDG Review eq. 34.5) [MeV cm^2/g].

    ``<-dE/dx> = K z^2 (Z/A) / beta^2 [0.5 ln(2 m_e c^2 beta^2 gamma^2 W_max / I^2)
    - beta^2 - delta(beta gamma) / 2]``, with ``W_max`` of eq. 34.4 and the density
    effect of eq. 34.7 (:func:`density_effect`). Valid to a few percent for
    ``0.1 < beta gamma < 1000`` (no shell correction, no radiative losses).

    Parameters
    ----------
    p_GeV, mass_GeV, charge : array_like
        Momentum [GeV/c], mass [GeV/c^2] (> 0) and charge number z.
    mat : Material
    """
    p = np.asarray(p_GeV, dtype=np.float64)
    m = np.asarray(mass_GeV, dtype=np.float64)
    bg = p / m
    gamma = np.sqrt(1.0 + bg * bg)
    beta2 = (bg / gamma) ** 2
    wmax = _wmax_MeV(bg, gamma, m * 1000.0)
    i_MeV = mat.I_eV * 1e-6
    z2 = np.asarray(charge, dtype=np.float64) ** 2
    log_term = 0.5 * np.log(2.0 * ELECTRON_MASS_MEV * bg * bg * wmax / (i_MeV * i_MeV))
    return (
        K_MEV_CM2_PER_MOL * z2 * mat.Z_over_A / beta2
        * (log_term - beta2 - 0.5 * density_effect(bg, mat))
    )  # fmt: skip


def landau_xi(
    p_GeV: np.ndarray, mass_GeV: np.ndarray, charge: np.ndarray, x_g_cm2: np.ndarray,
    mat: Material,
) -> np.ndarray:  # fmt: skip
    """Landau width parameter ``xi = (K/2) (Z/A) z^2 x / beta^2`` (PDG Review 34.2.9) [MeV].

    ``x_g_cm2`` is the mass thickness traversed [g/cm^2].
    """
    p = np.asarray(p_GeV, dtype=np.float64)
    m = np.asarray(mass_GeV, dtype=np.float64)
    beta2 = p * p / (p * p + m * m)
    z2 = np.asarray(charge, dtype=np.float64) ** 2
    return 0.5 * K_MEV_CM2_PER_MOL * mat.Z_over_A * z2 * np.asarray(x_g_cm2) / beta2


def landau_mpv(
    p_GeV: np.ndarray, mass_GeV: np.ndarray, charge: np.ndarray, x_g_cm2: np.ndarray,
    mat: Material,
) -> np.ndarray:  # fmt: skip
    """Most probable energy loss, Landau-Vavilov (PDG Review eq. 34.12) [MeV].

    ``Delta_p = xi [ln(2 m_e c^2 beta^2 gamma^2 / I) + ln(xi / I) + j - beta^2
    - delta(beta gamma)]``, ``j = 0.200``, ``xi`` of :func:`landau_xi`.
    """
    p = np.asarray(p_GeV, dtype=np.float64)
    m = np.asarray(mass_GeV, dtype=np.float64)
    bg = p / m
    beta2 = bg * bg / (1.0 + bg * bg)
    xi = landau_xi(p, m, charge, x_g_cm2, mat)
    i_MeV = mat.I_eV * 1e-6
    with np.errstate(divide="ignore"):
        bracket = (
            np.log(2.0 * ELECTRON_MASS_MEV * bg * bg / i_MeV) + np.log(xi / i_MeV) + LANDAU_J
            - beta2 - density_effect(bg, mat)
        )  # fmt: skip
    return xi * bracket


@cache
def _landau_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-CDF table of the standard Landau distribution, built once (about 1 ms).

    Returns ``(lam, cdf, mean_below)``: a grid of lambda (-3.8 to 1e8; linear to 10, then
    logarithmic), Landau's CDF on it (``scipy.stats.landau.cdf`` with
    :data:`LANDAU_LOC`, :data:`LANDAU_SCALE`), and the mean of lambda drawn by linear
    interpolation of the inverse CDF (:func:`_draw_landau`) truncated at each grid point,
    ``E[lambda | lambda < L]`` (increasing in L).
    """
    from scipy.stats import landau

    lam = np.concatenate([np.linspace(-3.8, 10.0, 2801), np.geomspace(10.0, 1e8, 4001)[1:]])
    cdf = landau.cdf(lam, loc=LANDAU_LOC, scale=LANDAU_SCALE)
    cdf[0] = 0.0
    # first moment of the piecewise-linear inverse CDF, segment by segment
    moment = np.concatenate([[0.0], np.cumsum(0.5 * (lam[1:] + lam[:-1]) * np.diff(cdf))])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_below = np.where(cdf > 0, moment / cdf, lam)
    # keep the strictly increasing part (from the left tail, where cdf ~ 0, it is)
    start = int(np.argmax(cdf > 1e-12))
    return lam[start:], cdf[start:], mean_below[start:]


def straggling(
    p_GeV: np.ndarray, mass_GeV: np.ndarray, charge: np.ndarray, x_g_cm2: np.ndarray,
    mat: Material,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Parameters of the energy-loss distribution in a layer (:func:`energy_loss_at_layers`).

    The loss is ``Delta = Delta_p + w xi (lambda - lambda_mp)``, lambda Landau's variable
    (density phi(lambda), mode ``lambda_mp``, full width at half maximum 4.018) truncated
    at ``cut``, such that

    - its most probable value is ``Delta_p`` of PDG eq. 34.12 (:func:`landau_mpv`), or
      the mean where eq. 34.12 exceeds it (thick layers, slow particles: the Gaussian
      regime, where the distribution is narrow about its mean);
    - its mean is the Bethe mean ``<Delta> = <-dE/dx> x`` (PDG eq. 34.5,
      :func:`bethe_dedx`): the Landau distribution itself has no mean, and its tail is
      truncated where the truncated mean is Bethe's, as GEANT3 does (GLANDZ; CERN Program
      Library W5013, PHYS332); ``E[lambda | lambda < cut] = lambda_mp + (<Delta> -
      Delta_p) / xi``;
    - it never exceeds ``max_loss = max(W_max, 2 <Delta>)`` [MeV]: for a thin layer the
      largest energy transfer to one electron (PDG eq. 34.4); the loss in a thicker one
      (many collisions, ``<Delta> > W_max / 2``) is bounded by twice its mean.

    The width factor ``w`` is 1 (Landau's width, ``4.018 xi``) unless the truncation that
    gives the Bethe mean lies beyond ``max_loss``; then the cut is put at ``max_loss`` and
    ``w > 1`` solves ``w (E[lambda | lambda < cut] - lambda_mp) = (<Delta> - Delta_p) / xi``
    with ``cut = lambda_mp + (max_loss - Delta_p) / (w xi)`` (fixed-point iterations on
    the tabulated truncated mean; ``w <= 20``); measured straggling functions in thin
    silicon are wider than Landau's (PDG Review 34.2.9). For a 1 GeV/c muon or a 0.2 GeV/c
    pion in 300 um of silicon, ``w = 1``.

    Parameters
    ----------
    p_GeV, mass_GeV, charge, x_g_cm2 : ndarray, shape (n,)
        Momentum [GeV/c], mass [GeV/c^2], charge number, mass thickness [g/cm^2].
    mat : Material

    Returns
    -------
    dict of ndarray, shape (n,)
        ``mean``, ``mpv``, ``xi``, ``max_loss`` [MeV]; ``width`` (w) and ``cut`` (in units
        of the standard Landau variable).
    """
    # bethe_dedx, landau_xi, landau_mpv and W_max in one pass (their terms are shared)
    m = np.asarray(mass_GeV, dtype=np.float64)
    bg = np.asarray(p_GeV, dtype=np.float64) / m
    bg2 = bg * bg
    gamma2 = 1.0 + bg2
    beta2 = bg2 / gamma2
    z2 = np.asarray(charge, dtype=np.float64) ** 2
    i_MeV = mat.I_eV * 1e-6
    wmax = _wmax_MeV(bg, np.sqrt(gamma2), m * 1000.0)
    delta = density_effect(bg, mat)
    log_2mbg2_i = np.log((2.0 * ELECTRON_MASS_MEV / i_MeV) * bg2)
    xi = (0.5 * K_MEV_CM2_PER_MOL * mat.Z_over_A) * z2 * np.asarray(x_g_cm2) / beta2
    mean = (2.0 * xi) * (0.5 * (log_2mbg2_i + np.log(wmax / i_MeV)) - beta2 - 0.5 * delta)
    with np.errstate(divide="ignore"):
        mpv = xi * (log_2mbg2_i + np.log(xi / i_MeV) + LANDAU_J - beta2 - delta)
    # Thick layers or slow particles (kappa >~ 1, the Gaussian regime) may give eq. 34.12
    # above the mean; the loss is then narrow about the mean.
    mpv = np.minimum(mpv, mean)
    max_loss = np.maximum(wmax, 2.0 * mean)
    lam, _, mean_below = _landau_table()
    with np.errstate(divide="ignore", invalid="ignore"):
        span = np.maximum((max_loss - mpv) / xi, 1.0)  # lambda above lambda_mp at the cap
        target = np.maximum((mean - mpv) / xi, 1e-3)
    span = np.where(np.isfinite(span), span, 1.0)
    target = np.where(np.isfinite(target), target, 1e-3)
    width = np.ones_like(target)
    cut = np.interp(LANDAU_LAMBDA_MP + target, mean_below, lam)  # w = 1
    wider = cut > LANDAU_LAMBDA_MP + span
    if wider.any():
        tw, sw, w = target[wider], span[wider], width[wider]
        for _ in range(_STRAGGLING_ITERATIONS):
            above = np.interp(LANDAU_LAMBDA_MP + sw / w, lam, mean_below) - LANDAU_LAMBDA_MP
            w = np.clip(tw / np.maximum(above, 1e-6), 1.0, 20.0)
        width[wider] = w
        cut[wider] = LANDAU_LAMBDA_MP + sw / w
    return {
        "mean": mean,
        "mpv": mpv,
        "xi": xi,
        "max_loss": max_loss,
        "width": width,
        "cut": cut,
    }


#: Fixed-point iterations for the width factor of :func:`straggling` (each gains a factor
#: of about 10: the truncated mean grows like the logarithm of the cut).
_STRAGGLING_ITERATIONS = 8


def _draw_landau(cut: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Standard Landau variables truncated at ``cut`` (one ``rng.random`` per value,
    mapped through the tabulated inverse CDF on ``[0, F(cut)]``)."""
    lam, cdf, _ = _landau_table()
    u = rng.random(len(cut)) * np.interp(cut, lam, cdf)
    return np.interp(u, cdf, lam)


def energy_loss_at_layers(
    p_GeV: np.ndarray,
    mass_GeV: np.ndarray,
    charge: np.ndarray,
    x_g_cm2: np.ndarray,
    mat: Material,
    rng: np.random.Generator,
) -> np.ndarray:
    """Momentum after ionisation energy loss in a layer; 0 where the particle stops.

    The loss is ``Delta = Delta_p + w xi (lambda - lambda_mp)``, lambda a standard Landau
    variable (density phi(lambda), ``scipy.stats.landau`` with :data:`LANDAU_LOC` and
    :data:`LANDAU_SCALE`, whose mode is ``lambda_mp`` = :data:`LANDAU_LAMBDA_MP`)
    truncated at ``cut``, with ``xi`` and the most probable loss
    ``Delta_p`` of PDG Review eq. 34.12 and ``w``, ``cut`` of :func:`straggling`: the
    losses have the most probable value of eq. 34.12, the Bethe mean of eq. 34.5, and none
    exceeds ``max(W_max, 2 <Delta>)``. ``Delta`` is clipped at 0 from below. The particle
    stops (returned momentum 0) when ``Delta`` reaches its kinetic energy, or when it
    arrives with ``beta gamma`` below :data:`MIN_BETA_GAMMA`, where the Bethe formula
    does not hold. The stopping power is evaluated at the entry momentum (thin layers: a
    minimum-ionising particle loses about 0.12 MeV in 0.3 mm of silicon). The Landau shape
    describes thin layers, ``kappa = xi / W_max`` below about 0.01 (PDG 34.2.9); thicker
    layers or slow particles (the Vavilov and Gaussian regimes) get the same construction,
    with the right mean and most probable value but an approximate shape.

    Parameters
    ----------
    p_GeV, mass_GeV, charge : ndarray, shape (n,)
        Momentum arriving at the layer [GeV/c], mass [GeV/c^2] (> 0), charge number.
    x_g_cm2 : ndarray, shape (n,)
        Mass thickness traversed [g/cm^2] (the layer thickness along the direction).
    mat : Material
    rng : numpy.random.Generator
        Draws ``n`` uniforms.

    Returns
    -------
    ndarray, shape (n,)
        ``|p|`` leaving the layer [GeV/c]; 0 for a particle that stops in it.
    """
    p = np.asarray(p_GeV, dtype=np.float64)
    m = np.asarray(mass_GeV, dtype=np.float64)
    x = np.asarray(x_g_cm2, dtype=np.float64)
    fast = p > MIN_BETA_GAMMA * m
    pf = np.where(fast, p, m)  # formulas evaluated on valid values only
    st = straggling(pf, m, charge, x, mat)
    lam = _draw_landau(st["cut"], rng)
    loss = st["mpv"] + st["width"] * st["xi"] * (lam - LANDAU_LAMBDA_MP)
    loss_GeV = np.clip(loss, 0.0, st["max_loss"]) * 1e-3
    loss_GeV = np.where(x > 0, loss_GeV, 0.0)
    energy = np.sqrt(p * p + m * m)
    stops = ~fast | (loss_GeV >= energy - m)
    e_out = energy - loss_GeV
    return np.where(stops, 0.0, np.sqrt(np.maximum(e_out * e_out - m * m, 0.0)))
