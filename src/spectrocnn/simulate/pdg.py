"""Particle properties from the PDG table (the ``particle`` package): mass and charge.

The simulation propagates free particles with a non-zero integer charge: quarks, diquarks
and gluons (coloured, confined), particles of fractional charge, and neutral particles
(which leave no hit in a tracking layer) are refused with a one-line
:class:`~spectrocnn.errors.ConfigError` naming the particle and its charge.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from spectrocnn.errors import ConfigError

__all__ = ["particle_properties", "pdg_properties"]

#: PDG ids of the gluon (21, and 9 in some generators): coloured, never free.
_GLUON_IDS = (9, 21)
#: How to fix a refused particle (the end of the message).
_CHOOSE = "choose a lepton, hadron or nucleus such as 'pi+', 'mu-', 'p' or 'He4'"


def particle_properties(name: str) -> tuple[float, int, int]:
    """(mass [GeV/c^2], PDG id, charge [e]) of a PDG name.

    Raises
    ------
    ConfigError
        For an unknown name, a refused particle (the message names its charge) or a
        particle without a known mass.
    """
    record = _particle_record(name)
    if isinstance(record, str):
        raise ConfigError(record)
    return record


def pdg_properties(pdg: np.ndarray, key: str = "pdg") -> tuple[np.ndarray, np.ndarray]:
    """Mass and charge of particles given by their PDG ids (Monte Carlo numbering scheme).

    Parameters
    ----------
    pdg : ndarray of int, shape (n,)
        Signed PDG ids (211: pi+, -211: pi-, 13: mu-, 2212: p, 1000020040: He4...).
    key : str
        The argument's name, for messages.

    Returns
    -------
    mass_GeV : ndarray float64 (n,)
        [GeV/c^2].
    charge : ndarray int8 (n,)
        [e], with its sign.

    Raises
    ------
    ConfigError
        For an id not in the PDG table, or a refused particle (neutral, quark, diquark,
        gluon, fractional charge; the messages of :func:`particle_properties`).
    """
    ids, inverse = np.unique(np.asarray(pdg, dtype=np.int64), return_inverse=True)
    mass = np.empty(len(ids))
    charge = np.empty(len(ids), dtype=np.int8)
    for i, pid in enumerate(ids.tolist()):
        record = _pdg_record(pid, key)
        if isinstance(record, str):
            raise ConfigError(record)
        mass[i], _, charge[i] = record
    return mass[inverse].reshape(-1), charge[inverse].reshape(-1)


@lru_cache(maxsize=256)
def _pdg_record(pid: int, key: str) -> tuple[float, int, int] | str:
    """:func:`pdg_properties` of one id, or the reason it is refused; cached."""
    from particle import Particle

    try:
        p = Particle.from_pdgid(pid)
    except Exception:
        return f"{key} id {pid} is not a particle of the PDG table (e.g. 211 for pi+, 13 for mu-)"
    return _record(p, f"{key} id {pid} ({p.name})")


@lru_cache(maxsize=64)
def _particle_record(name: str) -> tuple[float, int, int] | str:
    """:func:`particle_properties`, or the reason the name is refused; cached, refusals
    included (a look-up in the ``particle`` table takes 0.3 s)."""
    from particle import Particle

    try:
        p = Particle.from_name(name)
    except Exception:
        return f"particle must be a PDG name such as 'pi+', got {name!r}"
    return _record(p, f"particle {name!r}")


def _record(p, subject: str) -> tuple[float, int, int] | str:
    """(mass [GeV/c^2], PDG id, charge [e]) of a ``particle.Particle``, or why it is refused
    (a one-line message beginning with ``subject``)."""
    from particle import PDGID

    if p.three_charge is None:
        return f"{subject} has no known charge"
    pdgid = PDGID(int(p.pdgid))
    three_q = int(p.three_charge)
    shown = str(Fraction(three_q, 3))
    gluon = abs(int(pdgid)) in _GLUON_IDS
    if pdgid.is_quark or pdgid.is_diquark or gluon:
        kind = "quark" if pdgid.is_quark else "diquark" if pdgid.is_diquark else "gluon"
        return (
            f"{subject} has charge {shown}: a {kind} carries colour and is never a "
            f"free particle; {_CHOOSE}"
        )
    if three_q % 3:
        return f"{subject} has charge {shown}: a free particle has an integer charge; {_CHOOSE}"
    if three_q == 0:
        return (
            f"{subject} has charge 0: a neutral particle leaves no hits in the tracking "
            f"layers; {_CHOOSE}"
        )
    if p.mass is None:
        return f"{subject} has no known mass"
    return float(p.mass) / 1000.0, int(p.pdgid), three_q // 3
