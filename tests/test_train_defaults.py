"""train-cnn's defaults (issue 17): the architecture chosen for the file (``--arch auto``),
``lecture`` and its alias ``seed``, early stopping (``--patience``) across ``--resume``,
the precision (``--precision``) and the device record."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
from _helpers import write_event_file

from spectrocnn.cli.eval_cnn import main as eval_main
from spectrocnn.cli.train_cnn import main as train_main
from spectrocnn.errors import ConfigError

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    "ignore:Skipping variable loading for optimizer:UserWarning",
)


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """64 simulated events of each preset at 64x64 pixels."""
    from spectrocnn.config import preset_config
    from spectrocnn.dataset import generate_file

    d = tmp_path_factory.mktemp("presets")
    for name in ("lecture", "telescope"):
        config = preset_config(name).with_image_size(64)
        generate_file(config, 64, d / f"{name}.h5", seed=1, workers=1)
    return d


# -- the choice of architecture -------------------------------------------------------------


def test_auto_chooses_polar_for_a_barrel_around_the_beam_line(presets):
    from spectrocnn.model.architectures import choose_architecture
    from spectrocnn.model.data import open_event_file

    with open_event_file(presets / "lecture.h5") as ev:
        arch, why = choose_architecture(ev.config, ev.window_mm)
        assert arch == "polar" and "16 cylinders" in why
        # the same barrel seen through a window that misses the beam line
        arch, why = choose_architecture(ev.config, (10.0, 400.0, -400.0, 400.0))
        assert arch == "lecture" and "beam line" in why
    with open_event_file(presets / "telescope.h5") as ev:
        arch, why = choose_architecture(ev.config, ev.window_mm)
        assert arch == "lecture" and "plane" in why
    assert choose_architecture({}, (-1.0, 1.0, -1.0, 1.0))[0] == "lecture"  # nothing recorded


def test_train_cnn_auto_records_its_choice(presets, tmp_path, capsys, caplog):
    out = tmp_path / "polar"
    args = [str(presets / "lecture.h5"), "--out", str(out), "--input-size", "32",
            "--epochs", "1", "--batch-size", "16", "--seed", "1"]  # fmt: skip
    assert train_main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Architecture: polar (auto: a barrel of 16 cylinders")
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "polar"
    assert config["arch_choice"]["requested"] == "auto"
    assert config["arch_choice"]["chosen"] == "polar"
    assert config["patience"] == 2  # early stopping is on by default
    # the polar image ends past the outer layer: hits 0 pixels wide at 64 x 64 over 800 mm
    import math

    barrel = config["input_file"]["barrel_radius_mm"]
    assert barrel == pytest.approx(200 + math.sqrt(0.5) * 800 / 64)
    n_r = math.ceil((barrel + math.sqrt(0.5) * 800 / 32) / 12.5)
    assert config["model_geometry"]["n_r"] == n_r == 19
    assert config["model_geometry"]["r_max_mm"] == 19 * 12.5
    from spectrocnn.model.modelio import load_model as _load_model

    assert _load_model(out / "best_model.keras").get_layer("polar").n_r == 19
    # eval-cnn on a barrel reaching farther than the polar image: scored, with a warning
    from spectrocnn.config import config_from_dict
    from spectrocnn.dataset import generate_file

    wide = {"detector": {"preset": "lecture", "layers": [
        {"kind": "cylinder", "radius_mm": r, "half_length_mm": 1000.0} for r in (100.0, 300.0)
    ]}}  # fmt: skip
    generate_file(config_from_dict(wide).with_image_size(64), 16, tmp_path / "wide.h5", seed=3,
                  workers=1)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert eval_main([str(out / "best_model.keras"), str(presets / "lecture.h5"),
                          "--out", str(tmp_path / "ev1")]) == 0  # fmt: skip
        assert "sees out to" not in caplog.text
        assert eval_main([str(out / "best_model.keras"), str(tmp_path / "wide.h5"),
                          "--out", str(tmp_path / "ev2")]) == 0  # fmt: skip
    assert "sees out to r = 237.5 mm, wide.h5 has hits out to r = 309 mm" in caplog.text
    capsys.readouterr()
    assert "reached the maximum of 1 epoch (patience" in lines[-1]
    # the summary make demo prints, from the run and fit-tracks' JSON
    import runpy
    import sys
    from pathlib import Path

    from spectrocnn.cli.fit_tracks import main as fit_main

    assert fit_main([str(presets / "lecture.h5"), "--json"]) == 0
    (tmp_path / "fit.json").write_text(capsys.readouterr().out)
    script = Path(__file__).resolve().parent.parent / "examples" / "demo_summary.py"
    argv = sys.argv
    sys.argv = [str(script), str(out), "--fit", str(tmp_path / "fit.json"), "--title", "t"]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert done.value.code == 0
    summary = capsys.readouterr().out
    assert "CNN        polar (auto: a barrel" in summary
    assert "fit-tracks accuracy" in summary and str(out / "best_model.keras") in summary
    # the telescope's window does not hold the beam line: the lecture's network
    out = tmp_path / "telescope"
    args = [str(presets / "telescope.h5"), "--out", str(out), "--input-size", "16",
            "--epochs", "1", "--batch-size", "16", "--seed", "1", "--quiet"]  # fmt: skip
    assert train_main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "lecture" and config["arch_choice"]["requested"] == "auto"
    assert "plane" in config["arch_choice"]["reason"]


def test_lecture_defaults_and_the_seed_alias():
    from spectrocnn.model.architectures import canonical_name, get_architecture, lecture, seed
    from spectrocnn.model.train import TrainConfig

    assert canonical_name("seed") == "lecture" and get_architecture("seed") is lecture is seed
    for name in ("lecture", "seed"):
        c = TrainConfig("ev.h5", arch=name)
        assert (c.arch, c.epochs, c.patience, c.input_size) == ("lecture", 10, 0, 128)
    c = TrainConfig("ev.h5", arch="polar")
    assert (c.epochs, c.patience) == (20, 2)
    c = TrainConfig("ev.h5")
    assert (c.arch, c.epochs, c.patience, c.precision) == ("auto", 20, 2, "auto")
    assert TrainConfig("ev.h5", arch="lecture", patience=2).epochs == 20
    with pytest.raises(ConfigError, match="patience must be a non-negative integer, got -1"):
        TrainConfig("ev.h5", patience=-1)
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16"):
        TrainConfig("ev.h5", precision="fp16")


def test_a_run_recorded_as_seed_resumes_and_evaluates(tmp_path, capsys):
    """A run directory written before the rename (arch "seed", no patience or precision)."""
    from spectrocnn.model.train import TrainConfig, load_run_config, train

    path = tmp_path / "ev.h5"
    write_event_file(path, n=64, size=32, seed=2)
    out = tmp_path / "run"
    config = TrainConfig(str(path), arch="seed", epochs=2, batch_size=16, input_size=8, seed=3)

    def stop_in_epoch_2(line: str) -> None:
        if line.startswith("Epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, out, report=stop_in_epoch_2)
    saved = json.loads((out / "config.json").read_text())
    for key in ("patience", "precision", "arch_choice", "precision_choice"):
        del saved[key]
    saved.update(arch="seed", mixed_precision=None)
    (out / "config.json").write_text(json.dumps(saved))
    old = load_run_config(out)
    assert (old.arch, old.patience, old.precision, old.epochs) == ("lecture", 0, "fp32", 2)
    assert train_main([str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    capsys.readouterr()
    assert eval_main([str(out / "best_model.keras"), str(path), "--out", str(tmp_path / "e")]) == 0
    assert "eval-cnn: accuracy" in capsys.readouterr().out


# -- early stopping -------------------------------------------------------------------------


def _blank_validation_file(path):
    """20 events with empty images, half of each class: every model scores them all alike,
    so val_accuracy is 0.5 at every epoch and never improves after the first."""
    write_event_file(path, n=20, size=32, seed=3)
    with h5py.File(path, "r+") as f:
        f["images"][...] = 0
        assert f["labels"][:].sum() == 10


def test_patience_stops_early_and_resume_restores_the_counter(tmp_path, capsys):
    train_file, val_file = tmp_path / "train.h5", tmp_path / "val.h5"
    write_event_file(train_file, n=64, size=32, seed=1)
    _blank_validation_file(val_file)
    base = [str(train_file), "--val", str(val_file), "--arch", "lecture", "--input-size", "16",
            "--batch-size", "16", "--seed", "1", "--patience", "2", "--epochs", "8"]  # fmt: skip

    # uninterrupted: epoch 1 sets the best, epochs 2 and 3 do not improve -> stop after 3
    full = tmp_path / "full"
    assert train_main([*base, "--out", str(full)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "at most 8 epochs, stopping after 2 epochs without a val_accuracy at least 0.001 above "
        "its best, or at val_accuracy 1.0" in lines[1]
    )
    rule = "val_accuracy did not improve by 0.001 or more for 2 epochs"
    assert lines[-3].startswith(f"Epoch 3: early stopping: {rule}")
    assert lines[-2].startswith("Scoring 20 validation and 64 training events")
    assert f"stopped early after epoch 3: {rule}" in lines[-1]
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["best_epoch"] == 1 and metrics["stopped_early"]
    assert metrics["sample"] == "validation" and metrics["accuracy"] == 0.5
    state = json.loads((full / "state.json").read_text())
    assert state["epochs_without_improvement"] == 2 and state["stopped_early"]
    assert state["min_delta"] == 0.001 and state["stop_rule"] == rule

    # interrupted in epoch 3, after one epoch without improvement, then resumed: the
    # counter comes back from state.json, so it stops after epoch 3 again (not 4)
    from spectrocnn.model.train import TrainConfig, train

    part = tmp_path / "part"
    config = TrainConfig(str(train_file), val=str(val_file), arch="lecture", input_size=16,
                         batch_size=16, seed=1, patience=2, epochs=8)  # fmt: skip

    def stop_in_epoch_3(line: str) -> None:
        if line.startswith("Epoch 3:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, part, report=stop_in_epoch_3)
    state = json.loads((part / "state.json").read_text())
    assert state["completed_epochs"] == 2 and state["epochs_without_improvement"] == 1
    assert train_main([str(train_file), "--out", str(part), "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines if ln.startswith("Epoch")] == ["Epoch 3", "Epoch 3"]
    metrics = json.loads((part / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["stopped_early"]
    # a finished early-stopped run stays finished
    assert train_main([str(train_file), "--out", str(part), "--resume", "--quiet"]) == 0
    assert "already complete" in capsys.readouterr().out


def _stopper_run(accuracies, state=None):
    """Feed val_accuracy values to train-cnn's early stopping (patience 2) as Keras would;
    returns the epoch after which it stopped (None: it did not) and its state.json part."""
    import keras

    from spectrocnn.model.callbacks import _early_stopping
    from spectrocnn.model.trainconfig import TrainConfig

    stopper = _early_stopping(TrainConfig("ev.h5", arch="polar", patience=2), state or {})
    stopper.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stopper.model.stop_training = False
    stopper.on_train_begin()
    for epoch, acc in enumerate(accuracies):
        stopper.on_epoch_end(epoch, {"val_accuracy": float(np.float32(acc))})
        if stopper.model.stop_training:
            return epoch + 1, stopper.state()
    return None, stopper.state()


@pytest.mark.parametrize(
    ("correct", "stops_after", "why"),
    [
        # make demo's 4 000 validation events, epochs as measured on 2026-11-30: +5 events
        # counts (0.00125), +3 does not (0.00075), nor the 0 after it
        ([3991, 3996, 3999, 3999, 4000], 4, "did not improve by 0.001 or more for 2 epochs"),
        # exactly 4 events (0.001, float32-rounded) count; then +3 and +0 do not
        ([3992, 3996, 3996, 3999, 3999], 4, "did not improve by 0.001 or more"),
        # creeping up by 2 events an epoch: never 0.001 above the highest so far
        ([3990, 3992, 3994, 3996, 3998], 3, "did not improve by 0.001 or more"),
        # every epoch 0.001 or more above the best: no stop
        ([3900, 3950, 3960, 3970, 3980], None, None),
        # all right: no later epoch can be a better model
        ([3600, 3800, 4000, 4000], 3, "reached 1.0"),
    ],
)
def test_early_stopping_needs_a_rise_of_min_delta_or_stops_at_1(correct, stops_after, why):
    from spectrocnn.model.callbacks import MIN_DELTA

    assert MIN_DELTA == 0.001
    stopped, state = _stopper_run([k / 4000 for k in correct])
    assert stopped == stops_after
    assert state["min_delta"] == 0.001 and state["stopped_early"] == (stops_after is not None)
    if why is not None:
        assert why in state["stop_rule"]


def test_runs_begun_before_min_delta_resume_without_it():
    from spectrocnn.model.callbacks import MIN_DELTA
    from spectrocnn.model.callbacks import min_delta_of as _min_delta

    assert _min_delta({"completed_epochs": 0}) == MIN_DELTA  # a new run
    assert _min_delta({"completed_epochs": 3, "min_delta": 0.002}) == 0.002  # recorded
    assert _min_delta({"completed_epochs": 3}) == 0.0  # state.json of an earlier version
    # such a run counts any rise, as it did: +3 events resets the counter
    old = {"completed_epochs": 1, "best_val_accuracy": 3991 / 4000, "best_epoch": 1}
    assert _stopper_run([3994 / 4000, 3994 / 4000, 3994 / 4000], old)[0] == 3


# -- the polar image's radial range ---------------------------------------------------------


def test_polar_image_ends_just_past_the_outermost_hits(tmp_path):
    """On lecture events (512 x 512 over 800 mm, hits 2 pixels wide, 16 cylinders out to
    200 mm) no lit pixel lies beyond barrel_radius_mm, the polar image's rows beyond
    r_max_mm are empty, and the rows kept are those of the full polar image."""
    import math

    from spectrocnn.config import preset_config
    from spectrocnn.dataset import generate_file
    from spectrocnn.model.architectures import barrel_radius_mm, polar_geometry
    from spectrocnn.model.data import load_images, open_event_file
    from spectrocnn.model.layers import PolarPool

    path = tmp_path / "lecture.h5"
    generate_file(preset_config("lecture"), 40, path, seed=2, workers=1)
    with open_event_file(path) as ev:
        r_hits = barrel_radius_mm(ev.config)
        window = ev.window_mm
        native = load_images(ev, 512, "max")
        small = load_images(ev, 256, "max")
    pitch = 800 / 512
    assert r_hits == pytest.approx(200 + (2 + math.sqrt(0.5)) * pitch)
    # lit pixel centres: beyond the outer layer's 200 mm (hit disks), within r_hits
    _, rows, cols = np.nonzero(native.images)
    r = np.hypot(-400 + (cols + 0.5) * pitch, 400 - (rows + 0.5) * pitch)
    assert 200 < r.max() <= r_hits
    geometry = polar_geometry(256, window, r_hits)
    n_r = math.ceil((r_hits + math.sqrt(0.5) * 800 / 256) / (400 / 32))
    assert geometry["n_r"] == n_r == 17 and geometry["r_max_mm"] == 17 * 12.5
    x = np.minimum(small.images.astype(np.float32), 1.0)[..., None]
    full = np.asarray(PolarPool(256, window, 32, 128, 400.0)(x))
    kept = np.asarray(PolarPool(256, window, 17, 128, 212.5)(x))
    assert full[:, 17:].max() == 0 and full[:, :17].max() == 1
    np.testing.assert_array_equal(kept, full[:, :17])
    # without the detector (or a window inside it): the window's whole circle, as before
    assert polar_geometry(256, window)["n_r"] == 32
    assert polar_geometry(256, (-150.0, 150.0, -150.0, 150.0), r_hits)["r_max_mm"] == 150.0
    assert polar_geometry(256, window, 10.0)["n_r"] == 8  # the three poolings need 8 rows


def test_polar_on_a_barrel_halves_the_flops():
    from spectrocnn.model.architectures import build_model, model_flops

    window = (-400.0, 400.0, -400.0, 400.0)
    model = build_model("polar", 256, window_mm=window, barrel_radius_mm=204.23)
    pool = model.get_layer("polar")
    assert (pool.n_r, pool.r_max_mm) == (17, 212.5)
    assert model.count_params() == 22_161  # as with the window's full circle
    # 17 rows; the (2, 1) poolings leave 8, 4; the (2, 2) pooling 2 rows of 72 columns
    w = 128 + 2 * 8
    flops = 2 * (17 * w * 16 * 15 + 8 * w * 16 * 240 + 4 * w * 32 * 240)
    flops += 2 * (2 * (w // 2) * 32 * 288 + 32 * 32 + 32)
    assert model_flops(model) == flops
    full = model_flops(build_model("polar", 256, window_mm=window))
    assert flops / full == pytest.approx(0.50, abs=0.01)


# -- precision and device -------------------------------------------------------------------


def test_precision_auto_follows_the_hardware(monkeypatch):
    from spectrocnn.model import device as dev
    from spectrocnn.model._tf import tensorflow

    tf = tensorflow()
    here = dev.describe_devices(tf)
    native = bool(dev.cpu_flags() & set(dev.NATIVE_BF16_FLAGS))
    if not here["gpus"]:
        assert dev.resolve_precision("auto", here)[0] == ("bf16" if native else "fp32")
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"sse2", "avx2", "amx_bf16"}))
    cpu = {**dev.describe_devices(tf), "gpus": []}
    assert cpu["cpu_native_bf16"] == ["amx_bf16"]
    precision, why = dev.resolve_precision("auto", cpu)
    assert precision == "bf16" and "amx_bf16" in why
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"sse2", "avx2"}))
    cpu = {**dev.describe_devices(tf), "gpus": []}
    assert dev.resolve_precision("auto", cpu)[0] == "fp32"
    assert dev.resolve_precision("fp32", cpu)[0] == "fp32"
    # GPUs: native bfloat16 from compute capability 8.0 (all of them)
    gpu = {"name": "GPU", "device": "/physical_device:GPU:0"}
    ampere = {**cpu, "gpus": [{**gpu, "compute_capability": [8, 0]}]}
    turing = {**cpu, "gpus": [{**gpu, "compute_capability": [7, 5]}]}
    mixed = {**cpu, "gpus": [*ampere["gpus"], *turing["gpus"]]}
    assert dev.resolve_precision("auto", ampere)[0] == "bf16"
    assert dev.resolve_precision("auto", turing)[0] == "fp32"
    assert dev.resolve_precision("auto", mixed)[0] == "fp32"
    # the lecture network trains in float32 under auto, as in the lecture; bf16 on request
    assert dev.resolve_precision("auto", ampere, "lecture")[0] == "fp32"
    assert dev.resolve_precision("auto", ampere, "polar")[0] == "bf16"
    assert dev.resolve_precision("bf16", ampere, "lecture")[0] == "bf16"
    assert dev.device_summary(ampere).startswith("GPU: 1 x GPU (compute capability 8.0)")
    with pytest.raises(ConfigError, match="precision must be one of"):
        dev.resolve_precision("fp8", cpu)


def test_bf16_forced_trains_with_a_float32_output_and_loads_anywhere(
    tmp_path, capsys, caplog, monkeypatch
):
    import keras

    from spectrocnn.model import device as dev
    from spectrocnn.model.modelio import load_model

    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2"}))  # no native bf16
    path = tmp_path / "ev.h5"
    write_event_file(path, n=64, size=32, seed=5)
    out = tmp_path / "run"
    args = [str(path), "--out", str(out), "--arch", "lecture", "--input-size", "16",
            "--epochs", "1", "--batch-size", "16", "--seed", "2", "--precision", "bf16",
            "--quiet"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert train_main(args) == 0
    assert "emulated and will be slow" in caplog.text
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["precision"] == metrics["precision"] == "bf16"
    assert config["precision_choice"]["requested"] == "bf16"
    assert 0.0 <= metrics["accuracy"] <= 1.0 and np.isfinite(metrics["loss"])
    model = load_model(out / "best_model.keras")  # under the float32 policy
    assert model.layers[0].dtype_policy.name == "mixed_bfloat16"
    assert model.layers[-1].dtype_policy.name == "float32"
    x = np.zeros((2, 16, 16, 1), np.float32)
    assert keras.ops.convert_to_numpy(model(x)).dtype == np.float32
    capsys.readouterr()
    assert eval_main([str(out / "best_model.keras"), str(path), "--out", str(tmp_path / "e")]) == 0
    evaluated = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert evaluated["n_events"] == 64


def test_device_is_recorded(tmp_path, capsys):
    path = tmp_path / "ev.h5"
    write_event_file(path, n=48, size=32, seed=6)
    out = tmp_path / "run"
    args = [str(path), "--out", str(out), "--arch", "lecture", "--input-size", "8",
            "--epochs", "1", "--batch-size", "16", "--seed", "2"]  # fmt: skip
    assert train_main(args) == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    for record in (config["device"], metrics["device"]):
        assert record["cpu"] and record["cores"] >= 1 and isinstance(record["gpus"], list)
        assert record["trains_on"] in ("CPU", "GPU")
    assert f"Device: {config['device']['summary']}" in printed
    assert eval_main([str(out / "best_model.keras"), str(path), "--out", str(tmp_path / "e")]) == 0
    evaluated = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert evaluated["device"]["summary"] in capsys.readouterr().out


def test_the_stop_reason_says_epoch_for_one_epoch():
    from spectrocnn.model.callbacks import stop_reason
    from spectrocnn.model.trainconfig import TrainConfig

    def reason(epochs, patience):
        return stop_reason(TrainConfig(input="x.h5", epochs=epochs, patience=patience), {})

    assert reason(1, 0) == "trained the planned 1 epoch (no early stopping)"
    assert reason(10, 0) == "trained the planned 10 epochs (no early stopping)"
    assert reason(1, 2) == "reached the maximum of 1 epoch (patience 2)"
    assert reason(20, 2) == "reached the maximum of 20 epochs (patience 2)"
