"""Tests of spectrocnn.model: downsampling, split, metrics, architecture, training, resume."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from _helpers import auto_precision_here, sparse_images, write_event_file

from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.metrics import binary_metrics, roc_auc, roc_curve
from spectrocnn.model.data import (
    check_downsample,
    downsample,
    epoch_order,
    input_scale,
    load_images,
    open_event_file,
    split_indices,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

# -- no TensorFlow at import ----------------------------------------------------------------


def test_model_package_and_help_do_not_import_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "import spectrocnn.model, spectrocnn.model.train, spectrocnn.model.evaluate\n"
        "from spectrocnn.cli import train_cnn, eval_cnn\n"
        "for main in (train_cnn.main, eval_cnn.main):\n"
        "    for flag in ('--help', '--version'):\n"
        "        with contextlib.redirect_stdout(io.StringIO()):\n"
        "            try:\n"
        "                main([flag])\n"
        "            except SystemExit:\n"
        "                pass\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- downsampling ---------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "size"), [(512, 128), (64, 16), (64, 32), (60, 20), (64, 64)])
def test_max_pool_keeps_every_hit(h, size):
    rng = np.random.default_rng(h + size)
    imgs = sparse_images(rng, 12, h, h, 40)
    out = downsample(imgs, size, "max")
    f = h // size
    assert out.shape == (12, size, size)
    assert out.dtype == np.uint8
    # Closed form from the hit coordinates: output (r // f, c // f) = the largest hit there.
    expect = np.zeros_like(out)
    k, r, c = np.nonzero(imgs)
    np.maximum.at(expect, (k, r // f, c // f), imgs[k, r, c])
    np.testing.assert_array_equal(out, expect)
    assert np.all(out[k, r // f, c // f] >= imgs[k, r, c])  # every hit shows


def test_nearest_is_pil_nearest():
    from PIL import Image

    rng = np.random.default_rng(3)
    imgs = sparse_images(rng, 4, 64, 64, 200)
    for size in (16, 24, 32, 30, 7):
        out = downsample(imgs, size, "nearest")
        if 64 % size == 0:  # integer factor f: pixels f * i + f // 2
            f = 64 // size
            idx = f * np.arange(size) + f // 2
            np.testing.assert_array_equal(out, imgs[:, idx][:, :, idx])
        for img, o in zip(imgs, out, strict=True):
            pil = np.asarray(Image.fromarray(img).resize((size, size), Image.NEAREST))
            np.testing.assert_array_equal(o, pil)
    # factor 4: pixels 2, 6, 10, ... are sampled; a hit elsewhere is lost
    one = np.zeros((1, 8, 8), np.uint8)
    one[0, 2, 6] = 5
    one[0, 1, 1] = 7
    out = downsample(one, 2, "nearest")
    np.testing.assert_array_equal(out[0], [[0, 5], [0, 0]])


def test_mean_counts_lit_pixels():
    rng = np.random.default_rng(4)
    imgs = sparse_images(rng, 5, 64, 64, 60)
    out = downsample(imgs, 16, "mean")
    lit = (imgs > 0).reshape(5, 16, 4, 16, 4).sum(axis=(2, 4))
    np.testing.assert_array_equal(out, lit)
    assert input_scale("mean", (4, 4)) == pytest.approx(1 / 16)
    assert input_scale("max", (4, 4)) == 1.0
    assert input_scale("nearest", 4) == 1.0
    single = np.zeros((1, 8, 8), np.uint8)
    single[0, 5, 5] = 3
    assert downsample(single, 2, "mean")[0, 1, 1] == 1  # one lit pixel: 1/16 after scaling


def test_check_downsample_errors():
    assert check_downsample((512, 512), 128, "max") == (4, 4)
    assert check_downsample((512, 512), 100, "nearest") == (5, 5)
    with pytest.raises(ConfigError, match="100"):
        check_downsample((512, 512), 100, "max")
    with pytest.raises(ConfigError, match="100"):
        check_downsample((512, 512), 100, "mean")
    with pytest.raises(ConfigError, match="larger"):
        check_downsample((64, 64), 128, "nearest")
    with pytest.raises(ConfigError, match="bicubic"):
        check_downsample((64, 64), 16, "bicubic")


def test_load_images_matches_downsample_and_reports_corruption(tmp_path):
    path = tmp_path / "ev.h5"
    imgs, labels = write_event_file(path, n=150, size=64)
    for method in ("max", "mean", "nearest"):
        with open_event_file(path) as ev:
            done = []
            data = load_images(ev, 16, method, progress=done.append)
        np.testing.assert_array_equal(data.images, downsample(imgs, 16, method))
        np.testing.assert_array_equal(data.labels, labels)
        assert sum(done) == 150
        assert data.info["n_events"] == 150
    # the HDF5 path (any layout) gives the same
    with open_event_file(path) as ev:
        fast = load_images(ev, 16)
        blocks = ev.image_blocks(transform=lambda x: downsample(x, 16), block=32, direct=False)
        slow = np.concatenate([b for _, b in blocks])
    np.testing.assert_array_equal(fast.images, slow)
    # a corrupted image chunk is an EventFileError, not a crash
    import h5py

    with h5py.File(path, "r+") as f:
        f["images"].id.write_direct_chunk((7, 0, 0), b"\x78\x01garbage")
    with open_event_file(path) as ev, pytest.raises(EventFileError, match="corrupt"):
        load_images(ev, 16)


# -- split and shuffling --------------------------------------------------------------------


def test_split_is_deterministic_for_a_seed():
    tr, va = split_indices(1000, 0.2, 7)
    tr2, va2 = split_indices(1000, 0.2, 7)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(va) == 200
    assert len(tr) == 800
    np.testing.assert_array_equal(np.sort(np.r_[tr, va]), np.arange(1000))
    _, va3 = split_indices(1000, 0.2, 8)
    assert not np.array_equal(va, va3)
    o1, o2 = epoch_order(tr, 7, 0), epoch_order(tr, 7, 1)
    np.testing.assert_array_equal(o1, epoch_order(tr, 7, 0))
    assert not np.array_equal(o1, o2)
    np.testing.assert_array_equal(np.sort(o1), tr)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ConfigError):
            split_indices(100, bad, 0)
    with pytest.raises(ConfigError, match="validation"):
        split_indices(10, 0.01, 0)


# -- metrics --------------------------------------------------------------------------------


def test_roc_auc_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    expect = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert roc_auc(y, s) == pytest.approx(expect, abs=1e-12)
    fpr, tpr, thr = roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0)
    assert np.all(np.diff(thr) < 0)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_binary_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.2, 0.6, 0.5, 0.9, 0.7])  # 0.5 counts as class 0 (score > 0.5)
    m = binary_metrics(y, p)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    loss = -np.mean(np.log([0.8, 0.4, 0.5, 0.9, 0.7]))
    assert m["loss"] == pytest.approx(loss)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert binary_metrics([1, 1], [0.3, 0.9])["roc_auc"] is None


# -- architecture ---------------------------------------------------------------------------


def test_seed_architecture_is_the_lectures():
    from spectrocnn.model.architectures import build_model

    model = build_model("seed", 128)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Conv2D", "MaxPooling2D", "BatchNormalization", "Conv2D", "MaxPooling2D",
        "BatchNormalization", "Flatten", "Dense", "Dense", "Dense",
    ]  # fmt: skip
    c1, c2 = model.layers[0], model.layers[3]
    assert (c1.filters, c1.kernel_size, c1.strides, c1.padding) == (32, (5, 5), (1, 1), "same")
    assert (c2.filters, c2.kernel_size, c2.strides, c2.padding) == (64, (3, 3), (1, 1), "same")
    assert [d.units for d in model.layers[7:]] == [64, 32, 1]
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert model.input_shape == (None, 128, 128, 1)
    # closed form: conv 5*5*32+32, BN 4*32, conv 3*3*32*64+64, BN 4*64, (32*32*64)*64+64, ...
    n = (25 * 32 + 32) + 128 + (9 * 32 * 64 + 64) + 256 + (32 * 32 * 64 * 64 + 64)
    n += 64 * 32 + 32 + 33
    assert model.count_params() == n == 4_216_193
    assert type(model.optimizer).__name__ == "Adam"
    with pytest.raises(ConfigError, match="unknown architecture 'resnet'"):
        build_model("resnet", 128)


def test_polar_bins_put_a_radial_line_in_one_column():
    from spectrocnn.model.layers import polar_bins

    size, window, n_r, n_phi = 256, (-400.0, 400.0, -400.0, 400.0), 64, 128
    segment, nearest = polar_bins(size, window, n_r, n_phi, 400.0)
    # pixel centres on the ray phi = 0.7 rad, away from the bin edges
    phi = 0.7
    col_phi = math.floor((phi + math.pi) / (2 * math.pi) * n_phi)
    for r in np.arange(60.0, 390.0, 7.0):
        x, y = r * math.cos(phi), r * math.sin(phi)
        col, row = math.floor((x + 400) / 800 * size), math.floor((400 - y) / 800 * size)
        xc, yc = -400 + (col + 0.5) * 800 / size, 400 - (row + 0.5) * 800 / size
        b = segment[row * size + col]
        i_r, i_phi = divmod(int(b), n_phi)
        assert i_r == math.floor(math.hypot(xc, yc) / 400 * n_r)
        assert i_phi == math.floor((math.atan2(yc, xc) + math.pi) / (2 * math.pi) * n_phi)
        assert abs(i_phi - col_phi) <= 1  # the pixel centre is within half a pixel
    # corners (r > 400 mm) belong to no bin; every bin's nearest pixel lies in the image
    assert segment[0] == n_r * n_phi
    assert nearest.min() >= 0 and nearest.max() < size * size
    # ... and holds the bin's centre
    i_r, i_phi = np.divmod(np.arange(n_r * n_phi), n_phi)
    rc, pc = (i_r + 0.5) / n_r * 400, (i_phi + 0.5) / n_phi * 2 * np.pi - np.pi
    row, col = np.divmod(nearest, size)
    np.testing.assert_array_equal(col, np.floor((rc * np.cos(pc) + 400) / 800 * size))
    np.testing.assert_array_equal(row, np.floor((400 - rc * np.sin(pc)) / 800 * size))


def test_polar_pool_lights_exactly_the_bins_of_one_hit_in_an_off_centre_window():
    from spectrocnn.model.layers import PolarPool

    # a non-square window with the beam line off its centre: 8 mm x 4 mm pixels
    size, window, n_r, n_phi, wrap = 50, (-100.0, 300.0, -50.0, 150.0), 10, 24, 3
    layer = PolarPool(size, window, n_r, n_phi, 50.0, wrap=wrap)
    # the pixel holding (x, y) = (20, 30) mm: r = 36.06 mm, phi = 0.9828 rad
    col, row = math.floor((20 + 100) / 8), math.floor((150 - 30) / 4)
    xc, yc = -100 + (col + 0.5) * 8, 150 - (row + 0.5) * 4
    image = np.zeros((1, size, size, 1), np.float32)
    image[0, row, col, 0] = 1
    out = layer(image).numpy()[0, :, :, 0]
    expected = np.zeros((n_r, n_phi))
    expected[
        math.floor(math.hypot(xc, yc) / 50 * n_r),
        math.floor((math.atan2(yc, xc) + math.pi) / (2 * math.pi) * n_phi),
    ] = 1
    # bins much smaller than a pixel near the beam line take the pixel under their centre
    for i in range(n_r):
        for j in range(n_phi):
            r, p = (i + 0.5) / n_r * 50, (j + 0.5) / n_phi * 2 * math.pi - math.pi
            if (
                math.floor((r * math.cos(p) + 100) / 8),
                math.floor((150 - r * math.sin(p)) / 4),
            ) == (col, row):
                expected[i, j] = 1
    np.testing.assert_array_equal(out[:, wrap : wrap + n_phi], expected)
    np.testing.assert_array_equal(out[:, :wrap], expected[:, -wrap:])
    np.testing.assert_array_equal(out[:, wrap + n_phi :], expected[:, :wrap])
    for bad, words in [
        (dict(n_r=0), "n_r must be positive, got 0"),
        (dict(r_max_mm=-5.0), "r_max_mm must be positive, got -5.0"),
        (dict(wrap=n_phi + 1), "wrap must be in [0, n_phi=24], got 25"),
    ]:
        kwargs = dict(n_r=n_r, n_phi=n_phi, r_max_mm=50.0, wrap=wrap) | bad
        with pytest.raises(ValueError, match=re.escape(words)):
            PolarPool(size, window, **kwargs)


def test_polar_pool_keeps_every_hit_and_turns_rotations_into_shifts():
    from spectrocnn.model.layers import PolarPool, polar_bins

    size, window, n_r, n_phi, wrap = 64, (-400.0, 400.0, -400.0, 400.0), 16, 32, 4
    rng = np.random.default_rng(3)
    image = (rng.random((2, size, size)) < 0.05).astype(np.float32)
    layer = PolarPool(size, window, n_r, n_phi, 400.0, wrap=wrap)
    out = layer(image[..., None]).numpy()[..., 0]
    assert out.shape == (2, n_r, n_phi + 2 * wrap)
    segment, _ = polar_bins(size, window, n_r, n_phi, 400.0)
    flat = image.reshape(2, -1)
    inside = segment < n_r * n_phi
    for k in range(2):
        lit = np.nonzero(flat[k] * inside)[0]
        i_r, i_phi = np.divmod(segment[lit], n_phi)
        assert np.all(out[k, i_r, i_phi + wrap] == 1)  # no hit is lost
        assert out[k].sum() >= 1
    # the wrapped columns repeat the other end
    np.testing.assert_array_equal(out[:, :, :wrap], out[:, :, n_phi : n_phi + wrap])
    # a 90 degree turn of a square window maps pixel centres onto pixel centres and shifts
    # phi by exactly n_phi / 4 bins (bins whose edge passes through a pixel centre aside)
    turned = layer(np.rot90(image, 1, axes=(1, 2)).copy()[..., None]).numpy()[..., 0]
    core, shifted = out[:, :, wrap : wrap + n_phi], turned[:, :, wrap : wrap + n_phi]
    agree = np.mean(np.roll(core, n_phi // 4, axis=2) == shifted)
    assert agree > 0.98


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer:UserWarning")
def test_polar_architecture_builds_saves_and_loads(tmp_path):
    import keras

    from spectrocnn.model.architectures import INPUT_SIZES, build_model, model_flops
    from spectrocnn.model.modelio import load_model

    assert INPUT_SIZES == {"lecture": 128, "polar": 256}
    from spectrocnn.model.train import TrainConfig

    assert TrainConfig("ev.h5", arch="polar").input_size == 256  # the architecture's default
    assert TrainConfig("ev.h5", arch="lecture").input_size == 128
    assert TrainConfig("ev.h5").input_size is None  # auto: the file decides
    assert TrainConfig("ev.h5", arch="polar", input_size=64).input_size == 64
    window = (-400.0, 400.0, -400.0, 400.0)
    model = build_model("polar", 64, window_mm=window)
    assert model.input_shape == (None, 64, 64, 1)
    assert model.output_shape == (None, 1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[1:3] == ["PolarPool", "RandomFlip"] and "GlobalMaxPooling2D" in kinds
    # closed form: convs (5*3*1+1)*16, (5*3*16+1)*16, (5*3*16+1)*32, (3*3*32+1)*32, dense
    n = 16 * 16 + (240 + 1) * 16 + (240 + 1) * 32 + (288 + 1) * 32 + (32 + 1) * 32 + 33
    assert model.count_params() == n == 22_161
    # FLOPs: polar image 32 x (128 + 16); r pooled by 2, 2, then r and phi by 2
    w = 144
    flops = 2 * (32 * w * 16 * 15 + 16 * w * 16 * 240 + 8 * w * 32 * 240)
    flops += 2 * (4 * (w // 2) * 32 * 288 + 32 * 32 + 32)
    assert model_flops(model) == flops
    seed_model = build_model("seed", 128)
    assert model_flops(seed_model) == 2 * (
        128 * 128 * 32 * 25 + 64 * 64 * 64 * 9 * 32 + 32 * 32 * 64 * 64 + 64 * 32 + 32
    )
    x = (np.random.default_rng(0).random((4, 64, 64, 1)) < 0.05).astype(np.float32)
    model.save(tmp_path / "polar.keras")
    loaded = load_model(tmp_path / "polar.keras")
    assert isinstance(loaded, keras.Model)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ConfigError, match="beam line"):
        build_model("polar", 64, window_mm=(0.0, 210.0, -105.0, 105.0))
    with pytest.raises(ConfigError, match="window"):
        build_model("polar", 64)


def test_polar_augmentation_mirrors_each_image_about_the_beam_line():
    """Training mode: each image is either kept or mirrored y -> -y, drawn per image."""
    from spectrocnn.model.architectures import build_model

    size, window = 64, (-400.0, 400.0, -400.0, 400.0)
    model = build_model("polar", size, window_mm=window)
    pool, mirror = model.get_layer("polar"), model.get_layer("mirror")
    rng = np.random.default_rng(5)
    image = (rng.random((1, size, size, 1)) < 0.05).astype(np.float32)
    plain = pool(image).numpy()[0]
    # the polar image of the mirrored event (y -> -y is row k -> size-1-k in this window)
    mirrored = pool(image[:, ::-1].copy()).numpy()[0]
    # ... is plain reversed along phi, bins whose edge passes through a pixel centre aside
    assert np.sum(plain[:, ::-1] != mirrored) < 0.02 * plain.size
    assert np.sum(plain != mirrored) > 0.2 * plain.sum()  # and the event is not symmetric
    batch = np.repeat(image, 32, axis=0)
    out = mirror(pool(batch), training=True).numpy()
    kept = [np.array_equal(o, plain) for o in out]
    flipped = [np.array_equal(o, plain[:, ::-1]) for o in out]
    assert all(k != f for k, f in zip(kept, flipped, strict=True))
    assert 0 < sum(flipped) < 32  # one draw per image (P(fail) = 2**-31)
    np.testing.assert_array_equal(mirror(pool(batch), training=False).numpy()[0], plain)


# -- training -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run shared by the tests below: 2 epochs on 64x64 -> 16x16."""
    from spectrocnn.model.train import TrainConfig, train

    d = tmp_path_factory.mktemp("train")
    path = d / "ev.h5"
    write_event_file(path, n=160, size=64, seed=1)
    lines: list[str] = []
    config = TrainConfig(
        str(path), arch="lecture", epochs=2, batch_size=8, input_size=16, seed=5, legacy_h5=True
    )
    result = train(config, d / "run", report=lines.append)
    return result, lines, path


def test_train_outputs_exist_and_load(trained):
    import keras

    result, lines, _ = trained
    out = result.out_dir
    for name in (
        "best_model.keras", "best_model.h5", "last_model.keras", "history.csv",
        "metrics.json", "config.json", "state.json",
        "accuracy.png", "loss.png", "roc.png", "scores.png",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries
    for name in ("best_model.keras", "best_model.h5", "last_model.keras"):
        model = keras.models.load_model(out / name)
        assert model.input_shape == (None, 16, 16, 1)
        assert type(model.optimizer).__name__ == "Adam"  # with its state, for --resume
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 5
    assert config["input_file"]["seed"] == 1
    assert config["input"] == str(trained[2])
    assert config["n_train"] + config["n_val"] == 160
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "loss", "roc_auc", "confusion_matrix", "epochs", "wall_time_s",
                "images_per_second"):  # fmt: skip
        assert key in metrics
    assert metrics["epochs"] == 2
    assert np.sum(metrics["confusion_matrix"]) == config["n_val"]
    assert lines[0].startswith("Device: CPU: ")
    assert lines[1].startswith("Training: lecture on 128 events")
    assert lines[2].startswith("Epoch 1: val_accuracy improved from -inf to ")
    assert lines[2].endswith("saving model to " + str(out / "best_model.keras"))
    assert config["arch"] == "lecture" and config["patience"] == 0
    assert config["arch_choice"] == {"requested": "lecture", "chosen": "lecture"}
    assert config["precision"] == metrics["precision"] == auto_precision_here("lecture")


def test_best_checkpoint_is_the_best_epoch(trained):
    import keras

    from spectrocnn.model.data import open_event_file
    from spectrocnn.model.train import predict

    result, _, path = trained
    with (result.out_dir / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # counted from 1, as on the console
    val_acc = [float(r["val_accuracy"]) for r in rows]
    best = max(val_acc)
    assert result.best_val_accuracy == pytest.approx(best)
    assert result.best_epoch == val_acc.index(best) + 1  # first epoch reaching the maximum
    # the saved best model, re-evaluated on the validation split, scores that accuracy
    model = keras.models.load_model(result.out_dir / "best_model.keras")
    with open_event_file(path) as ev:
        data = load_images(ev, 16)
    _, val = split_indices(160, 0.2, 5)
    p = predict(model, data.images, data.labels, val, data.scale)
    assert np.mean((p > 0.5) == data.labels[val]) == pytest.approx(best, abs=1e-6)
    assert result.metrics["accuracy"] == pytest.approx(best, abs=1e-6)


def test_resume_ends_with_the_planned_epochs(tmp_path):
    from spectrocnn.model.train import TrainConfig, train

    path = tmp_path / "ev.h5"
    write_event_file(path, n=96, size=32, seed=2)
    config = TrainConfig(str(path), arch="lecture", epochs=3, batch_size=16, input_size=8, seed=3)
    out = tmp_path / "run"

    def interrupt_in_epoch_2(line: str) -> None:
        if line.startswith("Epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, out, report=interrupt_in_epoch_2)
    state = json.loads((out / "state.json").read_text())
    assert state["completed_epochs"] == 1
    import keras

    last = keras.models.load_model(out / "last_model.keras")
    assert type(last.optimizer).__name__ == "Adam"
    assert int(last.optimizer.iterations) == math.ceil(77 / 16)  # 96 events, 19 held out
    assert not (out / "metrics.json").exists()
    with pytest.raises(ConfigError, match="not empty"):
        train(config, out)  # no overwrite without resume
    history = out / "history.csv"
    assert history.read_text().splitlines()[1].startswith("1,")
    # a run of an older version counted its epochs from 0: resuming renumbers its history
    history.write_text(history.read_text().replace("\n1,", "\n0,"))
    lines: list[str] = []
    result = train(config, out, resume=True, report=lines.append)
    assert lines[1].startswith(f"Resuming {out} at epoch 2")
    assert [ln.split(":")[0] for ln in lines[2:4]] == ["Epoch 2", "Epoch 3"]
    assert lines[4:] == ["Scoring 19 validation and 77 training events with the best model "
                         f"(epoch {result.best_epoch})"]  # fmt: skip
    assert result.epochs == 3
    assert result.initial_epoch == 1
    with (out / "history.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3
    again = train(config, out, resume=True)
    assert again.already_complete
    import dataclasses

    with pytest.raises(ConfigError, match="different settings"):
        train(dataclasses.replace(config, batch_size=8), out, resume=True)
    with pytest.raises(ConfigError, match="--epochs 2 is fewer than the 3 epochs"):
        train(dataclasses.replace(config, epochs=2), out, resume=True)


def test_failed_run_leaves_no_directory(tmp_path):
    from spectrocnn.model.train import TrainConfig, train

    path = tmp_path / "ev.h5"
    write_event_file(path, n=64, size=32, seed=4)
    out = tmp_path / "run"

    def fail(line: str) -> None:
        if line.startswith("Epoch 1:"):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        train(TrainConfig(str(path), epochs=2, input_size=8, seed=1), out, report=fail)
    assert not out.exists()
    out.mkdir()  # an existing empty directory is left empty
    with pytest.raises(RuntimeError, match="disk full"):
        train(TrainConfig(str(path), epochs=2, input_size=8, seed=1), out, report=fail)
    assert out.is_dir()
    assert not list(out.iterdir())


@pytest.mark.parametrize("n", [1, 2, 7])
def test_curves_count_epochs_from_1_with_integer_ticks(tmp_path, monkeypatch, n):
    """The x axis of accuracy.png/loss.png: epochs 1..n, whole numbers (one epoch: not
    an axis from -0.045 to 0.045)."""
    from spectrocnn.model import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    history = {"epoch": list(range(1, n + 1)), "accuracy": [0.5] * n, "val_accuracy": [0.6] * n}
    plots.plot_curves(history, "accuracy", tmp_path / "accuracy.png")
    no_epochs = {"loss": [0.7] * n, "val_loss": [0.6] * n}  # numbered 1..n by default
    plots.plot_curves(no_epochs, "loss", tmp_path / "loss.png")
    for fig in figures:
        ax = fig.axes[0]
        assert [list(line.get_xdata()) for line in ax.get_lines()] == [list(range(1, n + 1))] * 2
        lo, hi = ax.get_xlim()
        assert 0 < lo < 1 and n < hi < n + 1
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() and t >= 1 for t in ticks)
