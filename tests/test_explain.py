"""Explanations: gradient saliency, its mapping to the stored image, the truth check, eval-cnn."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectrocnn.config import preset_config
from spectrocnn.dataset import generate_file, open_events
from spectrocnn.model.explain import (
    KINDS,
    explain_events,
    pick_events,
    saliency,
    to_stored,
    track_focus,
    track_pixels,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Skipping variable loading for optimizer:UserWarning"
)


@pytest.fixture(scope="module")
def lecture_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "events.h5"
    generate_file(preset_config("lecture").with_image_size(64), 24, path, seed=7, workers=1)
    return path


@pytest.fixture(scope="module")
def polar_model(lecture_file, tmp_path_factory):
    """An untrained polar network for 32 x 32 inputs (scores near 1/2, both kinds)."""
    from spectrocnn.model.architectures import build_model

    with open_events(lecture_file) as ev:
        window = ev.window_mm
    path = tmp_path_factory.mktemp("model") / "polar32.keras"
    build_model("polar", 32, window_mm=window).save(path)
    return path


def test_saliency_of_a_linear_model_is_the_weight_magnitude():
    """For z = w . x + b the gradient is w whatever x is (computed here from the weights)."""
    import keras

    s = 6
    model = keras.Sequential(
        [keras.Input((s, s, 1)), keras.layers.Flatten(), keras.layers.Dense(1, "sigmoid")]
    )
    w = np.random.default_rng(1).normal(size=(s * s, 1)).astype(np.float32)
    model.layers[-1].set_weights([w, np.array([3.0], np.float32)])  # saturating bias
    x = np.random.default_rng(2).random((5, s, s)).astype(np.float32)
    a = saliency(model, x, batch_size=2)
    assert a.shape == (5, s, s) and a.dtype == np.float32
    np.testing.assert_allclose(a, np.broadcast_to(np.abs(w).reshape(s, s), a.shape), rtol=1e-6)


def test_saliency_refuses_inputs_of_another_shape():
    import keras

    from spectrocnn.errors import ConfigError

    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(1, "sigmoid")]
    )
    with pytest.raises(ConfigError, match=r"inputs of shape \(5, 5, 1\)"):
        saliency(model, np.zeros((1, 5, 5), np.float32))


def test_to_stored_gives_each_block_its_input_pixel():
    a = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    big = to_stored(a, (8, 8))
    assert big.shape == (2, 8, 8)
    for r in range(8):
        for c in range(8):
            assert big[1, r, c] == a[1, r // 2, c // 2]


def test_track_pixels_follow_the_pixel_convention():
    rows, cols = track_pixels(
        np.array([-400.0, 0.0, 399.9, 400.0, np.nan]),
        np.array([400.0, 0.0, -399.9, 0.0, 0.0]),
        (-400.0, 400.0, -400.0, 400.0),
        8,
    )
    # x = 400 is outside [x_min, x_max); NaN is left out
    assert rows.tolist() == [0, 4, 7] and cols.tolist() == [0, 4, 7]


def test_track_focus_on_and_off_the_high_momentum_track(lecture_file):
    with open_events(lecture_file) as ev:
        i = int(np.flatnonzero(ev.labels == 1)[0])
        truth = ev.truth(i, i + 1)
        window = ev.window_mm
    s = 32
    p, h = truth.particles, truth.hits
    high = int(np.flatnonzero(p.is_high == 1)[0])
    sel = h.particle == high
    r, c = track_pixels(h.x[sel], h.y[sel], window, s)
    on = np.zeros((1, s, s), np.float32)
    on[0, r, c] = 1.0
    assert track_focus(on, truth, window)[0] == 1.0
    off = np.zeros((1, s, s), np.float32)
    far = np.unravel_index(np.argmax(np.hypot(*np.meshgrid(np.arange(s) - r.mean(),
                                                             np.arange(s) - c.mean(),
                                                             indexing="ij"))), (s, s))  # fmt: skip
    off[0][far] = 1.0
    assert track_focus(off, truth, window)[0] == 0.0
    # ranked among hit pixels only: a large value on an empty pixel does not count
    inputs = np.zeros((1, s, s), np.float32)
    inputs[0, r, c] = 1.0
    mixed = on.copy()
    mixed[0][far] = 10.0
    assert track_focus(mixed, truth, window, inputs=inputs)[0] == 1.0
    assert track_focus(mixed, truth, window, top_fraction=1e-9)[0] == 0.0


def test_pick_events_by_kind():
    labels = np.array([1, 1, 0, 0, 1, 0, 1])
    scores = np.array([0.9, 0.99, 0.1, 0.6, 0.2, 0.01, 0.7])
    kinds = pick_events(labels, scores, 2)
    assert list(kinds) == list(KINDS)
    assert kinds["confident1"].tolist() == [1, 0]
    assert kinds["confident0"].tolist() == [5, 2]
    assert kinds["misclassified"].tolist() == [4, 3]  # |0.2 - 1| > |0.6 - 0|


def test_explain_events_shapes(lecture_file, polar_model):
    with open_events(lecture_file) as ev:
        shape = ev.image_shape
    ex = explain_events(polar_model, lecture_file, [0, 3, 5])
    assert ex.attribution.shape == (3, 32, 32) == ex.inputs.shape  # the model's input image
    assert ex.stored.shape == (3, *shape)  # the stored image
    assert ex.attribution.dtype == np.float32 and np.all(ex.attribution >= 0)
    assert np.any(ex.attribution > 0)
    np.testing.assert_array_equal(ex.stored, to_stored(ex.attribution, shape))
    assert ex.scores.shape == (3,) and np.all((ex.scores >= 0) & (ex.scores <= 1))
    assert ex.method["reference"].startswith("Simonyan")


def test_eval_cnn_explain_writes_the_documented_files(lecture_file, polar_model, tmp_path, capsys):
    from spectrocnn.cli import eval_cnn

    out = tmp_path / "eval"
    k = 2
    code = eval_cnn.main([str(polar_model), str(lecture_file), "--out", str(out), "--explain",
                          str(k), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    index = json.loads((out / "explain" / "explain.json").read_text())
    assert "Simonyan" in index["method"]["reference"]
    pictures = index["pictures"]
    metrics = json.loads((out / "metrics.json").read_text())
    with open_events(lecture_file) as ev:
        labels = np.asarray(ev.labels)
    names = sorted(p.name for p in (out / "explain").iterdir())
    assert names == sorted([p["file"] for p in pictures] + ["explain.json"])
    for p in pictures:
        assert p["kind"] in KINDS
        assert p["file"].startswith(p["kind"] + "_") and p["file"].endswith(
            f"_event{p['event']}.png"
        )
        assert p["label"] == labels[p["event"]]
        assert (out / "explain" / p["file"]).read_bytes()[:4] == b"\x89PNG"
        if p["kind"] == "confident1":
            assert p["label"] == 1 and p["score"] >= 0.5
            assert 0.0 <= p["on_track_share"] <= 1.0
        elif p["kind"] == "confident0":
            assert p["label"] == 0 and p["score"] < 0.5
        else:
            assert (p["score"] >= 0.5) != (p["label"] == 1)
    counts = {kind: sum(p["kind"] == kind for p in pictures) for kind in KINDS}
    assert all(n <= k for n in counts.values())
    assert counts["confident1"] + counts["confident0"] + counts["misclassified"] >= k
    assert metrics["n_events"] == len(labels)
    assert {"roc.png", "scores.png", "metrics.json", "explain"} <= {p.name for p in out.iterdir()}


def test_explanation_picture_layers(lecture_file, polar_model):
    """The attribution lies over the hits and beneath the trajectories; top hits ringed."""
    from spectrocnn.display import Z_HITS, Z_TRACKS
    from spectrocnn.model.explain import explanation_figure

    with open_events(lecture_file) as ev:
        i = int(np.flatnonzero(ev.labels == 1)[0])
        image, truth = ev.read_images(i, i + 1)[0], ev.truth(i, i + 1)
        window = ev.window_mm
    ex = explain_events(polar_model, lecture_file, [i])
    fig = explanation_figure(image, ex.attribution[0], window, truth=truth, inputs=ex.inputs[0])
    ax = fig.axes[0]
    hits, attribution = ax.images
    assert Z_HITS == hits.get_zorder() < attribution.get_zorder() < Z_TRACKS
    assert attribution.get_array().shape == (32, 32)
    labels = {c.get_label() for c in ax.collections}
    assert {"true trajectories", "high-momentum track"} <= labels
    assert any(lbl.startswith("top 1 %") or lbl.startswith("top 1%") for lbl in labels)
    cbar_labels = {a.get_ylabel() for a in fig.axes[1:]}
    assert "p [GeV/c]" in cbar_labels and any("saliency" in t for t in cbar_labels)


def test_explain_a_saved_lecture_network(lecture_file, tmp_path):
    """The lecture's (Sequential) network, saved and loaded: the logit of its last layer."""
    from spectrocnn.model.architectures import build_model

    path = tmp_path / "seed16.keras"
    build_model("seed", 16).save(path)
    ex = explain_events(path, lecture_file, [1, 2])
    assert ex.attribution.shape == (2, 16, 16) and np.any(ex.attribution > 0)
    with open_events(lecture_file) as ev:
        assert ex.stored.shape == (2, *ev.image_shape)


def test_explain_refuses_a_polar_network_on_x_z_images(lecture_file, polar_model, tmp_path):
    import shutil

    import h5py

    from spectrocnn.errors import ConfigError

    xz = tmp_path / "xz.h5"
    shutil.copy(lecture_file, xz)
    with h5py.File(xz, "a") as f:
        f["images"].attrs["projection"] = "xz"
    with pytest.raises(
        ConfigError, match=r"is a polar network, on .*xz\.h5: the images show the x-z"
    ):
        explain_events(polar_model, xz, [0])
