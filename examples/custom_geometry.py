"""A user-defined detector in Python: a forward telescope in a dipole field map.

Eight silicon-like planes normal to the beam (+x), four before and four after a dipole
magnet whose field (along z, with fringe fields: the map of examples/field_map.py) bends
the tracks in the x-y plane. The script builds the geometry and the field in Python (no
TOML file), simulates events with the Runge-Kutta-Nystrom stepper, writes them as an event
file, and draws a few with their truth.

    python examples/custom_geometry.py --n 500 --out custom_out
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from field_map import make_map

from spectrocnn.config import Config
from spectrocnn.dataset import ImageSpec, generate_file, open_events
from spectrocnn.simulate import Detector, ParticleGun, PlaneLayer, Simulation


def telescope_in_dipole(step_mm: float = 5.0) -> Detector:
    """Eight planes at x = 50 ... 200 and 400 ... 550 mm around the magnet (x 200-400 mm)."""
    xs = [50.0, 100.0, 150.0, 200.0, 400.0, 450.0, 500.0, 550.0]
    layers = tuple(
        PlaneLayer(
            center_mm=(x, 0.0, 0.0),
            normal=(1.0, 0.0, 0.0),
            half_width_mm=150.0,
            half_height_mm=100.0,
            resolution_um=20.0,
            thickness_x0=0.005,
        )
        for x in xs
    )
    return Detector(layers, make_map(step_mm), name="telescope-in-dipole")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="events (500)")
    parser.add_argument("--size", type=int, default=256, help="image size [px] (256)")
    parser.add_argument("--out", default="custom_out", help="output directory")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    gun = ParticleGun(
        particle="mu+",
        p_low_GeV=(0.3, 1.0),
        p_high_GeV=(5.0, 10.0),
        phi_deg=(-8.0, 8.0),
        dip_deg=(-3.0, 3.0),
    )
    sim = Simulation(telescope_in_dipole(), gun, n_particles=5, high_fraction=0.5)
    config = Config(sim, ImageSpec(size=args.size, window_mm=(0.0, 600.0, -200.0, 200.0)))
    path = out / "events.h5"
    result = generate_file(config, args.n, path, seed=args.seed, workers=1, overwrite=True)
    print(f"wrote {path}: {args.n} events in {result.elapsed_s:.1f} s")

    import matplotlib

    matplotlib.use("Agg")
    from spectrocnn.display import event_figure

    with open_events(path) as ev:
        truth = ev.truth(0, ev.n_events)
        hits_per_track = len(truth.hits) / max(len(truth.particles), 1)
        print(f"{hits_per_track:.2f} hits per track (8 planes), labels: {ev.labels.mean():.2f}")
        fig = event_figure(ev, list(range(min(4, ev.n_events))), truth=True)
    fig.savefig(out / "custom_geometry.png")
    print(f"wrote {out / 'custom_geometry.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
