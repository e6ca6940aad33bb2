"""Streaming training and evaluation (issue 18 item 1): the budget, the order of a streamed
epoch, the workers' shares, the reading thread, and train-cnn / eval-cnn on files whose
downsampled images exceed the budget.

The expected values come from the definitions in the module docstring of
``spectrocnn.model.streaming`` (blocks of consecutive training events, windows of whole
blocks, global batches cut into replica slices), computed here independently.
"""

from __future__ import annotations

import itertools
import json
import math

import h5py
import numpy as np
import pytest
from _helpers import train_on_local_workers, write_event_file

from spectrocnn.dataset import open_events
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.model import streaming
from spectrocnn.model.data import downsample, epoch_order, split_indices
from spectrocnn.model.streamdata import EventStream, file_order, training_epochs, window_slots
from spectrocnn.model.streaming import (
    StreamPlan,
    batch_bounds,
    plan_streaming,
    stream_order,
    streamed_set,
    window_blocks,
    worker_positions,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

N, SIZE, INPUT = 300, 32, 16
TINY = 0.01  # MB: neither 300 x 16 x 16 bytes = 0.073 MB nor their lit pixels (0.017) fit
#              (a window holds 64 events)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(path, images, labels) of a 300-event file of 32x32 images."""
    path = tmp_path_factory.mktemp("stream") / "events.h5"
    images, labels = write_event_file(path, n=N, size=SIZE, seed=4)
    return path, images, labels


# -- the budget -----------------------------------------------------------------------------


def test_the_budget_decides_and_sizes_the_windows(monkeypatch):
    mb = 2**20
    # n * s * s bytes against the budget in MB of 2**20 bytes
    assert plan_streaming(1.0, 32, mb // (32 * 32)) is None  # exactly fits
    plan = plan_streaming(1.0, 32, mb // (32 * 32) + 1)
    assert plan is not None and plan.needed_mb == pytest.approx((mb + 1024) / mb)
    # half the budget in whole blocks of 64 events: 0.5 MB / (64 * 1 KiB) = 8 blocks
    assert plan.window_blocks == 8 == window_blocks(1.0, 32)
    assert plan.window_events == 512
    assert window_blocks(0.001, 256) == 1  # at least one block
    assert plan_streaming(None, 32, 10**9) is None  # no budget: in memory
    monkeypatch.setattr(streaming, "available_memory_mb", lambda: 1001.0)
    assert streaming.default_cache_mb() == 500  # half, whole MB
    monkeypatch.setattr(streaming, "available_memory_mb", lambda: None)
    assert streaming.default_cache_mb() == streaming.FALLBACK_CACHE_MB


def test_available_memory_is_read():
    avail = streaming.available_memory_mb()
    assert avail is None or avail > 0


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), "10", True, None])
def test_bad_budgets_are_refused(bad):
    from spectrocnn.model.trainconfig import TrainConfig

    with pytest.raises(ConfigError, match="cache_mb must be a positive number of MB"):
        streaming.check_cache_mb(bad)
    if bad is not None:
        with pytest.raises(ConfigError, match="cache_mb"):
            TrainConfig(input="x.h5", cache_mb=bad)
    assert TrainConfig(input="x.h5", cache_mb=0.5).cache_mb == 0.5
    assert TrainConfig(input="x.h5", cache_mb=256.0).settings()["cache_mb"] == 256


# -- the order of a streamed epoch ----------------------------------------------------------


def test_a_streamed_epoch_visits_every_event_once_in_windows_of_whole_blocks():
    indices = np.sort(np.random.default_rng(1).choice(5000, 1000, replace=False))
    block, w = 64, 3
    order, windows = stream_order(indices, seed=7, epoch=2, block=block, window_blocks=w)
    assert np.array_equal(np.sort(order), indices)  # every event once
    blocks = np.searchsorted(indices, order) // block  # block of each event, by definition
    n_blocks = math.ceil(len(indices) / block)
    assert windows[0] == 0 and windows[-1] == len(indices)
    assert len(windows) - 1 == math.ceil(n_blocks / w)
    seen = []
    for a, b in itertools.pairwise(windows):
        inside = np.unique(blocks[a:b])
        assert len(inside) <= w
        # whole blocks: every event of each block of the window is in the window
        assert b - a == sum(min(block, len(indices) - k * block) for k in inside)
        seen.extend(inside)
    assert sorted(seen) == list(range(n_blocks))
    again, _ = stream_order(indices, seed=7, epoch=2, block=block, window_blocks=w)
    other, _ = stream_order(indices, seed=7, epoch=3, block=block, window_blocks=w)
    assert np.array_equal(order, again) and not np.array_equal(order, other)


def test_file_position_and_epoch_position_are_uncorrelated():
    """Over many epochs the Pearson correlation of file rank and epoch position is about 0
    (a full shuffle's expectation). The blocks move as wholes, so per epoch it scatters as
    the correlation of a random permutation of the 64 blocks: standard deviation
    1/sqrt(63), 1/sqrt(63 * 20) for the mean of 20 epochs."""
    m = 4096
    r = [
        np.corrcoef(np.arange(m), np.argsort(stream_order(np.arange(m), 1, e, block=64,
                                                          window_blocks=4)[0]))[0, 1]
        for e in range(20)
    ]  # fmt: skip
    assert abs(np.mean(r)) < 4 / math.sqrt(63 * 20)


def test_global_batches_are_cut_into_replica_slices():
    # 10 events, global batch 4, 2 replicas: [0:2, 2:4], [4:6, 6:8], [8:9, 9:10]
    assert batch_bounds(10, 4, 2).tolist() == [[0, 2, 4], [4, 6, 8], [8, 9, 10]]
    # a last global batch of fewer events than replicas is left out
    assert batch_bounds(9, 4, 2).tolist() == [[0, 2, 4], [4, 6, 8]]
    assert batch_bounds(9, 4, 1).tolist() == [[0, 4], [4, 8], [8, 9]]
    assert batch_bounds(0, 4, 1).shape == (0, 2)


@pytest.mark.parametrize(("n", "batch", "replicas", "workers"),
                         [(1000, 32, 1, 1), (1000, 32, 4, 2), (999, 30, 6, 3), (5, 8, 3, 3),
                          (257, 16, 2, 2)])  # fmt: skip
def test_worker_shares_are_disjoint_and_cover_the_epoch(n, batch, replicas, workers):
    global_batch = batch * replicas
    bounds = batch_bounds(n, global_batch, replicas)
    shares = [worker_positions(bounds, w, workers) for w in range(workers)]
    every = np.concatenate([p for p, _ in shares])
    steps = [len(pieces) for _, pieces in shares]
    # the kept events: all global batches but a last one smaller than the replicas
    kept = n if n % global_batch == 0 or n % global_batch >= replicas else n - n % global_batch
    assert np.array_equal(np.sort(every), np.arange(kept))  # disjoint and covering
    assert len(set(steps)) == 1  # the same number of batches on every worker
    for w, (positions, pieces) in enumerate(shares):
        assert np.all(np.diff(positions) > 0) and pieces.sum() == len(positions)
        assert np.all(pieces >= 1)
        # per step, the worker's replicas come in order: np.array_split of the global batch
        for g, start in enumerate(range(0, kept, global_batch)):
            split = np.array_split(np.arange(start, min(start + global_batch, kept)), replicas)
            mine = split[w * replicas // workers : (w + 1) * replicas // workers]
            got = pieces[g * len(mine) : (g + 1) * len(mine)]
            assert [len(s) for s in mine] == got.tolist()
    with pytest.raises(ValueError, match="cannot be shared"):
        worker_positions(batch_bounds(10, 4, 3), 0, 2)


# -- the reading thread ---------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 3])
def test_the_stream_gives_the_events_of_the_order_bit_for_bit(small, threads):
    path, images, labels = small
    expected = downsample(images, INPUT, "max")
    train_idx, val_idx = split_indices(N, 0.2, seed=5)
    with open_events(path) as ev:
        source = streamed_set(ev, INPUT, "max")
    plan = plan_streaming(TINY, INPUT, N)
    assert plan is not None and plan.window_events == 64
    epochs = training_epochs(train_idx, 5, range(1, 3), plan, 32)
    pieces = list(EventStream(source, epochs, workers=threads))
    order = np.concatenate(
        [stream_order(train_idx, 5, e, block=64, window_blocks=1)[0] for e in (1, 2)]
    )
    assert [len(y) for _, y in pieces] == ([32] * 7 + [16]) * 2  # 240 events an epoch
    assert np.array_equal(np.concatenate([x for x, _ in pieces]), expected[order])
    assert np.array_equal(np.concatenate([y for _, y in pieces]), labels[order])
    # validation: file order, pieces spanning several windows
    val = list(EventStream(source, file_order(val_idx, plan, 256),
                           window_slots=window_slots(64, 256), workers=threads))  # fmt: skip
    assert len(val) == 1 and np.array_equal(val[0][0], expected[val_idx])


def test_leaving_a_stream_early_stops_its_thread(small):
    import threading

    path, _, _ = small
    with open_events(path) as ev:
        source = streamed_set(ev, INPUT, "max")
    plan = plan_streaming(TINY, INPUT, N)
    before = threading.active_count()
    it = iter(EventStream(source, training_epochs(np.arange(N), 1, range(5), plan, 8)))
    next(it)
    it.close()
    assert threading.active_count() == before


def test_a_corrupt_image_is_raised_by_the_consumer(small, tmp_path):
    path = tmp_path / "corrupt.h5"
    write_event_file(path, n=100, size=SIZE, seed=1)
    with h5py.File(path, "r+") as f:
        f["images"].id.write_direct_chunk((70, 0, 0), b"\x78\x01garbage")
    with open_events(path) as ev:
        source = streamed_set(ev, INPUT, "max")
    plan = StreamPlan(TINY, INPUT, 64, 1, 1.0)
    stream = EventStream(source, training_epochs(np.arange(100), 1, range(1), plan, 10))
    with pytest.raises(EventFileError, match="image 70 is corrupt"):
        list(stream)
    assert isinstance(stream.error, EventFileError)


# -- training -------------------------------------------------------------------------------


def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _rows(batches) -> list[bytes]:
    """The multiset of (image, label) rows, as sorted byte strings."""
    return sorted(x[i].tobytes() + y[i].tobytes() for x, y in batches for i in range(len(y)))


def test_streamed_and_in_memory_epochs_hold_the_same_events(small):
    """Each epoch of either pipeline holds every training event once (multisets equal)."""
    import tensorflow as tf

    from spectrocnn.model.data import load_images, make_dataset
    from spectrocnn.model.streamdata import fit_data

    path, _, _ = small
    train_idx, val_idx = split_indices(N, 0.2, seed=9)
    with open_events(path) as ev:
        source, memory = streamed_set(ev, INPUT, "max"), load_images(ev, INPUT, "max")
    plan = plan_streaming(TINY, INPUT, N)
    streamed = fit_data(tf, None, (source, source), (train_idx, val_idx), plan, seed=9,
                        epochs=range(0, 2), batch_size=32, val_batch=256)  # fmt: skip
    assert streamed.steps == 8
    got = _batches(streamed.train)
    assert len(got) == 16
    images, labels = tf.constant(memory.images), tf.constant(memory.labels)
    for e in range(2):
        ref = _batches(make_dataset(images, labels, epoch_order(train_idx, 9, e), batch_size=32,
                                    scale=memory.scale))  # fmt: skip
        assert _rows(got[8 * e : 8 * (e + 1)]) == _rows(ref)
        assert len(_rows(ref)) == len(train_idx)
    val_ref = _batches(make_dataset(images, labels, val_idx, batch_size=256, scale=1.0))
    val_got = _batches(streamed.val)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(val_got, val_ref, strict=True))


def _train(path, out, **kwargs):
    from spectrocnn.model.train import TrainConfig, train

    settings = {"epochs": 1, "batch_size": 16, "input_size": INPUT, "seed": 3,
                "arch": "lecture", "val_fraction": 0.2} | kwargs  # fmt: skip
    return train(TrainConfig(input=str(path), **settings), out)


def _weights(run_dir) -> list[np.ndarray]:
    from spectrocnn.model.modelio import load_model

    return load_model(run_dir / "last_model.keras").get_weights()


def test_same_seed_and_budget_give_identical_weights_for_any_decoding_threads(
    small, tmp_path, monkeypatch
):
    from spectrocnn.model import _tf, rundir

    path, _, _ = small
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(_tf, "available_cores", lambda t=threads: t)
        result = _train(path, tmp_path / f"run{threads}", cache_mb=TINY)
        assert result.metrics["n_train"] == 240
        runs.append(tmp_path / f"run{threads}")
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["cache_mb"] == TINY
    assert config["streaming"]["window_events"] == 64
    for a, b in zip(_weights(runs[0]), _weights(runs[1]), strict=True):
        assert np.array_equal(a, b)
    history = [rundir.read_history(r / "history.csv") for r in runs]
    for h in history:
        h.pop("epoch_time_s")
    assert history[0] == history[1]


def test_a_budget_that_the_images_exceed_is_chosen_automatically_and_resumed(
    small, tmp_path, monkeypatch
):
    from spectrocnn.model.train import TrainConfig, train

    path, _, _ = small
    monkeypatch.setattr(streaming, "default_cache_mb", lambda: TINY)
    out = tmp_path / "run"
    config = TrainConfig(input=str(path), epochs=3, batch_size=16, input_size=INPUT, seed=3,
                         arch="lecture")  # fmt: skip
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        if line.startswith("Epoch 2:"):  # before epoch 2 is saved
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, out, report=report)
    assert any(line.startswith("Streaming: ") for line in lines)
    saved = json.loads((out / "config.json").read_text())
    assert saved["cache_mb"] == TINY and saved["streaming"]["cache_mb"] == TINY
    monkeypatch.setattr(streaming, "default_cache_mb", lambda: 10_000)  # not used: the run's
    result = train(config, out, resume=True)
    assert result.initial_epoch == 1 and result.epochs == 3
    assert result.config.cache_mb == TINY
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] == N
    with pytest.raises(ConfigError, match=rf"cache_mb 1 \(run: {TINY}\)"):
        train(TrainConfig(**{**config.settings(), "epochs": 4, "cache_mb": 1}), out, resume=True)


def test_a_small_set_stays_in_memory(small, tmp_path):
    path, _, _ = small
    _train(path, tmp_path / "run", cache_mb=1)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["cache_mb"] == 1 and saved["streaming"] is None


# -- evaluation -----------------------------------------------------------------------------


def test_eval_streams_a_file_that_exceeds_the_budget(small, tmp_path):
    from spectrocnn.model.evaluate import evaluate

    path, _, labels = small
    result = _train(path, tmp_path / "run", cache_mb=1)
    model = result.out_dir / "best_model.keras"
    memory = evaluate(model, path, tmp_path / "mem", cache_mb=1)
    streamed = evaluate(model, path, tmp_path / "str", cache_mb=TINY, explain=1)
    assert not memory.metrics["streamed"] and streamed.metrics["streamed"]
    assert np.array_equal(streamed.labels, labels)
    np.testing.assert_allclose(streamed.scores, memory.scores, rtol=0, atol=1e-6)
    assert (tmp_path / "str" / "explain" / "explain.json").is_file()


@pytest.mark.slow
def test_two_multiworker_workers_stream_their_shares(small, tmp_path):
    """Two worker processes (TF_CONFIG) streaming (--cache-mb below the images): each reads
    its replica's slices; the chief's run directory records two replicas."""
    path, _, _ = small
    args = [[str(path), "--out", str(tmp_path / f"run{index}"), "--epochs", "2",
             "--input-size", str(INPUT), "--batch-size", "8", "--seed", "2", "--arch", "lecture",
             "--cache-mb", str(TINY), "--strategy", "multiworker", "--quiet"]
            for index in range(2)]  # fmt: skip
    for code, err in train_on_local_workers(args, timeout=600):
        assert code == 0, err
        assert "ran out of data" not in err, err
    run0 = tmp_path / "run0"
    metrics = json.loads((run0 / "metrics.json").read_text())
    assert metrics["strategy"] == "multiworker" and metrics["replicas"] == 2
    assert json.loads((run0 / "config.json").read_text())["streaming"]["cache_mb"] == TINY
    assert len((run0 / "history.csv").read_text().strip().splitlines()) == 3


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("regression", lambda n: np.linspace(0.05, 7.3, n)),
        ("multiclass", lambda n: np.arange(n) % 3),
    ],
)
def test_streamed_labels_keep_their_kind_and_values(tmp_path, kind, values):
    """A regression target (float) and class numbers stream as the file stores them, not
    truncated to bytes; the model's float32 ``y`` equals them cast to float32."""
    from spectrocnn.dataset import EventFileWriter, ImageSpec
    from spectrocnn.labels import LabelSpec
    from spectrocnn.simulate.events import HIT_COLUMNS, PARTICLE_COLUMNS, EventBatch
    from spectrocnn.simulate.tables import HitTable, ParticleTable

    n = N  # more than TINY holds
    rng = np.random.default_rng(8)
    images = (rng.random((n, SIZE, SIZE)) < 0.05).astype(np.uint8)
    target = values(n)
    spec = LabelSpec(kind, **({"n_classes": 3} if kind == "multiclass" else {}))
    parts = ParticleTable(**{k: np.zeros(0, dt) for k, (dt, _) in PARTICLE_COLUMNS.items()})
    hits = HitTable(**{k: np.zeros(0, dt) for k, (dt, _) in HIT_COLUMNS.items()})
    path = tmp_path / f"{kind}.h5"
    stored = np.zeros(n, np.uint8)  # the binary labels of the batch; /labels holds target
    with EventFileWriter(path, n, ImageSpec(size=SIZE), seed=1, label_spec=spec) as w:
        w.append(EventBatch(stored, parts, hits), images, labels=target)
    with open_events(path) as ev:
        source = streamed_set(ev, INPUT, "max")
    np.testing.assert_array_equal(source.labels, target)
    order = np.arange(n)
    plan = plan_streaming(TINY, INPUT, n)
    assert plan is not None
    pieces = list(EventStream(source, file_order(order, plan, 64), workers=1))
    got = np.concatenate([y for _, y in pieces])
    np.testing.assert_array_equal(got, target)
    import tensorflow as tf

    from spectrocnn.model.streamdata import stream_dataset

    stream = EventStream(source, file_order(order, plan, 64), workers=1)
    ys = np.concatenate([y.numpy() for _, y in stream_dataset(tf, stream)])
    np.testing.assert_array_equal(ys, target.astype(np.float32))
