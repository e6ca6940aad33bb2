"""eval-cnn's outputs in an existing directory are exactly those of the last evaluation: the
plots and pictures of an earlier one of other labels (or of more ``--explain`` events)
are removed, the user's own files kept, and a failing evaluation changes nothing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spectrocnn.config import preset_config
from spectrocnn.dataset import ImageSpec, write_events
from spectrocnn.labels import LabelSpec
from spectrocnn.simulate import simulate_events

pytestmark = pytest.mark.filterwarnings(
    "ignore:Skipping variable loading for optimizer:UserWarning"
)

CONFIG = preset_config("lecture")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One batch of 12 events written with binary labels and with a regression target,
    and an untrained lecture network of each kind for 16 x 16 inputs."""
    from spectrocnn.model.architectures import build_model

    d = tmp_path_factory.mktemp("eval_outputs")
    batch = simulate_events(CONFIG.simulation, 12, rng=3)
    n_particles = np.bincount(batch.particles.event, minlength=12)
    spec = ImageSpec(size=32, window_mm=CONFIG.image.window_mm)
    files = {
        "binary": (np.arange(12) % 2, LabelSpec("binary")),
        "regression": (n_particles.astype(float), LabelSpec("regression")),
    }
    out = {}
    for kind, (labels, label_spec) in files.items():
        path = d / f"{kind}.h5"
        write_events(path, batch, spec, config=CONFIG.to_dict(), labels=labels,
                     label_spec=label_spec)  # fmt: skip
        model = d / f"{kind}.keras"
        build_model("lecture", 16, labels=label_spec).save(model)
        out[kind] = (str(model), str(path))
    return out


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _eval(argv, capsys):
    from spectrocnn.cli import eval_cnn

    code = eval_cnn.main([*argv, "--quiet"])
    return code, capsys.readouterr().err


def test_a_second_evaluation_leaves_only_its_own_outputs(world, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # the user's: never touched
    (out / "explain").mkdir()
    (out / "explain" / "my_picture.png").write_text("mine too")
    code, err = _eval([*world["binary"], "--out", str(out), "--explain", "2"], capsys)
    assert code == 0, err
    first = _tree(out)
    assert {"metrics.json", "roc.png", "scores.png", "explain/explain.json"} <= set(first)
    pictures = [n for n in first if n.startswith("explain/") and "_event" in n]
    assert pictures, first
    # fewer pictures: the ranks beyond 1 of the first run go
    code, err = _eval([*world["binary"], "--out", str(out), "--explain", "1"], capsys)
    assert code == 0, err
    index = json.loads((out / "explain" / "explain.json").read_text())
    listed = {f"explain/{p['file']}" for p in index["pictures"]}
    assert {n for n in _tree(out) if "_event" in n} == listed
    assert all("_1_event" in n for n in listed)
    # a regression model into the same directory: no ROC, no score histograms, no
    # explanations of the binary run are left beside its predicted.png
    code, err = _eval([*world["regression"], "--out", str(out)], capsys)
    assert code == 0, err
    assert _tree(out) == [
        "explain", "explain/my_picture.png", "metrics.json", "notes.txt", "predicted.png",
    ]  # fmt: skip
    assert json.loads((out / "metrics.json").read_text())["label_kind"] == "regression"
    assert (out / "notes.txt").read_text() == "mine"
    # without user files in explain/ the folder goes with its pictures
    (out / "explain" / "my_picture.png").unlink()
    code, err = _eval([*world["binary"], "--out", str(out), "--explain", "1"], capsys)
    assert code == 0, err
    code, err = _eval([*world["binary"], "--out", str(out)], capsys)
    assert code == 0, err
    assert _tree(out) == ["metrics.json", "notes.txt", "roc.png", "scores.png"]


def test_a_failing_evaluation_changes_nothing(world, tmp_path, capsys):
    out = tmp_path / "eval"
    code, err = _eval([*world["binary"], "--out", str(out), "--explain", "1"], capsys)
    assert code == 0, err
    before = {n: (out / n).read_bytes() for n in _tree(out) if (out / n).is_file()}
    # the regression model on the binary file is refused (exit 2)
    code, err = _eval([world["regression"][0], world["binary"][1], "--out", str(out)], capsys)
    assert code == 2 and "regression" in err
    assert {n: (out / n).read_bytes() for n in _tree(out) if (out / n).is_file()} == before
    code, err = _eval([world["regression"][0], world["binary"][1], "--out",
                       str(tmp_path / "new")], capsys)  # fmt: skip
    assert code == 2 and not (tmp_path / "new").exists()


def test_a_write_that_fails_midway_changes_nothing(world, tmp_path, capsys, monkeypatch):
    """roc.png is written, scores.png fails (a full disk): the earlier outputs stay as they
    were, no temporary entry is left, and the error names the file eval-cnn could not write."""
    import errno

    from spectrocnn._atomic import write_with
    from spectrocnn.model import plots

    out = tmp_path / "eval"
    code, err = _eval([*world["regression"], "--out", str(out)], capsys)
    assert code == 0, err
    before = {n: (out / n).read_bytes() for n in _tree(out)}

    def full(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots, "plot_scores", lambda path, *a: write_with(path, full))
    code, err = _eval([*world["binary"], "--out", str(out)], capsys)
    assert code == 1
    assert err.strip() == (
        f"eval-cnn: error: cannot write {str(out / 'scores.png')!r}: No space left on device"
    )
    assert {n: (out / n).read_bytes() for n in _tree(out)} == before
