# size: the one home of "which network for these images": the registry, the choice auto
# makes for a file and the checks of a forced one (geometry, projection), and the builders.
"""CNN architectures by name: the lecture's network (``lecture``, alias ``seed``), ``polar``,
a registry for more, and the choice ``auto`` makes for an event file
(:func:`choose_architecture`).

Every builder takes the input size in pixels and returns a *compiled* Keras model whose
input is ``(input_size, input_size, 1)`` float32 in [0, 1] and whose output is the
probability, shape ``(batch, 1)``, that the event contains a high-momentum track (class 1
of binary labels). For your own labels (:class:`~spectrocnn.labels.LabelSpec`) a builder
also takes ``labels=`` and ``monitor=``, and ends in the output layer and compiles with
the loss of :mod:`spectrocnn.model.task` (softmax over the classes, or a linear output
for a regression target); :func:`build_model` passes them only when they are not the
binary default, so a builder written before takes binary labels as ever. Keras (and so
TensorFlow) is imported only when a builder runs, never when this module is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spectrocnn.errors import ConfigError
from spectrocnn.labels import LabelSpec
from spectrocnn.model.task import compile_model, output_layer

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = [
    "ALIASES",
    "ARCHITECTURES",
    "AUTO",
    "INPUT_SIZES",
    "XY_ONLY",
    "barrel_radius_mm",
    "build_model",
    "canonical_name",
    "check_model_projection",
    "check_projection",
    "choose_architecture",
    "get_architecture",
    "lecture",
    "model_flops",
    "model_geometry",
    "polar",
    "polar_geometry",
    "register_architecture",
    "seed",
]

#: ``builder(input_size, window_mm=None, barrel_radius_mm=None) -> compiled keras.Model``
Builder = Callable[..., "keras.Model"]

#: name -> builder; later architectures register themselves with :func:`register_architecture`.
ARCHITECTURES: dict[str, Builder] = {}

#: name -> the input size [pixels] train-cnn uses when ``--input-size`` is not given.
INPUT_SIZES: dict[str, int] = {}

#: Other names of architectures: alias -> name (``seed``, the lecture network's first name,
#: still read from the config.json of older runs).
ALIASES: dict[str, str] = {"seed": "lecture"}

#: The name that lets train-cnn choose for the event file (:func:`choose_architecture`).
AUTO = "auto"

#: The architectures that resample an x-y image about the beam line, a point only there
#: (:func:`check_projection`).
XY_ONLY = frozenset({"polar"})


def register_architecture(name: str, *, input_size: int = 128) -> Callable[[Builder], Builder]:
    """Decorator adding a builder to :data:`ARCHITECTURES` under ``name``.

    Parameters
    ----------
    name : str
        The name ``train-cnn --arch`` takes.
    input_size : int
        The architecture's default input size [pixels] (:data:`INPUT_SIZES`).

    Returns
    -------
    callable
        The decorator; it returns the builder unchanged.

    Raises
    ------
    ValueError
        ``name`` is already registered.
    """

    def add(builder: Builder) -> Builder:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = builder
        INPUT_SIZES[name] = input_size
        return builder

    return add


def get_architecture(name: str) -> Builder:
    """The builder registered as ``name``.

    Parameters
    ----------
    name : str
        An architecture name (:data:`ARCHITECTURES`).

    Returns
    -------
    callable
        ``builder(input_size, window_mm=None, barrel_radius_mm=None) -> compiled keras.Model``.

    Raises
    ------
    ConfigError
        No architecture of that name; the message lists the known ones.
    """
    try:
        return ARCHITECTURES[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        known = ", ".join(sorted([*ARCHITECTURES, *ALIASES]))
        raise ConfigError(
            f"unknown architecture {name!r} (known: {known}; choose one with --arch)"
        ) from None


def canonical_name(name: str) -> str:
    """``name`` with aliases resolved (``"seed"`` -> ``"lecture"``); checks that it exists.

    Raises
    ------
    ConfigError
        No architecture of that name.
    """
    get_architecture(name)
    return ALIASES.get(name, name)


def choose_architecture(
    file_config: dict[str, Any] | None,
    window_mm: Sequence[float] | None,
    projection: str = "xy",
) -> tuple[str, str]:
    """The architecture ``auto`` trains on an event file, and why.

    ``polar`` when the detector is a barrel (every layer of the file's resolved
    configuration a cylinder about the beam line), the images show the x-y plane and the
    image window holds the beam line ``x = y = 0`` strictly inside: then every track
    starts at the centre of the polar image and ``polar`` answers the question best
    (validation accuracy 0.999 against the lecture network's 0.83 on lecture events, at a
    quarter of the time per epoch). Otherwise the lecture's network, which makes no
    assumption about the geometry (in an x-z or y-z image the beam line is a line, not a
    point, and a polar image about it makes no sense).

    Parameters
    ----------
    file_config : dict or None
        The event file's resolved configuration (its ``config`` attribute).
    window_mm : sequence of 4 floats or None
        The image window ``(u_min, u_max, v_min, v_max)`` [mm].
    projection : {"xy", "xz", "yz"}
        The plane the images show (the file's ``/images`` attribute,
        :attr:`~spectrocnn.dataset.EventFile.projection`).

    Returns
    -------
    (str, str)
        ``"polar"`` or ``"lecture"``, and the reason in a few words.
    """
    layers = ((file_config or {}).get("detector") or {}).get("layers")
    if not layers or not isinstance(layers, list):
        return "lecture", "the event file does not record its detector layers"
    if projection != "xy":
        return "lecture", _not_xy(projection)
    kinds = sorted({str(layer.get("kind")) for layer in layers if isinstance(layer, dict)})
    if kinds != ["cylinder"]:
        return "lecture", (
            f"the detector is not a barrel (layers: {', '.join(kinds) or 'unknown'}), "
            "so tracks need not start at the centre of a polar image"
        )
    try:
        r_window = _beam_radius(window_mm)
    except ConfigError:
        return "lecture", (
            f"the image window {[float(v) for v in window_mm or []]} mm does not hold the "
            "beam line x = y = 0 inside"
        )
    r_hits = barrel_radius_mm(file_config)
    reach = (
        f"hits out to r = {r_hits:.0f} mm, the window's circle {r_window:g} mm"
        if r_hits is not None and r_hits < r_window
        else f"polar image out to r = {r_window:g} mm"
    )
    return "polar", (
        f"a barrel of {len(layers)} cylinders and the beam line inside the image window ({reach})"
    )


def _not_xy(projection: str) -> str:
    """Why images of ``projection`` (not "xy") make no polar image about the beam line."""
    return (
        f'the images show the {"-".join(projection)} plane ([image] projection = "{projection}"), '
        f"where the beam line is the line {projection[0]} = 0, not a point: polar images "
        "need x-y images"
    )


def check_projection(name: str, projection: str, source: str | None = None) -> None:
    """Refuse an architecture of :data:`XY_ONLY` (``polar``) on images of another plane
    than x-y (``[image] projection``, :attr:`~spectrocnn.dataset.EventFile.projection`).

    Parameters
    ----------
    name : str
        An architecture name (``auto`` is resolved before: :func:`choose_architecture`).
    projection : {"xy", "xz", "yz"}
    source : str, optional
        The images, as the message names them (an event file, the generated events).

    Raises
    ------
    ConfigError
        ``--arch polar on SOURCE: the images show the x-z plane ([image] projection =
        "xz"), where ...; use --arch lecture or --arch auto``; or an unknown name.
    """
    if projection != "xy" and canonical_name(name) in XY_ONLY:
        on = "" if source is None else f" on {source}"
        raise ConfigError(
            f"--arch {name}{on}: {_not_xy(projection)}; use --arch lecture or --arch auto"
        )


def check_model_projection(model: keras.Model, projection: str, model_path: Any, source: Any):
    """Refuse a polar network (one with a :class:`~spectrocnn.model.layers.PolarPool`
    layer) on images of another plane than x-y, as :func:`check_projection` a training.

    Raises
    ------
    ConfigError
        ``MODEL is a polar network, on SOURCE: the images show the x-z plane ...``.
    """
    if projection == "xy":
        return
    from spectrocnn.model.layers import PolarPool

    if any(isinstance(layer, PolarPool) for layer in model.layers):
        raise ConfigError(
            f"{model_path} is a polar network, on {source}: {_not_xy(projection)}; evaluate "
            "it on x-y images, or train another on these (train-cnn --arch lecture)"
        )


def barrel_radius_mm(file_config: dict[str, Any] | None) -> float | None:
    """How far from the beam line the images of a barrel detector can have a lit pixel [mm].

    The outermost cylinder's radius plus the largest distance between a hit and the centre
    of a pixel it lights: hits stay on their layer's surface
    (:func:`~spectrocnn.simulate.hits.measure`), a hit lights the pixels whose centres lie
    within ``hit_radius_px`` pixels of its own pixel's centre
    (:mod:`spectrocnn.dataset.raster`), and its own pixel's centre lies within half a pixel
    diagonal of it: ``r_layer + (hit_radius_px + sqrt(2) / 2) * pitch_mm``, ``pitch_mm`` the
    larger of the pixel's width and height. Noise hits lie on the layers too.

    Parameters
    ----------
    file_config : dict or None
        An event file's resolved configuration (its ``config`` attribute).

    Returns
    -------
    float or None
        The radius [mm]; None when the file does not record its layers and image, or
        when a layer is not a cylinder about the beam line.
    """
    config = file_config or {}
    layers = (config.get("detector") or {}).get("layers")
    image = config.get("image") or {}
    if not layers or not isinstance(layers, list) or not isinstance(image, dict):
        return None
    if any(not isinstance(layer, dict) or layer.get("kind") != "cylinder" for layer in layers):
        return None
    try:
        r_layer = max(float(layer["radius_mm"]) for layer in layers)
        x0, x1, y0, y1 = (float(v) for v in image["window_mm"])
        pitch = max(x1 - x0, y1 - y0) / int(image["size"])
        radius_px = int(image["hit_radius_px"])
    except (KeyError, TypeError, ValueError):
        return None
    return r_layer + (radius_px + math.sqrt(0.5)) * pitch


def build_model(
    name: str,
    input_size: int,
    *,
    window_mm: Sequence[float] | None = None,
    barrel_radius_mm: float | None = None,
    labels: LabelSpec | None = None,
    monitor: str = "val_accuracy",
    projection: str = "xy",
) -> keras.Model:
    """Build and compile the architecture ``name`` for ``input_size`` x ``input_size`` images.

    Parameters
    ----------
    name : str
        Architecture name (:data:`ARCHITECTURES`).
    input_size : int
        Height and width of the input image [pixels].
    window_mm : sequence of 4 floats, optional
        ``x_min, x_max, y_min, y_max`` of the images [mm]; needed by the architectures
        that use the detector geometry (``polar``), ignored by the others.
    barrel_radius_mm : float, optional
        How far from the beam line the images can have a lit pixel
        (:func:`barrel_radius_mm` of the event file); ``polar`` covers no more than that
        (:func:`polar_geometry`), the others ignore it.
    labels : LabelSpec, optional
        The kind of labels to predict (default: binary), :mod:`spectrocnn.model.task`.
    monitor : str
        The score the best model is kept for (``"val_auc"`` adds the ``auc`` metric).
    projection : {"xy", "xz", "yz"}
        The plane the images show; ``polar`` needs ``"xy"`` (:func:`check_projection`).

    Returns
    -------
    keras.Model
        Compiled; input ``(input_size, input_size, 1)``, output ``(batch, 1)``
        (``(batch, n_classes)`` for multiclass labels).

    Raises
    ------
    ConfigError
        An unknown name, an input size that is not a positive integer, or (``polar``) a
        missing window or one that does not hold the beam line, or images of another
        plane than x-y.
    """
    builder = get_architecture(name)
    check_projection(name, projection)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ConfigError(f"input size must be a positive integer, got {input_size!r}")
    extra: dict[str, Any] = {}
    if labels is not None and labels.kind != "binary":
        extra["labels"] = labels
    if monitor != "val_accuracy":
        extra["monitor"] = monitor
    return builder(input_size, window_mm=window_mm, barrel_radius_mm=barrel_radius_mm, **extra)


def model_geometry(
    name: str,
    input_size: int,
    window_mm: Sequence[float] | None,
    barrel_radius_mm: float | None = None,
    projection: str = "xy",
) -> dict[str, Any]:
    """What the architecture ``name`` takes from the event file's geometry, for the record
    (train-cnn's config.json ``model_geometry``): :func:`polar_geometry` for ``polar``, an
    empty dict for the architectures that use no geometry.

    Raises
    ------
    ConfigError
        An unknown name; for ``polar``, a window without the beam line or images of
        another ``projection`` than ``"xy"`` (:func:`check_projection`).
    """
    check_projection(name, projection)
    if canonical_name(name) != "polar":
        return {}
    return polar_geometry(input_size, window_mm, barrel_radius_mm)


def model_flops(model: keras.Model) -> int:
    """Floating-point operations of one forward pass per image (2 per multiply-add).

    Counts the convolutions and dense layers, which dominate; pooling, normalisation
    and activations are left out.

    Parameters
    ----------
    model : keras.Model
        A built model.

    Returns
    -------
    int
        FLOPs per image.
    """
    flops = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, c_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            c_in = layer.input.shape[-1]
            flops += 2 * h * w * c_out * k_h * k_w * c_in
        elif kind == "Dense":
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(flops)


@register_architecture("lecture")
def lecture(
    input_size: int = 128,
    window_mm: Sequence[float] | None = None,
    *,
    labels: LabelSpec | None = None,
    monitor: str = "val_accuracy",
    **_: Any,
) -> keras.Model:
    """The lecture's CNN (slide 14), layer for layer (``--arch lecture``, alias ``seed``).

    Conv2D 32 (5x5, stride 1, relu, he_uniform, same) -> MaxPool 2x2 (same) -> BatchNorm
    -> Conv2D 64 (3x3, stride 1, relu, he_uniform, same) -> MaxPool 2x2 (same) -> BatchNorm
    -> Flatten -> Dense 64 (relu, he_uniform) -> Dense 32 (relu, he_uniform) -> Dense 1
    (sigmoid); Adam (Keras defaults, learning rate 1e-3), binary cross-entropy, accuracy.
    At 128 x 128 it has 4.2 million parameters, almost all in the first Dense layer.

    The last layer computes in float32 even under a mixed-precision policy, so that scores
    keep their resolution; under the default float32 policy this changes nothing.

    Parameters
    ----------
    input_size : int
        Height and width of the input image [pixels].
    window_mm : sequence of 4 floats, optional
        Not used (nor is any other keyword, such as ``barrel_radius_mm``).
    labels : LabelSpec, optional
        Other labels than binary: the last layer and the loss of
        :mod:`spectrocnn.model.task`.
    monitor : str
        ``"val_auc"`` adds the ``auc`` metric.

    Returns
    -------
    keras.Model
        Compiled (Adam, binary cross-entropy, accuracy).
    """
    import keras
    from keras import layers

    he = "he_uniform"
    model = keras.Sequential(
        [
            keras.Input(shape=(input_size, input_size, 1), name="image"),
            layers.Conv2D(
                32, (5, 5), strides=(1, 1), activation="relu", kernel_initializer=he, padding="same"
            ),
            layers.MaxPooling2D((2, 2), padding="same"),
            layers.BatchNormalization(),
            layers.Conv2D(
                64, (3, 3), strides=(1, 1), activation="relu", kernel_initializer=he, padding="same"
            ),
            layers.MaxPooling2D((2, 2), padding="same"),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(64, activation="relu", kernel_initializer=he),
            layers.Dense(32, activation="relu", kernel_initializer=he),
            output_layer(labels),
        ],
        name="lecture",
    )
    return compile_model(model, labels, monitor)


#: The lecture network's first name (kept for code that imports it).
seed = lecture


def _beam_radius(window_mm: Sequence[float] | None) -> float:
    """Radius of the largest circle about the beam line inside the window [mm].

    Raises
    ------
    ConfigError
        No window, or one that does not hold ``x = y = 0`` strictly inside.
    """
    if window_mm is None:
        raise ConfigError("the polar architecture needs the image window (window_mm)")
    x0, x1, y0, y1 = (float(v) for v in window_mm)
    r = min(-x0, x1, -y0, y1)
    if not r > 0:
        raise ConfigError(
            f"the polar architecture needs the beam line x = y = 0 inside the image window, "
            f"got window_mm {[x0, x1, y0, y1]}"
        )
    return r


#: Fewest radial bins of :func:`polar`'s image: its three poolings along r halve them thrice.
_MIN_RADIAL_BINS = 8


def polar_geometry(
    input_size: int,
    window_mm: Sequence[float] | None,
    barrel_radius_mm: float | None = None,
    *,
    n_r: int = 32,
    n_phi: int = 128,
) -> dict[str, Any]:
    """The polar image of :func:`polar`: how many radial bins, out to which radius.

    The radial bins are ``bin_mm = r_window / n_r`` wide, ``r_window`` the radius of the
    largest circle about the beam line inside the image window. Without
    ``barrel_radius_mm`` (or when it reaches ``r_window``) the polar image has all ``n_r``
    of them, out to ``r_window``. Otherwise it keeps only the first
    ``ceil((barrel_radius_mm + d) / bin_mm)`` bins, where ``d`` is half the diagonal of an
    input pixel (the polar bins are assigned by pixel centre, and the downsampled pixel
    holding a lit pixel has its centre within ``d`` of it): the rows beyond would always be
    empty; at least 8 are kept, which the network's three poolings along ``r`` need. Those
    bins are the same as the first rows of the full polar image, so the network sees the
    same picture with fewer rows (on lecture events: 17 of 32 rows, out to 212.5 mm of the
    window's 400 mm, and about half the FLOPs). An odd last row is left out by the first
    pooling along ``r``, after the first convolution (5 rows tall) has seen it.

    Parameters
    ----------
    input_size : int
        Height and width of the network's input image [pixels].
    window_mm : sequence of 4 floats
        The image window ``(x_min, x_max, y_min, y_max)`` [mm].
    barrel_radius_mm : float, optional
        :func:`barrel_radius_mm` of the event file.
    n_r, n_phi : int
        Radial bins out to ``r_window``, azimuthal bins.

    Returns
    -------
    dict
        ``n_r`` (bins kept), ``n_phi``, ``r_max_mm`` (``n_r * bin_mm``), ``radial_bin_mm``,
        ``window_radius_mm`` and ``barrel_radius_mm`` (None when not given).

    Raises
    ------
    ConfigError
        A missing window or one that does not hold the beam line.
    """
    r_window = _beam_radius(window_mm)
    bin_mm = r_window / n_r
    kept = n_r
    if barrel_radius_mm is not None and math.isfinite(barrel_radius_mm):
        x0, x1, y0, y1 = (float(v) for v in window_mm)
        half_diagonal = 0.5 * math.hypot((x1 - x0) / input_size, (y1 - y0) / input_size)
        reach = max(float(barrel_radius_mm), 0.0) + half_diagonal
        kept = min(n_r, max(_MIN_RADIAL_BINS, math.ceil(reach / bin_mm)))
    return {
        "n_r": kept,
        "n_phi": n_phi,
        "r_max_mm": kept * bin_mm,
        "radial_bin_mm": bin_mm,
        "window_radius_mm": r_window,
        "barrel_radius_mm": None if barrel_radius_mm is None else float(barrel_radius_mm),
    }


@register_architecture("polar", input_size=256)
def polar(
    input_size: int = 256,
    window_mm: Sequence[float] | None = None,
    *,
    barrel_radius_mm: float | None = None,
    n_r: int = 32,
    n_phi: int = 128,
    labels: LabelSpec | None = None,
    monitor: str = "val_accuracy",
    **_: Any,
) -> keras.Model:
    """A CNN for "one straight track among curved ones from the beam line".

    The question is about the shape of whole tracks that start on the beam line, so the
    network looks at the image in the spectrometer's own coordinates:

    1. :class:`~spectrocnn.model.layers.PolarPool`: ``(r, phi)`` bins around the beam
       line, every hit kept (max-pooling), out to the detector's outer radius when
       ``barrel_radius_mm`` is given, else to the largest circle inside the window
       (:func:`polar_geometry`).
       A track from the beam line with transverse radius of curvature ``R`` reaches
       ``phi0 +- asin(r / 2R)`` at radius ``r``: in 2 T a 5 GeV/c track of |q| = 1 stays within
       0.7 degree of a vertical line out to r = 200 mm, a 0.25 GeV/c track bends by
       14 degrees and the lecture's 0.1-0.15 GeV/c tracks by 24-37 degrees;
    2. mirror augmentation while training: each image is reversed along ``phi`` with
       probability 1/2 (wrapped columns included, which stay consistent). Bin ``j`` goes
       to ``n_phi - 1 - j``, i.e. ``phi -> -phi``: the mirror ``y -> -y`` about the beam
       line, which keeps the label, for any window. The mirror ``x -> -x`` is the same
       up to a rotation by 180 degrees, to which the network is nearly invariant;
    3. four convolutions that are tall along ``r`` (5 x 3 kernels, pooling along ``r``)
       so that the receptive field (52 radial bins) spans a whole track;
    4. global max pooling: the answer is "is there such a track anywhere", which is
       invariant to rotations about the beam line (shifts in ``phi``);
    5. a small dense head.

    About 22 thousand parameters (the ``lecture`` network has 4.2 million), whatever the
    number of radial bins. It needs the beam line inside the image window; tracks beyond
    the largest circle about it that fits in the window are not seen.

    Parameters
    ----------
    input_size : int
        Height and width of the input image [pixels]. 256 (the default) keeps the
        direction of a track to about 1 degree at the lecture's outer layer: on lecture
        events with ordinary tracks of 0.1-0.25 GeV/c it reached 0.99 validation accuracy
        where 128 reached 0.96 (4 000 training events, 4 epochs).
    window_mm : sequence of 4 floats
        The image window ``(x_min, x_max, y_min, y_max)`` [mm].
    barrel_radius_mm : float, optional
        How far from the beam line the images can have a lit pixel
        (:func:`barrel_radius_mm`); None: the polar image covers the window's circle.
    n_r, n_phi : int
        Radial bins out to the window's circle, azimuthal bins (:func:`polar_geometry`).
    labels : LabelSpec, optional
        Other labels than binary: the last layer and the loss of
        :mod:`spectrocnn.model.task`. The mirror augmentation and the global max
        pooling assume a label that a mirror image ``y -> -y`` and a rotation about the
        beam line keep (so do counts of hits or tracks and momenta; not a charge sign).
    monitor : str
        ``"val_auc"`` adds the ``auc`` metric.

    Returns
    -------
    keras.Model
        Compiled (Adam, binary cross-entropy, accuracy).

    Raises
    ------
    ConfigError
        A missing window or one that does not hold the beam line.
    """
    import keras
    from keras import layers

    from spectrocnn.model.layers import PolarPool

    g = polar_geometry(input_size, window_mm, barrel_radius_mm, n_r=n_r, n_phi=n_phi)
    wrap = 8
    he = "he_uniform"

    def conv(x, filters, kernel):
        return layers.Conv2D(
            filters, kernel, activation="relu", kernel_initializer=he, padding="same"
        )(x)

    inp = keras.Input(shape=(input_size, input_size, 1), name="image")
    pool = PolarPool(input_size, window_mm, g["n_r"], n_phi, g["r_max_mm"], wrap=wrap, name="polar")
    x = pool(inp)
    # One draw per image, along the width axis: phi (Keras' "horizontal_and_vertical"
    # would flip both axes with one draw, a 180-degree rotation about the window centre).
    x = layers.RandomFlip("horizontal", name="mirror")(x)
    x = conv(x, 16, (5, 3))
    x = layers.MaxPooling2D((2, 1))(x)
    x = conv(x, 16, (5, 3))
    x = layers.MaxPooling2D((2, 1))(x)
    x = conv(x, 32, (5, 3))
    x = layers.MaxPooling2D((2, 2))(x)
    x = conv(x, 32, (3, 3))
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(32, activation="relu", kernel_initializer=he)(x)
    out = output_layer(labels)(x)
    model = keras.Model(inp, out, name="polar")
    return compile_model(model, labels, monitor)
