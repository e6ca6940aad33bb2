"""``python -m spectrocnn`` lists every command once, with the version; config typos get hints."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import spectrocnn
from spectrocnn.config import config_from_dict
from spectrocnn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_python_m_spectrocnn_lists_every_console_script_and_the_version():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['spectrocnn']\n"
        "try:\n    runpy.run_module('spectrocnn', run_name='__main__')\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "sys.exit(99 if 'tensorflow' in sys.modules else rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"spectrocnn {spectrocnn.__version__}")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    listed = [line.split()[0] for line in lines[2:]]
    assert sorted(listed) == sorted(scripts)
    for line in lines[2:]:
        assert len(line.split(None, 1)[1]) > 20  # a real one-line summary


def test_python_m_spectrocnn_version_and_bad_argument():
    run = [sys.executable, "-m", "spectrocnn"]
    proc = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"spectrocnn {spectrocnn.__version__}"
    proc = subprocess.run([*run, "--bogus"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--bogus" in proc.stderr


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        ({"detector": {"resolution_mu": 30.0}}, "did you mean 'resolution_um'?"),
        ({"n_particle": 3}, "did you mean 'n_particles'?"),
        ({"gun": {"partcle": "mu-"}}, "did you mean 'particle'?"),
        ({"image": {"hit_radius": 1}}, "did you mean 'hit_radius_px'?"),
        ({"detector": {"layers": [{"radius_m": 50.0}]}}, "did you mean 'radius_mm'?"),
    ],
)
def test_unknown_key_suggests_the_near_miss(data, hint):
    with pytest.raises(ConfigError, match="unknown key") as info:
        config_from_dict(data)
    assert str(info.value).endswith(hint)


def test_unknown_key_without_a_near_miss_has_no_hint():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"completely_unrelated": 1})
    assert "did you mean" not in str(info.value)


def test_summary_lines_say_1_event_not_1_events(tmp_path, capsys):
    from spectrocnn.cli import gen_events
    from spectrocnn.cli._common import plural

    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    out = tmp_path / "one.h5"
    assert (
        gen_events.main(["--n", "1", "--out", str(out), "--image-size", "16", "--seed", "1"]) == 0
    )
    line = capsys.readouterr().out
    assert f"wrote 1 event to {out} " in line
