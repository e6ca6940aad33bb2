"""Detector geometry: cylinder and plane layers, the detector, and the built-in presets.

All lengths are in millimetres. A layer carries its own measurement resolution,
hit efficiency and material thickness (in radiation lengths). Layers are frozen
dataclasses, validated when built: an impossible value raises
:class:`~spectrocnn.errors.ConfigError` naming the field and the value.

:attr:`Detector.arrays` holds the layers' parameters as named arrays
(:class:`LayerArrays`); the vectorised helpers (:func:`surface_distance`,
:func:`on_active_area`, :func:`surface_normal`) evaluate all layers of a detector at many
points at once; the propagators use them. The built-in detectors are defined once, in
:data:`DETECTOR_PRESETS` (the configuration's presets take their layers and field from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np

from spectrocnn.errors import ConfigError

if TYPE_CHECKING:
    from spectrocnn.simulate.fields import Field

__all__ = [
    "DETECTOR_PRESETS",
    "RESPONSE_KEYS",
    "CylinderLayer",
    "Detector",
    "DetectorPreset",
    "Layer",
    "LayerArrays",
    "PlaneLayer",
    "lecture_detector",
    "on_active_area",
    "surface_distance",
    "surface_normal",
    "telescope_detector",
]


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool | str):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return v


def _positive(name: str, value: float) -> float:
    v = _finite(name, value)
    if v <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return v


def _vector3(name: str, value) -> tuple[float, float, float]:
    try:
        seq = list(value)
    except TypeError:
        raise ConfigError(f"{name} must be a list of 3 numbers, got {value!r}") from None
    if len(seq) != 3:
        raise ConfigError(f"{name} must be a list of 3 numbers, got {value!r}")
    return tuple(_finite(name, v) for v in seq)  # type: ignore[return-value]


#: The detector-response fields of every layer kind (the rest of a layer is its geometry).
RESPONSE_KEYS = ("resolution_um", "efficiency", "thickness_x0", "material", "energy_loss")


@dataclass(frozen=True)
class _LayerResponse:
    """Detector response shared by every layer kind (mixin)."""

    resolution_um: float = 50.0
    efficiency: float = 1.0
    thickness_x0: float = 0.0
    material: str = "silicon"
    energy_loss: bool = False

    @property
    def thickness_mm(self) -> float:
        """Thickness at normal incidence [mm]: ``thickness_x0 * X0(material)``."""
        from spectrocnn.simulate.material import get_material

        return self.thickness_x0 * get_material(self.material).X0_mm

    def _check_response(self) -> None:
        from spectrocnn.simulate.material import get_material

        get_material(self.material)  # an unknown name raises, naming the known ones
        if not isinstance(self.energy_loss, bool | np.bool_):
            raise ConfigError(f"energy_loss must be true or false, got {self.energy_loss!r}")
        object.__setattr__(self, "energy_loss", bool(self.energy_loss))
        r = _finite("resolution_um", self.resolution_um)
        if r < 0:
            raise ConfigError(f"resolution_um must be >= 0, got {self.resolution_um!r}")
        e = _finite("efficiency", self.efficiency)
        if not 0.0 <= e <= 1.0:
            raise ConfigError(f"efficiency must be in [0, 1], got {self.efficiency!r}")
        t = _finite("thickness_x0", self.thickness_x0)
        if t < 0:
            raise ConfigError(f"thickness_x0 must be >= 0, got {self.thickness_x0!r}")
        object.__setattr__(self, "resolution_um", r)
        object.__setattr__(self, "efficiency", e)
        object.__setattr__(self, "thickness_x0", t)


@dataclass(frozen=True)
class CylinderLayer(_LayerResponse):
    """A cylindrical layer whose axis is the z axis.

    Parameters
    ----------
    radius_mm : float
        Radius [mm], > 0.
    half_length_mm : float
        Half length along z [mm], > 0; the layer spans ``-half_length_mm <= z <= half_length_mm``.
    resolution_um : float
        Gaussian resolution of each measured coordinate (r-phi arc and z) [um], >= 0.
    efficiency : float
        Probability in [0, 1] that a crossing leaves a hit.
    thickness_x0 : float
        Thickness in radiation lengths at normal incidence (multiple scattering, energy
        loss), >= 0.
    material : str
        The layer's material, a name of :data:`~spectrocnn.simulate.material.MATERIALS`
        (``"silicon"``): its radiation length converts ``thickness_x0`` to a mass
        thickness for the energy loss (:attr:`thickness_mm`).
    energy_loss : bool
        Whether a crossing loses energy by ionisation (Bethe mean, Landau fluctuations,
        :func:`~spectrocnn.simulate.material.energy_loss_at_layers`).
    """

    radius_mm: float = 50.0
    half_length_mm: float = 1000.0
    kind: ClassVar[str] = "cylinder"

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius_mm", _positive("radius_mm", self.radius_mm))
        object.__setattr__(self, "half_length_mm", _positive("half_length_mm", self.half_length_mm))
        self._check_response()

    def to_dict(self) -> dict:
        """The layer as a ``[[detector.layers]]`` table of the configuration file."""
        return {
            "kind": self.kind,
            "radius_mm": self.radius_mm,
            "half_length_mm": self.half_length_mm,
            "resolution_um": self.resolution_um,
            "efficiency": self.efficiency,
            "thickness_x0": self.thickness_x0,
            "material": self.material,
            "energy_loss": self.energy_loss,
        }


@dataclass(frozen=True)
class PlaneLayer(_LayerResponse):
    """A finite rectangular plane at any position and orientation.

    The plane's two in-plane axes are ``u`` (unit, perpendicular to the normal and to z,
    so it lies in the x-y plane; ``u = x`` when the normal is along z) and
    ``v = normal x u`` (along +z when the normal lies in the x-y plane).

    Parameters
    ----------
    center_mm : tuple of 3 floats
        Centre of the rectangle [mm].
    normal : tuple of 3 floats
        Normal direction, any non-zero length (normalised when built).
    half_width_mm : float
        Half extent along ``u`` [mm], > 0.
    half_height_mm : float
        Half extent along ``v`` [mm], > 0.
    resolution_um, efficiency, thickness_x0, material, energy_loss
        As for :class:`CylinderLayer`; the measured coordinates are ``u`` and ``v``.
    """

    center_mm: tuple[float, float, float] = (100.0, 0.0, 0.0)
    normal: tuple[float, float, float] = (1.0, 0.0, 0.0)
    half_width_mm: float = 300.0
    half_height_mm: float = 300.0
    u: tuple[float, float, float] = field(init=False, repr=False, compare=False)
    v: tuple[float, float, float] = field(init=False, repr=False, compare=False)
    kind: ClassVar[str] = "plane"

    def __post_init__(self) -> None:
        c = _vector3("center_mm", self.center_mm)
        n = np.array(_vector3("normal", self.normal))
        norm = float(np.linalg.norm(n))
        if norm == 0.0:
            raise ConfigError(f"normal must be a non-zero vector, got {self.normal!r}")
        n = n / norm
        u = np.cross([0.0, 0.0, 1.0], n)
        un = float(np.linalg.norm(u))
        u = np.array([1.0, 0.0, 0.0]) if un < 1e-12 else u / un
        v = np.cross(n, u)
        object.__setattr__(self, "center_mm", c)
        object.__setattr__(self, "normal", tuple(float(x) for x in n))
        object.__setattr__(self, "u", tuple(float(x) for x in u))
        object.__setattr__(self, "v", tuple(float(x) for x in v))
        object.__setattr__(self, "half_width_mm", _positive("half_width_mm", self.half_width_mm))
        object.__setattr__(self, "half_height_mm", _positive("half_height_mm", self.half_height_mm))
        self._check_response()

    def to_dict(self) -> dict:
        """The layer as a ``[[detector.layers]]`` table of the configuration file."""
        return {
            "kind": self.kind,
            "center_mm": list(self.center_mm),
            "normal": list(self.normal),
            "half_width_mm": self.half_width_mm,
            "half_height_mm": self.half_height_mm,
            "resolution_um": self.resolution_um,
            "efficiency": self.efficiency,
            "thickness_x0": self.thickness_x0,
            "material": self.material,
            "energy_loss": self.energy_loss,
        }


Layer = CylinderLayer | PlaneLayer


@dataclass(frozen=True, eq=False)
class Detector:
    """An ordered list of layers in a magnetic field.

    Parameters
    ----------
    layers : sequence of CylinderLayer or PlaneLayer
        At least one layer; the index of a layer in this tuple is its ``layer`` number in
        the hit table. No two layers may be the same surface (cylinders of one radius,
        planes with the same centre and normal).
    field : Field
        The magnetic field (:class:`~spectrocnn.simulate.fields.UniformField`,
        :class:`~spectrocnn.simulate.fields.FieldMap` or
        :class:`~spectrocnn.simulate.fields.CallableField`).
    name : str
        A label recorded in the event file (the preset's name, or ``"custom"``).

    Notes
    -----
    Particles stop when they leave the detector's *outer boundary*: the cylinder about z
    of radius :attr:`r_max_mm` and half length :attr:`z_max_mm` that encloses every layer
    with a 1 mm margin.
    """

    layers: tuple[Layer, ...]
    field: Field
    name: str = "custom"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise ConfigError("a detector needs at least one layer, got none")
        for i, layer in enumerate(layers):
            if not isinstance(layer, CylinderLayer | PlaneLayer):
                raise ConfigError(f"layer {i} must be a CylinderLayer or PlaneLayer, got {layer!r}")
        if len(layers) > np.iinfo(np.int16).max:
            raise ConfigError(f"at most 32767 layers are supported, got {len(layers)}")
        if not callable(self.field):
            raise ConfigError(f"field must be callable as B(points), got {self.field!r}")
        seen: dict[tuple, int] = {}
        for i, layer in enumerate(layers):  # a second sensor on the same surface: no
            if isinstance(layer, CylinderLayer):
                key: tuple = ("cylinder", layer.radius_mm)
                where = f"cylinders of radius_mm {layer.radius_mm}"
            else:
                n = max(layer.normal, tuple(-x for x in layer.normal))  # either sign
                key = ("plane", layer.center_mm, n)
                where = f"planes at center_mm {list(layer.center_mm)}"
            if key in seen:
                raise ConfigError(
                    f"detector layers {seen[key]} and {i} are the same surface ({where})"
                )
            seen[key] = i
        object.__setattr__(self, "layers", layers)

    @cached_property
    def arrays(self) -> LayerArrays:
        """The layers' parameters as named arrays of leading length L (computed once)."""
        return LayerArrays.of(self.layers)

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return len(self.layers)

    @cached_property
    def r_max_mm(self) -> float:
        """Transverse radius of the outer boundary [mm]."""
        r = 0.0
        for layer in self.layers:
            if isinstance(layer, CylinderLayer):
                r = max(r, layer.radius_mm)
            else:
                r = max(r, float(np.max(np.hypot(_corners(layer)[:, 0], _corners(layer)[:, 1]))))
        return r + 1.0

    @cached_property
    def z_max_mm(self) -> float:
        """Half length of the outer boundary along z [mm]."""
        z = 0.0
        for layer in self.layers:
            if isinstance(layer, CylinderLayer):
                z = max(z, layer.half_length_mm)
            else:
                z = max(z, float(np.max(np.abs(_corners(layer)[:, 2]))))
        return z + 1.0


def _corners(layer: PlaneLayer) -> np.ndarray:
    c, u, v = (np.asarray(a) for a in (layer.center_mm, layer.u, layer.v))
    w, h = layer.half_width_mm, layer.half_height_mm
    return np.array([c + su * w * u + sv * h * v for su in (-1, 1) for sv in (-1, 1)])


# ----------------------------------------------------------------------------- vectorised
class LayerArrays(NamedTuple):
    """Per-layer parameters of a detector as arrays, for the vectorised helpers and the
    propagators (:attr:`Detector.arrays`). Every array has leading length L (the layers, in
    order); an entry that does not apply to a layer's kind is 0.

    Attributes
    ----------
    is_cylinder : ndarray of bool, shape (L,)
        True for a :class:`CylinderLayer`, False for a :class:`PlaneLayer`.
    radius_mm, half_length_mm : ndarray, shape (L,)
        A cylinder's radius and half length along z [mm].
    center_mm : ndarray, shape (L, 3)
        A plane's centre [mm].
    normal, u, v : ndarray, shape (L, 3)
        A plane's unit normal and in-plane unit axes (:class:`PlaneLayer`).
    half_width_mm, half_height_mm : ndarray, shape (L,)
        A plane's half extents along ``u`` and ``v`` [mm].
    plane_offset_mm : ndarray, shape (L,)
        ``normal . center_mm`` [mm]: a point x lies on a plane where ``normal . x`` equals it.
    """

    is_cylinder: np.ndarray
    radius_mm: np.ndarray
    half_length_mm: np.ndarray
    center_mm: np.ndarray
    normal: np.ndarray
    u: np.ndarray
    v: np.ndarray
    half_width_mm: np.ndarray
    half_height_mm: np.ndarray
    plane_offset_mm: np.ndarray

    @classmethod
    def of(cls, layers: tuple[Layer, ...]) -> LayerArrays:
        """Build from a detector's layers."""
        n_layers = len(layers)
        is_cyl = np.array([isinstance(layer, CylinderLayer) for layer in layers])
        radius = np.array([getattr(layer, "radius_mm", 0.0) for layer in layers])
        half_z = np.array([getattr(layer, "half_length_mm", 0.0) for layer in layers])
        center = np.zeros((n_layers, 3))
        normal = np.zeros((n_layers, 3))
        u = np.zeros((n_layers, 3))
        v = np.zeros((n_layers, 3))
        hw = np.zeros(n_layers)
        hh = np.zeros(n_layers)
        for i, layer in enumerate(layers):
            if isinstance(layer, PlaneLayer):
                center[i], normal[i], u[i], v[i] = layer.center_mm, layer.normal, layer.u, layer.v
                hw[i], hh[i] = layer.half_width_mm, layer.half_height_mm
        offset = np.einsum("ij,ij->i", center, normal)
        return cls(is_cyl, radius, half_z, center, normal, u, v, hw, hh, offset)


def surface_distance(detector: Detector, points: np.ndarray) -> np.ndarray:
    """Signed distance of points from every layer's (unbounded) surface.

    Parameters
    ----------
    detector : Detector
    points : ndarray, shape (n, 3), float64
        Positions [mm].

    Returns
    -------
    ndarray, shape (n, L), float64
        ``sqrt(x^2 + y^2) - radius`` for a cylinder, ``normal . (point - center)`` for a
        plane [mm]. A sign change along a path is a crossing of the infinite surface; use
        :func:`on_active_area` to check the layer's finite extent.
    """
    la = detector.arrays
    points = np.asarray(points, dtype=np.float64)
    rho = np.hypot(points[:, 0], points[:, 1])[:, None]
    d_cyl = rho - la.radius_mm[None, :]
    d_pln = points @ la.normal.T - la.plane_offset_mm[None, :]
    return np.where(la.is_cylinder[None, :], d_cyl, d_pln)


def on_active_area(detector: Detector, points: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Whether points lying on a layer's surface fall inside its finite extent.

    Parameters
    ----------
    detector : Detector
    points : ndarray, shape (n, 3)
        Positions on the surfaces [mm].
    layer : ndarray of int, shape (n,)
        The layer index of each point.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    la = detector.arrays
    layer = np.asarray(layer, dtype=np.intp)
    points = np.asarray(points, dtype=np.float64)
    out = np.empty(len(layer), dtype=bool)
    cyl = la.is_cylinder[layer]
    if cyl.all():
        return np.abs(points[:, 2]) <= la.half_length_mm[layer]
    out[cyl] = np.abs(points[cyl, 2]) <= la.half_length_mm[layer[cyl]]
    pl = ~cyl
    lp = layer[pl]
    rel = points[pl] - la.center_mm[lp]
    du = np.abs(np.einsum("ij,ij->i", rel, la.u[lp]))
    dv = np.abs(np.einsum("ij,ij->i", rel, la.v[lp]))
    out[pl] = (du <= la.half_width_mm[lp]) & (dv <= la.half_height_mm[lp])
    return out


def surface_normal(detector: Detector, points: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Unit normals of the given layers at points on them.

    Parameters
    ----------
    detector : Detector
    points : ndarray, shape (n, 3)
        Positions [mm].
    layer : ndarray of int, shape (n,)

    Returns
    -------
    ndarray, shape (n, 3)
        The outward radial unit vector for a cylinder, the plane's normal for a plane.
    """
    la = detector.arrays
    layer = np.asarray(layer, dtype=np.intp)
    points = np.asarray(points, dtype=np.float64)
    rho = np.hypot(points[:, 0], points[:, 1])
    rho = np.where(rho > 0, rho, 1.0)
    radial = np.stack([points[:, 0] / rho, points[:, 1] / rho, np.zeros(len(points))], axis=1)
    return np.where(la.is_cylinder[layer][:, None], radial, la.normal[layer])


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class DetectorPreset:
    """A built-in detector: its layers' geometry and its field (one definition of each).

    Parameters
    ----------
    name : str
        The preset's name (``detector.preset`` of the configuration file).
    layers : tuple of CylinderLayer or PlaneLayer
        The layers, with the default response (50 um, efficiency 1, no material).
    B_T : tuple of 3 floats
        The uniform field [T] the preset comes with.
    """

    name: str
    layers: tuple[Layer, ...]
    B_T: tuple[float, float, float] = (0.0, 0.0, 2.0)

    def layer_tables(self) -> list[dict]:
        """The layers' geometry as ``[[detector.layers]]`` tables (no response keys: the
        detector-level ``resolution_um``, ``efficiency``... of a configuration apply)."""
        return [
            {k: v for k, v in layer.to_dict().items() if k not in RESPONSE_KEYS}
            for layer in self.layers
        ]

    def detector(self, field: Field | None = None, **changes) -> Detector:
        """The preset's :class:`Detector`, every layer with ``changes`` (response or
        geometry fields, e.g. ``thickness_x0=0.01``), in ``field`` (default: the preset's
        uniform field)."""
        from spectrocnn.simulate.fields import UniformField

        layers = tuple(replace(layer, **changes) for layer in self.layers)
        return Detector(layers, field if field is not None else UniformField(self.B_T), self.name)


#: The built-in detectors by name. ``lecture``: the lecture's barrel, 16 cylinders about z of
#: radii 50, 60, ..., 200 mm and half length 1000 mm. ``telescope``: a forward telescope,
#: 16 square planes normal to +x at x = 50, 60, ..., 200 mm (the lecture barrel's radii, so
#: the same image window shows both), each 400 mm x 400 mm (half width along y and half
#: height along z 200 mm), centred on the x axis; the beam goes along +x. Both in 2 T along
#: +z.
DETECTOR_PRESETS: dict[str, DetectorPreset] = {
    "lecture": DetectorPreset(
        "lecture",
        tuple(CylinderLayer(radius_mm=float(r), half_length_mm=1000.0) for r in range(50, 201, 10)),
    ),
    "telescope": DetectorPreset(
        "telescope",
        tuple(
            PlaneLayer(
                center_mm=(float(x), 0.0, 0.0),
                normal=(1.0, 0.0, 0.0),
                half_width_mm=200.0,
                half_height_mm=200.0,
            )
            for x in range(50, 201, 10)
        ),
    ),
}


def lecture_detector(
    field: Field | None = None,
    *,
    resolution_um: float = 50.0,
    efficiency: float = 1.0,
    thickness_x0: float = 0.0,
    half_length_mm: float = 1000.0,
) -> Detector:
    """The lecture's barrel: 16 cylinders, radii 50 to 200 mm in 10 mm steps
    (:data:`DETECTOR_PRESETS`).

    Parameters
    ----------
    field : Field, optional
        Defaults to a uniform 2 T field along +z.
    resolution_um, efficiency, thickness_x0 : float
        Applied to every layer.
    half_length_mm : float
        Half length of every cylinder [mm].
    """
    return DETECTOR_PRESETS["lecture"].detector(
        field,
        resolution_um=resolution_um,
        efficiency=efficiency,
        thickness_x0=thickness_x0,
        half_length_mm=half_length_mm,
    )


def telescope_detector(
    field: Field | None = None,
    *,
    resolution_um: float = 50.0,
    efficiency: float = 1.0,
    thickness_x0: float = 0.0,
) -> Detector:
    """A forward telescope: 16 square planes normal to +x (:data:`DETECTOR_PRESETS`).

    Parameters
    ----------
    field : Field, optional
        Defaults to a uniform 2 T field along +z.
    resolution_um, efficiency, thickness_x0 : float
        Applied to every plane.
    """
    return DETECTOR_PRESETS["telescope"].detector(
        field, resolution_um=resolution_um, efficiency=efficiency, thickness_x0=thickness_x0
    )
