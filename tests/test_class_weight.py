"""Training on your own labels (issue 22 items 5 and 8): a rare class learnt with balanced
class weights and the best model kept for val_auc; multiclass and regression heads; the
settings recorded and refused where they do not fit.

The rare class is "the event holds 18 or more particles" among 1 to 20 (uniform): 3/20 =
15 % of the events, and visible in the image as the number of lit pixels.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from spectrocnn.config import preset_config
from spectrocnn.dataset import ImageSpec, write_events
from spectrocnn.errors import ConfigError
from spectrocnn.labels import LabelSpec
from spectrocnn.simulate import Multiplicity, simulate_events

CONFIG = preset_config("lecture")
SPEC = ImageSpec(size=32, window_mm=CONFIG.image.window_mm)


def _events(n: int, seed: int):
    sim = dataclasses.replace(CONFIG.simulation, n_particles=Multiplicity("uniform", range=(1, 20)))
    batch = simulate_events(sim, n, rng=seed)
    return batch, np.bincount(batch.particles.event, minlength=n)


@pytest.fixture(scope="module")
def rare(tmp_path_factory):
    """600 events, label 1 = 18 or more particles (15 % expected)."""
    batch, n_particles = _events(600, seed=11)
    labels = n_particles >= 18
    assert 0.10 < labels.mean() < 0.20
    path = tmp_path_factory.mktemp("rare") / "rare.h5"
    write_events(path, batch, SPEC, config=CONFIG.to_dict(), labels=labels,
                 label_spec=LabelSpec(name="n_particles >= 18"),
                 event_columns={"n_particles": n_particles})  # fmt: skip
    return path, labels


def _config(path, **kw):
    from spectrocnn.model.trainconfig import TrainConfig

    base = {"arch": "lecture", "input_size": 16, "epochs": 3, "patience": 0, "seed": 1,
            "precision": "fp32", "threads": 2}  # fmt: skip
    return TrainConfig(input=str(path), **{**base, **kw})


def test_balanced_weights_and_val_auc_beat_chance_on_a_rare_class(rare, tmp_path):
    from spectrocnn.model.train import train

    path, labels = rare
    out = tmp_path / "run"
    result = train(_config(path, class_weight="balanced", monitor="val_auc"), out)
    assert result.monitor == "val_auc"
    assert result.metrics["roc_auc"] > 0.75  # chance is 0.5
    assert result.best_score == pytest.approx(max(result.history["val_auc"]))
    assert result.metrics["label_kind"] == "binary" and result.metrics["class_weight"] == "balanced"
    config = json.loads((out / "config.json").read_text())
    assert config["monitor"] == "val_auc" and config["class_weight"] == "balanced"
    assert config["labels"]["kind"] == "binary"
    assert config["labels"]["name"] == "n_particles >= 18"
    n_train = config["n_train"]
    from spectrocnn.model.data import split_indices

    train_idx, _ = split_indices(len(labels), 0.2, 1)
    n1 = int(labels[train_idx].sum())
    assert config["labels"]["class_weights"] == pytest.approx(
        {"0": n_train / (2 * (n_train - n1)), "1": n_train / (2 * n1)}
    )
    state = json.loads((out / "state.json").read_text())
    assert state["best_val_auc"] == pytest.approx(result.best_score)
    assert {"auc", "val_auc"} <= set(result.history)
    assert (out / "roc.png").is_file() and (out / "scores.png").is_file()
    again = train(_config(path, class_weight="balanced"), out, resume=True)  # monitor: the run's
    assert again.already_complete and again.monitor == "val_auc"
    assert again.best_score == result.best_score


def test_multiclass_and_regression_heads_train_and_evaluate(rare, tmp_path):
    from spectrocnn.model.evaluate import evaluate
    from spectrocnn.model.modelio import load_model
    from spectrocnn.model.train import train

    batch, n_particles = _events(200, seed=12)
    cases = {
        "multiclass": (np.digitize(n_particles, [8, 15]), LabelSpec("multiclass", n_classes=3)),
        "regression": (n_particles.astype(float), LabelSpec("regression")),
    }
    for kind, (labels, spec) in cases.items():
        path = tmp_path / f"{kind}.h5"
        write_events(path, batch, SPEC, config=CONFIG.to_dict(), labels=labels, label_spec=spec)
        out = tmp_path / kind
        result = train(_config(path, epochs=1), out)
        m = result.metrics
        assert m["label_kind"] == kind and m["n_events"] == 40
        model = load_model(out / "best_model.keras")
        last = model.layers[-1]
        if kind == "multiclass":
            assert model.output_shape == (None, 3) and last.activation.__name__ == "softmax"
            assert result.monitor == "val_accuracy"
            assert np.sum(m["confusion_matrix"]) == 40 and "roc_auc" not in m
            assert sorted(p.name for p in out.glob("*.png")) == ["accuracy.png", "loss.png"]
        else:
            assert model.output_shape == (None, 1) and last.activation.__name__ == "linear"
            assert result.monitor == "val_loss" and np.isnan(result.best_val_accuracy)
            assert m["rmse"] == pytest.approx(np.sqrt(m["loss"]))
            assert sorted(p.name for p in out.glob("*.png")) == [
                "loss.png",
                "mae.png",
                "predicted.png",
            ]
        ev = evaluate(out / "best_model.keras", path, tmp_path / f"eval_{kind}")
        assert ev.metrics["label_kind"] == kind and ev.metrics["n_events"] == 200
    with pytest.raises(ConfigError, match="predicts regression labels"):
        evaluate(tmp_path / "regression" / "best_model.keras", rare[0], tmp_path / "e")


def test_settings_are_checked_and_old_runs_read_as_before(tmp_path, rare):
    from spectrocnn.model.rundir import load_run_config
    from spectrocnn.model.train import train

    with pytest.raises(ConfigError, match="class_weight must be one of none, balanced"):
        _config(rare[0], class_weight="auto")
    with pytest.raises(ConfigError, match="monitor must be one of auto, val_accuracy"):
        _config(rare[0], monitor="auc")
    old = {"input": str(rare[0]), "arch": "lecture", "epochs": 2, "seed": 1}
    (tmp_path / "config.json").write_text(json.dumps(old))
    saved = load_run_config(tmp_path)  # a run made before issue 22
    assert (saved.monitor, saved.class_weight) == ("val_accuracy", "none")
    reg = tmp_path / "reg.h5"
    batch, n_particles = _events(20, seed=3)
    write_events(reg, batch, SPEC, labels=n_particles * 1.0, label_spec="regression")
    for kw, message in (
        ({"monitor": "val_auc"}, "--monitor val_auc .* needs binary labels; .* has regression"),
        ({"class_weight": "balanced"}, "--class-weight balanced needs binary or multiclass"),
        ({"val": str(rare[0])}, "--val .* has binary labels, the training file .* regression"),
    ):
        with pytest.raises(ConfigError, match=message):
            train(_config(reg, **kw), tmp_path / "never")
        assert not (tmp_path / "never").exists()


def test_a_model_that_predicts_one_class_is_reported(tmp_path, capsys):
    """Every image the same (empty): the network cannot tell the events apart, so its best
    model predicts one class for all validation events; train-cnn says so at the end of
    its summary line (and not again on stderr), metrics.json keeps the warning."""
    import h5py

    from spectrocnn.cli import train_cnn

    batch, _ = _events(100, seed=4)
    labels = np.zeros(100, bool)
    labels[::6] = True  # 17 %
    path = tmp_path / "blind.h5"
    write_events(path, batch, SPEC, config=CONFIG.to_dict(), labels=labels)
    with h5py.File(path, "a") as f:
        f["images"][...] = 0
    out = tmp_path / "run"
    argv = [str(path), "--arch", "lecture", "--input-size", "16", "--epochs", "1", "--seed",
            "2", "--precision", "fp32", "--quiet", "--out", str(out)]  # fmt: skip
    assert train_cnn.main(argv) == 0
    captured = capsys.readouterr()
    line = captured.out.strip()
    assert len(line.splitlines()) == 1
    assert "; WARNING: the best model predicts class " in line
    assert "for all 20 validation events" in line
    assert "the best model predicts" not in captured.err
    warnings = json.loads((out / "metrics.json").read_text())["warnings"]
    assert len(warnings) == 1 and line.endswith(warnings[0])
