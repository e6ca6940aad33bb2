"""The PyTorch datasets (spectrocnn.torchdata): train-cnn's input, workers, fresh events."""

from __future__ import annotations

import contextlib
import io
import pickle
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _helpers import brute_force_images, write_event_file  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from spectrocnn.config import preset_config  # noqa: E402
from spectrocnn.dataset import generate_file, open_events  # noqa: E402
from spectrocnn.dataset.generate import chunk_events, simulate_chunk  # noqa: E402
from spectrocnn.errors import ConfigError, EventFileError, EventFileNotFoundError  # noqa: E402
from spectrocnn.model.data import load_images  # noqa: E402
from spectrocnn.torchdata import (  # noqa: E402
    TRUTH_FIELDS,
    EventFileDataset,
    FreshEventsDataset,
    epoch_seed,
)

README = Path(__file__).resolve().parents[1] / "README.md"
N_EVENTS = 300  # two gen-events chunks: 256 + 44
SEED = 7


@pytest.fixture(scope="module")
def config():
    """The lecture preset at 64 x 64 (hits one pixel each at this size)."""
    return preset_config("lecture").with_image_size(64)


@pytest.fixture(scope="module")
def event_file(tmp_path_factory, config):
    path = tmp_path_factory.mktemp("torchdata") / "events.h5"
    generate_file(config, N_EVENTS, path, seed=SEED, workers=1)
    return path


def _stack(loader):
    """Every batch of a loader, concatenated: (x, y, {truth})."""
    batches = list(loader)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    truth = None
    if len(batches[0]) == 3:
        truth = {k: torch.cat([b[2][k] for b in batches]) for k in TRUTH_FIELDS}
    return x, y, truth


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for ba, bb in zip(a, b, strict=True):
        assert len(ba) == len(bb)
        torch.testing.assert_close(ba[0], bb[0], rtol=0, atol=0)
        torch.testing.assert_close(ba[1], bb[1], rtol=0, atol=0)
        if len(ba) == 3:
            for k in TRUTH_FIELDS:
                torch.testing.assert_close(ba[2][k], bb[2][k], rtol=0, atol=0)


# -- imports --------------------------------------------------------------------------------


def test_import_without_torch_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # makes `import torch` raise ImportError
        "try:\n"
        "    import spectrocnn.torchdata\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported without torch')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    assert "pip install -e '.[torch]'" in proc.stdout


def test_torchdata_does_not_import_tensorflow(event_file):
    code = (
        "import sys\n"
        "from spectrocnn.config import preset_config\n"
        "from spectrocnn.torchdata import EventFileDataset, FreshEventsDataset\n"
        "EventFileDataset(sys.argv[1], 32, truth=True)[0]\n"
        "EventFileDataset(sys.argv[1], 32, in_memory=True)[0]\n"
        "cfg = preset_config('lecture').with_image_size(32)\n"
        "FreshEventsDataset(cfg, 4, batch_size=4, input_size=16, seed=1, truth=True).batch(0)\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code, str(event_file)], check=True, timeout=120)


# -- the event file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "in_memory"), [("max", False), ("mean", False), ("nearest", False), ("max", True)]
)
def test_items_are_train_cnn_input(event_file, method, in_memory):
    ds = EventFileDataset(event_file, 32, method, in_memory=in_memory)
    x, y, _ = _stack(DataLoader(ds, batch_size=64))
    assert x.dtype == torch.float32 and x.shape == (N_EVENTS, 1, 32, 32)
    assert y.dtype == torch.float32 and y.shape == (N_EVENTS,)
    # train-cnn's input: load_images (its own chunk decoder), then x = min(v * scale, 1)
    with open_events(event_file) as ev:
        data = load_images(ev, 32, method)
    expect = np.minimum(data.images.astype(np.float32) * np.float32(data.scale), 1)
    np.testing.assert_array_equal(x[:, 0].numpy(), expect)
    np.testing.assert_array_equal(y.numpy(), data.labels)
    # ... and the documented definitions on the raw pixels, factor 2
    with h5py.File(event_file, "r") as f:
        raw, labels = f["images"][:], f["labels"][:]
    blocks = raw.reshape(N_EVENTS, 32, 2, 32, 2)
    closed = {
        "max": np.minimum(blocks.max(axis=(2, 4)), 1),
        "mean": (blocks > 0).sum(axis=(2, 4)) / 4,
        "nearest": np.minimum(raw[:, 1::2, 1::2], 1),  # PIL's NEAREST: pixel 2 i + 1
    }[method]
    np.testing.assert_array_equal(x[:, 0].numpy(), closed.astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), labels)
    assert 0 < labels.sum() < N_EVENTS


def test_truth_matches_the_truth_tables(event_file, config):
    ds = EventFileDataset(event_file, 32, truth=True)
    picks = [0, 1, 255, 256, N_EVENTS - 1]
    threshold = config.simulation.gun.p_high_GeV[0]  # the lecture recipe: |p| >= 5 GeV/c
    with open_events(event_file) as ev:
        for i in picks:
            _x, y, truth = ds[i]
            assert set(truth) == set(TRUTH_FIELDS)
            t = ev.truth(i, i + 1)
            p = t.particles
            assert int(truth["event"]) == i
            assert int(truth["n_particles"]) == len(p.px) == 10
            assert int(truth["n_hits"]) == len(t.hits.x)
            assert float(truth["max_pt_GeV"]) == pytest.approx(np.hypot(p.px, p.py).max(), 1e-6)
            n_above = int(np.sum(np.sqrt(p.px**2 + p.py**2 + p.pz**2) >= threshold))
            assert int(truth["n_above_threshold"]) == n_above
            assert float(y) == float(t.labels[0]) == float(n_above > 0)
            assert truth["max_pt_GeV"].dtype == torch.float32
            assert truth["n_hits"].dtype == torch.int64


@pytest.mark.parametrize("in_memory", [False, True])
def test_dataloader_workers_give_identical_batches(event_file, in_memory):
    ds = EventFileDataset(event_file, 32, truth=True, in_memory=in_memory)
    ds[0]  # this process holds the file open now: forked workers must open their own
    runs = []
    for workers in (0, 2):
        loader = DataLoader(
            Subset(ds, range(10, 250)),
            batch_size=16,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(3),
        )
        runs.append(list(loader))
    _assert_batches_equal(runs[0], runs[1])
    assert sorted(torch.cat([b[2]["event"] for b in runs[0]]).tolist()) == list(range(10, 250))


def test_dataset_pickles_without_its_file_handle(event_file):
    ds = EventFileDataset(event_file, 32)
    first = ds[5]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._ev is None
    torch.testing.assert_close(copy[5][0], first[0], rtol=0, atol=0)
    ds.close()
    copy.close()
    torch.testing.assert_close(ds[5][0], first[0], rtol=0, atol=0)  # reopens


def test_indexing(event_file):
    ds = EventFileDataset(event_file, 16)
    assert len(ds) == N_EVENTS
    torch.testing.assert_close(ds[-1][0], ds[N_EVENTS - 1][0], rtol=0, atol=0)
    torch.testing.assert_close(ds[torch.tensor(3)][0], ds[3][0], rtol=0, atol=0)
    items = ds.__getitems__([7, 3, 4, 5, 7])  # runs, out of order, repeated
    for i, item in zip([7, 3, 4, 5, 7], items, strict=True):
        torch.testing.assert_close(item[0], ds[i][0], rtol=0, atol=0)
    with pytest.raises(IndexError, match="outside 0:300"):
        ds[N_EVENTS]
    with pytest.raises(IndexError):
        ds[-N_EVENTS - 1]
    with pytest.raises(TypeError, match="integer"):
        ds[1.5]


def test_bad_inputs(tmp_path, event_file):
    with pytest.raises(EventFileNotFoundError, match="does not exist"):
        EventFileDataset(tmp_path / "missing.h5")
    with pytest.raises(ConfigError, match=r"input size 48 cannot be max-pooled.*input_size"):
        EventFileDataset(event_file, 48)
    with pytest.raises(ConfigError, match="larger than the 64x64 images"):
        EventFileDataset(event_file, 128)
    with pytest.raises(ConfigError, match=r"downsample must be one of .*'bicubic'"):
        EventFileDataset(event_file, 32, "bicubic")
    old = tmp_path / "old.h5"
    write_event_file(old, n=8, size=32)  # no /events/ (as files before issue 19)
    assert len(EventFileDataset(old, 16)) == 8
    with pytest.raises(EventFileError, match=r"truth=True needs /events/.*truth=False"):
        EventFileDataset(old, 16, truth=True)


# -- fresh events ---------------------------------------------------------------------------


def test_fresh_stream_is_the_same_for_any_number_of_workers(config):
    ds = FreshEventsDataset(config, 100, batch_size=16, input_size=32, seed=11, truth=True)
    assert len(ds) == 7  # 6 x 16 + 4
    runs = [list(DataLoader(ds, batch_size=None, num_workers=w)) for w in (0, 1, 2)]
    _assert_batches_equal(runs[0], runs[1])
    _assert_batches_equal(runs[0], runs[2])
    assert [len(b[1]) for b in runs[0]] == [16] * 6 + [4]
    assert torch.cat([b[2]["event"] for b in runs[0]]).tolist() == list(range(100))
    assert runs[0][0][0].shape == (16, 1, 32, 32) and runs[0][0][0].dtype == torch.float32


def test_fresh_epochs_are_gen_events_files(tmp_path, config):
    """With gen-events' chunk size, epoch e is the file of gen-events --seed epoch_seed(s, e)."""
    bs = chunk_events(config.simulation)
    ds = FreshEventsDataset(config, N_EVENTS, batch_size=bs, input_size=32, seed=SEED, truth=True)
    epochs = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        stream = _stack(DataLoader(ds, batch_size=None, num_workers=0))
        path = tmp_path / f"epoch{epoch}.h5"
        generate_file(config, N_EVENTS, path, seed=epoch_seed(SEED, epoch), workers=1)
        from_file = _stack(DataLoader(EventFileDataset(path, 32, truth=True), batch_size=100))
        for a, b in zip(stream[:2], from_file[:2], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for k in TRUTH_FIELDS:
            torch.testing.assert_close(stream[2][k], from_file[2][k], rtol=0, atol=0)
        epochs.append(stream)
    assert epoch_seed(SEED, 0) == SEED
    assert not torch.equal(epochs[0][0], epochs[1][0])
    ds.set_epoch(0)  # an epoch comes back as it was
    torch.testing.assert_close(ds.batch(1)[0], epochs[0][0][bs:], rtol=0, atol=0)


def test_fresh_images_are_the_rasterized_hits(config):
    """Independent of the rasterizer: every hit drawn pixel by pixel, then max-pooled."""
    cfg = config.with_image_size(32)
    ds = FreshEventsDataset(cfg, 20, batch_size=8, input_size=16, seed=3, truth=True)
    x, y, truth = ds.batch(1)
    events = simulate_chunk(cfg.simulation, 3, 1, 8)  # batch 1 of epoch 0: chunk 1 of seed 3
    h = events.hits
    full = brute_force_images(h.x, h.y, h.event, 8, cfg.image)
    pooled = np.minimum(full.reshape(8, 16, 2, 16, 2).max(axis=(2, 4)), 1)
    np.testing.assert_array_equal(x[:, 0].numpy(), pooled.astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), events.labels)
    assert truth["event"].tolist() == list(range(8, 16))
    assert truth["n_hits"].tolist() == np.bincount(h.event, minlength=8).tolist()


def test_epoch_seeds_are_train_cnns():
    """One home: the seeds of train-cnn --generate (tests/test_fresh.py checks them)."""
    from spectrocnn.dataset import fresh

    assert epoch_seed is fresh.epoch_seed


def test_fresh_bad_inputs(config):
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        FreshEventsDataset(config, 10, batch_size=0)
    with pytest.raises(ConfigError, match="n_events must be an integer >= 0"):
        FreshEventsDataset(config, -1)
    with pytest.raises(ConfigError, match=r"input size 128 is larger.*input_size"):
        FreshEventsDataset(config, 10, input_size=128)
    ds = FreshEventsDataset(config, 0, input_size=32)
    assert len(ds) == 0 and list(ds) == []
    assert 0 <= ds.seed < 2**64  # drawn once
    with pytest.raises(IndexError):
        ds.batch(0)
    with pytest.raises(ConfigError, match="epoch"):
        ds.set_epoch(-2)


# -- learning -------------------------------------------------------------------------------


def test_tiny_cnn_loss_decreases(event_file):
    torch.manual_seed(0)
    x, y = next(iter(DataLoader(EventFileDataset(event_file, 32), batch_size=64)))
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 1),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(model(x).squeeze(1), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert max(losses[-5:]) < 0.7 * losses[0], losses


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's PyTorch example, as written, on a small file of 128 x 128 images."""
    text = README.read_text().split("\n## PyTorch\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cfg = preset_config("lecture").with_image_size(128)
    generate_file(cfg, 80, tmp_path / "events.h5", seed=2, workers=1)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2
    for line in lines:
        assert re.fullmatch(r"epoch \d+: .*, val accuracy (0\.\d{4}|1\.0000)", line), line
