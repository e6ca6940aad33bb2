"""Particle properties from the PDG table (the ``particle`` package): mass and charge.

The simulation propagates free particles with a non-zero integer charge: quarks, diquarks
and gluons (coloured, confined), particles of fractional charge, and neutral particles
(which leave no hit in a tracking layer) are refused with a one-line
:class:`~spectrocnn.errors.ConfigError` naming the particle and its charge.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from spectrocnn.errors import ConfigError

__all__ = ["particle_properties"]

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
