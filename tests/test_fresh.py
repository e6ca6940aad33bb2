"""Fresh events every epoch (issue 18 item 4): the streams (spectrocnn.dataset.fresh) and
train-cnn --generate (spectrocnn.model.fresh, train, the CLI).

The right images come from gen-events files (compressed, written and read back through
HDF5) and from a pixel-by-pixel rasterizer, never from the code under test.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from _helpers import brute_force_images

from spectrocnn.config import preset_config
from spectrocnn.dataset import generate_file, open_events
from spectrocnn.dataset.fresh import batch_images, epoch_seed, fresh_images, validation_seed
from spectrocnn.dataset.pipeline import simulate_chunk
from spectrocnn.errors import ConfigError
from spectrocnn.model.data import downsample

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    "ignore:Skipping variable loading for optimizer:UserWarning",
)

SEED = 5
N_EPOCH = 64  # events per epoch in the training runs: 2 batches of 32
N_VAL = 32


@pytest.fixture(scope="module")
def config():
    """The lecture preset at 32 x 32 pixels (fast to rasterize)."""
    return preset_config("lecture").with_image_size(32)


def _down(size, method):
    return functools.partial(downsample, size=size, method=method)


def _file_images(config, n, seed, path, size, method):
    """Images (downsampled as train-cnn reads them) and labels of a gen-events file."""
    generate_file(config, n, path, seed=seed, workers=1)
    with open_events(path) as ev:
        return downsample(ev.read_images(0, n), size, method), np.asarray(ev.labels)


# -- the streams ----------------------------------------------------------------------------


def test_epoch_seeds():
    seeds = [epoch_seed(1, e) for e in range(200)]
    assert seeds[0] == 1
    assert len(set(seeds)) == 200
    assert all(0 <= s < 2**64 for s in seeds)
    assert 2 not in seeds  # unlike seed + epoch, seed 1's epochs never repeat seed 2
    assert epoch_seed(2**64 - 1, 3) == epoch_seed(2**64 - 1, 3)
    with pytest.raises(ConfigError, match="epoch must be an integer >= 0"):
        epoch_seed(1, -1)
    with pytest.raises(ConfigError, match="seed must be an integer"):
        epoch_seed(-1, 0)


def test_validation_seed_is_apart_from_every_epoch():
    v = validation_seed(1)
    assert v == validation_seed(1) and 0 <= v < 2**64
    assert v not in {epoch_seed(1, e) for e in range(1000)}
    assert v not in {validation_seed(s) for s in range(2, 100)}
    with pytest.raises(ConfigError, match="seed must be an integer"):
        validation_seed(2**64)


@pytest.mark.parametrize("method", ["max", "nearest"])
def test_fresh_images_are_the_gen_events_file(tmp_path, config, method):
    """Two chunks (256 + 44 events): the images and labels of the file of that seed."""
    n, seed = 300, epoch_seed(SEED, 2)
    images, labels = fresh_images(config, n, seed, _down(16, method))
    want_images, want_labels = _file_images(config, n, seed, tmp_path / "e.h5", 16, method)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    assert images.dtype == np.uint8 and images.shape == (n, 16, 16)
    other, _ = fresh_images(config, n, epoch_seed(SEED, 3), _down(16, method))
    assert not np.array_equal(images, other)  # another epoch, other events


def test_batch_images_are_the_rasterized_hits(config):
    """Independent of the rasterizer: every hit drawn pixel by pixel, then max-pooled."""
    events = simulate_chunk(config.simulation, 3, 1, 8)
    h = events.hits
    full = brute_force_images(h.x, h.y, h.event, 8, config.image)
    pooled = full.reshape(8, 16, 2, 16, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(batch_images(events, config.image, _down(16, "max")), pooled)
    np.testing.assert_array_equal(batch_images(events, config.image), full)


# -- TrainConfig ----------------------------------------------------------------------------


def test_train_config_of_fresh_events(config, tmp_path):
    from spectrocnn.model.train import train
    from spectrocnn.model.trainconfig import TrainConfig

    c = TrainConfig(generate=config, arch="lecture")
    assert c.generated and c.input is None and c.generate is config
    assert (c.events_per_epoch, c.val_events) == (16_000, 4_000)  # the lecture's split
    assert json.loads(json.dumps(c.settings()))["generate"] == config.to_dict()
    with pytest.raises(ConfigError, match="needs an event file"):
        TrainConfig()
    with pytest.raises(ConfigError, match="give no event file"):
        TrainConfig("ev.h5", generate=config)
    with pytest.raises(ConfigError, match="give no validation file"):
        TrainConfig(generate=config, val="val.h5")
    with pytest.raises(ConfigError, match="events_per_epoch needs generate"):
        TrainConfig("ev.h5", events_per_epoch=10)
    with pytest.raises(ConfigError, match="val_events must be a positive integer, got 0"):
        TrainConfig(generate=config, val_events=0)
    with pytest.raises(ConfigError, match="generate must be a configuration"):
        TrainConfig(generate="lecture")
    # config.json's record is a dict: a Config again before training
    recorded = TrainConfig(generate=config.to_dict(), seed=1)
    assert recorded.settings()["generate"] == config.to_dict()
    with pytest.raises(ConfigError, match="config_from_dict"):
        train(recorded, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- training -------------------------------------------------------------------------------


def _recording(monkeypatch):
    """Record every training batch FreshData makes (stored values, labels), per session."""
    from spectrocnn.model.fresh import FreshData

    sessions: list[list[tuple[np.ndarray, np.ndarray]]] = []
    make = FreshData.batches

    def batches(self, first, last, batch_size):
        sessions.append(seen := [])
        for x, y in make(self, first, last, batch_size):
            seen.append((x.copy(), y.copy()))
            yield x, y

    monkeypatch.setattr(FreshData, "batches", batches)
    return sessions


def _train_config(config, **kw):
    from spectrocnn.model.trainconfig import TrainConfig

    settings = dict(
        generate=config, events_per_epoch=N_EPOCH, val_events=N_VAL, arch="lecture",
        input_size=16, epochs=2, seed=SEED, precision="fp32",
    )  # fmt: skip
    return TrainConfig(**{**settings, **kw})


def _epochs(batches, n_epochs):
    """Stored values and labels of each epoch, from the recorded batches."""
    per = len(batches) // n_epochs
    return [
        (np.concatenate([x for x, _ in batches[k * per : (k + 1) * per]]),
         np.concatenate([y for _, y in batches[k * per : (k + 1) * per]]))
        for k in range(n_epochs)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory, config):
    """A 2-epoch run on fresh events, with the batches it trained on."""
    from spectrocnn.model.train import train

    mp = pytest.MonkeyPatch()
    try:
        sessions = _recording(mp)
        out = tmp_path_factory.mktemp("fresh") / "run"
        result = train(_train_config(config), out)
    finally:
        mp.undo()
    return out, result, sessions


def test_epochs_train_on_the_gen_events_files_of_their_seeds(fresh_run, config):
    out, result, sessions = fresh_run
    assert len(sessions) == 1
    batches = sessions[0]
    assert [len(y) for _, y in batches] == [32, 32, 32, 32]
    epochs = _epochs(batches, 2)
    for e, (x, y) in enumerate(epochs):
        want_x, want_y = fresh_images(config, N_EPOCH, epoch_seed(SEED, e), _down(16, "max"))
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    saved = json.loads((out / "config.json").read_text())
    assert saved["input_file"] is None and saved["n_train"] == N_EPOCH
    assert saved["generation"]["validation_seed"] == validation_seed(SEED)
    assert saved["events_per_epoch"] == N_EPOCH and saved["generate"] == config.to_dict()
    assert result.n_train == N_EPOCH and result.n_val == N_VAL


def test_validation_is_the_gen_events_file_of_the_validation_seed(fresh_run, config, tmp_path):
    """eval-cnn on gen-events --seed validation_seed(seed) reproduces the run's scores: the
    run validated every epoch on those events (the best and the last model both)."""
    from spectrocnn.model.evaluate import evaluate
    from spectrocnn.model.rundir import read_history

    out, result, _ = fresh_run
    path = tmp_path / "val.h5"
    generate_file(config, N_VAL, path, seed=validation_seed(SEED), workers=1)
    best = evaluate(out / "best_model.keras", path, tmp_path / "best")
    assert best.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert best.metrics["accuracy"] == pytest.approx(result.best_val_accuracy, abs=1e-6)
    last = evaluate(out / "last_model.keras", path, tmp_path / "last")
    history = read_history(out / "history.csv")
    assert last.metrics["accuracy"] == pytest.approx(history["val_accuracy"][-1], abs=1e-6)


def test_same_seed_same_run(fresh_run, config, tmp_path):
    import keras

    from spectrocnn.model.train import train

    out, result, _ = fresh_run
    again = train(_train_config(config), tmp_path / "again")
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert again.history[k] == result.history[k], k
    a = keras.models.load_model(out / "last_model.keras").get_weights()
    b = keras.models.load_model(tmp_path / "again" / "last_model.keras").get_weights()
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_resume_continues_the_same_stream(fresh_run, config, tmp_path, monkeypatch):
    from spectrocnn.model.train import train

    _, _, uninterrupted = fresh_run
    sessions = _recording(monkeypatch)
    out = tmp_path / "run"

    def interrupt_in_epoch_2(line: str) -> None:
        if line.startswith("Epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_train_config(config), out, report=interrupt_in_epoch_2)
    assert json.loads((out / "state.json").read_text())["completed_epochs"] == 1
    result = train(_train_config(config), out, resume=True)
    assert result.epochs == 2 and result.initial_epoch == 1
    resumed = sessions[-1]  # the second session starts at epoch 2, on its events
    assert len(resumed) == 2
    for (x, y), (want_x, want_y) in zip(resumed, uninterrupted[0][2:], strict=True):
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)
    with pytest.raises(ConfigError, match="events_per_epoch 32 \\(run: 64\\)"):
        train(_train_config(config, events_per_epoch=32, epochs=3), out, resume=True)


def test_train_cnn_generate_and_resume_without_a_file(tmp_path, capsys, config):
    from spectrocnn.cli.train_cnn import main

    cfg = tmp_path / "small.toml"
    cfg.write_text("[image]\nsize = 32\n")
    out = tmp_path / "run"
    argv = ["--generate", str(cfg), "--events-per-epoch", "40", "--val-events", "20",
            "--arch", "lecture", "--input-size", "16", "--epochs", "1", "--seed", "2",
            "--precision", "fp32", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "best val_accuracy" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["generate"] == config.to_dict()  # the lecture preset at 32 x 32
    assert (saved["events_per_epoch"], saved["val_events"]) == (40, 20)
    # resumed (extended) from config.json alone: no file, no --generate
    assert main(["--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert json.loads((out / "state.json").read_text())["completed_epochs"] == 2
    assert main(["--out", str(out), "--resume", "--events-per-epoch", "41"]) == 2
    assert "events_per_epoch 41 (run: 40)" in capsys.readouterr().err
