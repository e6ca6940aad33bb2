"""``fit-tracks``: the classical baseline, a circle fit of every track, on an event file."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from spectrocnn._atomic import clean_json
from spectrocnn.cli._common import make_parser, plural, run
from spectrocnn.errors import ConfigError

__all__ = ["build_parser", "main"]

PROG = "fit-tracks"
log = logging.getLogger(PROG)
_CHUNK = 2000  # events read and fitted at a time
_SCORES = "it scores events against the file's labels"  # why it needs binary labels


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = make_parser(
        PROG,
        "Fit every track with a circle (Karimaki), score each event by its highest fitted "
        "transverse momentum p_T = 0.299792458 |q| B R, and report accuracy at the best cut "
        "and ROC AUC. |q| is each particle's stored charge (/particles/charge); with "
        "--no-truth, the |q| of the file's gun particle (its resolved configuration). Both "
        "modes need a file made in a uniform field along z (field.B_T = [0, 0, B]), not a "
        "field map.",
    )
    p.add_argument("file", metavar="FILE.h5", help="event file written by gen-events")
    p.add_argument(
        "--no-truth",
        action="store_true",
        help="find the tracks without the truth association (triplet seeds with a free "
        "impact parameter, a road search, a hit belongs to at most one track; cylinders "
        "about z or planes parallel to z), then fit them; where the file holds the truth, "
        "also report efficiency, fake rate and duplicate rate; p_T uses the |q| of the gun "
        "particle named in the file's configuration (2 for He4)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def _layers(config: dict) -> list:
    """The detector's layers (for the track finder) from the file's configuration."""
    from spectrocnn.simulate.geometry import CylinderLayer, PlaneLayer

    layers = config.get("detector", {}).get("layers", [])
    keys = {
        "cylinder": ("radius_mm", "half_length_mm"),
        "plane": ("center_mm", "normal", "half_width_mm", "half_height_mm"),
    }
    response = ("resolution_um", "efficiency", "thickness_x0")
    out = []
    for i, layer in enumerate(layers):
        kind = layer.get("kind", "cylinder")
        if kind not in keys:
            raise ConfigError(f"fit-tracks --no-truth: layer {i} has an unknown kind {kind!r}")
        cls = CylinderLayer if kind == "cylinder" else PlaneLayer
        out.append(cls(**{k: layer[k] for k in (*keys[kind], *response) if k in layer}))
    return out


def _gun_abs_charge(config: dict) -> int:
    """|q| [e] of the gun particle of a file's resolved configuration (for --no-truth)."""
    from spectrocnn.simulate.gun import ParticleGun

    name = config.get("gun", {}).get("particle", "pi+")
    try:
        return abs(ParticleGun(particle=name).charge)
    except ConfigError as exc:
        raise ConfigError(
            f"fit-tracks --no-truth takes |q| from the file's gun particle, but gun.{exc}"
        ) from None


def _field_and_resolution(config: dict, path: str) -> tuple[float, np.ndarray]:
    """B_z [T] of the file's uniform field along z and the layers' resolutions [um].

    Both modes (truth association and ``--no-truth``) fit circles in x-y, so both need a
    uniform field along z (``field.B_T = [0, 0, B]``); a field map or a callable field is
    refused, naming what the file was made with.
    """
    field = config.get("field", {})
    if "B_T" not in field:
        if "map" in field:
            made = f"the field map {field['map']}"
        elif "callable" in field:
            made = f"the callable field {field['callable']}"
        else:
            made = "no field.B_T in its configuration"
        raise ConfigError(
            f"fit-tracks (with or without --no-truth) needs a uniform field along z "
            f"(field.B_T = [0, 0, B]); {path} was made with {made}"
        )
    bx, by, bz = (float(v) for v in field["B_T"])
    if bx != 0 or by != 0 or bz == 0:
        raise ConfigError(
            f"fit-tracks (with or without --no-truth) needs a uniform field along z; {path} "
            f"was made with field.B_T = {[bx, by, bz]}"
        )
    layers = config.get("detector", {}).get("layers", [])
    if not layers or not all(isinstance(layer, dict) for layer in layers):
        raise ConfigError(
            f"fit-tracks needs the detector layers (their resolutions) from the file's "
            f"configuration; {path} records none (write_events(..., config=Config.to_dict()) "
            "records them)"
        )
    res = np.array([float(layer.get("resolution_um", 50.0)) for layer in layers])
    return bz, res


#: counts of :func:`spectrocnn.reco.finding_performance`, summed over chunks
_COUNTS = ("n_tracks", "n_findable", "n_findable_matched", "n_fake", "n_duplicate")


def _finding(counts: dict, min_hits: int) -> dict:
    """Rates from the summed counts; warns where the finding is poor."""
    nan = float("nan")
    t, f = counts["n_tracks"], counts["n_findable"]
    out = {
        "efficiency": counts["n_findable_matched"] / f if f else nan,
        "fake_rate": counts["n_fake"] / t if t else nan,
        "duplicate_rate": counts["n_duplicate"] / t if t else nan,
        "tracks_per_findable": t / f if f else nan,
        **counts,
        "match_fraction": 0.5,
        "findable_min_hits": min_hits,
    }
    if f and (out["efficiency"] < 0.95 or out["fake_rate"] > 0.05 or out["duplicate_rate"] > 0.05):
        log.warning(
            "track finding without truth is poor on this file: efficiency %.3f, fake rate %.3f, "
            "duplicate rate %.3f; the classification is not to be trusted",
            out["efficiency"], out["fake_rate"], out["duplicate_rate"],
        )  # fmt: skip
    return out


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from spectrocnn.dataset import open_events
    from spectrocnn.labels import require_kind
    from spectrocnn.metrics import best_cut_accuracy, roc_auc
    from spectrocnn.reco import (
        FinderSettings,
        find_tracks,
        finder_resolution,
        finding_performance,
        fit_truth_tracks,
    )
    from spectrocnn.reco.circlefit import pt_from_curvature

    t0 = time.perf_counter()
    with open_events(args.file) as ev:
        if ev.n_events == 0:
            raise ConfigError(f"event file {args.file} holds no events")
        require_kind(ev.label_spec, ("binary",), f"{PROG} ({_SCORES})", args.file)
        abs_q = _gun_abs_charge(ev.config) if args.no_truth else None
        bz, res = _field_and_resolution(ev.config, args.file)
        layers = _layers(ev.config) if args.no_truth else None
        settings = FinderSettings()
        if args.no_truth:
            settings, sigma_mm = finder_resolution(layers, bz, settings)
        n = ev.n_events
        labels = np.asarray(ev.labels)
        scores = np.zeros(n)
        n_tracks = n_bad = 0
        counts = dict.fromkeys(_COUNTS, 0)
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            batch = ev.truth(start, stop)
            n_bad += int(np.count_nonzero(~(np.isfinite(batch.hits.x) & np.isfinite(batch.hits.y))))
            if args.no_truth:
                h = batch.hits
                found = find_tracks(
                    h.x, h.y, h.z, h.layer, h.event, stop - start, layers, sigma_mm, settings
                )
                event, pt = found.event, pt_from_curvature(found.fit.rho, bz, abs_q)
                perf = finding_performance(found.hits, h.particle, settings.min_hits)
                for k in _COUNTS:
                    counts[k] += perf[k]
            else:
                fits = fit_truth_tracks(batch, bz, res)
                event, pt = fits.event, fits.pt_GeV
            np.maximum.at(scores, start + event, pt)
            n_tracks += len(pt)
    if n_bad:
        log.warning("%d hits with a NaN or infinite x or y in %s were left out", n_bad, args.file)
    acc, cut = best_cut_accuracy(labels, scores)
    finding = _finding(counts, settings.min_hits) if args.no_truth else None
    result = {
        "file": args.file,
        "method": (
            "track finding without truth, Karimaki circle fit"
            if args.no_truth
            else "truth association, Karimaki circle fit"
        ),
        "n_events": n,
        "n_tracks": n_tracks,
        "accuracy": acc,
        "cut_pt_GeV": cut,
        "roc_auc": roc_auc(labels, scores),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if finding is not None:
        result["finding"] = finding
    if args.json:  # valid JSON: an undefined AUC (one class only) is null
        print(json.dumps(clean_json(result), allow_nan=False))
    else:
        _print_summary(result)
    return 0


def _print_summary(result: dict) -> None:
    """The one-line summary of ``result`` (and a line on the finding, when there is one)."""
    n, n_tracks, acc, cut = (result[k] for k in ("n_events", "n_tracks", "accuracy", "cut_pt_GeV"))
    auc = result["roc_auc"]
    print(
        f"{PROG}: {plural(n, 'event')}, {plural(n_tracks, 'track')} fitted: "
        f"accuracy {acc:.4f} at "
        f"p_T >= {cut:.3g} GeV/c, ROC AUC {'n/a' if math.isnan(auc) else f'{auc:.4f}'}"
    )
    finding = result.get("finding")
    if finding is not None and finding["n_findable"]:
        print(
            f"{PROG}: track finding: efficiency {finding['efficiency']:.4f} "
            f"({finding['n_findable_matched']} of {finding['n_findable']} particles with "
            f">= {finding['findable_min_hits']} hits), fake rate "
            f"{finding['fake_rate']:.4f}, duplicate rate {finding['duplicate_rate']:.4f} "
            "(a track matches the particle that left > 50 % of its hits)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fit-tracks``; returns the exit code."""
    return run(PROG, _body, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
