"""Make a field map (.npz) of a dipole magnet with fringe fields, and check it.

The magnet bends particles travelling along +x in the x-y plane: its field points along z,
uniform in the gap and falling off at both ends of the pole (along x) with an Enge-like
profile

    B_z(x) = B0 / (1 + exp((|x - x_c| - L/2) / d)),

of field integral  integral B_z dx = 2 B0 d ln(1 + exp(L / 2d))  (closed form).

The script writes the map in the layout of docs/design.md 3.4, loads it back through the public
API (FieldMap.from_npz and a TOML configuration), checks the interpolated field against the
closed form, and plots the profile.

    python examples/field_map.py --out field_map_out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spectrocnn.config import load_config
from spectrocnn.simulate import FieldMap

B0_T = 1.0
CENTER_X_MM = 300.0
LENGTH_MM = 200.0
FRINGE_MM = 15.0


def dipole_bz(x_mm: np.ndarray) -> np.ndarray:
    """The magnet's field along z on its axis [T], closed form."""
    return B0_T / (1.0 + np.exp((np.abs(x_mm - CENTER_X_MM) - LENGTH_MM / 2) / FRINGE_MM))


def field_integral_closed_form() -> float:
    """integral of B_z dx over the whole line [T mm]."""
    return 2.0 * B0_T * FRINGE_MM * np.log1p(np.exp(LENGTH_MM / (2 * FRINGE_MM)))


def make_map(step_mm: float = 5.0) -> FieldMap:
    """The dipole sampled on a regular grid covering x in [0, 600] mm."""
    x = np.arange(0.0, 600.0 + step_mm / 2, step_mm)
    y = np.arange(-150.0, 150.0 + step_mm / 2, max(step_mm, 25.0))
    z = np.arange(-100.0, 100.0 + step_mm / 2, max(step_mm, 25.0))
    b = np.zeros((x.size, y.size, z.size, 3))
    b[..., 2] = dipole_bz(x)[:, None, None]
    return FieldMap(x, y, z, b, source="dipole")


def check(field: FieldMap, step_mm: float, rng: np.random.Generator) -> dict[str, float]:
    """Compare the interpolated field with the closed form; returns the figures."""
    pts = np.column_stack(
        [rng.uniform(0, 600, 20000), rng.uniform(-150, 150, 20000), rng.uniform(-100, 100, 20000)]
    )
    err = np.abs(field(pts)[:, 2] - dipole_bz(pts[:, 0]))
    # trilinear interpolation error bound: h^2 / 8 * max |B''|, B'' <= B0 / (6 sqrt(3) d^2)
    bound = step_mm**2 / 8.0 * B0_T / (6 * np.sqrt(3) * FRINGE_MM**2)
    x = np.linspace(0.0, 600.0, 60001)
    axis = np.column_stack([x, np.zeros_like(x), np.zeros_like(x)])
    integral = np.trapezoid(field(axis)[:, 2], x)
    outside = field(np.array([[700.0, 0.0, 0.0], [300.0, 0.0, 500.0]]))
    return {
        "max_error_T": float(err.max()),
        "error_bound_T": float(bound),
        "field_integral_Tmm": float(integral),
        "field_integral_closed_form_Tmm": field_integral_closed_form(),
        "max_field_outside_T": float(np.abs(outside).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="field_map_out", help="output directory")
    parser.add_argument("--step-mm", type=float, default=5.0, help="grid step along x [mm]")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fmap = make_map(args.step_mm)
    path = out / "dipole.npz"
    fmap.save_npz(path)
    loaded = FieldMap.from_npz(path)
    (out / "dipole.toml").write_text('[field]\nmap = "dipole.npz"\n')
    cfg = load_config(out / "dipole.toml")  # the map loads through a configuration file too
    assert isinstance(cfg.simulation.detector.field, FieldMap)

    figures = check(loaded, args.step_mm, np.random.default_rng(1))
    for k, v in figures.items():
        print(f"{k:32s} {v:.6g}")
    ok = (
        figures["max_error_T"] <= figures["error_bound_T"]
        and abs(figures["field_integral_Tmm"] / figures["field_integral_closed_form_Tmm"] - 1)
        < 1e-3
        and figures["max_field_outside_T"] == 0.0
    )
    print("checks:", "passed" if ok else "FAILED")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.linspace(0, 600, 1201)
    a1.plot(x, dipole_bz(x), label="closed form", lw=3, alpha=0.4)
    a1.plot(x, loaded(np.column_stack([x, 0 * x, 0 * x]))[:, 2], label="map (trilinear)")
    a1.set_xlabel("x [mm]")
    a1.set_ylabel("$B_z$ [T]")
    a1.legend()
    xx, yy = np.meshgrid(np.linspace(-50, 650, 141), np.linspace(-200, 200, 81))
    bz = loaded(np.column_stack([xx.ravel(), yy.ravel(), 0 * xx.ravel()]))[:, 2]
    im = a2.pcolormesh(xx, yy, bz.reshape(xx.shape), shading="auto", cmap="viridis")
    fig.colorbar(im, ax=a2, label="$B_z$ [T] at z = 0")
    a2.set_xlabel("x [mm]")
    a2.set_ylabel("y [mm]")
    fig.tight_layout()
    fig.savefig(out / "dipole.png", dpi=110)
    print(f"wrote {path}, {out / 'dipole.toml'}, {out / 'dipole.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
