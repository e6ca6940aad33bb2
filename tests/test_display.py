"""Event pictures as a new user reads them: checked on the figure objects, not on pixels.

- with ``--truth`` the trajectories lie above the hits (their colours show), the
  high-momentum track takes its colour from the momentum scale and has a wider halo
  underneath;
- a momentum colour bar always carries at least three labelled ticks, also for a label-0
  event whose momenta span 0.1-0.15 GeV/c only;
- a grid of events shares one grey scale of hit counts, shown by a colour bar.
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.collections import LineCollection

from spectrocnn.config import preset_config
from spectrocnn.dataset import generate_file, open_events
from spectrocnn.display import HIGH_HALO_WIDTH, event_figure


@pytest.fixture(scope="module")
def lecture_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("disp") / "events.h5"
    generate_file(preset_config("lecture").with_image_size(128), 12, path, seed=5, workers=1)
    return path


def _first(events, label: int) -> int:
    return int(np.flatnonzero(events.labels == label)[0])


def _collections(ax) -> tuple[LineCollection, LineCollection]:
    """(trajectories, halo) of a panel."""
    lines = [c for c in ax.collections if c.get_label() == "true trajectories"]
    halo = [c for c in ax.collections if c.get_label() == "high-momentum track"]
    assert len(lines) == 1
    return lines[0], (halo[0] if halo else None)


def _colorbars(fig) -> dict[str, object]:
    """label -> Axes of each colour bar of the figure."""
    return {ax.get_ylabel(): ax for ax in fig.axes if ax.get_label() == "<colorbar>"}


def _tick_labels(cax) -> list[str]:
    cax.figure.canvas.draw()
    lo, hi = cax.get_ylim()
    return [
        t.get_text()
        for t, v in zip(cax.yaxis.get_ticklabels(), cax.yaxis.get_ticklocs(), strict=True)
        if t.get_text() and lo - 1e-12 <= v <= hi + 1e-12
    ]


def test_truth_trajectories_drawn_above_the_hits_and_high_track_coloured_by_scale(lecture_file):
    with open_events(lecture_file) as ev:
        i = _first(ev, 1)
        truth = ev.truth(i, i + 1)
        fig = event_figure(ev, [i], truth=True)
    ax = fig.axes[0]
    (image,) = ax.images
    lines, halo = _collections(ax)
    assert image.get_zorder() < halo.get_zorder() < lines.get_zorder()
    # the high-momentum track: its own colour from the scale, on top of a wider halo
    p = truth.particles
    pmag = np.sqrt(p.px**2 + p.py**2 + p.pz**2)
    high = int(np.flatnonzero(p.is_high == 1)[0])
    expected = lines.cmap(lines.norm(pmag[high]))
    lines.update_scalarmappable()  # what drawing does: colours from the array and the scale
    np.testing.assert_allclose(lines.get_edgecolor()[high], expected)
    assert lines.norm(pmag[high]) > 0.9  # 5-10 GeV/c is at the top of the scale
    widths = np.broadcast_to(lines.get_linewidths(), len(p))
    assert halo.get_linewidths()[0] == HIGH_HALO_WIDTH > widths[high] > widths[high - 1 or 1]
    assert len(halo.get_segments()) == 1
    # the halo follows the track: vertex then its true hits
    seg = halo.get_segments()[0]
    assert tuple(seg[0]) == (p.vx[high], p.vy[high])
    assert len(seg) == 1 + int(np.sum(truth.hits.particle == high))


def test_label0_colorbar_has_three_labelled_ticks(lecture_file):
    with open_events(lecture_file) as ev:
        i = _first(ev, 0)
        truth = ev.truth(i, i + 1)
        fig = event_figure(ev, [i], truth=True)
    p = truth.particles
    pmag = np.sqrt(p.px**2 + p.py**2 + p.pz**2)
    assert pmag.max() < 0.2  # a label-0 lecture event: 0.1-0.15 GeV/c
    cax = _colorbars(fig)["p [GeV/c]"]
    labels = _tick_labels(cax)
    assert len(labels) >= 3, labels
    values = [float(t.replace("\N{MINUS SIGN}", "-")) for t in labels]
    lo, hi = 0.9 * pmag.min(), 1.1 * pmag.max()  # the documented scale, computed here
    assert all(lo <= v <= hi for v in values), (values, lo, hi)
    assert values == sorted(values) and len(set(values)) == len(values)


def test_label1_colorbar_keeps_the_1_2_5_ticks(lecture_file):
    with open_events(lecture_file) as ev:
        fig = event_figure(ev, [_first(ev, 1)], truth=True)
    labels = _tick_labels(_colorbars(fig)["p [GeV/c]"])
    assert {"0.1", "1", "5"} <= set(labels), labels


def test_grid_shares_one_grey_scale_with_a_colorbar_of_hit_counts(lecture_file):
    with open_events(lecture_file) as ev:
        images = ev.read_images(0, 8)
        fig = event_figure(ev, list(range(8)))
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 8
    norms = {id(ax.images[0].norm) for ax in panels}
    assert len(norms) == 1  # one norm object for every panel
    norm = panels[0].images[0].norm
    top = int(images.max())  # the largest hit count of the eight events
    assert norm.vmin == pytest.approx(0.5) and norm.vmax == pytest.approx(max(2, top) + 0.5)
    # the same count is the same grey in every panel
    assert isinstance(norm, mcolors.BoundaryNorm)
    cbars = _colorbars(fig)
    assert "hits per pixel" in cbars
    labels = _tick_labels(cbars["hits per pixel"])
    assert labels[0] == "1" and labels[-1] == str(max(2, top))
    assert all(t.isdigit() for t in labels)


def test_one_hit_is_visible_grey_and_empty_pixels_are_not_drawn(lecture_file):
    with open_events(lecture_file) as ev:
        fig = event_figure(ev, [0, 1])
    image = fig.axes[0].images[0]
    rgba = image.cmap(image.norm(1))
    assert max(rgba[:3]) < 0.65  # a single hit is at least mid grey on white
    assert np.ma.getmaskarray(image.get_array())[image.get_array().data == 0].all()
