"""The in-memory input pipeline reads NumPy arrays in place (``model.data.make_dataset``)."""

from __future__ import annotations

import numpy as np
import pytest

from spectrocnn.model.data import make_dataset


@pytest.fixture(scope="module")
def tf():
    from spectrocnn.model._tf import tensorflow

    return tensorflow()


def _expected(images, labels, order, batch, scale):
    """The batches by hand: per epoch row, consecutive slices of ``batch`` events."""
    rows = np.atleast_2d(order)
    out = []
    for row in rows:
        for a in range(0, len(row), batch):
            idx = row[a : a + batch]
            x = np.minimum(images[idx].astype(np.float32) * np.float32(scale), 1.0)[..., None]
            out.append((x, labels[idx].astype(np.float32)))
    return out


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize(
    ("labels", "scale"),
    [
        (np.arange(23, dtype=np.uint8) % 2, 1.0),
        (np.linspace(0.1, 4.3, 23), 0.25),  # a regression target, mean downsampling
        (np.arange(23, dtype=np.int64) % 3, 1.0),  # classes
    ],
)
def test_batches_from_arrays_in_place_and_from_tensors(tf, as_tensor, labels, scale):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 6, (23, 5, 5), dtype=np.uint8)
    order = np.stack([rng.permutation(23)[:17] for _ in range(2)])  # two epochs
    src = (tf.constant(images), tf.constant(labels)) if as_tensor else (images, labels)
    got = list(make_dataset(*src, order, batch_size=4, scale=scale))
    want = _expected(images, labels, order, 4, scale)
    assert [len(y) for _, y in got] == [4, 4, 4, 4, 1] * 2  # no batch spans two epochs
    for (x, y), (xe, ye) in zip(got, want, strict=True):
        assert x.dtype == tf.float32 and x.shape[1:] == (5, 5, 1)
        np.testing.assert_array_equal(x.numpy(), xe)
        np.testing.assert_array_equal(y.numpy(), ye)


def test_the_arrays_are_not_copied(tf):
    """The dataset reads the array itself: a change made after building it shows (which
    is why the arrays must not change while it is in use)."""
    images = np.zeros((6, 3, 3), np.uint8)
    labels = np.zeros(6, np.uint8)
    ds = make_dataset(images, labels, np.arange(6), batch_size=6, scale=1.0)
    images[4, 1, 1] = 9
    ((x, _),) = list(ds)
    assert x.numpy()[4, 1, 1, 0] == 1.0 and x.numpy().sum() == 1.0
