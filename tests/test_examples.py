"""The examples run (small sizes) and pass their own closed-form checks."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> int:
    argv = sys.argv
    sys.argv = [name, *args]
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = argv
    return 0


def test_field_map_example(tmp_path):
    assert run_example("field_map.py", "--out", str(tmp_path), "--step-mm", "10") == 0
    assert (tmp_path / "dipole.npz").exists()
    assert (tmp_path / "dipole.png").exists()


def test_custom_geometry_example(tmp_path):
    code = run_example("custom_geometry.py", "--n", "20", "--size", "64", "--out", str(tmp_path))
    assert code == 0
    assert (tmp_path / "events.h5").exists()
    assert (tmp_path / "custom_geometry.png").exists()


def test_forward_spectrometer_example():
    assert run_example("forward_spectrometer.py", "--n", "100") == 0


def test_lecture_example(tmp_path):
    code = run_example(
        "lecture.py",
        "--n",
        "200",
        "--size",
        "64",
        "--input-size",
        "32",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    )
    assert code == 0
