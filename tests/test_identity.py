"""Run identity (issue 15): shards that do not belong to their virtual file are refused by
every reader, and train-cnn --resume refuses input files other than the run's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from _helpers import make_sharded, write_event_file

from spectrocnn.dataset import generate_file, open_events
from spectrocnn.dataset.identity import identity_change
from spectrocnn.dataset.shards import SHARD_SCHEMA, VIRTUAL_NAME, shard_name, write_virtual_file
from spectrocnn.errors import EventFileError

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

N = 300  # two shards: events 0:256 and 256:300
SHARD1 = shard_name(1, 2)
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Sharded sets: A (seed 1), A2 (seed 1 again: another run), B (seed 2), C (seed 1,
    32x32 images); 16x16 images unless said, made in this process."""
    d = tmp_path_factory.mktemp("identity")
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as c:
        make_sharded(d / "A", N, 2, seed=1, client=c)
        make_sharded(d / "A2", N, 2, seed=1, client=c)
        make_sharded(d / "B", N, 2, seed=2, client=c)
        make_sharded(d / "C", N, 2, seed=1, config={"image": {"size": 32}}, client=c)
    return d


def _run_id(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return str(f.attrs["run_id"])


def _copy_set(sets: Path, name: str, dest: Path) -> Path:
    shutil.copytree(sets / name, dest)
    return dest / VIRTUAL_NAME


# -- what the files carry -------------------------------------------------------------------


def test_every_shard_and_its_virtual_file_carry_the_run_identity(sets):
    virtual = sets / "A" / VIRTUAL_NAME
    run_id = _run_id(virtual)
    assert HEX32.fullmatch(run_id)
    assert run_id != _run_id(sets / "A2" / VIRTUAL_NAME)  # drawn once per run
    with h5py.File(virtual, "r") as f:
        config = json.loads(f.attrs["config"])
        layout = json.loads(f.attrs["shard_layout"])
    assert config["image"]["size"] == 16
    places = [
        (e["name"], e["shard"], e["n_shards"], e["first_event"], e["n_events"]) for e in layout
    ]
    assert places == [(shard_name(0, 2), 0, 2, 0, 256), (SHARD1, 1, 2, 256, 44)]
    for k, entry in enumerate(layout):
        with h5py.File(sets / "A" / entry["name"], "r") as s:
            assert s.attrs["schema"] == SHARD_SCHEMA
            assert str(s.attrs["run_id"]) == run_id and int(s.attrs["seed"]) == 1
            assert json.loads(s.attrs["config"]) == config
            assert int(s.attrs["shard"]) == k and int(s.attrs["first_event"]) == 256 * k
            assert entry["shapes"]["images"] == [entry["n_events"], 16, 16]
            assert entry["shapes"]["hits/x"] == [s["hits/x"].shape[0]]
    with open_events(virtual) as ev:
        assert ev.run_id == run_id


def test_single_files_carry_a_run_identifier_of_their_own(tmp_path):
    from spectrocnn.config import config_from_dict

    config = config_from_dict({"image": {"size": 16}})
    generate_file(config, 5, tmp_path / "a.h5", seed=4, workers=1)
    generate_file(config, 5, tmp_path / "b.h5", seed=4, workers=1)
    write_event_file(tmp_path / "c.h5", n=4, size=16)
    ids = [_run_id(tmp_path / f"{x}.h5") for x in "abc"]
    assert all(HEX32.fullmatch(i) for i in ids) and len(set(ids)) == 3
    with open_events(tmp_path / "a.h5") as ev:
        assert ev.run_id == ids[0]


# -- every mismatch between a virtual file and a shard --------------------------------------


def _replace_with(source: str):
    def mutate(sets: Path, d: Path) -> None:
        shutil.copyfile(sets / source / SHARD1, d / SHARD1)

    return mutate


def _edit_shard(edit):
    def mutate(sets: Path, d: Path) -> None:
        with h5py.File(d / SHARD1, "r+") as f:
            edit(f)

    return mutate


def _hits_one_row_short(f: h5py.File) -> None:
    f["hits/x"].resize((f["hits/x"].shape[0] - 1,))


MISMATCHES = {
    "seed": (_replace_with("B"), "belongs to another run (seed 2, expected 1)"),
    "run_id": (_replace_with("A2"), "belongs to another run (run_id {A2}, expected {A})"),
    "configuration": (
        _replace_with("C"),
        "belongs to another run (configuration: image.size 32, expected 16)",
    ),
    "no run_id": (
        _edit_shard(lambda f: f.attrs.__delitem__("run_id")),
        "belongs to another run (no run_id, expected {A})",
    ),
    "index": (
        lambda sets, d: shutil.copyfile(d / shard_name(0, 2), d / SHARD1),
        "is shard 0 of 2, expected 1 of 2",
    ),
    "first event": (
        _edit_shard(lambda f: f.attrs.__setitem__("first_event", np.int64(200))),
        "holds events 200:244, expected 256:300",
    ),
    "shape": (_edit_shard(_hits_one_row_short), "has /hits/x of shape ({h},), expected ({h1},)"),
    "not a shard": (
        _edit_shard(lambda f: f.attrs.__setitem__("schema", "spectrocnn.events/1")),
        "is not a complete shard file (schema 'spectrocnn.events/1')",
    ),
}


def _message(sets: Path, d: Path, template: str) -> str:
    with h5py.File(sets / "A" / SHARD1, "r") as f:
        h1 = f["hits/x"].shape[0]
    names = {"A": _run_id(sets / "A" / VIRTUAL_NAME), "A2": _run_id(sets / "A2" / VIRTUAL_NAME)}
    return f"{d / VIRTUAL_NAME}: shard {SHARD1} " + template.format(h=h1 - 1, h1=h1, **names)


@pytest.mark.parametrize("kind", list(MISMATCHES))
def test_open_events_refuses_a_shard_that_does_not_match(sets, tmp_path, kind):
    mutate, template = MISMATCHES[kind]
    virtual = _copy_set(sets, "A", tmp_path / "A")
    with open_events(virtual):
        pass
    mutate(sets, tmp_path / "A")
    with pytest.raises(EventFileError) as err:
        open_events(virtual)
    assert str(err.value) == _message(sets, tmp_path / "A", template)


@pytest.mark.parametrize("kind", ["seed", "configuration", "index", "shape"])
def test_the_chunk_decoder_refuses_a_shard_that_does_not_match(sets, tmp_path, kind):
    """train-cnn's loader reads the shards itself: it checks each one it opens."""
    from spectrocnn.model.data import load_images

    mutate, template = MISMATCHES[kind]
    virtual = _copy_set(sets, "A", tmp_path / "A")
    with open_events(virtual) as ev:  # good when opened; a shard replaced before reading
        mutate(sets, tmp_path / "A")
        with pytest.raises(EventFileError) as err:
            load_images(ev, 8, "max", workers=1)
    assert str(err.value) == _message(sets, tmp_path / "A", template)


def test_write_virtual_file_refuses_shards_of_two_runs(sets, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copyfile(sets / "A" / shard_name(0, 2), d / shard_name(0, 2))
    shutil.copyfile(sets / "B" / SHARD1, d / SHARD1)
    with pytest.raises(EventFileError, match=r"shard-00001-of-00002\.h5 belongs to another run "
                       r"\(seed 2, expected 1\)"):  # fmt: skip
        write_virtual_file(d / VIRTUAL_NAME, [d / shard_name(0, 2), d / SHARD1])
    assert not (d / VIRTUAL_NAME).exists()


def _strip_identity(directory: Path) -> None:
    """Make a set look written before run identifiers: no run_id, no shard_layout."""
    for p in directory.glob("*.h5"):
        with h5py.File(p, "r+") as f:
            for k in ("run_id", "shard_layout"):
                if k in f.attrs:
                    del f.attrs[k]


def test_files_written_before_run_identifiers_stay_readable(sets, tmp_path):
    from spectrocnn.model.data import load_images

    virtual = _copy_set(sets, "A", tmp_path / "old")
    _strip_identity(tmp_path / "old")
    with open_events(virtual) as ev, open_events(sets / "A" / VIRTUAL_NAME) as new:
        assert ev.run_id is None
        assert np.array_equal(ev.read_images(250, 260), new.read_images(250, 260))
        assert np.array_equal(load_images(ev, 8, workers=1).images, load_images(new, 8).images)
    # what an old virtual file records (seed, configuration, shard order) is still checked
    shutil.copyfile(sets / "B" / SHARD1, tmp_path / "old" / SHARD1)
    with pytest.raises(EventFileError, match=r"shard-00001-of-00002\.h5 belongs to another run "
                       r"\(seed 2, expected 1\)"):  # fmt: skip
        open_events(virtual)
    shutil.copyfile(sets / "C" / SHARD1, tmp_path / "old" / SHARD1)
    with pytest.raises(EventFileError, match=r"configuration: image\.size 32, expected 16"):
        open_events(virtual)


def test_a_virtual_file_of_schema_1_takes_shards_of_schema_1_only(sets, tmp_path):
    """Shards are of their virtual file's schema version: a sharded set written before
    schema 2 (``spectrocnn.events/1`` over ``spectrocnn.events-shard/1``) stays readable,
    and a shard of the other version is refused."""
    virtual = _copy_set(sets, "A", tmp_path / "old")
    with h5py.File(virtual, "r+") as f:
        f.attrs["schema"] = "spectrocnn.events/1"
    with pytest.raises(EventFileError, match=r"is not a complete shard file \(schema "
                       r"'spectrocnn.events-shard/2'\)"):  # fmt: skip
        open_events(virtual)
    for k in range(2):
        with h5py.File(tmp_path / "old" / shard_name(k, 2), "r+") as f:
            f.attrs["schema"] = "spectrocnn.events-shard/1"
    with open_events(virtual) as ev:
        assert ev.schema == "spectrocnn.events/1" and not ev.has_hit_momentum
        assert ev.truth(250, 260).n_events == 10


# -- the issue's example through the commands -----------------------------------------------


def test_issue_example_foreign_shard_through_the_commands(tmp_path, capsys, monkeypatch):
    """gen-events twice (seeds 1 and 2), shard 1 of the second copied into the first: every
    reading command refuses eA/events.h5 (train-cnn and eval-cnn: tests/test_errors.py)."""
    from spectrocnn.cli import export_events, fit_tracks, gen_events, show_event

    monkeypatch.chdir(tmp_path)
    Path("eff.toml").write_text("[detector]\nefficiency = 0.9\n")
    for out, seed in (("eA", "1"), ("eB", "2")):
        args = ["--n", "600", "--out", out, "--shards", "3", "--seed", seed, "--image-size",
                "16", "--workers", "1", "--config", "eff.toml"]  # fmt: skip
        assert gen_events.main(args) == 0
    assert fit_tracks.main(["eA/events.h5"]) == 0
    shutil.copyfile("eB/shard-00001-of-00003.h5", "eA/shard-00001-of-00003.h5")
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    line = (
        "error: eA/events.h5: shard shard-00001-of-00003.h5 belongs to another run "
        "(seed 2, expected 1)"
    )
    for main, args in (
        (fit_tracks.main, ["eA/events.h5"]),
        (show_event.main, ["eA/events.h5", "--index", "300", "--out", "x.png"]),
        (export_events.main, ["eA/events.h5", "--format", "png", "--out", "png"]),
        (export_events.main, ["eA/events.h5", "--format", "trackml", "--out", "csv"]),
    ):
        assert main(args) == 1
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith(line), captured.err
        assert "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# -- the files of a training run ------------------------------------------------------------


def test_identity_change_names_what_differs(tmp_path):
    write_event_file(tmp_path / "a.h5", n=6, size=16, seed=1)
    with open_events(tmp_path / "a.h5") as ev:
        rec = ev.identity()
    assert rec["seed"] == 1 and rec["n_events"] == 6 and HEX32.fullmatch(rec["run_id"])
    assert rec["path"] == str(tmp_path / "a.h5") and len(rec["fingerprint"]) == 64
    assert identity_change(rec, dict(rec)) is None
    assert identity_change(rec, {**rec, "seed": 2}) == "seed 2, was 1"
    assert identity_change(rec, {**rec, "n_events": 9}) == "n_events 9, was 6"
    assert (
        identity_change(rec, {**rec, "run_id": "f" * 32})
        == f"run_id {'f' * 32}, was {rec['run_id']}"
    )
    # a file without run_id: the fingerprint of its attributes and shapes decides
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        del f.attrs["run_id"]
    with open_events(tmp_path / "a.h5") as ev:
        old = ev.identity()
    assert old["run_id"] is None and old["fingerprint"] != rec["fingerprint"]
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        f.attrs["created"] = "2020-01-01T00:00:00+00:00"
    with open_events(tmp_path / "a.h5") as ev:
        assert "fingerprint" in identity_change(old, ev.identity())
    # a record of a run made before run identities: path, seed and size only
    legacy = {"path": rec["path"], "n_events": 6, "seed": 1, "image_shape": [16, 16]}
    assert identity_change(legacy, rec) is None
    assert identity_change(legacy, {**rec, "seed": 3}) == "seed 3, was 1"


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer:UserWarning")
def test_resume_on_a_regenerated_training_or_validation_file_is_refused(tmp_path, capsys):
    from spectrocnn.cli.train_cnn import main as train_main
    from spectrocnn.model.train import TrainConfig, train

    t, v, out = tmp_path / "t.h5", tmp_path / "v.h5", tmp_path / "run"
    write_event_file(t, n=32, size=16, seed=1)
    write_event_file(v, n=16, size=16, seed=2)
    keep = tmp_path / "keep"
    keep.mkdir()
    shutil.copy2(t, keep / "t.h5")
    shutil.copy2(v, keep / "v.h5")
    config = TrainConfig(input=str(t), val=str(v), epochs=3, batch_size=8, input_size=8, seed=5)

    def report(line: str) -> None:  # stop once an epoch is saved
        state = out / "state.json"
        if state.is_file() and json.loads(state.read_text())["completed_epochs"] >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, out, report=report)
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["input_file"]["seed"] == 1 and recorded["val_file"]["seed"] == 2
    assert HEX32.fullmatch(recorded["input_file"]["run_id"])
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    resume = [str(t), "--out", str(out), "--resume", "--quiet"]

    write_event_file(t, n=32, size=16, seed=9)  # regenerated at the same path, another seed
    capsys.readouterr()
    assert train_main(resume) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"train-cnn: error: --resume: {t} is not the file this run was trained on "
        "(seed 9, was 1); start a new run with another --out"
    ]
    shutil.copy2(keep / "t.h5", t)
    write_event_file(v, n=16, size=16, seed=2)  # the same seed: the same images, another run
    assert train_main(resume) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"train-cnn: error: --resume: {v} is not the file this run was validated on (run_id "
    ), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot  # nothing touched

    shutil.copy2(keep / "v.h5", v)  # the run's own files: it resumes
    assert train_main(resume) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3
