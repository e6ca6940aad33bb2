"""Your own labels and columns in the event file (issue 22 item 5): written, read back with
plain h5py and with the package's reader, refused where they do not fit, and accepted by
every command (those that need binary labels say in one line what the file has instead).

The expected values are the arrays the test hands to the writer, and counts computed here
from the batch's own columns.
"""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from spectrocnn.cli import export_events, fit_tracks, show_event
from spectrocnn.config import preset_config
from spectrocnn.dataset import (
    EventFileWriter,
    ImageSpec,
    open_events,
    rasterize_sparse,
    write_events,
)
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.labels import LabelSpec, class_weights, one_class_warning, predicted_classes
from spectrocnn.metrics import label_metrics, multiclass_metrics, regression_metrics
from spectrocnn.simulate import Multiplicity, simulate_events

CONFIG = preset_config("lecture")
SPEC = ImageSpec(size=32, window_mm=CONFIG.image.window_mm)


@pytest.fixture(scope="module")
def batch():
    """60 lecture events of 1 to 6 particles (so that hit counts differ)."""
    sim = dataclasses.replace(CONFIG.simulation, n_particles=Multiplicity("uniform", range=(1, 6)))
    return simulate_events(sim, 60, rng=7)


def _n_hits(batch) -> np.ndarray:
    return np.bincount(batch.hits.event, minlength=batch.n_events)


def _own(batch) -> dict:
    """Labels of each kind and columns, computed from the batch."""
    n_hits = _n_hits(batch)
    n_particles = np.bincount(batch.particles.event, minlength=batch.n_events)
    p = batch.particles
    return {
        "binary": n_hits >= np.median(n_hits),
        "multiclass": np.minimum(n_particles - 1, 5) // 2,  # 0, 1, 2
        "regression": n_hits / 16.0,
        "events": {"n_hits": n_hits, "n_particles_f": n_particles.astype(np.float32),
                   "many": n_particles > 3},
        "particles": {"pt_GeV": np.hypot(p.px, p.py), "q_abs": np.abs(p.charge).astype(np.int16)},
    }  # fmt: skip


SPECS = {
    "binary": LabelSpec("binary", name="n_hits >= median"),
    "multiclass": LabelSpec("multiclass", class_names=("few", "some", "many")),
    "regression": LabelSpec("regression", name="n_hits / 16"),
}
STORED = {"binary": np.uint8, "multiclass": np.uint8, "regression": np.float64}


@pytest.mark.parametrize("kind", list(SPECS))
def test_round_trip_with_plain_h5py_and_the_reader(batch, tmp_path, kind):
    own = _own(batch)
    path = tmp_path / f"{kind}.h5"
    write_events(
        path, batch, SPEC, config=CONFIG.to_dict(), labels=own[kind], label_spec=SPECS[kind],
        event_columns=own["events"], particle_columns=own["particles"],
    )  # fmt: skip
    offsets = np.searchsorted(batch.particles.event, np.arange(batch.n_events + 1))
    with h5py.File(path, "r") as f:  # plain h5py, as the README shows
        labels = f["labels"]
        assert labels.dtype == STORED[kind] and labels.shape == (batch.n_events,)
        np.testing.assert_array_equal(labels[:], own[kind])
        assert labels.attrs["label_kind"] == kind
        if kind == "multiclass":
            assert labels.attrs["n_classes"] == 3
            assert [s.decode() if isinstance(s, bytes) else s
                    for s in labels.attrs["class_names"]] == ["few", "some", "many"]  # fmt: skip
        else:
            assert labels.attrs["label_name"] == SPECS[kind].name
        for name, values in own["events"].items():
            ds = f[f"events/user/{name}"]
            want = np.uint8 if values.dtype == bool else values.dtype
            assert ds.dtype == want
            np.testing.assert_array_equal(ds[:], values)
        for name, values in own["particles"].items():
            np.testing.assert_array_equal(f[f"particles/user/{name}"][:], values)
        off = f["particles/offsets"][:]
        np.testing.assert_array_equal(off, offsets)
    with open_events(path) as ev:
        assert ev.label_spec == SPECS[kind]
        assert ev.labels.dtype == SPECS[kind].dtype
        np.testing.assert_array_equal(ev.labels, own[kind])
        np.testing.assert_array_equal(ev.read_labels(5, 9), own[kind][5:9])
        assert ev.event_columns == ("many", "n_hits", "n_particles_f")
        assert ev.particle_columns == ("pt_GeV", "q_abs")
        np.testing.assert_array_equal(ev.read_event_column("n_hits", 3, 11),
                                      own["events"]["n_hits"][3:11])  # fmt: skip
        pt = ev.read_particle_column("pt_GeV", 10, 13)
        np.testing.assert_array_equal(pt, own["particles"]["pt_GeV"][offsets[10] : offsets[13]])
        truth = ev.truth(10, 13)
        np.testing.assert_array_equal(pt, np.hypot(truth.particles.px, truth.particles.py))
        if kind == "binary":
            np.testing.assert_array_equal(truth.labels, own[kind][10:13])
        else:  # the simulation's label: a particle with is_high in the event
            high = np.bincount(batch.particles.event[batch.particles.is_high == 1],
                               minlength=batch.n_events) > 0  # fmt: skip
            np.testing.assert_array_equal(truth.labels, high[10:13])
        with pytest.raises(ConfigError, match=r"has no per-event column 'nhits' \(it has: many"):
            ev.read_event_column("nhits")


def test_a_file_without_label_kind_is_binary_as_before(batch, tmp_path):
    path = tmp_path / "plain.h5"
    write_events(path, batch, SPEC)
    with h5py.File(path, "r") as f:
        assert "label_kind" not in f["labels"].attrs and f["labels"].dtype == np.uint8
        assert "user" not in f["particles"] and "events" not in f
    with open_events(path) as ev:
        assert ev.label_spec == LabelSpec() and ev.label_spec.n_classes == 2
        np.testing.assert_array_equal(ev.labels, batch.labels)
        assert ev.event_columns == () and ev.particle_columns == ()


@pytest.mark.parametrize("flush_rows", [1 << 18, 300])  # once at the end; within blocks
def test_the_streaming_writer_takes_labels_and_columns_per_block(
    batch, tmp_path, monkeypatch, flush_rows
):
    monkeypatch.setattr("spectrocnn.dataset.eventfile._FLUSH_ROWS", flush_rows)
    own = _own(batch)
    path = tmp_path / "stream.h5"
    spec = SPECS["regression"]
    po = np.searchsorted(batch.particles.event, np.arange(batch.n_events + 1))
    from spectrocnn.dataset.eventfile import slice_batch

    with EventFileWriter(path, batch.n_events, SPEC, seed=3, label_spec=spec,
                         event_columns={"n_hits": np.int64},
                         particle_columns={"pt_GeV": "float32"}) as w:  # fmt: skip
        for a, b in ((0, 25), (25, 60)):
            sub = slice_batch(batch, a, b)
            h = sub.hits
            images = rasterize_sparse(*SPEC.project(h.x, h.y, h.z), h.event, b - a, SPEC)
            with pytest.raises(ConfigError, match="particle column 'pt_GeV' missing"):
                w.append(sub, images, labels=own["regression"][a:b],
                         event_columns={"n_hits": own["events"]["n_hits"][a:b]})  # fmt: skip
            with pytest.raises(ConfigError, match="event column 'extra' was not declared"):
                w.append(
                    sub,
                    images,
                    labels=own["regression"][a:b],
                    event_columns={"n_hits": own["events"]["n_hits"][a:b], "extra": [1]},
                    particle_columns={"pt_GeV": own["particles"]["pt_GeV"][po[a] : po[b]]},
                )
            with pytest.raises(ConfigError, match="append needs the events' regression labels"):
                w.append(sub, images)
            w.append(
                sub,
                images,
                labels=own["regression"][a:b],
                event_columns={"n_hits": own["events"]["n_hits"][a:b]},
                particle_columns={"pt_GeV": own["particles"]["pt_GeV"][po[a] : po[b]]},
            )
    with open_events(path) as ev:
        np.testing.assert_array_equal(ev.labels, own["regression"])
        np.testing.assert_array_equal(ev.read_event_column("n_hits"), own["events"]["n_hits"])
        pt = ev.read_particle_column("pt_GeV")
        assert pt.dtype == np.float32
        np.testing.assert_array_equal(pt, own["particles"]["pt_GeV"].astype(np.float32))


@pytest.mark.parametrize(
    ("labels", "spec", "message"),
    [
        ([0, 1, 2], None, r"labels\[2\] is 2: binary labels must be 0 or 1"),
        ([0, 3, 1], LabelSpec("multiclass", n_classes=3),
         r"labels\[1\] is 3: multiclass labels must be an integer in \[0, 3\)"),
        ([0.5, 1.0, 0.0], "binary", r"labels\[0\] is 0.5: binary labels must be 0 or 1"),
        ([1.0, np.nan, 2.0], "regression", r"labels\[1\] is .*nan.*: regression targets must"),
        (["a", "b", "c"], "multiclass", "labels must be numbers, got dtype <U1"),
        ([[0, 1, 1]], None, r"labels must be one value per event \(1-D\)"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused_before_anything_is_written(batch, tmp_path, labels, spec, message):
    from spectrocnn.dataset.eventfile import slice_batch

    path = tmp_path / "bad.h5"
    with pytest.raises(ConfigError, match=message):
        write_events(path, slice_batch(batch, 0, 3), SPEC, labels=labels, label_spec=spec)
    assert not path.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event_columns": {"n": np.arange(5)}}, r"event column 'n' has shape \(5,\), expected"),
        ({"particle_columns": {"pt": np.arange(2)}}, "particle column 'pt' has shape"),
        ({"event_columns": {"2x": np.arange(60)}}, "event column name '2x' must start with a"),
        ({"event_columns": {"a/b": np.arange(60)}}, "event column name 'a/b' must start with a"),
        ({"event_columns": {"s": np.array(["x"] * 60)}}, "event column 's' must hold numbers"),
        ({"labels": np.arange(60) % 4, "label_spec": LabelSpec("multiclass", n_classes=3)},
         r"labels\[3\] is 3"),
        ({"labels": np.zeros(59)}, "59 labels for 60 events"),
    ],
)  # fmt: skip
def test_bad_columns_are_refused_before_anything_is_written(batch, tmp_path, kwargs, message):
    path = tmp_path / "bad.h5"
    with pytest.raises(ConfigError, match=message):
        write_events(path, batch, SPEC, **kwargs)
    assert not path.exists()


def test_label_spec_checks_itself():
    assert LabelSpec("multiclass", class_names=["a", "b", "c"]).n_classes == 3
    assert LabelSpec("multiclass", n_classes=300).stored_dtype == np.int32
    for kwargs, message in (
        ({"kind": "regresion"}, "did you mean 'regression'"),
        ({"kind": "multiclass"}, "multiclass labels need n_classes or class_names"),
        ({"kind": "binary", "n_classes": 3}, "n_classes of binary labels must be 2, got 3"),
        ({"kind": "multiclass", "n_classes": 1}, "must be an integer >= 2, got 1"),
        ({"kind": "multiclass", "n_classes": 3, "class_names": ("a", "b")}, "2 class_names"),
        ({"kind": "regression", "n_classes": 2}, "regression labels have no classes"),
        ({"kind": "multiclass", "class_names": "abc"}, "class_names must be a sequence of str"),
    ):
        with pytest.raises(ConfigError, match=message):
            LabelSpec(**kwargs)


def test_files_with_bad_label_attributes_or_columns_do_not_open(batch, tmp_path):
    path = tmp_path / "f.h5"
    write_events(path, batch, SPEC, labels=_own(batch)["regression"], label_spec="regression",
                 event_columns={"n_hits": _n_hits(batch)})  # fmt: skip
    cases = {
        "kind": lambda f: f["labels"].attrs.__setitem__("label_kind", "ordinal"),
        "float classes": lambda f: f["labels"].attrs.__setitem__("label_kind", "multiclass"),
        "short column": lambda f: (f["events/user"].__delitem__("n_hits"),
                                   f["events/user"].create_dataset("n_hits", data=[1, 2])),
    }  # fmt: skip
    messages = {
        "kind": "/labels attributes: label kind must be one of binary, multiclass, regression",
        "float classes": "multiclass labels need n_classes",
        "short column": r"/events/user/n_hits has 2 rows, expected 60 \(one per event\)",
    }
    for name, damage in cases.items():
        bad = tmp_path / f"{name}.h5"
        bad.write_bytes(path.read_bytes())
        with h5py.File(bad, "a") as f:
            damage(f)
        with pytest.raises(EventFileError, match=messages[name]):
            open_events(bad)
    bad = tmp_path / "float_binary.h5"  # n_classes given, but float classes
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "a") as f:
        f["labels"].attrs.update({"label_kind": "multiclass", "n_classes": 3})
    with pytest.raises(EventFileError, match=r"/labels must be an integer \(N,\) dataset"):
        open_events(bad)


# -- the NumPy side: class weights, the one-class warning, metrics per kind ----------------------


def test_balanced_class_weights_are_scikit_learns():
    y = np.array([0] * 17 + [1] * 3)
    w = class_weights(y, LabelSpec(), "balanced")
    assert w == pytest.approx({0: 20 / (2 * 17), 1: 20 / (2 * 3)})
    assert w[0] * 17 == pytest.approx(w[1] * 3) == pytest.approx(10.0)  # n / k each
    y3 = np.array([0, 0, 0, 0, 2, 2])  # class 1 absent: no weight for it (Keras takes 1)
    assert class_weights(y3, LabelSpec("multiclass", n_classes=3), "balanced") == pytest.approx(
        {0: 6 / (2 * 4), 2: 6 / (2 * 2)}
    )
    assert class_weights(y, LabelSpec(), "none") is None
    with pytest.raises(ConfigError, match="regression labels have none"):
        class_weights(y, LabelSpec("regression"), "balanced")


def test_one_class_warning():
    spec = LabelSpec()
    y = np.array([0] * 17 + [1] * 3)
    flat = np.full(20, 0.2)
    text = one_class_warning(y, flat, spec)
    assert text.startswith("the best model predicts class 0 for all 20 validation events, 85 %")
    assert "--class-weight balanced" in text
    assert one_class_warning(y, np.r_[flat[:-1], 0.7], spec) is None
    assert one_class_warning(np.zeros(5), np.full(5, 0.1), spec) is None  # one class in truth
    three = LabelSpec("multiclass", class_names=("e", "mu", "pi"))
    probs = np.tile([0.1, 0.8, 0.1], (4, 1))
    assert "predicts class mu for all 4" in one_class_warning(np.array([0, 1, 2, 1]), probs, three)
    assert one_class_warning(np.array([0.5, 1.0]), np.array([0.2, 0.3]), LabelSpec("regression"))\
        is None  # fmt: skip
    np.testing.assert_array_equal(predicted_classes(np.array([0.5, 0.51]), spec), [0, 1])


def test_multiclass_and_regression_metrics_by_hand():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.0, 1.0, 0.0]])
    m = multiclass_metrics(y, p)
    assert m["accuracy"] == 0.5  # events 0 and 2
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert m["n_per_class"] == [1, 1, 2]
    expected = -(np.log(0.7) + np.log(0.3) + np.log(0.6) + np.log(1e-7)) / 4
    assert m["loss"] == pytest.approx(expected)
    r = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0]))
    assert r["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert r["loss"] == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert r["rmse"] == pytest.approx(np.sqrt(2.25 / 4))
    assert r["mean_error"] == pytest.approx(0.5 / 4)
    assert r["r2"] == pytest.approx(1 - 2.25 / 5.0)
    assert label_metrics("regression", [1.0, 1.0], [1.0, 2.0])["r2"] is None
    assert label_metrics("binary", [0, 1], [0.2, 0.9])["roc_auc"] == 1.0


# -- the commands on such files -----------------------------------------------------------------


@pytest.fixture(scope="module")
def own_files(batch, tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    own = _own(batch)
    files = {}
    for kind, spec in SPECS.items():
        files[kind] = str(d / f"{kind}.h5")
        write_events(files[kind], batch, SPEC, config=CONFIG.to_dict(), labels=own[kind],
                     label_spec=spec, event_columns=own["events"])  # fmt: skip
    return files


def test_fit_tracks_says_what_the_file_has_instead_of_binary_labels(own_files, capsys):
    assert fit_tracks.main([own_files["multiclass"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"fit-tracks: error: fit-tracks (it scores events against the file's labels) needs "
        f"binary labels; {own_files['multiclass']} has multiclass (3 classes: few, some, many) "
        "labels"
    )
    assert fit_tracks.main([own_files["binary"], "--json"]) == 0  # your binary label: fine
    result = json.loads(capsys.readouterr().out)
    assert result["n_events"] == 60


def test_show_event_titles_your_labels(own_files, tmp_path, capsys):
    for kind in SPECS:
        out = tmp_path / f"{kind}.png"
        assert show_event.main([own_files[kind], "--grid", "2", "--out", str(out)]) == 0
        assert out.stat().st_size > 0
    from spectrocnn.display import event_figure

    with open_events(own_files["multiclass"]) as ev:
        fig = event_figure(ev, [0])
        title = fig.axes[0].get_title()
        assert title == f"event 0  label {SPECS['multiclass'].class_name(int(ev.labels[0]))}"
    with open_events(own_files["regression"]) as ev:
        title = event_figure(ev, [1]).axes[0].get_title()
        assert title == f"event 1  label {ev.labels[1]:.4g}"


def test_export_png_sorts_your_classes_into_their_folders(own_files, tmp_path, capsys):
    out = tmp_path / "png"
    assert export_events.main([own_files["multiclass"], "--format", "png", "--out", str(out),
                               "--seed", "1"]) == 0  # fmt: skip
    with open_events(own_files["multiclass"]) as ev:
        counts = np.bincount(ev.labels, minlength=3)
    for c, name in enumerate(("few", "some", "many")):
        n = sum(len(list((out / split / name).glob("*.png"))) for split in ("Training", "Testing"))
        assert n == counts[c]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["classes"] == {"0": "few", "1": "some", "2": "many"}
    capsys.readouterr()
    assert export_events.main([own_files["regression"], "--format", "png", "--out",
                               str(tmp_path / "reg")]) == 2  # fmt: skip
    assert capsys.readouterr().err.strip() == (
        f"export-events: error: export-events --format png needs binary or multiclass labels; "
        f"{own_files['regression']} has regression labels (n_hits / 16)"
    )
    assert not (tmp_path / "reg").exists()
    assert export_events.main([own_files["regression"], "--format", "trackml", "--out",
                               str(tmp_path / "tml")]) == 0  # fmt: skip


def test_the_readme_example_writes_and_reads_its_file(tmp_path, monkeypatch):
    """The library example of the README's "Your own labels and columns", as printed."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### Your own labels and columns", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    n_particles = namespace["n_particles"]
    with open_events(tmp_path / "many.h5") as ev:
        assert ev.label_spec == LabelSpec("binary", name="n_particles >= 18")
        np.testing.assert_array_equal(ev.labels, n_particles >= 18)
        assert 0.10 < ev.labels.mean() < 0.20  # about 15 %, as the README says
        np.testing.assert_array_equal(ev.read_event_column("n_hits"), namespace["n_hits"])
