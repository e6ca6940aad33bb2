"""A fixed-target forward spectrometer: your own muons through a dipole, and the general fit.

Six planes normal to z, three before and three behind a dipole magnet (1 T along y for
1000 < z < 2000 mm, hard-edged), 50 um hits, no material. Muons of 1-20 GeV/c from a thin
target at the origin are propagated by the Runge-Kutta-Nystrom stepper and fitted with the
global chi-square fit (:func:`spectrocnn.reco.fit_tracks`), which gives q/p at the target
plane with its uncertainty. The script prints, in bins of momentum, the measured
sigma(q/p)/(q/p), the mean of the fit's own error, and the pulls of q/p, then checks that
the pulls are standard normal.

    python examples/forward_spectrometer.py --n 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spectrocnn.reco import fit_tracks
from spectrocnn.simulate import CallableField, Detector, PlaneLayer, simulate_particles


def dipole(points: np.ndarray) -> np.ndarray:
    """B = (0, 1 T, 0) inside the magnet (1000 < z < 2000 mm), 0 outside."""
    b = np.zeros_like(points)
    b[:, 1] = np.where((points[:, 2] > 1000.0) & (points[:, 2] < 2000.0), 1.0, 0.0)
    return b


def spectrometer() -> Detector:
    """Six 2 m x 2 m planes normal to z around the dipole."""
    planes = tuple(
        PlaneLayer(
            center_mm=(0.0, 0.0, z),
            normal=(0.0, 0.0, 1.0),
            half_width_mm=1000.0,
            half_height_mm=1000.0,
            resolution_um=50.0,
        )
        for z in (500.0, 700.0, 900.0, 2100.0, 2300.0, 2500.0)
    )
    return Detector(planes, CallableField(dipole, name="dipole"), name="forward")


def muons(n: int, rng: np.random.Generator):
    """Vertices (n, 3) [mm], momenta (n, 3) [GeV/c] and PDG ids (n,) of muons from the
    target: |p| uniform in 1-20 GeV/c, slopes dx/dz, dy/dz Gaussian of 10 mrad, a beam spot
    of 0.5 mm, mu- (13) and mu+ (-13)."""
    p = rng.uniform(1.0, 20.0, n)
    d = np.c_[rng.normal(0.0, 0.01, (n, 2)), np.ones(n)]
    d /= np.linalg.norm(d, axis=1)[:, None]
    vertex = np.c_[rng.normal(0.0, 0.5, (n, 2)), np.zeros(n)]
    return vertex, d * p[:, None], rng.choice([13, -13], n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of muons")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    detector = spectrometer()
    vertex, momentum, pdg = muons(args.n, rng)
    batch = simulate_particles(detector, vertex, momentum, pdg, rng=rng)
    hits = batch.hits  # grouped by particle
    offsets = np.r_[0, np.cumsum(np.bincount(hits.particle, minlength=args.n))]
    xyz = np.stack([hits.x, hits.y, hits.z], axis=1)
    start = time.perf_counter()
    fit = fit_tracks(detector, xyz, hits.layer, offsets)  # reference: the target plane
    seconds = time.perf_counter() - start
    qop_true = batch.particles.charge / np.linalg.norm(momentum, axis=1)
    pull = (fit.qop - qop_true) / fit.sigma_qop
    p_true = np.abs(1.0 / qop_true)
    print(f"{args.n} muons fitted in {seconds:.1f} s ({1e3 * seconds / args.n:.1f} ms each), "
          f"{fit.converged.sum()} converged, mean chi2/ndf {fit.chi2.mean() / 7:.2f}")  # fmt: skip
    print(" p [GeV/c]   tracks   sigma(q/p)/(q/p) measured   fit's error   pull mean, std")
    for lo, hi in ((1, 3), (3, 6), (6, 10), (10, 15), (15, 20)):
        sel = (p_true >= lo) & (p_true < hi)
        if sel.sum() < 2:
            continue
        measured = np.std((fit.qop[sel] - qop_true[sel]) / qop_true[sel])
        own = np.mean(fit.sigma_qop[sel] / np.abs(fit.qop[sel]))
        print(f"  {lo:2d} - {hi:2d}   {sel.sum():6d}   {measured:24.5f}   {own:11.5f}"
              f"   {pull[sel].mean():+.2f}, {pull[sel].std():.2f}")  # fmt: skip
    ok = (
        fit.converged.all()
        and abs(pull.mean()) < 5.0 / np.sqrt(args.n)
        and abs(pull.std() - 1.0) < 0.25
    )
    print("pulls of q/p are standard normal" if ok else "FAILED: the pulls are not N(0, 1)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
