"""The shared mechanisms (issue 16 item 2): argument checks, seeds, atomic output, and the
one home of each (no module of ``dataset/`` borrows another's private names)."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from spectrocnn._atomic import atomic_output, atomic_outputs, atomic_path, temp_path, write_with
from spectrocnn._validate import check_int, check_number
from spectrocnn.dataset.pipeline import Throughput
from spectrocnn.errors import ConfigError
from spectrocnn.seeds import SEED_BOUND, check_seed, new_seed, stream

SRC = Path(__file__).resolve().parents[1] / "src" / "spectrocnn"

# -- argument checks ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 7, np.int64(7), np.uint8(7), np.int32(-3)])
def test_check_int_accepts_python_and_numpy_integers(value):
    got = check_int("n", value)
    assert type(got) is int and got == int(value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "True"), (np.bool_(True), "np.True_"), (1.0, "1.0"), ("3", "'3'"), (None, "None")],
)
def test_check_int_refuses_bools_floats_and_text(value, shown):
    with pytest.raises(ConfigError) as info:
        check_int("workers", value, minimum=1)
    assert str(info.value) == f"workers must be a positive integer, got {shown}"


@pytest.mark.parametrize(
    ("kw", "value", "message"),
    [
        ({"minimum": 1}, 0, "n must be a positive integer, got 0"),
        ({"minimum": 0}, -1, "n must be an integer >= 0, got -1"),
        ({"minimum": 3}, np.int64(2), "n must be an integer >= 3, got 2"),
        ({"minimum": 0, "maximum": 64}, 65, "n must be an integer in [0, 64], got 65"),
        ({"maximum": 5}, 6, "n must be an integer <= 5, got 6"),
        ({"minimum": 0, "what": "a count"}, -2, "n must be a count, got -2"),
    ],
)
def test_check_int_bounds_and_their_words(kw, value, message):
    with pytest.raises(ConfigError) as info:
        check_int("n", value, **kw)
    assert str(info.value) == message
    edge = kw.get("minimum", kw.get("maximum"))
    assert check_int("n", edge, **kw) == edge  # both bounds are included


def test_check_int_raises_the_class_asked_for():
    with pytest.raises(ValueError, match="radius must be an integer >= 0, got -1") as info:
        check_int("radius", -1, minimum=0, error=ValueError)
    assert type(info.value) is ValueError


@pytest.mark.parametrize("value", [0, 2.5, np.float32(0.25), np.int64(3)])
def test_check_number_accepts_finite_numbers(value):
    got = check_number("x", value)
    assert type(got) is float and got == float(value)


@pytest.mark.parametrize(
    ("value", "shown"), [(True, "True"), (float("nan"), "nan"), (float("inf"), "inf"), ("1", "'1'")]
)
def test_check_number_refuses_bools_text_and_non_finite(value, shown):
    with pytest.raises(ConfigError) as info:
        check_number("field.stepper_tolerance_mm", value)
    assert str(info.value) == f"field.stepper_tolerance_mm must be a finite number, got {shown}"


def test_check_number_bounds():
    assert check_number("f", 0.0, minimum=0.0, below=1.0) == 0.0
    with pytest.raises(ConfigError, match=r"^f must be a number in \[0, 1\), got 1$"):
        check_number("f", 1, minimum=0.0, below=1.0)
    with pytest.raises(ConfigError, match=r"^r must be a finite number >= 0, got -1.5$"):
        check_number("r", -1.5, minimum=0.0)


# -- seeds ----------------------------------------------------------------------------------


def test_seed_range_is_0_to_2_to_the_64():
    assert SEED_BOUND == 2**64
    assert check_seed(0) == 0 and check_seed(2**64 - 1) == 2**64 - 1
    assert check_seed(np.uint64(2**64 - 1)) == 2**64 - 1
    for bad, shown in ((-1, "-1"), (2**64, str(2**64)), (True, "True"), (1.0, "1.0")):
        with pytest.raises(ConfigError) as info:
            check_seed(bad)
        assert str(info.value) == f"seed must be an integer in [0, 2**64), got {shown}"


def test_fresh_seeds_are_63_bit_and_differ():
    seeds = {new_seed() for _ in range(64)}
    assert len(seeds) == 64  # 64 draws of 63 bits: a repeat has probability ~2e-16
    assert all(0 <= s < 2**63 for s in seeds)
    assert max(seeds) >= 2**58  # not a 32-bit policy: P(all 64 below 2**58) = 2**-320


def test_streams_are_numpy_seed_sequence_children():
    """``stream(seed, *key)`` is NumPy's ``SeedSequence(seed, spawn_key=key)``: the root
    stream is ``default_rng(seed)``, and key ``(i,)`` is the i-th child that ``spawn``
    gives (NumPy's documented derivation)."""
    seed = 2**64 - 3
    root = np.random.SeedSequence(seed)
    children = root.spawn(3)
    for i, child in enumerate(children):
        expected = np.random.default_rng(child).integers(0, 2**63, 8)
        assert np.array_equal(stream(seed, i).integers(0, 2**63, 8), expected)
    assert np.array_equal(
        stream(seed).random(5), np.random.default_rng(seed).random(5)
    )  # the root stream
    assert not np.array_equal(stream(seed, 0).random(5), stream(seed, 1).random(5))


# -- atomic output --------------------------------------------------------------------------


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _write(target: Path, text: str = "new", meanwhile=None, fail=None, **kw) -> None:
    """Write ``text`` through :func:`atomic_output` (into ``a.txt`` for a directory); call
    ``meanwhile()`` inside the block, then raise ``fail`` if given."""
    with atomic_output(target, **kw) as tmp:
        assert Path(tmp).parent == target.parent and Path(tmp).name.startswith(f".{target.name}.")
        (Path(tmp) / "a.txt" if kw.get("directory") else Path(tmp)).write_text(text)
        if meanwhile is not None:
            meanwhile()
        if fail is not None:
            raise fail


def test_temp_names_are_hidden_beside_the_target(tmp_path):
    name = Path(temp_path(tmp_path / "out.h5"))
    assert name.parent == tmp_path
    assert name.name.startswith(f".out.h5.{os.getpid()}.") and name.suffix == ".tmp"
    assert temp_path(tmp_path / "out.h5") != temp_path(tmp_path / "out.h5")


def assert_absent(path: Path) -> None:
    assert not path.exists()


@pytest.mark.parametrize("directory", [False, True])
def test_atomic_output_appears_complete_or_not_at_all(tmp_path, directory):
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _write(target, directory=directory, fail=KeyboardInterrupt)
    assert _entries(tmp_path) == []
    _write(target, directory=directory, meanwhile=lambda: assert_absent(target))
    assert _entries(tmp_path) == ["out"]
    assert (target / "a.txt" if directory else target).read_text() == "new"


@pytest.mark.parametrize("directory", [False, True])
def test_an_existing_target_is_replaced_only_with_overwrite(tmp_path, directory):
    target = tmp_path / "out"
    if directory:
        target.mkdir()
        (target / "old.txt").write_text("old")
    else:
        target.write_text("old")

    class Exists(Exception):
        pass

    with pytest.raises(Exists):
        _write(target, overwrite=False, directory=directory, exists=Exists)
    assert _entries(tmp_path) == ["out"]
    assert (target / "old.txt" if directory else target).read_text() == "old"
    _write(target, overwrite=True, directory=directory)
    assert _entries(tmp_path) == ["out"]  # the old one moved aside, then removed
    assert _entries(target) == ["a.txt"] if directory else target.read_text() == "new"


def test_a_file_that_appears_meanwhile_is_not_clobbered(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(FileExistsError):
        _write(target, overwrite=False, meanwhile=lambda: target.write_text("someone else's"))
    assert target.read_text() == "someone else's" and _entries(tmp_path) == ["out"]


def test_an_empty_directory_holds_nothing_to_lose(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    _write(target, overwrite=False, directory=True)
    assert _entries(target) == ["a.txt"]


def test_creation_errors_are_the_callers(tmp_path):
    missing = tmp_path / "missing" / "out"
    with pytest.raises(FileNotFoundError):
        _write(missing)
    with pytest.raises(ConfigError, match="cannot create in"):
        _write(missing, create_error=lambda e: ConfigError(f"cannot create in {e}"))


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "f") as tmp:
            Path(tmp).write_text("x")
        with atomic_output(tmp_path / "d", directory=True):
            pass
        with atomic_path(tmp_path / "p.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750


def test_atomic_path_names_the_target_in_its_errors(tmp_path):
    target = tmp_path / "missing" / "model.keras"
    with pytest.raises(OSError, match=rf"cannot write '{target}': No such file or directory"):
        atomic_path(target).__enter__()
    with atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.suffix == ".keras"  # Keras picks the format by the suffix
        tmp.write_text("m")
    assert _entries(tmp_path) == ["model.keras"]


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


OWNED = ("metrics.json", "a.png", "b.png", "sub/pic_*.png")


def _outputs(out: Path, names: dict[str, str], fail: BaseException | None = None) -> None:
    with atomic_outputs(out, OWNED, last=("metrics.json",)) as tmp:
        for name, text in names.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
        if fail is not None:
            raise fail


def test_atomic_outputs_keep_only_this_runs_outputs_and_the_users_files(tmp_path):
    out = tmp_path / "out"
    _outputs(out, {"a.png": "1", "b.png": "1", "sub/pic_1.png": "1", "metrics.json": "1"})
    (out / "notes.txt").write_text("mine")
    (out / "a.png.bak").write_text("mine")  # not a name the command writes
    assert _tree(out) == ["a.png", "a.png.bak", "b.png", "metrics.json", "notes.txt", "sub",
                          "sub/pic_1.png"]  # fmt: skip
    _outputs(out, {"a.png": "2", "metrics.json": "2"})
    assert _tree(out) == ["a.png", "a.png.bak", "metrics.json", "notes.txt"]  # sub/ emptied
    assert (out / "a.png").read_text() == "2" and (out / "notes.txt").read_text() == "mine"
    (out / "sub").mkdir()
    (out / "sub" / "pic_7.png").write_text("1")
    (out / "sub" / "mine.png").write_text("mine")
    _outputs(out, {"b.png": "3", "metrics.json": "3"})
    assert _tree(out) == ["a.png.bak", "b.png", "metrics.json", "notes.txt", "sub",
                          "sub/mine.png"]  # fmt: skip


def test_atomic_outputs_change_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _outputs(out, {"a.png": "1"}, fail=KeyboardInterrupt())
    assert _entries(tmp_path) == []  # the directory it made is gone again
    _outputs(out, {"a.png": "1", "metrics.json": "1"})
    with pytest.raises(ValueError, match="bad"):
        _outputs(out, {"b.png": "2", "metrics.json": "2"}, fail=ValueError("bad"))
    assert _tree(out) == ["a.png", "metrics.json"]  # no temporary entry either
    assert (out / "metrics.json").read_text() == "1"


def test_atomic_outputs_name_the_file_in_errors(tmp_path):
    out = tmp_path / "out"

    def full(path: Path) -> None:
        raise OSError(28, os.strerror(28))

    with (
        pytest.raises(OSError, match=rf"] cannot write '{out / 'a.png'}': No space left"),
        atomic_outputs(out, OWNED) as tmp,
    ):
        write_with(tmp / "a.png", full)
    assert _entries(tmp_path) == []


# -- one home -------------------------------------------------------------------------------


def test_events_per_s_is_events_over_wall_time():
    class R(Throughput):
        def __init__(self, n: int, t: float) -> None:
            self.n_events, self.elapsed_s = n, t

    assert R(300, 1.5).events_per_s == 200.0
    assert R(3, 0.0).events_per_s == float("inf")


def test_dataset_modules_use_only_public_names_of_each_other():
    """generate, shards, export... share what they share by public names (pipeline.py,
    _atomic.py, seeds.py, _validate.py), never by importing another module's privates."""
    borrowed = []
    for path in sorted((SRC / "dataset").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spectrocnn"):
                borrowed += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert borrowed == []


def test_production_code_has_no_test_hooks():
    """Tests replace public functions (e.g. ``shards.make_shard``); the package reads no
    environment variable of its own."""
    hooks = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        hooks += [
            f"{path.relative_to(SRC)}: {w}"
            for w in ("SPECTROCNN_", "FAULT_ENV", "injected fault")
            if w in text
        ]
    assert hooks == []
