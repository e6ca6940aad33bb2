"""Physical constants of the simulation (one home; imported by the propagators and reco/)."""

from __future__ import annotations

__all__ = ["C_GEV_PER_T_MM"]

#: Curvature constant: p[GeV/c] = C * |q| * B[T] * R[mm] (0.299792458 GeV/(T m), the speed of
#: light in units of 1e9 m/s: a charge of 1 e in 1 T bends 1 GeV/c to a radius of 3.3356 m).
C_GEV_PER_T_MM = 0.299792458e-3
