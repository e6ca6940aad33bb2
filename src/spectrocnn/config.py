# size: the one place that reads the configuration file (docs/design.md 3.2): every key,
# the presets' defaults and the check of each value.
"""Configuration: the TOML file of docs/design.md 3.2 -> validated frozen dataclasses.

Every key is optional; defaults come from the chosen preset (``lecture`` unless
``detector.preset`` or ``--preset`` says otherwise). Unknown keys and impossible values
raise :class:`~spectrocnn.errors.ConfigError` naming the key and the value.

Library users can skip the file entirely and build a :class:`Config` from
:class:`~spectrocnn.simulate.Simulation` and :class:`~spectrocnn.dataset.raster.ImageSpec`.
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from spectrocnn._validate import check_number
from spectrocnn.dataset.raster import PROJECTIONS, ImageSpec
from spectrocnn.errors import ConfigError
from spectrocnn.simulate.events import Simulation
from spectrocnn.simulate.fields import Field, FieldMap, UniformField, load_field_map
from spectrocnn.simulate.geometry import (
    DETECTOR_PRESETS,
    RESPONSE_KEYS,
    CylinderLayer,
    Detector,
    PlaneLayer,
)
from spectrocnn.simulate.gun import Gun, LabelThreshold, ParticleGun
from spectrocnn.simulate.material import get_material

__all__ = [
    "CONFIG_VERSION",
    "PRESETS",
    "Config",
    "config_from_dict",
    "load_config",
    "preset_config",
]

#: Version of the configuration format (the optional top-level ``version`` key).
CONFIG_VERSION = 1

# The layers and field of each preset come from its one definition,
# spectrocnn.simulate.geometry.DETECTOR_PRESETS; the rest (gun, image) is defined here.
_LECTURE: dict[str, Any] = {
    "n_particles": 10,
    "high_fraction": 0.5,
    "detector": {
        "preset": "lecture",
        "resolution_um": 50.0,
        "efficiency": 1.0,
        "thickness_x0": 0.0,
        "material": "silicon",
        "energy_loss": False,
        "layers": DETECTOR_PRESETS["lecture"].layer_tables(),
    },
    "field": {"B_T": list(DETECTOR_PRESETS["lecture"].B_T), "stepper_tolerance_mm": 1e-4},
    "gun": {
        "particle": "pi+",
        "p_low_GeV": [0.1, 0.15],
        "p_high_GeV": [5.0, 10.0],
        "phi_deg": [0.0, 360.0],
        "dip_deg": [-10.0, 10.0],
        "vertex_sigma_mm": [0.0, 0.0, 0.0],
    },
    "noise": {"hits_per_layer": 0.0},
    # 3.125 mm is 2 pixels at 512 x 512 over 800 mm, the lecture's images; in mm, so that
    # a hit keeps its size on the detector at another image size (dataset/raster.py)
    "image": {"size": 512, "window_mm": [-400.0, 400.0, -400.0, 400.0], "hit_radius_mm": 3.125},
}

_TELESCOPE: dict[str, Any] = copy.deepcopy(_LECTURE)
_TELESCOPE["detector"]["preset"] = "telescope"
_TELESCOPE["detector"]["layers"] = DETECTOR_PRESETS["telescope"].layer_tables()
_TELESCOPE["field"]["B_T"] = list(DETECTOR_PRESETS["telescope"].B_T)
_TELESCOPE["gun"]["phi_deg"] = [-20.0, 20.0]
_TELESCOPE["gun"]["dip_deg"] = [-5.0, 5.0]
_TELESCOPE["gun"]["p_low_GeV"] = [0.1, 0.5]
_TELESCOPE["image"]["window_mm"] = [0.0, 210.0, -105.0, 105.0]
del _TELESCOPE["image"]["hit_radius_mm"]
_TELESCOPE["image"]["hit_radius_px"] = 0

#: The built-in presets as fully resolved configuration dictionaries.
PRESETS: dict[str, dict[str, Any]] = {"lecture": _LECTURE, "telescope": _TELESCOPE}

_KEYS: dict[str, set[str]] = {
    "": {
        "version",
        "n_particles",
        "high_fraction",
        "detector",
        "field",
        "gun",
        "noise",
        "image",
        "guns",
        "label",
    },
    "detector": {
        "preset",
        "resolution_um",
        "efficiency",
        "thickness_x0",
        "layers",
        "material",
        "thickness_mm",
        "energy_loss",
    },
    "field": {"B_T", "map", "stepper_tolerance_mm"},
    "gun": {
        "particle",
        "p_low_GeV",
        "p_high_GeV",
        "phi_deg",
        "dip_deg",
        "vertex_sigma_mm",
        "momentum",
        "eta",
        "charge_sign",
    },
    "label": {"threshold_GeV", "variable"},
    "noise": {"hits_per_layer"},
    "image": {"size", "window_mm", "hit_radius_px", "hit_radius_mm", "projection"},
}
#: Keys of each ``[[guns]]`` table (issue 19).
_GUNS_KEYS = {
    "particle",
    "charge_sign",
    "fraction",
    "count",
    "p_GeV",
    "pt_GeV",
    "dip_deg",
    "eta",
    "phi_deg",
    "vertex_sigma_mm",
}
_RESPONSE = set(RESPONSE_KEYS)
#: A key of the detector and of each layer that is no layer field: converted to thickness_x0
#: with the layer's material (x/X0 = thickness_mm / X0), see :func:`_thickness_mm`.
_THICKNESS_MM = "thickness_mm"
_LAYER_KEYS = {
    "cylinder": {"kind", "radius_mm", "half_length_mm", _THICKNESS_MM} | _RESPONSE,
    "plane": {"kind", "center_mm", "normal", "half_width_mm", "half_height_mm", _THICKNESS_MM}
    | _RESPONSE,
}


@dataclass(frozen=True, eq=False)
class Config:
    """A complete, validated configuration.

    Parameters
    ----------
    simulation : Simulation
        The physics: detector, field, gun, event composition, noise.
    image : ImageSpec
        How events become images.
    preset : str
        Name of the preset the configuration started from (``"custom"`` when built in
        Python).
    detector_defaults : dict
        The detector-level ``resolution_um``, ``efficiency``, ``thickness_x0`` (or
        ``thickness_mm`` when the file gave it), ``material`` and ``energy_loss`` (recorded
        in the resolved configuration; each layer carries its own values).
    """

    simulation: Simulation = field(default_factory=Simulation)
    image: ImageSpec = field(default_factory=ImageSpec)
    preset: str = "custom"
    detector_defaults: dict = field(
        default_factory=lambda: {
            "resolution_um": 50.0,
            "efficiency": 1.0,
            "thickness_x0": 0.0,
            "material": "silicon",
            "energy_loss": False,
        }
    )

    def with_image_size(self, size: int) -> Config:
        """The same configuration with another image size [pixels].

        A hit radius set in mm (``hit_radius_mm``, the ``lecture`` preset's) keeps its size
        on the detector: the radius in pixels follows the size. One set in pixels keeps it.
        """
        image = _build("image", lambda **kw: replace(self.image, **kw), size=size)
        return replace(self, image=image)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved configuration (defaults included) as a JSON-able dict.

        Feeding it back to :func:`config_from_dict` gives an equivalent configuration
        (except for a callable field, which is recorded by name only).
        """
        sim = self.simulation
        det = sim.detector
        fld = det.field
        if isinstance(fld, UniformField):
            fdict: dict[str, Any] = {"B_T": list(fld.B_T)}
        elif isinstance(fld, FieldMap):
            fdict = {"map": fld.source}
        else:
            fdict = {"callable": getattr(fld, "name", repr(fld))}
        fdict["stepper_tolerance_mm"] = sim.stepper_tolerance_mm
        gun = sim.gun
        gun_extra: dict[str, Any] = {}  # issue 19 keys, only where not the default
        if gun.momentum != "p":
            gun_extra["momentum"] = gun.momentum
        if gun.eta is not None:
            gun_extra["eta"] = list(gun.eta)
        if gun.charge_sign != "random":
            gun_extra["charge_sign"] = gun.charge_sign
        mult = sim.n_particles
        out = {
            "version": CONFIG_VERSION,
            "n_particles": mult if isinstance(mult, int) else mult.to_config(),
            "high_fraction": sim.high_fraction,
            "detector": {
                "preset": self.preset,
                **self.detector_defaults,
                "layers": [layer.to_dict() for layer in det.layers],
            },
            "field": fdict,
            "gun": {
                "particle": gun.particle,
                "p_low_GeV": list(gun.p_low_GeV),
                "p_high_GeV": list(gun.p_high_GeV),
                "phi_deg": list(gun.phi_deg),
                "dip_deg": list(gun.dip_deg),
                "vertex_sigma_mm": list(gun.vertex_sigma_mm),
                **gun_extra,
            },
            "noise": {"hits_per_layer": sim.noise_hits_per_layer},
            "image": {
                "size": self.image.size,
                "window_mm": list(self.image.window_mm),
                "hit_radius_px": self.image.hit_radius_px,
                **_image_extras(self.image),
            },
        }
        if gun.eta is not None:  # eta replaces the dip range
            del out["gun"]["dip_deg"]
        if sim.guns:  # the single gun and its recipe are not used (nor n_particles with counts)
            del out["gun"], out["high_fraction"]
            if sim.guns[0].count is not None:
                del out["n_particles"]
            out["guns"] = [g.to_config() for g in sim.guns]
        if sim.label is not None:
            label = sim.label
            out["label"] = {"threshold_GeV": label.threshold_GeV, "variable": label.variable}
        return out


def preset_config(name: str = "lecture") -> Config:
    """The configuration of a built-in preset (``"lecture"`` or ``"telescope"``).

    Raises
    ------
    ConfigError
        For an unknown preset name.
    """
    return config_from_dict({}, preset=name)


def load_config(path: str | os.PathLike | None = None, *, preset: str | None = None) -> Config:
    """Read a TOML configuration file (docs/design.md 3.2) and validate it.

    Parameters
    ----------
    path : path-like, optional
        The TOML file; None gives the preset's defaults.
    preset : str, optional
        Overrides the file's ``detector.preset`` (the ``--preset`` flag).

    Raises
    ------
    ConfigError
        For a missing or malformed file, an unknown key or an invalid value; the message
        names the file, the key and the value.
    """
    if path is None:
        return config_from_dict({}, preset=preset)
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path!r} is a directory") from None
    except PermissionError:
        raise ConfigError(
            f"config file {path!r} cannot be read: no read permission (check the file's mode "
            "and owner)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path!r} is not a TOML text file (not UTF-8: {exc.reason} at byte "
            f"{exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path!r} cannot be read: {exc.strerror or exc}") from None
    base = os.path.dirname(os.path.abspath(path))
    try:
        return config_from_dict(data, preset=preset, base_dir=base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_keys(section: str, table: Any, allowed: set[str]) -> None:
    where = f"[{section}]" if section else "the top level"
    if not isinstance(table, dict):
        raise ConfigError(f"{section} must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            name = f"{section}.{key}" if section else key
            raise ConfigError(f"unknown key {name!r} in {where}{_did_you_mean(key, allowed)}")


def _did_you_mean(key: Any, allowed: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest allowed key (difflib), or ``""``."""
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _build(path: str, factory, /, **kwargs):
    """Call a dataclass factory, prefixing errors with the configuration path."""
    try:
        return factory(**kwargs)
    except ConfigError as exc:
        msg = str(exc)
        first = msg.split(" ", 1)[0]
        if first in kwargs or first.split(".")[0] in kwargs:
            raise ConfigError(f"{path}.{msg}" if path else msg) from None
        raise ConfigError(f"{path}: {msg}" if path else msg) from None


def config_from_dict(
    data: dict[str, Any], *, preset: str | None = None, base_dir: str | None = None
) -> Config:
    """Validate a configuration dictionary (the parsed TOML) into a :class:`Config`.

    Parameters
    ----------
    data : dict
        Keys as in docs/design.md 3.2; missing keys take the preset's values.
    preset : str, optional
        Overrides ``data["detector"]["preset"]``.
    base_dir : str, optional
        Directory that a relative ``field.map`` path is relative to (the config file's).

    Raises
    ------
    ConfigError
    """
    _check_keys("", data, _KEYS[""])
    for section in ("detector", "field", "gun", "noise", "image", "label"):
        if section in data:
            _check_keys(section, data[section], _KEYS[section])
    version = data.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION or isinstance(version, bool):
        raise ConfigError(f"version must be {CONFIG_VERSION}, got {version!r}")
    name = preset if preset is not None else data.get("detector", {}).get("preset", "lecture")
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    user = copy.deepcopy(data)
    user.setdefault("detector", {})["preset"] = name
    merged = _merge(PRESETS[name], {k: v for k, v in user.items() if k != "version"})
    layers, defaults = _layers(merged["detector"], user["detector"])
    fdata = merged["field"]
    fld = _field(fdata, user.get("field", {}), base_dir)
    detector = Detector(tuple(layers), fld, name)
    gun = _gun(merged["gun"], user.get("gun", {}))
    guns, label = _guns_and_label(user)
    sim = _build(
        "",
        Simulation,
        detector=detector,
        gun=gun,
        n_particles=merged["n_particles"],
        high_fraction=merged["high_fraction"],
        noise_hits_per_layer=merged["noise"]["hits_per_layer"],
        stepper_tolerance_mm=check_number(
            "field.stepper_tolerance_mm", fdata["stepper_tolerance_mm"]
        ),
        guns=guns,
        label=label,
    )
    image = _image_spec(merged["image"], user.get("image", {}))
    recorded = {
        k: (v if k in ("material", "energy_loss") else float(v)) for k, v in defaults.items()
    }
    return Config(sim, image, name, recorded)


def _layers(
    det: dict[str, Any], user_det: dict[str, Any]
) -> tuple[list[CylinderLayer | PlaneLayer], dict[str, Any]]:
    """The layers of ``[detector]`` (``det`` merged with the preset, ``user_det`` as
    given) and the detector-level values they default to, as recorded. Raises ConfigError."""
    layers_in = user_det["layers"] if "layers" in user_det else det["layers"]
    if not isinstance(layers_in, list):
        raise ConfigError(f"detector.layers must be an array of tables, got {layers_in!r}")
    if not layers_in:
        raise ConfigError("detector.layers must hold at least one layer, got none")
    defaults = {k: det[k] for k in _RESPONSE}
    for k, v in defaults.items():  # validate the detector-level values themselves
        _build("detector", CylinderLayer, **{k: v})
    # the detector-level thickness: thickness_mm (converted per layer, with the layer's
    # material) or thickness_x0, not both
    det_mm = _given_thickness_mm("detector", user_det)
    if det_mm is not None:
        del defaults["thickness_x0"]
    layers = [_layer(i, spec, defaults, det_mm) for i, spec in enumerate(layers_in)]
    if det_mm is not None:  # recorded as given
        defaults = {**defaults, _THICKNESS_MM: det_mm}
    return layers, defaults


def _given_thickness_mm(where: str, table: dict[str, Any]) -> float | None:
    """The ``thickness_mm`` of a table that gives it, else None; ConfigError when the table
    also gives ``thickness_x0``."""
    if _THICKNESS_MM not in table:
        return None
    if "thickness_x0" in table:
        raise ConfigError(
            f"{where}: give either thickness_mm or thickness_x0, not both (got "
            f"thickness_mm = {table[_THICKNESS_MM]!r}, thickness_x0 = "
            f"{table['thickness_x0']!r})"
        )
    return _thickness_mm(f"{where}.thickness_mm", table[_THICKNESS_MM])


def _layer(
    i: int, spec: Any, defaults: dict[str, Any], det_mm: float | None
) -> CylinderLayer | PlaneLayer:
    """Layer ``i`` from its table ``spec``, the detector-level ``defaults`` (and thickness
    ``det_mm``, if given in mm) filling the keys it lacks. Raises ConfigError."""
    where = f"detector.layers[{i}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a table, got {spec!r}")
    kind = spec.get("kind", "cylinder")
    if kind not in _LAYER_KEYS:
        raise ConfigError(f"{where}.kind must be 'cylinder' or 'plane', got {kind!r}")
    for key in spec:
        if key not in _LAYER_KEYS[kind]:
            hint = _did_you_mean(key, _LAYER_KEYS[kind])
            raise ConfigError(f"unknown key {where}.{key!r} for a {kind} layer{hint}")
    kwargs = {**defaults, **{k: v for k, v in spec.items() if k not in ("kind", _THICKNESS_MM)}}
    layer_mm = det_mm
    if _THICKNESS_MM in spec:  # a layer's own thickness replaces the detector's
        layer_mm = _given_thickness_mm(where, spec)
    elif "thickness_x0" in spec:
        layer_mm = None
    if layer_mm is not None:
        mat = _build(where, CylinderLayer, material=kwargs.get("material", "silicon"))
        kwargs["thickness_x0"] = layer_mm / get_material(mat.material).X0_mm
    cls = CylinderLayer if kind == "cylinder" else PlaneLayer
    return _build(where, cls, **kwargs)


def _field(fdata: dict[str, Any], user_field: dict[str, Any], base_dir: str | None) -> Field:
    """The field of ``[field]`` (``fdata`` merged with the preset, ``user_field`` as given): a
    map (a relative path from ``base_dir``) or a uniform field. Raises ConfigError."""
    if "map" in user_field:
        if "B_T" in user_field:
            raise ConfigError("field: give either B_T or map, not both")
        mpath = user_field["map"]
        if not isinstance(mpath, str):
            raise ConfigError(f"field.map must be a path string, got {mpath!r}")
        if base_dir and not os.path.isabs(mpath):
            mpath = os.path.join(base_dir, mpath)
        try:
            return load_field_map(mpath)
        except ConfigError as exc:
            raise ConfigError(f"field.map: {exc}") from None
    if "map" in fdata and "B_T" not in user_field:  # a resolved dict fed back
        return load_field_map(fdata["map"])
    return _build("field", UniformField, B_T=fdata["B_T"])


def _gun(gun_data: dict[str, Any], user_gun: dict[str, Any]) -> ParticleGun:
    """The single gun of ``[gun]`` (``gun_data`` merged with the preset, ``user_gun`` as
    given); ``eta`` replaces the preset's dip range. Raises ConfigError."""
    gun_kw = dict(gun_data)
    if "eta" in user_gun:
        if "dip_deg" in user_gun:
            raise ConfigError(
                "gun: give either dip_deg or eta, not both, got "
                f"dip_deg={user_gun['dip_deg']!r} eta={user_gun['eta']!r}"
            )
        gun_kw.pop("dip_deg", None)  # eta replaces the preset's dip range
    return _build("gun", ParticleGun, **gun_kw)


def _thickness_mm(name: str, value: Any) -> float:
    """A ``thickness_mm`` value: a finite number >= 0 [mm]."""
    v = check_number(name, value)
    if v < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return v


def _guns_and_label(user: dict) -> tuple[tuple[Gun, ...], LabelThreshold | None]:
    """The ``[[guns]]`` tables and the ``[label]`` table (issue 19), validated."""
    label = _build("label", LabelThreshold, **user["label"]) if "label" in user else None
    if "guns" not in user:
        return (), label
    specs = user["guns"]
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"guns must be a non-empty array of tables ([[guns]]), got {specs!r}")
    if "gun" in user:
        raise ConfigError("give either [gun] or [[guns]], not both")
    if "high_fraction" in user:
        raise ConfigError(
            f"high_fraction is the recipe of the single [gun]; with [[guns]] the label comes "
            f"from [label], got high_fraction={user['high_fraction']!r}"
        )
    guns = []
    for i, spec in enumerate(specs):
        where = f"guns[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a table, got {spec!r}")
        for key in spec:
            if key not in _GUNS_KEYS:
                hint = _did_you_mean(key, _GUNS_KEYS)
                raise ConfigError(f"unknown key '{where}.{key}' in [[guns]]{hint}")
        guns.append(_build(where, Gun, **spec))
    if guns[0].count is not None and "n_particles" in user:
        raise ConfigError(
            f"n_particles is not used when the guns give counts (each event holds the sum of "
            f"the counts), got n_particles={user['n_particles']!r}"
        )
    if label is None:
        raise ConfigError(
            "[[guns]] need a [label] table (threshold_GeV, variable): the high_fraction "
            "recipe belongs to the single [gun]"
        )
    return tuple(guns), label


def _image_extras(image: ImageSpec) -> dict[str, Any]:
    """The optional ``[image]`` keys of to_dict: ``hit_radius_mm`` when the hit size is set in
    mm; ``projection`` when not ``"xy"`` (a default configuration records what it did)."""
    out: dict[str, Any] = {}
    if image.hit_radius_mm is not None:
        out["hit_radius_mm"] = image.hit_radius_mm
    return out if image.projection == "xy" else {**out, "projection": image.projection}


def _check_projection(value: Any) -> str:
    """The ``[image] projection`` value, checked by :class:`ImageSpec`; a near miss gets a
    suggestion: another case (``"XZ"``), the axes swapped (``"zx"``) or a typo (``"x-z"``)."""
    try:
        return ImageSpec(projection=value).projection
    except ConfigError as exc:
        hint = ""
        if isinstance(value, str):
            guess = value.strip().lower()
            if guess not in PROJECTIONS and guess[::-1] in PROJECTIONS:
                guess = guess[::-1]
            hint = _did_you_mean(guess, PROJECTIONS)
        raise ConfigError(f"image.{exc}{hint}") from None


def _image_spec(img: dict[str, Any], user: dict[str, Any]) -> ImageSpec:
    """The ``[image]`` table (preset merged with the user's) -> :class:`ImageSpec`.

    The user's ``hit_radius_px`` keeps its meaning (pixels, whatever the size) and
    replaces a preset's ``hit_radius_mm``; the user's ``hit_radius_mm`` replaces a preset's
    ``hit_radius_px``. Both given must agree (a resolved configuration fed back records
    both); otherwise the preset's. ``projection`` defaults to ``"xy"``. Raises ConfigError
    naming the key.
    """
    px, mm = img.get("hit_radius_px"), img.get("hit_radius_mm")
    if "hit_radius_px" in user and "hit_radius_mm" not in user:
        mm = None
    elif "hit_radius_mm" in user and "hit_radius_px" not in user:
        px = None
    kwargs: dict[str, Any] = {"size": img["size"], "window_mm": img["window_mm"]}
    kwargs["projection"] = _check_projection(img.get("projection", "xy"))
    if mm is not None:
        kwargs["hit_radius_mm"] = mm
    if px is not None:
        kwargs["hit_radius_px"] = px
    if mm is not None and px is not None:  # px valid by itself, then the same as mm's
        _build("image", ImageSpec, size=img["size"], window_mm=img["window_mm"], hit_radius_px=px)
    image = _build("image", ImageSpec, **kwargs)
    if mm is not None and px is not None and image.hit_radius_px != px:
        raise ConfigError(
            f"image.hit_radius_px = {px!r} disagrees with image.hit_radius_mm = {mm!r} "
            f"({image.hit_radius_px} pixels at size {image.size}); give only one of them"
        )
    return image
