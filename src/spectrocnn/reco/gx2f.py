"""Global chi-square track fit (GX2F) over the project's propagator, for any geometry and field.

Beside the barrel circle fit (:mod:`spectrocnn.reco.circlefit`), this fit works for plane
and cylinder layers in any field: the predicted hits are the crossings that
:func:`spectrocnn.simulate.propagate` finds (the exact helix in a uniform field along z, the
Runge-Kutta-Nystrom stepper otherwise), from five track parameters at a reference surface.
The parameters minimise

.. math::

    \\chi^2(\\theta) = \\sum_i \\frac{(m_i - f_i(\\theta))^2}{\\sigma_i^2},

``m_i`` the measured coordinates (``u`` and ``v`` on a plane, the arc ``r phi`` and ``z``
on a cylinder), ``f_i`` their predictions. Gauss-Newton iterations
``theta <- theta + (J^T W J)^-1 J^T W (m - f(theta))``, with ``J = df/dtheta`` and
``W = diag(1 / sigma_i^2)``, converge to the minimum, and the covariance of the fitted
parameters is ``(J^T W J)^-1`` there: the linear least-squares estimate (PDG Review,
"Statistics", 40.2.3 "The method of least squares"; R. Fruhwirth, M. Regler et al., "Data
Analysis Techniques for High-Energy Physics", 2nd ed., Cambridge 2000, ch. 3; the ACTS
global chi-square fitter, https://acts.readthedocs.io/en/latest/tracking/gx2f.html). The
fit has no material: multiple scattering and energy loss are not modelled, and the
propagation of the predictions uses the detector's layers without material.

Track parameters (``q/p`` as in ACTS: the charge in units of e over ``|p|`` [c/GeV], so
``|p| = |q| / |q/p|``):

- on a **perigee** (the z axis, for barrels): ``(d0, z0, phi, theta, q/p)`` as ACTS's
  bound perigee parameters, the point of closest approach ``d0 (-sin phi, cos phi, 0) +
  (0, 0, z0)`` [mm], the direction ``(cos phi sin theta, sin phi sin theta, cos theta)``;
- on a **plane** (centre ``c``, normal ``w``, in-plane axes ``u``, ``v`` of
  :class:`~spectrocnn.simulate.PlaneLayer`): ``(loc0, loc1, du/dw, dv/dw, q/p)``, the
  point ``c + loc0 u + loc1 v`` [mm] and the direction along ``du/dw u + dv/dw v + w``
  (times the track's ``sense``, +1 when it moves along ``+w``). Slopes rather than ACTS's
  global ``(phi, theta)``: ``phi`` is undefined for a track along z, the beam of a
  fixed-target spectrometer with planes normal to z (LHCb's ``(x, y, tx, ty, q/p)`` state).

Jacobians are central differences of the propagated predictions, with the steps of
:data:`FD_STEPS` (1e-2 mm, 1e-4 in a slope or angle, ``1e-3 |q/p| + 1e-5`` c/GeV in q/p):
the track model is smooth on these scales, so the truncation error is below 1e-6 relative,
and the stepper's discretisation noise (nanometres, README "Non-uniform magnetic fields")
stays below 1e-3 of the differences.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.reco._gx2f_core import (
    FD_QOP_ABSOLUTE,
    FD_QOP_RELATIVE,
    FD_STEPS,
    MIN_MEASUREMENTS,
    Model,
    gauss_newton,
    start_values,
)
from spectrocnn.simulate import CylinderLayer, Detector, PlaneLayer
from spectrocnn.simulate.geometry import surface_distance

__all__ = [
    "FD_QOP_ABSOLUTE",
    "FD_QOP_RELATIVE",
    "FD_STEPS",
    "MIN_MEASUREMENTS",
    "ReferenceSurface",
    "TrackFitBatch",
    "TrackFitResult",
    "fit_track",
    "fit_tracks",
]

#: A hit further than this from its layer's surface is refused (a wrong layer id) [mm].
_ON_SURFACE_MM = 0.1


@dataclass(frozen=True)
class ReferenceSurface:
    """The surface at which the fitted parameters are given.

    Build it with :meth:`perigee` or :meth:`plane`; the module docstring gives the
    parameters of each kind.

    Attributes
    ----------
    kind : {"perigee", "plane"}
    center_mm, normal, u, v : tuple of 3 floats
        For a plane: its centre [mm], unit normal ``w`` and in-plane axes (as
        :class:`~spectrocnn.simulate.PlaneLayer` defines them); the z axis for a perigee.
    """

    kind: str
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)
    u: tuple[float, float, float] = (1.0, 0.0, 0.0)
    v: tuple[float, float, float] = (0.0, 1.0, 0.0)

    @classmethod
    def perigee(cls) -> ReferenceSurface:
        """The z axis (ACTS perigee parameters ``d0, z0, phi, theta, q/p``)."""
        return cls("perigee")

    @classmethod
    def plane(cls, center_mm=(0.0, 0.0, 0.0), normal=(0.0, 0.0, 1.0)) -> ReferenceSurface:
        """A plane through ``center_mm`` [mm] normal to ``normal`` (any length), or the
        plane of a :class:`~spectrocnn.simulate.PlaneLayer` given as ``center_mm``.

        Raises
        ------
        ConfigError
            For a zero or non-finite normal or centre.
        """
        if isinstance(center_mm, PlaneLayer):
            layer = center_mm
        else:
            layer = PlaneLayer(center_mm=center_mm, normal=normal)
        return cls("plane", layer.center_mm, layer.normal, layer.u, layer.v)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the five parameters, units in the names."""
        if self.kind == "perigee":
            return ("d0_mm", "z0_mm", "phi_rad", "theta_rad", "qop_per_GeV")
        return ("loc0_mm", "loc1_mm", "du_dw", "dv_dw", "qop_per_GeV")

    def position_direction(
        self, parameters: np.ndarray, sense: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points [mm] and unit directions, shapes (k, 3), of parameters (k, 5).

        ``sense`` (k,) of +1 or -1: along ``+w`` or ``-w`` on a plane (unused on a perigee).
        """
        p = np.asarray(parameters, dtype=np.float64).reshape(-1, 5)
        if self.kind == "perigee":
            sp, cp, st, ct = np.sin(p[:, 2]), np.cos(p[:, 2]), np.sin(p[:, 3]), np.cos(p[:, 3])
            pos = np.stack([-p[:, 0] * sp, p[:, 0] * cp, p[:, 1]], axis=1)
            return pos, np.stack([cp * st, sp * st, ct], axis=1)
        c, w, u, v = (np.asarray(a) for a in (self.center_mm, self.normal, self.u, self.v))
        pos = c + p[:, :1] * u + p[:, 1:2] * v
        d = p[:, 2:3] * u + p[:, 3:4] * v + w
        d *= (np.asarray(sense, dtype=np.float64) / np.linalg.norm(d, axis=1))[:, None]
        return pos, d


@dataclass(frozen=True)
class TrackFitResult:
    """The fit of one track.

    Attributes
    ----------
    parameters : ndarray float64 (5,)
        At :attr:`reference` (names in :attr:`parameter_names`); ``parameters[4]`` is q/p
        [c/GeV], the charge in units of e over ``|p|``.
    covariance : ndarray float64 (5, 5)
        ``(J^T W J)^-1`` at the fitted parameters (NaN when the fit failed).
    chi2 : float
    ndf : int
        Measured coordinates minus 5.
    iterations : int
        Gauss-Newton updates made.
    converged : bool
        False when the iterations did not converge, the parameters were not determined
        (a singular ``J^T W J``: no field along the track) or the track missed a measured
        layer; a warning is logged then, and the parameters are the last accepted ones.
    sense : int
        +1 or -1: the direction of motion along the reference plane's normal (+1 on a
        perigee).
    abs_charge : float
        |q| [e] used to turn q/p into |p|.
    reference : ReferenceSurface
    """

    parameters: np.ndarray
    covariance: np.ndarray
    chi2: float
    ndf: int
    iterations: int
    converged: bool
    sense: int
    abs_charge: float
    reference: ReferenceSurface

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.reference.parameter_names

    @property
    def qop(self) -> float:
        """q/p [c/GeV]."""
        return float(self.parameters[4])

    @property
    def sigma_qop(self) -> float:
        """Uncertainty of q/p [c/GeV]."""
        return float(np.sqrt(self.covariance[4, 4]))

    @property
    def p_GeV(self) -> float:
        """|p| [GeV/c] = |q| / |q/p|."""
        return self.abs_charge / abs(self.qop)

    @property
    def position_mm(self) -> np.ndarray:
        """The track's point on the reference surface (3,) [mm]."""
        return self.reference.position_direction(self.parameters, [self.sense])[0][0]

    @property
    def momentum_GeV(self) -> np.ndarray:
        """Momentum (3,) [GeV/c] at :attr:`position_mm`."""
        d = self.reference.position_direction(self.parameters, [self.sense])[1][0]
        return self.p_GeV * d


@dataclass(frozen=True)
class TrackFitBatch:
    """The fits of many tracks (row k: track k); attributes as :class:`TrackFitResult`
    with a leading dimension n. ``batch[k]`` is the :class:`TrackFitResult` of track k."""

    parameters: np.ndarray
    covariance: np.ndarray
    chi2: np.ndarray
    ndf: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    sense: np.ndarray
    abs_charge: np.ndarray
    reference: ReferenceSurface

    def __len__(self) -> int:
        return len(self.chi2)

    def __getitem__(self, k: int) -> TrackFitResult:
        return TrackFitResult(
            self.parameters[k].copy(),
            self.covariance[k].copy(),
            float(self.chi2[k]),
            int(self.ndf[k]),
            int(self.iterations[k]),
            bool(self.converged[k]),
            int(self.sense[k]),
            float(self.abs_charge[k]),
            self.reference,
        )

    @property
    def qop(self) -> np.ndarray:
        """q/p (n,) [c/GeV]."""
        return self.parameters[:, 4]

    @property
    def sigma_qop(self) -> np.ndarray:
        """Uncertainty of q/p (n,) [c/GeV]."""
        return np.sqrt(self.covariance[:, 4, 4])

    @property
    def p_GeV(self) -> np.ndarray:
        """|p| (n,) [GeV/c]."""
        return self.abs_charge / np.abs(self.qop)

    @property
    def momentum_GeV(self) -> np.ndarray:
        """Momenta (n, 3) [GeV/c] at the reference surface."""
        d = self.reference.position_direction(self.parameters, self.sense)[1]
        return self.p_GeV[:, None] * d


def fit_track(
    detector: Detector,
    hits_mm: np.ndarray,
    layer_ids: np.ndarray,
    sigma_mm: float | np.ndarray | None = None,
    **options,
) -> TrackFitResult:
    """Fit one track: :func:`fit_tracks` of a single track.

    Parameters
    ----------
    detector : Detector
    hits_mm : ndarray (m, 3)
        Measured hit positions on their layers [mm] (the hit table's x, y, z).
    layer_ids : ndarray int (m,)
        Layer index of each hit; at most one hit per layer.
    sigma_mm : float, ndarray (m,) or (m, 2), optional
        Resolution of each measured coordinate [mm]; default each layer's
        ``resolution_um / 1000``.
    **options
        As :func:`fit_tracks` (``initial`` of shape (5,)).

    Returns
    -------
    TrackFitResult
    """
    hits = np.asarray(hits_mm, dtype=np.float64).reshape(-1, 3)
    if "initial" in options and options["initial"] is not None:
        options["initial"] = np.asarray(options["initial"], dtype=np.float64)[None]
    return fit_tracks(detector, hits, layer_ids, [0, len(hits)], sigma_mm, **options)[0]


def fit_tracks(
    detector: Detector,
    hits_mm: np.ndarray,
    layer_ids: np.ndarray,
    offsets: np.ndarray,
    sigma_mm: float | np.ndarray | None = None,
    *,
    reference: ReferenceSurface | PlaneLayer | str | None = None,
    field=None,
    initial: np.ndarray | None = None,
    abs_charge: float | np.ndarray = 1.0,
    max_iterations: int = 20,
    step_tolerance: float = 1e-2,
    tolerance_mm: float = 1e-5,
) -> TrackFitBatch:
    """Fit many tracks at once with the global chi-square fit (module docstring).

    Each iteration propagates 11 variants of every unfinished track (its parameters and
    their +-steps for the Jacobian) in one call of :func:`~spectrocnn.simulate.propagate`.

    Parameters
    ----------
    detector : Detector
        Its layers (material ignored) and, unless ``field`` is given, its field.
    hits_mm : ndarray (m, 3)
        Hit positions [mm], grouped by track; each lies on its layer's surface.
    layer_ids : ndarray int (m,)
        Layer of each hit; a track has at most one hit per layer.
    offsets : ndarray int (n + 1,)
        Track k owns hits ``offsets[k]:offsets[k + 1]``; each needs at least 3 hits
        (:data:`MIN_MEASUREMENTS` = 5 coordinates, two per hit).
    sigma_mm : float, ndarray (m,) or (m, 2), optional
        Resolution of the two coordinates of each hit [mm] (``u, v`` on a plane, ``r phi, z``
        on a cylinder); default each layer's ``resolution_um / 1000``.
    reference : ReferenceSurface, PlaneLayer, "perigee", "vertex" or None
        Where the parameters are given; tracks start there towards their hits, so it lies
        before every hit. ``"perigee"``: the z axis. ``"vertex"``: the plane through the
        origin parallel to the measured plane nearest to it, its normal pointing away from
        it. None: ``"perigee"`` when a cylinder is measured, else ``"vertex"``. A measured
        layer may be the reference (its prediction is then the start point).
    field : Field, optional
        The field of the track model, default ``detector.field``.
    initial : ndarray (n, 5), optional
        Start parameters; default from the hits (on a perigee a circle fit,
        :func:`~spectrocnn.reco.circlefit.fit_circles`, and a line in ``s-z``; on a plane a
        line with a parabolic sagitta in the mean field along it).
    abs_charge : float or ndarray (n,)
        |q| of each track [e].
    max_iterations : int
        Most propagations (evaluations of chi2 and J) per track.
    step_tolerance : float
        Converged when every parameter's Gauss-Newton step is below this many of its
        standard deviations.
    tolerance_mm : float
        The stepper's tolerance for the predictions (unused by the exact helix).

    Returns
    -------
    TrackFitBatch

    Raises
    ------
    ConfigError
        For a track with fewer than 5 measured coordinates, two hits on one layer, an
        unknown layer, a hit off its layer's surface, non-finite hits, a resolution that is
        not positive, or inconsistent shapes.
    """
    meas = _measurements(detector, hits_mm, layer_ids, offsets, sigma_mm)
    n = meas["n_tracks"]
    q_abs = _check_options(n, abs_charge, max_iterations, step_tolerance, tolerance_mm)
    ref = _resolve_reference(detector, reference, meas["layers_used"])
    if n == 0:
        return _no_tracks(q_abs, ref)
    model, hits, weight = _problem(detector, field, ref, meas, q_abs, tolerance_mm, initial)
    out = gauss_newton(model, hits, weight, model.start, max_iterations, step_tolerance)
    ndf = 2 * meas["n_hits"] - 5
    return TrackFitBatch(**out, ndf=ndf, sense=model.sense, abs_charge=q_abs, reference=ref)


def _no_tracks(q_abs: np.ndarray, ref: ReferenceSurface) -> TrackFitBatch:
    none = np.empty(0, np.int64)
    return TrackFitBatch(
        np.empty((0, 5)), np.empty((0, 5, 5)), np.empty(0), none, none, np.empty(0, bool),
        np.empty(0, np.int8), q_abs, ref,
    )  # fmt: skip


def _check_options(n, abs_charge, max_iterations, step_tolerance, tolerance_mm) -> np.ndarray:
    """|q| of each track (n,), after checking the numeric options of :func:`fit_tracks`."""
    q_abs = np.broadcast_to(np.asarray(abs_charge, dtype=np.float64), (n,)).copy()
    if np.any(~np.isfinite(q_abs) | (q_abs <= 0)):
        raise ConfigError(f"abs_charge must be positive, got {abs_charge!r}")
    if int(max_iterations) < 1 or not step_tolerance > 0 or not tolerance_mm > 0:
        raise ConfigError(
            f"max_iterations must be >= 1 and step_tolerance, tolerance_mm positive, got "
            f"{max_iterations!r}, {step_tolerance!r}, {tolerance_mm!r}"
        )
    return q_abs


def _problem(detector, field, ref, meas, q_abs, tolerance_mm, initial):
    """The track model (with its start values and senses), hits (n, L', 3) and weights
    (n, L', 2) over the fit's layers: the detector's and the reference plane when it is a
    surface of its own (never measured); ``initial`` (n, 5) replaces the start values."""
    ref_col = _reference_column(detector, ref)
    layers = list(detector.layers)
    if ref_col is None and ref.kind == "plane":
        layers.append(PlaneLayer(center_mm=ref.center_mm, normal=ref.normal))
    fdet = _fit_detector(layers, detector.field if field is None else field)
    n = meas["n_tracks"]
    hits = np.full((n, fdet.n_layers, 3), np.nan)
    hits[:, : detector.n_layers] = meas["hits"]
    weight = np.zeros((n, fdet.n_layers, 2))
    weight[:, : detector.n_layers] = meas["weight"]
    start, sense = start_values(fdet, ref, meas, q_abs)
    if initial is not None:
        start = np.asarray(initial, dtype=np.float64)
        if start.shape != (n, 5):
            raise ConfigError(f"initial must have shape ({n}, 5), got {start.shape}")
    return Model(fdet, ref, ref_col, sense, q_abs, float(tolerance_mm), start), hits, weight


# ----------------------------------------------------------------------------- inputs
def _measurements(detector, hits_mm, layer_ids, offsets, sigma_mm) -> dict:
    """Check the hits and arrange them per track and layer: hits (n, L, 3) (NaN where a
    track has no hit), weights ``1 / sigma^2`` (n, L, 2) (0 there)."""
    hits = np.asarray(hits_mm, dtype=np.float64)
    if hits.ndim != 2 or hits.shape[1] != 3:
        raise ConfigError(f"hits_mm must have shape (m, 3), got {hits.shape}")
    m, n_layers = len(hits), detector.n_layers
    layer = np.asarray(layer_ids)
    if layer.shape != (m,) or (m and not np.all(layer == np.round(layer))):
        raise ConfigError(f"layer_ids must be {m} integers (one per hit), got shape {layer.shape}")
    layer = layer.astype(np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != m:
        raise ConfigError(f"offsets must run from 0 to the number of hits {m}, got {offsets}")
    counts = np.diff(offsets)
    if np.any(counts < 0):
        raise ConfigError("offsets must be non-decreasing")
    for i in np.flatnonzero((layer < 0) | (layer >= n_layers))[:1]:
        raise ConfigError(
            f"layer_ids[{i}] = {layer[i]} is not a layer of the detector (0 to {n_layers - 1})"
        )
    for i in np.flatnonzero(~np.all(np.isfinite(hits), axis=1))[:1]:
        raise ConfigError(f"hits_mm[{i}] = {hits[i].tolist()} is not finite")
    for k in np.flatnonzero(2 * counts < MIN_MEASUREMENTS)[:1]:
        raise ConfigError(
            f"track {k} has {counts[k]} hit(s), {2 * counts[k]} measured coordinates; a fit of "
            f"5 parameters needs at least {MIN_MEASUREMENTS} (3 hits)"
        )
    track = np.repeat(np.arange(len(counts)), counts)
    key, first = np.unique(track * n_layers + layer, return_index=True)
    if len(key) < m:
        i = np.setdiff1d(np.arange(m), first)[0]
        raise ConfigError(
            f"track {track[i]} has two hits on layer {layer[i]}; a track crosses a layer once"
        )
    dist = np.abs(surface_distance(detector, hits)[np.arange(m), layer])
    for i in np.flatnonzero(dist > _ON_SURFACE_MM)[:1]:
        raise ConfigError(
            f"hit {i} at {np.round(hits[i], 3).tolist()} mm lies {dist[i]:.3g} mm from the "
            f"surface of layer {layer[i]}: check its layer_ids entry"
        )
    sigma = _resolutions(detector, layer, sigma_mm)
    grid = np.full((len(counts), n_layers, 3), np.nan)
    grid[track, layer] = hits
    weight = np.zeros((len(counts), n_layers, 2))
    weight[track, layer] = 1.0 / sigma**2
    return {
        "hits": grid,
        "weight": weight,
        "points": hits,
        "offsets": offsets,
        "n_tracks": len(counts),
        "n_hits": counts,
        "layers_used": np.unique(layer),
    }


def _resolutions(detector, layer: np.ndarray, sigma_mm) -> np.ndarray:
    """Resolution (m, 2) [mm] of each hit's two coordinates."""
    m = len(layer)
    if sigma_mm is None:
        res = np.array([lay.resolution_um for lay in detector.layers]) * 1e-3
        for i in np.flatnonzero(res[layer] <= 0)[:1]:
            raise ConfigError(
                f"layer {layer[i]} has resolution_um = 0, which gives no weight: pass sigma_mm"
            )
        return np.repeat(res[layer][:, None], 2, axis=1)
    s = np.asarray(sigma_mm, dtype=np.float64)
    if s.ndim == 1 and s.shape == (m,):
        s = s[:, None]
    try:
        s = np.broadcast_to(s, (m, 2)).copy()
    except ValueError:
        raise ConfigError(
            f"sigma_mm must be a number or of shape ({m},) or ({m}, 2), got shape {s.shape}"
        ) from None
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ConfigError(f"sigma_mm must be positive and finite, got {sigma_mm!r}")
    return s


def _resolve_reference(detector, reference, used: np.ndarray) -> ReferenceSurface:
    """The reference surface from the ``reference`` argument (see :func:`fit_tracks`)."""
    if isinstance(reference, ReferenceSurface):
        return reference
    if isinstance(reference, PlaneLayer):
        return ReferenceSurface.plane(reference)
    planes = [detector.layers[i] for i in used if isinstance(detector.layers[i], PlaneLayer)]
    if reference is None:
        reference = "vertex" if planes and len(planes) == len(used) else "perigee"
    if reference == "perigee":
        return ReferenceSurface.perigee()
    if reference == "vertex":
        if not planes:
            raise ConfigError("reference 'vertex' needs a measured plane layer; use 'perigee'")
        nearest = min(planes, key=lambda lay: abs(np.dot(lay.center_mm, lay.normal)))
        normal = np.asarray(nearest.normal)
        if np.dot(nearest.center_mm, normal) < 0:
            normal = -normal
        return ReferenceSurface.plane((0.0, 0.0, 0.0), normal)
    raise ConfigError(
        "reference must be 'perigee', 'vertex', None, a ReferenceSurface or a PlaneLayer, "
        f"got {reference!r}"
    )


def _reference_column(detector, ref: ReferenceSurface) -> int | None:
    """Index of the detector layer that is the reference plane, or None."""
    if ref.kind != "plane":
        return None
    for i, lay in enumerate(detector.layers):
        if (
            isinstance(lay, PlaneLayer)
            and np.allclose(lay.center_mm, ref.center_mm, rtol=0, atol=1e-9)
            and abs(np.dot(lay.normal, ref.normal)) > 1.0 - 1e-12
        ):
            return i
    return None


def _fit_detector(layers, field) -> Detector:
    """The layers without material, their active areas doubled plus 100 mm (a prediction
    just off a layer's edge during the iterations is still found)."""
    bare = dict(thickness_x0=0.0, energy_loss=False, efficiency=1.0)
    out = []
    for lay in layers:
        if isinstance(lay, CylinderLayer):
            out.append(replace(lay, half_length_mm=2 * lay.half_length_mm + 100.0, **bare))
        else:
            grown = dict(
                half_width_mm=2 * lay.half_width_mm + 100.0,
                half_height_mm=2 * lay.half_height_mm + 100.0,
            )
            out.append(replace(lay, **grown, **bare))
    return Detector(tuple(out), field, name="gx2f")
