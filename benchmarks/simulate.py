"""Benchmark: particle-layer crossings per second of lecture-event simulation, one core.

Simulates lecture events (16 barrel layers r = 50..200 mm, 10 pions per event, 2 T along
z, efficiency 1, no noise, no images) twice in one run:

1. in the uniform field, where :func:`spectrocnn.simulate.propagate` takes the exact
   helix path (target: 2 million crossings per second);
2. in a field map holding the same uniform 2 T on a coarse grid over the detector, where
   it takes the adaptive Runge-Kutta-Nystrom stepper (target: 200 thousand per second).

Then the cost of energy loss, side by side: 0.3 mm silicon layers (x/X0 = 0.3/93.70) with
multiple scattering only, and with energy loss too (Bethe mean, Landau fluctuations), on
the helix path and on the stepper (target: energy loss costs at most 1.5 x).

A crossing is a true (non-noise) hit. Usage::

    python benchmarks/simulate.py [--events 20000] [--seed 1]
"""

from __future__ import annotations

import os

# One core: set before NumPy (and its BLAS) is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
from _record import grouped  # noqa: E402

from spectrocnn.simulate import (  # noqa: E402
    Detector,
    FieldMap,
    Simulation,
    UniformField,
    lecture_detector,
    simulate_events,
)

TARGET_HELIX = 2e6
TARGET_STEPPER = 2e5
#: Largest acceptable cost of energy loss: time per crossing with / without it.
TARGET_ELOSS_COST = 1.5
#: 0.3 mm of silicon in radiation lengths (X0 = 93.70 mm).
SILICON_300UM_X0 = 0.3 / 93.70


def uniform_map(detector, b_t=(0.0, 0.0, 2.0), spacing_mm: float = 50.0) -> FieldMap:
    """A field map holding a uniform field on a regular grid covering the detector."""
    r = detector.r_max_mm + spacing_mm
    z = detector.z_max_mm + spacing_mm
    xy = np.linspace(-r, r, int(np.ceil(2 * r / spacing_mm)) + 1)
    zz = np.linspace(-z, z, int(np.ceil(2 * z / spacing_mm)) + 1)
    b = np.broadcast_to(np.asarray(b_t, dtype=np.float64), (xy.size, xy.size, zz.size, 3))
    return FieldMap(xy, xy, zz, np.array(b), source="benchmark uniform map")


def measure(sim: Simulation, n_events: int, seed: int, chunk: int) -> tuple[int, float, float]:
    """Simulate in chunks, as gen-events does; return (true hits, wall seconds, CPU seconds)."""
    n_hits = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for i, start in enumerate(range(0, n_events, chunk)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        batch = simulate_events(sim, min(chunk, n_events - start), rng)
        n_hits += int(np.count_nonzero(batch.hits.particle >= 0))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n_hits, wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events per run (20000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument(
        "--chunk", type=int, default=1000, help="events per simulate_events call (1000)"
    )
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error(f"--events must be a positive integer, got {args.events}")

    helix = Simulation(
        detector=lecture_detector(UniformField((0.0, 0.0, 2.0)), efficiency=1.0),
        noise_hits_per_layer=0.0,
    )
    stepper = Simulation(
        detector=lecture_detector(uniform_map(helix.detector), efficiency=1.0),
        noise_hits_per_layer=0.0,
    )
    scattering = Simulation(detector=lecture_detector(thickness_x0=0.01))
    si_off = lecture_detector(thickness_x0=SILICON_300UM_X0)
    si_on = Detector(
        tuple(replace(layer, energy_loss=True) for layer in si_off.layers), si_off.field
    )
    si_map = uniform_map(si_off)
    eloss = {
        "helix, 0.3 mm Si, no eloss": Simulation(detector=si_off),
        "helix, 0.3 mm Si, eloss": Simulation(detector=si_on),
        "stepper, 0.3 mm Si, no eloss": Simulation(detector=Detector(si_off.layers, si_map)),
        "stepper, 0.3 mm Si, eloss": Simulation(detector=Detector(si_on.layers, si_map)),
    }
    print(
        f"lecture events: {grouped(args.events)} in chunks of {grouped(args.chunk)}, "
        f"seed {args.seed}, one core"
    )
    rates = {}
    cpu_rates = {}
    for name, sim, target in (
        ("uniform field (helix)", helix, TARGET_HELIX),
        ("field map (RKN stepper)", stepper, TARGET_STEPPER),
        ("helix + scattering 0.01 X0", scattering, TARGET_STEPPER),
        *((name, sim, TARGET_STEPPER) for name, sim in eloss.items()),
    ):
        simulate_events(sim, 50, np.random.default_rng(args.seed + 1))  # warm-up
        n, wall, cpu = measure(sim, args.events, args.seed, args.chunk)
        rate = n / wall
        rates[name] = rate
        cpu_rates[name] = n / cpu
        print(
            f"{name:<28} {n:>9d} crossings in {wall:7.3f} s (cpu {cpu:7.3f} s): "
            f"{rate / 1e6:5.2f} M crossings/s = {rate / target:5.2f} x target {target / 1e6:g} M"
        )
    ratio = rates["uniform field (helix)"] / rates["field map (RKN stepper)"]
    print(f"the helix path is {ratio:.1f} x faster than the stepper")
    for path in ("helix", "stepper"):
        off, on = f"{path}, 0.3 mm Si, no eloss", f"{path}, 0.3 mm Si, eloss"
        cost = rates[off] / rates[on]
        cost_cpu = cpu_rates[off] / cpu_rates[on]
        print(
            f"energy loss costs {cost:.2f} x wall time, {cost_cpu:.2f} x CPU time per crossing "
            f"on the {path} path (target <= {TARGET_ELOSS_COST})"
        )
    return 0


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("simulate", main))
