"""Classical track reconstruction: the circle-fit baseline (what a physicist would do) and
the global chi-square track fit for any geometry and field (:mod:`spectrocnn.reco.gx2f`)."""

from __future__ import annotations

from spectrocnn.reco.baseline import TrackFits, classify_events, fit_truth_tracks
from spectrocnn.reco.circlefit import (
    CircleFit,
    circle_from_moments,
    fit_circles,
    gluckstern_sigma_k,
)
from spectrocnn.reco.finder import (
    FinderSettings,
    FoundTracks,
    find_tracks,
    finder_resolution,
    finding_performance,
)
from spectrocnn.reco.gx2f import (
    ReferenceSurface,
    TrackFitBatch,
    TrackFitResult,
    fit_track,
    fit_tracks,
)

__all__ = [
    "CircleFit",
    "FinderSettings",
    "FoundTracks",
    "ReferenceSurface",
    "TrackFitBatch",
    "TrackFitResult",
    "TrackFits",
    "circle_from_moments",
    "classify_events",
    "find_tracks",
    "finder_resolution",
    "finding_performance",
    "fit_circles",
    "fit_track",
    "fit_tracks",
    "fit_truth_tracks",
    "gluckstern_sigma_k",
]
