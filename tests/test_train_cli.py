"""Tests of the train-cnn and eval-cnn commands: outputs, messages, exit codes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from _helpers import auto_precision_here, write_event_file

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
    assert f"precision {auto_precision_here('lecture')}" in lines[0]
    assert lines[1].startswith("Training: lecture on 120 events, validating on 40 (64x64 -> 16x16")
    assert "2 epochs, batch 8" in lines[1]  # the lecture's: a fixed number of epochs
    assert lines[2].startswith("Epoch 1: val_accuracy improved from -inf to ")
    assert lines[3].startswith("Epoch 2: val_accuracy ")
    # after the last epoch: what it does while it scores both samples, and how long it took
    assert lines[4].startswith("Scoring 40 validation and 120 training events with the best model")
    assert "trained the planned 2 epochs (no early stopping)" in lines[-1]
    assert lines[-1].startswith("train-cnn: best val_accuracy ")
    assert " s scoring; " in lines[-1] and "; run in " in lines[-1]
    assert captured.err == ""
    config = json.loads((out / "config.json").read_text())
    assert config["downsample"] == "nearest"
    assert config["val_file"]["n_events"] == 40
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_val"] == 40
    assert metrics["score_time_s"] > 0
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
    assert "not a Keras model file" in _one_error_line(capsys, "eval-cnn")
    assert not (tmp_path / "e").exists()


def test_eval_cnn_says_what_it_assumes_and_takes_flags(run, files, tmp_path, capsys, caplog):
    """Without config.json beside the model eval-cnn warns that it assumes max pooling;
    --downsample states it; a --downsample other than the run's is used, with a warning."""
    import shutil

    out, _ = run
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(out / "best_model.keras", lone / "model.keras")
    val = str(files / "val.h5")
    assert eval_main([str(lone / "model.keras"), val, "--out", str(tmp_path / "a")]) == 0
    assert "no run configuration (config.json) beside" in caplog.text
    assert "assuming max downsampling of the 64x64 images to the model's 16x16 input" in (
        caplog.text
    )
    caplog.clear()
    args = [str(lone / "model.keras"), val, "--downsample", "nearest", "--input-size", "16"]
    assert eval_main([*args, "--out", str(tmp_path / "b")]) == 0
    assert caplog.text == ""
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert (m["downsample"], m["input_size"]) == ("nearest", 16)
    # the run's config.json says nearest: --downsample max is used, with a warning
    model = str(out / "best_model.keras")
    assert eval_main([model, val, "--downsample", "max", "--out", str(tmp_path / "c")]) == 0
    assert "--downsample max differs from the run's nearest" in caplog.text
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["downsample"] == "max"
    # an input size the model does not take is refused
    capsys.readouterr()
    assert eval_main([model, val, "--input-size", "32", "--out", str(tmp_path / "d")]) == 2
    assert "--input-size 32 does not match" in _one_error_line(capsys, "eval-cnn")
    assert not (tmp_path / "d").exists()


def test_interrupted_run_prints_a_resume_command_that_runs(files, tmp_path, monkeypatch, capsys):
    """After Ctrl-C the hint holds every original argument (shell-quoted) and --resume."""
    import shlex
    import shutil

    import spectrocnn.cli.train_cnn as cli

    data = tmp_path / "my data"
    data.mkdir()
    shutil.copy(files / "train.h5", data / "train set.h5")
    monkeypatch.chdir(tmp_path)

    def interrupt_in_epoch_2(*args, **kwargs):
        if args and str(args[0]).startswith("Epoch 2:"):
            raise KeyboardInterrupt
        print(*args, **kwargs)

    monkeypatch.setattr(cli, "print", interrupt_in_epoch_2, raising=False)
    argv = ["my data/train set.h5", "--epochs", "2", "--batch-size", "16", "--input-size", "8",
            "--seed", "5"]  # fmt: skip
    assert train_main(argv) == 130  # no --out: the default run directory
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "train-cnn: interrupted"
    prefix = "train-cnn: continue the run with: "
    assert len(err) == 2 and err[0].startswith(prefix), err
    hint = shlex.split(err[0][len(prefix) :])
    run_dir = hint[hint.index("--out") + 1]
    assert hint == ["train-cnn", *argv, "--out", run_dir, "--resume"]
    assert run_dir.startswith("runs/") and (tmp_path / run_dir / "state.json").is_file()
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert train_main(hint[1:]) == 0  # the hint runs as printed
    assert json.loads((tmp_path / run_dir / "metrics.json").read_text())["epochs"] == 2
    assert "Resuming" in capsys.readouterr().out


def test_quiet_runs_print_only_the_summary(files, tmp_path):
    """--quiet train-cnn and eval-cnn write nothing on stderr (no TensorFlow start-up lines,
    no absl or Keras warnings) and one summary line on stdout, in a real process."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    out = tmp_path / "run"
    train = [sys.executable, "-m", "spectrocnn.cli.train_cnn", str(files / "train.h5"),
             "--out", str(out), "--epochs", "1", "--batch-size", "16", "--input-size", "8",
             "--seed", "1", "--legacy-h5", "--quiet"]  # fmt: skip
    proc = subprocess.run(train, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("train-cnn: best val_accuracy ")
    assert len(proc.stdout.splitlines()) == 1
    evaluate = [sys.executable, "-m", "spectrocnn.cli.eval_cnn", str(out / "best_model.h5"),
                str(files / "val.h5"), "--out", str(tmp_path / "eval"), "--quiet"]  # fmt: skip
    proc = subprocess.run(evaluate, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("eval-cnn: accuracy ") and len(proc.stdout.splitlines()) == 1


def test_resume_with_more_epochs_extends_a_finished_run(files, tmp_path, capsys, monkeypatch):
    """A finished 2-epoch run resumed with --epochs 3 ends where a 3-epoch run of the same
    seed ends: the same history rows, best epoch, metrics and final weights; fewer epochs
    than completed are refused without touching the run."""
    import csv

    import keras

    data = str(files / "train.h5")
    common = [data, "--batch-size", "16", "--input-size", "8", "--seed", "6", "--threads", "1",
              "--quiet"]  # fmt: skip
    full, ext = tmp_path / "full", tmp_path / "ext"
    assert train_main([*common, "--out", str(full), "--epochs", "3"]) == 0
    assert train_main([*common, "--out", str(ext), "--epochs", "2"]) == 0
    assert json.loads((ext / "metrics.json").read_text())["epochs"] == 2
    capsys.readouterr()
    import sys

    with monkeypatch.context() as m:  # a terminal: progress bars, the scoring one too
        m.setattr(sys.stderr, "isatty", lambda: True)
        assert train_main([data, "--out", str(ext), "--resume", "--epochs", "3"]) == 0
    captured = capsys.readouterr()
    assert "already complete" not in captured.out
    out_lines = captured.out.splitlines()
    assert out_lines[0].startswith("Device: ")
    assert out_lines[1].startswith(f"Resuming {ext} at epoch 3")
    assert "Scoring 24 validation and 96 training events" in captured.out
    assert "scoring" in captured.err and "epoch 3/3" in captured.err

    def rows(run):
        with (run / "history.csv").open() as fh:
            return list(csv.DictReader(fh))

    a, b = rows(full), rows(ext)
    assert [int(r["epoch"]) for r in b] == [1, 2, 3]
    for col in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [float(r[col]) for r in b] == pytest.approx([float(r[col]) for r in a], rel=1e-4)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (full, ext))
    assert mb["epochs"] == 3 and mb["best_epoch"] == ma["best_epoch"]
    assert mb["accuracy"] == pytest.approx(ma["accuracy"], abs=1e-6)
    assert json.loads((ext / "config.json").read_text())["epochs"] == 3
    wa = keras.models.load_model(full / "last_model.keras").get_weights()
    wb = keras.models.load_model(ext / "last_model.keras").get_weights()
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-3, atol=1e-5)
    # fewer epochs than completed: one line, exit 2, the run untouched
    before = {p.name: p.read_bytes() for p in ext.iterdir()}
    assert train_main([data, "--out", str(ext), "--resume", "--epochs", "2"]) == 2
    line = _one_error_line(capsys, "train-cnn")
    assert "--epochs 2 is fewer than the 3 epochs" in line
    assert {p.name: p.read_bytes() for p in ext.iterdir()} == before
    # without --epochs: the recorded 3, already complete
    assert train_main([data, "--out", str(ext), "--resume"]) == 0
    assert "already complete (3 epochs)" in capsys.readouterr().out


@pytest.mark.slow
def test_sigkill_then_resume_completes_the_planned_epochs(files, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "spectrocnn.cli.train_cnn",
        str(files / "train.h5"),
        "--out",
        str(out),
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--input-size",
        "32",
        "--seed",
        "1",
        "--quiet",
        "--patience",
        "0",
    ]  # fmt: skip (all 4 epochs)
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
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 4
