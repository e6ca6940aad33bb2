"""Sharded generation on a real Dask cluster, the virtual event file, multi-device training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from _helpers import assert_batches_equal, train_on_local_workers, write_event_file

from spectrocnn._atomic import temp_path
from spectrocnn.cli.gen_events import main as gen_main
from spectrocnn.config import config_from_dict
from spectrocnn.dataset import CHUNK_EVENTS, generate_file, open_events, shards
from spectrocnn.dataset.shards import (
    SHARD_SCHEMA,
    VIRTUAL_NAME,
    ShardError,
    generate_sharded,
    shard_name,
    shard_ranges,
)
from spectrocnn.errors import ConfigError, EventFileError

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

N = 2 * CHUNK_EVENTS + 88  # 600 events: three chunks, the last one short
SEED = 2024
SHARDS = 3


@pytest.fixture(scope="module")
def config():
    return config_from_dict({"image": {"size": 64}})


@pytest.fixture(scope="module")
def client():
    """A real local Dask cluster of two single-threaded worker processes."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    c = distributed.Client(cluster, set_as_default=False)
    try:
        assert len(c.scheduler_info()["workers"]) == 2
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def made(tmp_path_factory, config, client):
    """The unsharded file and the sharded directory of the same seed."""
    d = tmp_path_factory.mktemp("shards")
    generate_file(config, N, d / "one.h5", seed=SEED, workers=1)
    result = generate_sharded(config, N, d / "sharded", shards=SHARDS, seed=SEED, client=client)
    return d, result


def _content(path: Path) -> tuple[dict[str, np.ndarray], dict[str, dict], dict]:
    """Every dataset's values and attributes, and the root attributes."""
    data: dict[str, np.ndarray] = {}
    attrs: dict[str, dict] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            data[name] = obj[()]
            attrs[name] = {k: obj.attrs[k] for k in obj.attrs}

    with h5py.File(path, "r") as f:
        f.visititems(visit)
        root = {k: f.attrs[k] for k in f.attrs}
    return data, attrs, root


def _assert_same_content(a: Path, b: Path) -> None:
    da, aa, ra = _content(a)
    db, ab, rb = _content(b)
    assert sorted(da) == sorted(db)
    for name in da:
        assert da[name].dtype == db[name].dtype, name
        assert da[name].shape == db[name].shape, name
        assert np.array_equal(da[name], db[name], equal_nan=da[name].dtype.kind == "f"), name
        assert aa[name].keys() == ab[name].keys(), name
        for k in aa[name]:
            assert np.array_equal(aa[name][k], ab[name][k]), (name, k)
    for k in ("schema", "version", "seed", "n_events", "config"):
        assert ra[k] == rb[k], k


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- the shards -----------------------------------------------------------------------------


def test_shards_are_whole_chunks():
    c = CHUNK_EVENTS
    assert shard_ranges(N, 3) == [(0, c), (c, 2 * c), (2 * c, N)]
    assert shard_ranges(N, 1) == [(0, N)]
    assert shard_ranges(10 * c, 4) == [(0, 2 * c), (2 * c, 5 * c), (5 * c, 7 * c), (7 * c, 10 * c)]
    assert shard_name(1, 4) == "shard-00001-of-00004.h5"
    with pytest.raises(ConfigError, match="at most 3 shards"):
        shard_ranges(N, 4)
    with pytest.raises(ConfigError, match="positive"):
        shard_ranges(N, 0)


def test_virtual_file_equals_the_unsharded_file(made):
    """Two worker processes, three shards: the same events as one file of the same seed."""
    d, result = made
    out = d / "sharded"
    assert result.path == str(out / VIRTUAL_NAME)
    assert result.n_events == N and result.seed == SEED and result.workers == 2
    names = [shard_name(k, SHARDS) for k in range(SHARDS)]
    assert _leftovers(out) == sorted([VIRTUAL_NAME, *names])
    assert _leftovers(d) == ["one.h5", "sharded"]  # no temporary directory left
    _assert_same_content(d / "one.h5", out / VIRTUAL_NAME)
    with h5py.File(out / VIRTUAL_NAME, "r") as f:
        assert f["images"].is_virtual and f["hits/particle"].is_virtual
        assert [s.file_name for s in f["images"].virtual_sources()] == names  # relative
        assert list(f.attrs["shards"]) == names
    with open_events(d / "one.h5") as one:
        assert result.n_high == int(one.labels.sum())


def test_shard_files_hold_global_indices_and_are_not_event_files(made):
    d, _ = made
    path = d / "sharded" / shard_name(1, SHARDS)
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == SHARD_SCHEMA
        assert int(f.attrs["first_event"]) == CHUNK_EVENTS
        assert f["images"].shape[0] == CHUNK_EVENTS
        ev = f["particles/event"][()]
        assert ev[0] == CHUNK_EVENTS and ev[-1] == 2 * CHUNK_EVENTS - 1
        assert f["particles/offsets"][0] == 0
    with pytest.raises(EventFileError, match="schema"):
        open_events(path)


def test_readers_take_the_virtual_file_like_any_other(made, tmp_path, capsys):
    from spectrocnn.cli.fit_tracks import main as fit_main
    from spectrocnn.cli.show_event import main as show_main
    from spectrocnn.dataset.blocks import direct_sources, virtual_sources
    from spectrocnn.model.data import load_images

    d, _ = made
    virtual = d / "sharded" / VIRTUAL_NAME
    with open_events(d / "one.h5") as one, open_events(virtual) as ev:
        assert ev.n_events == N and ev.seed == SEED and ev.config == one.config
        assert np.array_equal(ev.labels, one.labels)
        lo, hi = CHUNK_EVENTS - 6, 2 * CHUNK_EVENTS + 6  # across both shard boundaries
        assert np.array_equal(ev.read_images(lo, hi), one.read_images(lo, hi))
        assert_batches_equal(ev.truth(lo, hi), one.truth(lo, hi))
        assert_batches_equal(ev.truth(), one.truth())
        assert ev.has_hit_momentum  # the virtual file maps the momentum at the hits too
        for col in ("true_px", "true_py", "true_pz"):
            a, b = getattr(ev.truth().hits, col), getattr(one.truth().hits, col)
            assert np.array_equal(a, b, equal_nan=True), col
        assert np.array_equal(ev.hit_offsets, one.hit_offsets)
        # train-cnn's loader decodes the shards' chunks directly
        assert [s.rows for s in virtual_sources(ev.path, ev.images)] == shard_ranges(N, SHARDS)
        assert [p[1:] for p in direct_sources(ev)] == shard_ranges(N, SHARDS)
        for method in ("max", "nearest"):
            a, b = load_images(ev, 16, method), load_images(one, 16, method)
            assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    for path in (virtual, d / "one.h5"):
        assert show_main([str(path), "--index", "300", "--truth", "--out",
                          str(tmp_path / f"{path.stem}.png")]) == 0  # fmt: skip
        assert fit_main([str(path), "--json"]) == 0
    out = capsys.readouterr().out
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 2
    for k in reports[0]:
        if k not in ("file", "seconds"):
            assert reports[0][k] == reports[1][k], k
    assert (tmp_path / "events.png").read_bytes() == (tmp_path / "one.png").read_bytes()


def test_moved_directory_reads_and_a_missing_shard_is_an_error(made, tmp_path, monkeypatch):
    d, _ = made
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(d / "sharded", moved)
    monkeypatch.chdir(tmp_path)  # sources are found beside the file, not in the cwd
    with open_events(moved / VIRTUAL_NAME) as ev, open_events(d / "one.h5") as one:
        assert np.array_equal(ev.read_images(500, 600), one.read_images(500, 600))
    (moved / shard_name(2, SHARDS)).unlink()
    with pytest.raises(EventFileError, match=r"shard-00002-of-00003\.h5.*missing"):
        open_events(moved / VIRTUAL_NAME)


# -- retries and failures -------------------------------------------------------------------


def _fail_shard(monkeypatch, index: int, once: bool) -> None:
    """Make shard ``index`` fail on every attempt, or (``once``) on its first attempt only;
    a failing attempt leaves a half-written temporary file behind, as a killed one would.

    The failing function replaces ``shards.make_shard``, which ``generate_sharded`` submits
    to the cluster; Dask pickles it by value (a local function), with the real one inside.
    """
    real = shards.make_shard

    def make_shard(task):
        if task.index == index:
            marker = os.path.join(task.directory, f".fault-{task.index}")
            try:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                first = True
            except FileExistsError:
                first = False
            if first or not once:
                with open(temp_path(os.path.join(task.directory, task.name)), "wb") as f:
                    f.write(b"\x89HDF\r\n\x1a\n half a shard")
                raise RuntimeError(f"injected fault in shard {task.index}")
        return real(task)

    monkeypatch.setattr(shards, "make_shard", make_shard)


def test_a_retried_shard_gives_the_identical_file(made, config, client, monkeypatch):
    d, _ = made
    out = d / "retried"
    _fail_shard(monkeypatch, 1, once=True)  # shard 1 fails half-written, the first time
    with pytest.raises(ShardError, match="shard 1 of 3"):  # the fault fires: no retry, no file
        generate_sharded(config, N, out, shards=SHARDS, seed=SEED, client=client, retries=0)
    assert not out.exists()
    result = generate_sharded(config, N, out, shards=SHARDS, seed=SEED, client=client, retries=1)
    assert result.n_events == N
    assert _leftovers(out) == sorted(
        [VIRTUAL_NAME, *(shard_name(k, SHARDS) for k in range(SHARDS))]
    )
    _assert_same_content(d / "one.h5", out / VIRTUAL_NAME)
    for k in range(SHARDS):
        _assert_same_content(d / "sharded" / shard_name(k, SHARDS), out / shard_name(k, SHARDS))


def test_a_shard_that_keeps_failing_fails_the_command(made, client, tmp_path, capsys, monkeypatch):
    _fail_shard(monkeypatch, 1, once=False)
    out = tmp_path / "out"
    address = client.scheduler_info()["address"]
    args = ["--n", str(N), "--out", str(out), "--shards", str(SHARDS), "--seed", "1",
            "--image-size", "64", "--retries", "1", "--scheduler", address]  # fmt: skip
    assert gen_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("gen-events: error: shard 1 of 3 (shard-00001-of-00003.h5, events ")
    assert "failed 2 times" in err[0] and "injected fault" in err[0]
    assert _leftovers(tmp_path) == []  # no directory, no events.h5, no temporaries
    # an existing output is kept as it was
    d, _ = made
    shutil.copytree(d / "sharded", out)
    before = _content(out / VIRTUAL_NAME)[2]["created"]
    assert gen_main([*args, "--overwrite"]) == 1
    assert _content(out / VIRTUAL_NAME)[2]["created"] == before
    assert _leftovers(tmp_path) == ["out"]


# -- the command ----------------------------------------------------------------------------


def test_command_on_its_own_local_cluster(made, tmp_path, capsys):
    """gen-events --shards starts (and stops) a local cluster of --workers processes."""
    d, _ = made
    out = tmp_path / "ev"
    args = ["--n", str(N), "--out", str(out), "--shards", "2", "--workers", "2",
            "--seed", str(SEED), "--image-size", "64"]  # fmt: skip
    assert gen_main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert f"{N} events to {out / VIRTUAL_NAME} (2 shards)" in lines[0], lines
    assert f"seed {SEED}" in lines[0]
    assert _leftovers(out) == sorted([VIRTUAL_NAME, shard_name(0, 2), shard_name(1, 2)])
    _assert_same_content(d / "one.h5", out / VIRTUAL_NAME)


def test_command_usage_errors(made, tmp_path, capsys, monkeypatch):
    d, _ = made
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    shutil.copytree(d / "sharded", tmp_path / "old")
    base = ["--n", str(N), "--image-size", "64"]
    cases = [
        ([*base, "--out", "x", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --shards"),
        ([*base, "--out", "x", "--retries", "1"], "--retries needs --shards"),
        ([*base, "--out", "x", "--shards", "0"], "--shards"),
        ([*base, "--out", "x", "--shards", "4"], "at most 3 shards"),
        ([*base, "--out", "x", "--shards", "2", "--retries", "-1"], "--retries"),
        ([*base, "--out", "old", "--shards", "2"], "exists"),
        ([*base, "--out", "full", "--shards", "2", "--overwrite"], "notes.txt"),
        ([*base, "--out", "missing/x", "--shards", "2"], "does not exist"),
    ]
    monkeypatch.chdir(tmp_path)
    for argv, words in cases:
        assert gen_main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("gen-events: error: "), (argv, err)
        assert words in err[0], (argv, err)
    monkeypatch.setitem(sys.modules, "distributed", None)  # Dask not installed
    assert gen_main([*base, "--out", "x", "--shards", "2"]) == 2
    assert "pip install 'spectrocnn[dask]'" in capsys.readouterr().err
    assert _leftovers(tmp_path) == ["full", "old"]
    assert _leftovers(tmp_path / "full") == ["notes.txt"]


def test_library_errors(config, tmp_path, monkeypatch):
    monkeypatch.setattr("spectrocnn.dataset.cluster._CONNECT_TIMEOUT", "1s")
    with pytest.raises(ConfigError, match="retries"):
        generate_sharded(config, N, tmp_path / "x", shards=2, retries=-1)
    with pytest.raises(ConfigError, match="positive"):
        generate_sharded(config, 0, tmp_path / "x", shards=1)
    with pytest.raises(ShardError, match="cannot connect to the Dask scheduler"):
        generate_sharded(config, N, tmp_path / "x", shards=2, scheduler="tcp://127.0.0.1:1")
    assert _leftovers(tmp_path) == []


# -- training -------------------------------------------------------------------------------


def test_train_cnn_trains_on_the_virtual_file(made, tmp_path, capsys):
    from spectrocnn.cli.train_cnn import main as train_main

    d, _ = made
    out = tmp_path / "run"
    args = [str(d / "sharded" / VIRTUAL_NAME), "--out", str(out), "--epochs", "1",
            "--input-size", "16", "--batch-size", "64", "--seed", "3", "--quiet"]  # fmt: skip
    assert train_main(args) == 0
    assert capsys.readouterr().out.startswith("train-cnn: best val_accuracy ")
    config = json.loads((out / "config.json").read_text())
    assert config["input_file"]["n_events"] == N
    assert config["distribution"] == {"strategy": "default", "replicas": 1, "global_batch_size": 64}
    assert json.loads((out / "metrics.json").read_text())["n_train"] == N - round(0.2 * N)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "train.h5"
    write_event_file(path, n=120, seed=5)
    return path


def test_strategy_mirrored_trains_on_the_cpu(small, tmp_path, capsys):
    from spectrocnn.cli.train_cnn import main as train_main

    out = tmp_path / "run"
    args = [str(small), "--out", str(out), "--epochs", "1", "--input-size", "16",
            "--batch-size", "8", "--seed", "2", "--strategy", "mirrored"]  # fmt: skip
    assert train_main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    training = next(ln for ln in lines if ln.startswith("Training:"))
    assert "batch 8 (8 x 1 replica, mirrored)" in training, lines
    assert lines[-1].startswith("train-cnn: best val_accuracy ")
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "mirrored"
    assert config["distribution"] == {"strategy": "mirrored", "replicas": 1, "global_batch_size": 8}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"] == "mirrored" and metrics["epochs"] == 1
    assert (out / "best_model.keras").is_file() and (out / "last_model.keras").is_file()


def test_strategy_errors(small, tmp_path, capsys):
    from spectrocnn.cli.train_cnn import main as train_main
    from spectrocnn.model.train import TrainConfig

    with pytest.raises(ConfigError, match="strategy"):
        TrainConfig(input=str(small), strategy="tpu")
    assert train_main([str(small), "--strategy", "tpu"]) == 2
    assert "--strategy" in capsys.readouterr().err


@pytest.mark.slow
def test_mirrored_run_resumes_after_an_interruption(small, tmp_path):
    from spectrocnn.model.train import TrainConfig, train

    config = TrainConfig(input=str(small), epochs=3, batch_size=8, input_size=16, seed=7,
                         strategy="mirrored")  # fmt: skip
    out = tmp_path / "run"

    def report(line: str) -> None:
        if line.startswith("Epoch 2:"):  # before epoch 2 is saved
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, out, report=report)
    assert json.loads((out / "state.json").read_text())["completed_epochs"] == 1
    result = train(config, out, resume=True)
    assert result.initial_epoch == 1 and result.epochs == 3
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]  # history.csv counts from 1


@pytest.mark.slow
def test_strategy_multiworker_without_tf_config_trains_one_worker(small, tmp_path):
    out = tmp_path / "run"
    code = "import sys; from spectrocnn.cli.train_cnn import main; sys.exit(main())"
    args = [str(small), "--out", str(out), "--epochs", "1", "--input-size", "16",
            "--batch-size", "8", "--seed", "2", "--strategy", "multiworker", "--quiet"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"] == "multiworker" and metrics["replicas"] == 1


@pytest.mark.slow
def test_strategy_multiworker_on_two_local_workers(small, tmp_path):
    """Two worker processes (TF_CONFIG): two replicas; only the chief writes --out."""
    args = [[str(small), "--out", str(tmp_path / f"run{index}"), "--epochs", "1",
             "--input-size", "16", "--batch-size", "8", "--seed", "2",
             "--strategy", "multiworker", "--quiet"] for index in range(2)]  # fmt: skip
    for code, err in train_on_local_workers(args):
        assert code == 0, err
        assert "ran out of data" not in err, err
    metrics = json.loads((tmp_path / "run0" / "metrics.json").read_text())
    assert metrics["strategy"] == "multiworker" and metrics["replicas"] == 2
    assert metrics["global_batch_size"] == 16
    assert not (tmp_path / "run1").exists()  # a worker's run directory is temporary
