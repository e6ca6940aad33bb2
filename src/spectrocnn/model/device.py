"""The machine a run trains on: its CPU and GPUs, and the numeric precision to train in.

Precision (``train-cnn --precision``, :func:`resolve_precision`)
    ``fp32`` trains in float32 (the lecture's). ``bf16`` trains under Keras'
    ``mixed_bfloat16`` policy: layers compute in bfloat16 and keep float32 weights; the
    output layer of every architecture computes in float32, so that the sigmoid, the
    scores and the loss keep float32 resolution. ``auto`` (the default) takes ``bf16``
    where the hardware computes bfloat16 natively and ``fp32`` elsewhere:

    - with GPUs (TensorFlow trains on them): ``bf16`` when every visible GPU has compute
      capability 8.0 or higher (Ampere and later), else ``fp32``;
    - on the CPU: ``bf16`` when ``/proc/cpuinfo`` lists ``amx_bf16`` or ``avx512_bf16``
      among the CPU flags, else ``fp32``.

    Measured by an earlier engineer on a CPU with AMX: ``mixed_bfloat16`` trained 1.5 x
    (train-cnn) to 2.3 x (a plain Keras training step) as fast as float32; on a CPU without
    native bfloat16 it is emulated and much slower, so ``bf16`` forced there logs a
    warning.

Device (:func:`describe_devices`)
    What train-cnn and eval-cnn log and record in config.json / metrics.json: the CPU
    model, the number of cores available, the native-bfloat16 flags, the GPUs TensorFlow
    sees (name, compute capability) and whether the installed TensorFlow was built with
    CUDA.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spectrocnn.errors import ConfigError

__all__ = [
    "NATIVE_BF16_FLAGS",
    "POLICIES",
    "PRECISIONS",
    "cpu_flags",
    "cpu_model",
    "describe_devices",
    "device_summary",
    "gpu_devices",
    "nvidia_gpu_present",
    "precision_policy",
    "resolve_precision",
]

log = logging.getLogger(__name__)

#: Precision choices of train-cnn, the default first.
PRECISIONS = ("auto", "fp32", "bf16")

#: Resolved precision -> Keras dtype policy.
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}

#: CPU flags (``/proc/cpuinfo``) that mean native bfloat16 arithmetic.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")

#: Smallest GPU compute capability with native bfloat16 (Ampere).
_GPU_BF16_CC = (8, 0)

_CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str) -> str | None:
    try:
        text = _CPUINFO.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    flags = _cpuinfo_field("flags")
    return frozenset(flags.split()) if flags else frozenset()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown"


def nvidia_gpu_present() -> bool:
    """Whether the NVIDIA driver reports a GPU (``/proc/driver/nvidia/gpus``), whatever
    TensorFlow sees."""
    try:
        return any(Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return False


def gpu_devices(tf: Any) -> list[dict[str, Any]]:
    """The GPUs TensorFlow sees: ``[{"name", "device", "compute_capability"}]``.

    Parameters
    ----------
    tf : module
        TensorFlow.

    Returns
    -------
    list of dict
        ``name``: the GPU's model (e.g. ``"NVIDIA H100 80GB HBM3"``), ``device``:
        TensorFlow's device name, ``compute_capability``: ``[major, minor]`` or None.
    """
    out = []
    for dev in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(dev)
        except (RuntimeError, ValueError):  # pragma: no cover - driver-dependent
            details = {}
        cc = details.get("compute_capability")
        out.append({
            "name": str(details.get("device_name", dev.name)),
            "device": dev.name,
            "compute_capability": [int(v) for v in cc] if cc else None,
        })  # fmt: skip
    return out


def describe_devices(tf: Any) -> dict[str, Any]:
    """What a run records about the machine (config.json / metrics.json ``device``).

    Parameters
    ----------
    tf : module
        TensorFlow.

    Returns
    -------
    dict
        ``cpu`` (model name), ``cores`` (available to this process), ``cpu_native_bf16``
        (the flags of :data:`NATIVE_BF16_FLAGS` present), ``gpus`` (:func:`gpu_devices`),
        ``tensorflow_cuda`` (the installed TensorFlow was built with CUDA) and ``trains_on``
        (``"GPU"`` or ``"CPU"``).
    """
    from spectrocnn.model._tf import available_cores

    gpus = gpu_devices(tf)
    flags = cpu_flags()
    cuda = bool(tf.test.is_built_with_cuda())
    if not gpus and nvidia_gpu_present():
        log.warning(
            "this machine has an NVIDIA GPU but TensorFlow does not use it (%s); install the "
            "GPU build as the README says: pip install -e '.[cuda]' && pip install "
            "--force-reinstall --no-deps tensorflow==%s",
            "it was built without CUDA: tensorflow-cpu" if not cuda else "no usable driver/CUDA",
            getattr(tf, "__version__", "<version>"),
        )
    return {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "cpu_native_bf16": [f for f in NATIVE_BF16_FLAGS if f in flags],
        "gpus": gpus,
        "tensorflow_cuda": cuda,
        "trains_on": "GPU" if gpus else "CPU",
    }


def device_summary(device: dict[str, Any]) -> str:
    """One line for the log: ``"CPU: <model>, 2 cores"`` or ``"GPU: 2 x <name> (cc 9.0)"``."""
    gpus = device.get("gpus") or []
    if gpus:
        names = sorted({g["name"] for g in gpus})
        ccs = sorted({".".join(map(str, g["compute_capability"] or ["?"])) for g in gpus})
        return f"GPU: {len(gpus)} x {', '.join(names)} (compute capability {', '.join(ccs)})"
    return f"CPU: {device.get('cpu', 'unknown')}, {device.get('cores', '?')} cores"


def resolve_precision(
    requested: str, device: dict[str, Any], arch: str | None = None
) -> tuple[str, str]:
    """The precision to train in, and why.

    ``auto`` is mixed bfloat16 where the device computes it natively, except for the
    ``lecture`` network: it reproduces the lecture, which trained in float32, and its
    accuracy in bfloat16 is not established (benchmarks/precision.py: after 2 epochs
    neither precision had left chance level), while ``polar`` measured 2.61 x as fast
    within 0.03 points (README, Performance).

    Parameters
    ----------
    requested : {"auto", "fp32", "bf16"}
    device : dict
        :func:`describe_devices`.
    arch : str, optional
        The architecture being trained (``"lecture"``: float32 under ``auto``).

    Returns
    -------
    (str, str)
        ``"fp32"`` or ``"bf16"``, and a short reason for the log and config.json.

    Raises
    ------
    ConfigError
        ``requested`` is not one of :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    gpus = device.get("gpus") or []
    if gpus:
        native = all(
            g.get("compute_capability") and tuple(g["compute_capability"]) >= _GPU_BF16_CC
            for g in gpus
        )
        where = "every GPU has" if native else "not every GPU has"
        what = f"{where} compute capability >= {_GPU_BF16_CC[0]}.{_GPU_BF16_CC[1]}"
    else:
        flags = device.get("cpu_native_bf16") or []
        native = bool(flags)
        what = (
            f"the CPU has native bfloat16 ({', '.join(flags)})"
            if native
            else f"the CPU has no native bfloat16 (no {' or '.join(NATIVE_BF16_FLAGS)})"
        )
    if requested == "auto" and native and arch == "lecture":
        return "fp32", (
            f"auto: {what}, but the lecture network trains in float32, as in the lecture "
            "(--precision bf16 to override)"
        )
    if requested == "auto":
        return ("bf16" if native else "fp32"), f"auto: {what}"
    if requested == "bf16" and not native:
        log.warning(
            "training in bfloat16 although %s: it is emulated and will be slow "
            "(--precision fp32 or auto avoids this)",
            what,
        )
    return requested, f"requested; {what}"


@contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Keras' global dtype policy for ``precision`` (``"fp32"`` or ``"bf16"``,
    :data:`POLICIES`) for the duration; the previous policy is restored after."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
