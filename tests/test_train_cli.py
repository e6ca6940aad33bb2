"""Tests of the train-cnn and eval-cnn commands: outputs, messages, exit codes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from _helpers import write_event_file

from spectrocnn.cli.eval_cnn import main as eval_main
from spectrocnn.cli.train_cnn import main as train_main

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_event_file(d / "train.h5", n=120, seed=1)
    write_event_file(d / "val.h5", n=40, seed=2)
    write_event_file(d / "one.h5", n=30, labels=np.ones(30))
    (d / "text.h5").write_text("not an event file\n")
    (d / "empty.h5").write_bytes(b"")
    with h5py.File(d / "foreign.h5", "w") as f:
        f["data"] = np.arange(3)
    return d


def _one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{prog}: error: ")
    return err[0]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["missing.h5"], 2, "does not exist"),
        (["text.h5"], 1, "not an HDF5 file"),
        (["empty.h5"], 1, "empty"),
        (["foreign.h5"], 1, "not a spectrocnn event file"),
        (["one.h5", "--input-size", "16"], 2, "only class 1"),
        (["train.h5", "--val-fraction", "1.5"], 2, "--val-fraction"),
        (["train.h5", "--val-fraction", "0"], 2, "--val-fraction"),
        (["train.h5", "--val-fraction", "abc"], 2, "--val-fraction"),
        (["train.h5", "--val-fraction", "0.001", "--input-size", "16"], 2, "0 validation"),
        (["train.h5", "--input-size", "20"], 2, "input size 20"),
        (["train.h5", "--input-size", "128"], 2, "larger than the 64x64 images"),
        (["train.h5", "--input-size", "20", "--downsample", "mean"], 2, "mean-pooled"),
        (["train.h5", "--arch", "resnet", "--input-size", "16"], 2, "unknown architecture"),
        (["train.h5", "--arch", "polar"], 2, "input size 256 is larger"),  # polar's default
        (["train.h5", "--epochs", "0"], 2, "--epochs"),
        (["train.h5", "--downsample", "bilinear"], 2, "bilinear"),
        (["train.h5", "--val", "missing.h5", "--input-size", "16"], 2, "does not exist"),
        (["train.h5", "--val", "val.h5", "--val-fraction", "0.3"], 2, "not allowed"),
        (["train.h5", "--resume"], 2, "--resume needs --out"),
    ],
)
def test_bad_input_is_one_line_and_no_output(files, capsys, monkeypatch, args, code, words):
    monkeypatch.chdir(files)
    assert train_main([*args, "--out", "run-bad"] if "--resume" not in args else args) == code
    assert words in _one_error_line(capsys, "train-cnn")
    assert not (files / "run-bad").exists()
    assert not (files / "runs").exists()


def test_existing_run_directory_is_not_overwritten(files, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert train_main([str(files / "train.h5"), "--out", str(out), "--input-size", "16"]) == 2
    assert "not empty" in _one_error_line(capsys, "train-cnn")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert train_main([str(files / "train.h5"), "--out", str(out), "--resume"]) == 2
    assert "not a train-cnn run directory" in _one_error_line(capsys, "train-cnn")


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    """train-cnn with a validation file and the lecture's nearest downsampling."""
    out = tmp_path_factory.mktemp("run") / "run"
    args = [str(files / "train.h5"), "--val", str(files / "val.h5"), "--out", str(out),
            "--epochs", "2", "--batch-size", "8", "--input-size", "16",
            "--downsample", "nearest", "--seed", "4", "--arch", "lecture"]  # fmt: skip
    return out, args


def test_train_cnn_runs_and_prints_the_lectures_lines(run, capsys):
    out, args = run
    assert train_main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("Device: CPU: ")
    assert "precision fp32" in lines[0]
    assert lines[1].startswith("Training: lecture on 120 events, validating on 40 (64x64 -> 16x16")
    assert "2 epochs, batch 8" in lines[1]  # the lecture's: a fixed number of epochs
    assert lines[2].startswith("Epoch 1: val_accuracy improved from -inf to ")
    assert lines[3].startswith("Epoch 2: val_accuracy ")
    assert "trained the planned 2 epochs (no early stopping)" in lines[-1]
    assert lines[-1].startswith("train-cnn: best val_accuracy ")
    assert captured.err == ""
    config = json.loads((out / "config.json").read_text())
    assert config["downsample"] == "nearest"
    assert config["val_file"]["n_events"] == 40
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_val"] == 40
    assert metrics["epochs"] == 2
    # resuming a finished run does nothing
    assert train_main([args[0], "--out", str(out), "--resume", "--quiet"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_train_cnn_polar_architecture_and_eval(files, tmp_path, capsys, caplog):
    out = tmp_path / "polar"
    args = [str(files / "train.h5"), "--val", str(files / "val.h5"), "--out", str(out),
            "--arch", "polar", "--epochs", "1", "--batch-size", "8", "--input-size", "32",
            "--seed", "2", "--quiet"]  # fmt: skip
    assert train_main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"] == 22_161 and metrics["epochs"] == 1
    capsys.readouterr()
    # eval-cnn loads the model with its custom PolarPool layer
    assert eval_main([str(out / "best_model.keras"), str(files / "val.h5"),
                      "--out", str(tmp_path / "ev")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_events"] == 40
    assert "window" not in caplog.text
    # images of another window put the beam line elsewhere: scored, with a warning
    write_event_file(tmp_path / "wide.h5", n=20, seed=3, window_mm=(-800, 800, -800, 800))
    assert eval_main([str(out / "best_model.keras"), str(tmp_path / "wide.h5"),
                      "--out", str(tmp_path / "ev2")]) == 0  # fmt: skip
    assert "trained on images of window [-400.0, 400.0, -400.0, 400.0] mm" in caplog.text


def test_eval_cnn_writes_metrics_and_plots(run, files, tmp_path, capsys):
    out, _ = run
    ev_out = tmp_path / "eval"
    assert (
        eval_main([str(out / "best_model.keras"), str(files / "val.h5"), "--out", str(ev_out)]) == 0
    )
    assert capsys.readouterr().out.startswith("eval-cnn: accuracy ")
    for name in ("metrics.json", "roc.png", "scores.png"):
        assert (ev_out / name).is_file()
    m = json.loads((ev_out / "metrics.json").read_text())
    assert m["downsample"] == "nearest"  # from the run's config.json
    assert m["input_size"] == 16
    assert m["n_events"] == 40
    # on the validation file it reproduces the run's validation accuracy
    run_metrics = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(run_metrics["accuracy"])
    assert m["roc_auc"] == pytest.approx(run_metrics["roc_auc"])
    # default output directory: beside the model
    assert eval_main([str(out / "best_model.keras"), str(files / "val.h5"), "--quiet"]) == 0
    assert (out / "eval_val" / "metrics.json").is_file()


def test_eval_cnn_errors(run, files, tmp_path, capsys):
    out, _ = run
    model = str(out / "best_model.keras")
    assert eval_main([str(tmp_path / "none.keras"), str(files / "val.h5")]) == 2
    assert "does not exist" in _one_error_line(capsys, "eval-cnn")
    assert eval_main([model, str(files / "missing.h5")]) == 2
    assert "does not exist" in _one_error_line(capsys, "eval-cnn")
    assert eval_main([model, str(files / "text.h5")]) == 1
    assert "not an HDF5 file" in _one_error_line(capsys, "eval-cnn")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"this is no model")
    assert eval_main([str(bad), str(files / "val.h5"), "--out", str(tmp_path / "e")]) == 1
    assert "cannot load the model" in _one_error_line(capsys, "eval-cnn")
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_sigkill_then_resume_completes_the_planned_epochs(files, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spectrocnn.cli.train_cnn", str(files / "train.h5"),
           "--out", str(out), "--epochs", "4", "--batch-size", "4", "--input-size", "32",
           "--seed", "1", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["completed_epochs"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["completed_epochs"]
    assert 1 <= done < 4
    assert train_main([str(files / "train.h5"), "--out", str(out), "--resume", "--quiet"]) == 0
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2, 3]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 4
