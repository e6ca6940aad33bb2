"""Physics only: geometry, fields, propagation, material effects, the particle gun, hits.

Pure NumPy/SciPy in, arrays out; no HDF5, no TensorFlow.

Example
-------
>>> from spectrocnn.simulate import Simulation, simulate_events
>>> batch = simulate_events(Simulation(), 100, rng=1)
>>> batch.n_events
100

Your own particles (a generator's output) give the same :class:`EventBatch`:

>>> import numpy as np
>>> from spectrocnn.simulate import lecture_detector, simulate_particles
>>> batch = simulate_particles(
...     lecture_detector(), vertex_mm=np.zeros((2, 3)),
...     momentum_GeV=[[1.0, 0.0, 0.0], [0.0, 0.5, 0.1]], pdg=[211, -13], rng=1)
>>> batch.n_events, len(batch.hits)
(1, 32)
"""

from __future__ import annotations

from spectrocnn.simulate.constants import C_GEV_PER_T_MM
from spectrocnn.simulate.crossings import Crossings, StopReason
from spectrocnn.simulate.events import Simulation, simulate_events, simulate_particles
from spectrocnn.simulate.fields import CallableField, Field, FieldMap, UniformField, load_field_map
from spectrocnn.simulate.geometry import (
    CylinderLayer,
    Detector,
    PlaneLayer,
    lecture_detector,
    telescope_detector,
)
from spectrocnn.simulate.gun import Gun, LabelThreshold, Multiplicity, ParticleGun
from spectrocnn.simulate.material import highland_theta0
from spectrocnn.simulate.propagation import choose_propagator, propagate
from spectrocnn.simulate.tables import (
    HIT_COLUMNS,
    HIT_MOMENTUM_COLUMNS,
    PARTICLE_COLUMNS,
    EventBatch,
    HitTable,
    ParticleTable,
    concatenate_batches,
)

__all__ = [
    "C_GEV_PER_T_MM",
    "HIT_COLUMNS",
    "HIT_MOMENTUM_COLUMNS",
    "PARTICLE_COLUMNS",
    "CallableField",
    "Crossings",
    "CylinderLayer",
    "Detector",
    "EventBatch",
    "Field",
    "FieldMap",
    "Gun",
    "HitTable",
    "LabelThreshold",
    "Multiplicity",
    "ParticleGun",
    "ParticleTable",
    "PlaneLayer",
    "Simulation",
    "StopReason",
    "UniformField",
    "choose_propagator",
    "concatenate_batches",
    "highland_theta0",
    "lecture_detector",
    "load_field_map",
    "propagate",
    "simulate_events",
    "simulate_particles",
    "telescope_detector",
]
