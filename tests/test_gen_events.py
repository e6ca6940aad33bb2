"""The gen-events pipeline and command: content, determinism, atomic output, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from _helpers import assert_batches_equal, brute_force_images

from spectrocnn.cli.gen_events import main
from spectrocnn.config import config_from_dict
from spectrocnn.dataset import CHUNK_EVENTS, generate_file, open_events, rasterize
from spectrocnn.dataset.pipeline import simulate_chunk
from spectrocnn.errors import ConfigError
from spectrocnn.simulate import concatenate_batches

SMALL = {"image": {"size": 32}}
N = CHUNK_EVENTS + 44  # two chunks, the last one short


@pytest.fixture(scope="module")
def config():
    return config_from_dict(SMALL)


@pytest.fixture(scope="module")
def made(tmp_path_factory, config):
    """One file made in-process and one with a worker process, same seed."""
    d = tmp_path_factory.mktemp("gen")
    r1 = generate_file(config, N, d / "w1.h5", seed=42, workers=1)
    r2 = generate_file(config, N, d / "w2.h5", seed=42, workers=2)
    return r1, r2


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return out


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_truth_matches_the_simulator_for_the_seed(made, config):
    r1, _ = made
    expected = concatenate_batches(
        [
            simulate_chunk(config.simulation, 42, i, min(CHUNK_EVENTS, N - i * CHUNK_EVENTS))
            for i in range(2)
        ]
    )
    with open_events(r1.path) as ev:
        assert ev.n_events == N and ev.seed == 42
        assert_batches_equal(ev.truth(), expected)
        h = expected.hits
        assert np.array_equal(ev.read_images(), rasterize(h.x, h.y, h.event, N, config.image))
        assert ev.config == config.to_dict()
        assert ev.image_shape == (32, 32)


def test_identical_content_for_one_and_two_workers(made):
    r1, r2 = made
    assert r1.workers == 1 and r2.workers == 2
    a, b = _datasets(Path(r1.path)), _datasets(Path(r2.path))
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name


def _stored_chunks(path: Path) -> dict[str, list[bytes]]:
    """Every chunked dataset's chunks as stored (compressed), in order."""
    out: dict[str, list[bytes]] = {}

    def add(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.chunks is not None:
            dsid = obj.id
            out[name] = [
                dsid.read_direct_chunk(dsid.get_chunk_info(i).chunk_offset)[1]
                for i in range(dsid.get_num_chunks())
            ]

    with h5py.File(path, "r") as f:
        f.visititems(add)
    return out


def test_stored_chunks_identical_for_one_and_two_workers(config, tmp_path, monkeypatch):
    """The writer compresses the truth chunks itself: their bytes (and the images') do not
    depend on the number of processes, nor on where chunks of events and of rows meet."""
    from spectrocnn.dataset import eventfile

    monkeypatch.setattr(eventfile, "TRUTH_CHUNK_ROWS", 1009)  # several chunks per column
    a = _stored_chunks(Path(generate_file(config, N, tmp_path / "a.h5", seed=7, workers=1).path))
    b = _stored_chunks(Path(generate_file(config, N, tmp_path / "b.h5", seed=7, workers=2).path))
    assert a.keys() == b.keys() and "hits/true_px" in a and len(a["images"]) == N
    assert len(a["hits/x"]) > 3
    for name in a:
        assert a[name] == b[name], name


@pytest.mark.parametrize("compression", ["lzf", "none"])
def test_compression_changes_nothing_but_the_filter(made, config, tmp_path, compression):
    r = generate_file(config, N, tmp_path / "c.h5", seed=42, workers=2, compression=compression)
    a, b = _datasets(Path(made[0].path)), _datasets(Path(r.path))
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name
    with h5py.File(r.path, "r") as f:
        assert f["images"].compression == (None if compression == "none" else "lzf")


def test_labels_balanced_as_configured(tmp_path):
    for fraction in (0.5, 0.2):
        cfg = config_from_dict({**SMALL, "high_fraction": fraction})
        r = generate_file(cfg, 400, tmp_path / f"f{fraction}.h5", seed=5, workers=1)
        with open_events(r.path) as ev:
            truth = ev.truth()
            n_high = int(ev.labels.sum())
            # the label says whether the event holds a high-momentum particle
            per_event = np.bincount(truth.particles.event, weights=truth.particles.is_high)
            assert np.array_equal(per_event.astype(np.uint8), ev.labels)
        assert r.n_high == n_high
        sigma = np.sqrt(400 * fraction * (1 - fraction))
        assert abs(n_high - 400 * fraction) <= 3 * sigma


def test_default_seed_is_fresh_and_recorded(tmp_path, config):
    seeds = []
    for name in ("a.h5", "b.h5"):
        r = generate_file(config, 3, tmp_path / name, workers=1)
        with open_events(r.path) as ev:
            assert ev.seed == r.seed
        seeds.append(r.seed)
    assert seeds[0] != seeds[1]
    # and the recorded seed reproduces the file
    again = generate_file(config, 3, tmp_path / "c.h5", seed=seeds[0], workers=1)
    assert np.array_equal(
        _datasets(tmp_path / "a.h5")["hits/x"], _datasets(Path(again.path))["hits/x"]
    )


def test_existing_file_is_untouched_without_overwrite(tmp_path, config):
    out = tmp_path / "ev.h5"
    out.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="exists"):
        generate_file(config, 3, out, seed=1, workers=1)
    assert out.read_bytes() == b"precious"
    generate_file(config, 3, out, seed=1, workers=1, overwrite=True)
    with open_events(out) as ev:
        assert ev.n_events == 3
    assert _leftovers(tmp_path) == ["ev.h5"]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_failure_leaves_nothing_and_keeps_existing_file(tmp_path, config, workers, error):
    out = tmp_path / "ev.h5"
    out.write_bytes(b"precious")
    calls = []

    def progress(k):
        calls.append(k)
        raise error("stop")

    with pytest.raises(error):
        generate_file(
            config, 3 * CHUNK_EVENTS, out, seed=1, workers=workers, overwrite=True,
            progress=progress,
        )  # fmt: skip
    assert calls == [CHUNK_EVENTS]
    assert out.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == ["ev.h5"]


def test_library_argument_errors(tmp_path, config):
    with pytest.raises(ConfigError, match="does not exist"):
        generate_file(config, 3, tmp_path / "no" / "ev.h5")
    with pytest.raises(ConfigError, match="directory"):
        generate_file(config, 3, tmp_path)
    with pytest.raises(ConfigError, match="workers"):
        generate_file(config, 3, tmp_path / "a.h5", workers=0)
    with pytest.raises(ConfigError, match="compression"):
        generate_file(config, 3, tmp_path / "a.h5", compression="zstd")
    with pytest.raises(ConfigError, match="seed"):
        generate_file(config, 3, tmp_path / "a.h5", seed=2**64)
    assert _leftovers(tmp_path) == []


# -- the command ---------------------------------------------------------------------------


def test_command_writes_file_and_summary(tmp_path, capsys):
    out = tmp_path / "ev.h5"
    rc = main(["--n", "20", "--out", str(out), "--seed", "7", "--image-size", "16",
               "--compression", "lzf", "--workers", "1"])  # fmt: skip
    assert rc == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1
    assert "20 events" in summary[0] and "events/s" in summary[0] and "seed 7" in summary[0]
    assert "0 of 200 tracks stopped early" in summary[0]  # lecture: 10 tracks per event
    with open_events(out) as ev:
        assert ev.n_events == 20 and ev.image_shape == (16, 16) and ev.seed == 7
        assert ev.images.compression == "lzf"
        assert ev.config["image"]["size"] == 16
    rc = main(["--n", "5", "--out", str(out), "--overwrite", "--quiet", "--preset", "telescope"])
    assert rc == 0 and capsys.readouterr().out == ""
    with open_events(out) as ev:
        assert ev.n_events == 5 and ev.config["detector"]["preset"] == "telescope"


def _lit_per_isolated_hit(path: Path) -> tuple[list[int], list[float], int]:
    """For every hit whose pixel is more than ``2 r + 1`` pixels (Chebyshev) from every other
    hit of its event, ``r`` the file's hit_radius_px: the lit pixels within ``r + 1`` of its
    pixel and the largest distance [mm] of a lit pixel's centre from its pixel's centre."""
    with h5py.File(path, "r") as f:
        images = f["images"][:]
        r = int(f["images"].attrs["hit_radius_px"])
        x0, x1, _, y1 = f["images"].attrs["window_mm"]
        ev, hx, hy = f["hits/event"][:], f["hits/x"][:], f["hits/y"][:]
    size = images.shape[1]
    pitch = (x1 - x0) / size
    col = np.floor((hx - x0) / pitch).astype(int)
    row = np.floor((y1 - hy) / pitch).astype(int)
    counts, farthest = [], []
    for i in range(len(hx)):
        others = (ev == ev[i]) & (np.arange(len(hx)) != i)
        gap = np.maximum(np.abs(row[others] - row[i]), np.abs(col[others] - col[i]))
        if gap.size and gap.min() <= 2 * r + 1:
            continue
        box = images[ev[i], row[i] - r - 1 : row[i] + r + 2, col[i] - r - 1 : col[i] + r + 2]
        lit = np.argwhere(box)
        counts.append(len(lit))
        farthest.append(float(np.hypot(*(lit - (r + 1)).T).max() * pitch))
    return counts, farthest, r


@pytest.mark.parametrize(("size", "radius_px"), [(64, None), (512, None), (64, 2)])
def test_hit_size_follows_the_image_size(tmp_path, size, radius_px):
    """The lecture's hits are 3.125 mm in radius (2 pixels at 512 over 800 mm): at
    --image-size 64 a hit lights one pixel, at 512 a disk of radius 2; a hit_radius_px
    given in the configuration keeps its meaning (pixels) at any size."""
    layers = "".join(f"[[detector.layers]]\nradius_mm = {r}.0\n" for r in (50, 120, 190))
    toml = tmp_path / "c.toml"
    image = "" if radius_px is None else f"[image]\nhit_radius_px = {radius_px}\n"
    toml.write_text("n_particles = 2\n" + image + layers)
    out = tmp_path / "ev.h5"
    argv = ["--n", "60", "--out", str(out), "--seed", "3", "--image-size", str(size),
            "--config", str(toml), "--workers", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    pitch_mm = 800.0 / size
    r = radius_px if radius_px is not None else int(3.125 // pitch_mm)  # the documented rule
    disk = sum(1 for i in range(-r, r + 1) for j in range(-r, r + 1) if i * i + j * j <= r * r)
    counts, farthest, r_file = _lit_per_isolated_hit(out)
    assert r_file == r
    if radius_px is None:
        assert r == {64: 0, 512: 2}[size]
    assert len(counts) >= 50  # enough isolated hits to mean something
    assert set(counts) == {disk}
    assert max(farthest) <= r * pitch_mm + 1e-9
    if radius_px is None:  # within the 3.125 mm of the configuration
        assert max(farthest) <= 3.125 + 1e-9


def _bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    out = str(tmp_path / "out" / "ev.h5")
    malformed = tmp_path / "malformed.toml"
    malformed.write_text("n_particles = [1, 2\n")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("n_particles = 10\nbogus_key = 1\n")
    negative = tmp_path / "negative.toml"
    negative.write_text('[[detector.layers]]\nkind = "cylinder"\nradius_mm = -50.0\n')
    negative_px = tmp_path / "negative_px.toml"
    negative_px.write_text("[image]\nhit_radius_px = -2\n")
    existing = tmp_path / "out" / "existing.h5"
    return [
        (["--n", "0", "--out", out], "0"),
        (["--n", "-3", "--out", out], "-3"),
        (["--n", "abc", "--out", out], "abc"),
        (["--n", "5"], "--out"),
        (["--n", "5", "--out", str(tmp_path / "missing" / "ev.h5")], "missing"),
        (["--n", "5", "--out", str(existing)], "existing.h5"),
        (["--n", "5", "--out", out, "--config", str(malformed)], "malformed.toml"),
        (["--n", "5", "--out", out, "--config", str(unknown)], "bogus_key"),
        (["--n", "5", "--out", out, "--config", str(negative)], "-50"),
        (["--n", "5", "--out", out, "--config", str(negative_px)], "-2"),
        (["--n", "5", "--out", out, "--preset", "nosuch"], "nosuch"),
        (["--n", "5", "--out", out, "--image-size", "0"], "0"),
        (["--n", "5", "--out", out, "--workers", "-1"], "-1"),
        (["--n", "5", "--out", out, "--seed", "-1"], "-1"),
        (["--n", "5", "--out", out, "--compression", "zip"], "zip"),
        (["--n", "5", "--out", out, "--config", str(tmp_path / "nope.toml")], "nope.toml"),
    ]


def test_bad_input_exit_2_one_line_no_file(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "existing.h5").write_bytes(b"keep me")
    for argv, named in _bad_inputs(tmp_path):
        rc = main(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert rc == 2, (argv, err)
        assert len(lines) == 1, (argv, err)
        assert lines[0].startswith("gen-events: error: "), (argv, err)
        assert named in lines[0], (argv, err)
        assert "Traceback" not in err
        assert _leftovers(tmp_path / "out") == ["existing.h5"], argv
    assert (tmp_path / "out" / "existing.h5").read_bytes() == b"keep me"


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    code = "import sys; from spectrocnn.cli.gen_events import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, **kw
    )


def test_bad_input_through_a_real_process_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gun]\np_low_GeV = [0.5, 0.1]\n")
    for args in (["--n", "-3", "--out", str(tmp_path / "a.h5")],
                 ["--n", "5", "--out", str(tmp_path / "a.h5"), "--config", str(bad)]):  # fmt: skip
        proc = _run(args)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    assert _leftovers(tmp_path) == ["bad.toml"]


def test_help_and_generation_never_import_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from spectrocnn.cli.gen_events import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        f"assert main(['--n', '300', '--out', {str(tmp_path / 'x.h5')!r}, '--image-size', '8',"
        " '--workers', '2', '--quiet']) == 0\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: gen-events" in proc.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_removes_the_temporary_file(tmp_path, sig):
    # Sent to the whole process group, as Ctrl-C in a terminal does: workers included.
    out = tmp_path / "ev.h5"
    code = "import sys; from spectrocnn.cli.gen_events import main; sys.exit(main())"
    args = ["--n", "1000000", "--out", str(out), "--image-size", "64", "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".ev.h5.") for p in tmp_path.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)  # well inside the run
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + signal.SIGTERM), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1, err
    assert _leftovers(tmp_path) == []


def test_write_error_is_one_line_and_leaves_nothing(tmp_path):
    # A file size limit stands in for a full disk: writes fail with EFBIG.
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    out = tmp_path / "ev.h5"
    out.write_bytes(b"keep me")
    args = ["--n", "2000", "--out", str(out), "--image-size", "64", "--workers", "2"]
    proc = _run([*args, "--overwrite"], preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"gen-events: error: cannot write '{out}'"), lines
    assert _leftovers(tmp_path) == ["ev.h5"]
    assert out.read_bytes() == b"keep me"


# -- memory bounds (issue 14, item 6) --------------------------------------------------------


@pytest.mark.parametrize(
    ("particles", "noise", "expected"),
    [
        (10, 0.0, 256),  # the lecture preset: the chunk of every existing file
        (256, 0.0, 256),  # 256 * 16 slots * 256 B * 256 events = 256 MiB exactly
        (257, 0.0, 255),  # floor(2**28 / (256 * 257 * 16))
        (1000, 10.0, 64),  # floor(2**28 / (256 * 1010 * 16)) = floor(64.88)
        (100_000, 0.0, 1),
    ],
)
def test_chunk_events_from_the_memory_budget(particles, noise, expected):
    from spectrocnn.dataset.pipeline import chunk_events

    sim = config_from_dict({"n_particles": particles, "noise": {"hits_per_layer": noise}})
    assert chunk_events(sim.simulation) == expected


def test_small_budgets_split_chunks_and_images_without_changing_the_file(tmp_path, monkeypatch):
    """Heavy settings (a small simulation budget: chunks of 20 events; small raster groups)
    give the images of the documented convention for the simulated hits, chunk by chunk."""
    import spectrocnn.dataset.pipeline as gen

    cfg = config_from_dict(
        {"image": {"size": 37, "hit_radius_px": 3}, "noise": {"hits_per_layer": 1.0}}
    )
    per_event = 256 * (cfg.simulation.n_particles + 1.0) * 16
    monkeypatch.setattr(gen, "_SIM_BUDGET_BYTES", int(20 * per_event))
    monkeypatch.setattr(gen, "_RASTER_PIXELS", 3000)  # about 2 events per group
    assert gen.chunk_events(cfg.simulation) == 20
    n = 50
    for compression in ("gzip", "lzf"):
        out = tmp_path / f"{compression}.h5"
        generate_file(cfg, n, out, seed=3, workers=1, compression=compression)
        expected = concatenate_batches(
            [simulate_chunk(cfg.simulation, 3, i, min(20, n - 20 * i)) for i in range(3)]
        )
        h = expected.hits
        with open_events(out) as ev:
            assert_batches_equal(ev.truth(), expected)
            images = ev.read_images()
        assert np.array_equal(images, brute_force_images(h.x, h.y, h.event, n, cfg.image))


def test_results_held_by_the_writer_are_bounded_and_do_not_change_the_file(
    tmp_path, monkeypatch, made
):
    """With room for a single result in the writing process, two workers still make the
    file of one worker."""
    import spectrocnn.dataset.workers as workers

    monkeypatch.setattr(workers, "_RESULTS_BUDGET_BYTES", 1)
    r1, _ = made
    out = tmp_path / "tight.h5"
    generate_file(config_from_dict(SMALL), N, out, seed=42, workers=2)
    a, b = _datasets(Path(r1.path)), _datasets(out)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
