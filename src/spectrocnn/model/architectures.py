"""CNN architectures by name: the lecture's ``seed`` network and a registry for more.

Every builder takes the input size in pixels and returns a *compiled* Keras model whose
input is ``(input_size, input_size, 1)`` float32 in [0, 1] and whose output is the
probability, shape ``(batch, 1)``, that the event contains a high-momentum track. Keras
(and so TensorFlow) is imported only when a builder runs, never when this module is
imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from spectrocnn.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["ARCHITECTURES", "build_model", "get_architecture", "register_architecture", "seed"]

Builder = Callable[[int], "keras.Model"]

#: name -> builder; later architectures register themselves with :func:`register_architecture`.
ARCHITECTURES: dict[str, Builder] = {}


def register_architecture(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder to :data:`ARCHITECTURES` under ``name``."""

    def add(builder: Builder) -> Builder:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = builder
        return builder

    return add


def get_architecture(name: str) -> Builder:
    """The builder registered as ``name``; :class:`~spectrocnn.errors.ConfigError` if none."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ARCHITECTURES))
        raise ConfigError(f"unknown architecture {name!r} (known: {known})") from None


def build_model(name: str, input_size: int) -> keras.Model:
    """Build and compile the architecture ``name`` for ``input_size`` x ``input_size`` images."""
    builder = get_architecture(name)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ConfigError(f"input size must be a positive integer, got {input_size!r}")
    return builder(input_size)


@register_architecture("seed")
def seed(input_size: int = 128) -> keras.Model:
    """The lecture's CNN (slide 14), layer for layer.

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
            layers.Dense(1, activation="sigmoid", dtype="float32"),
        ],
        name="seed",
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model
