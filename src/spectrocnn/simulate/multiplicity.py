"""How many particles an event holds: fixed, Poisson or uniform (:class:`Multiplicity`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.simulate._validate import check_choice, is_number

__all__ = ["MAX_PARTICLES_PER_EVENT", "Multiplicity"]

#: Largest mean (Poisson) or maximum (uniform) number of particles per event.
MAX_PARTICLES_PER_EVENT = 100_000


@dataclass(frozen=True)
class Multiplicity:
    """How many particles an event holds.

    Parameters
    ----------
    distribution : {"fixed", "poisson", "uniform"}
    n : int
        ``"fixed"``: every event holds ``n >= 1`` particles.
    mean : float
        ``"poisson"``: the mean lambda > 0 of the Poisson distribution, *conditioned on at
        least one particle* (zero-truncated): P(N = k) = lambda^k e^-lambda /
        (k! (1 - e^-lambda)) for k >= 1, so E[N] = lambda / (1 - e^-lambda) and
        Var[N] = E[N] (1 + lambda - E[N]); for lambda = 10 they are 10.0005 and 9.996,
        for lambda = 1 they are 1.582 and 0.661. An event with no particle would have no
        hit and no label, so zero is never drawn (sampled exactly: the first arrival T of
        a unit-rate Poisson process conditioned on T < lambda, then
        N = 1 + Poisson(lambda - T)).
    range : (int, int)
        ``"uniform"``: N uniform on the integers ``[a, b]``, both included, ``1 <= a <= b``
        (E[N] = (a + b) / 2, Var[N] = ((b - a + 1)^2 - 1) / 12).
    """

    distribution: str = "fixed"
    n: int = 10
    mean: float | None = None
    range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        kinds = ("fixed", "poisson", "uniform")
        check_choice("n_particles.distribution", self.distribution, kinds)
        cap = MAX_PARTICLES_PER_EVENT
        if self.distribution == "fixed":
            n = self.n
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= cap:
                raise ConfigError(f"n_particles must be a positive integer, got {n!r}")
            object.__setattr__(self, "n", int(n))
        elif self.distribution == "poisson":
            m = self.mean
            if not is_number(m) or not 0 < m <= cap:
                raise ConfigError(
                    f"n_particles.mean must be a number in (0, {cap}] (the Poisson mean), got {m!r}"
                )
            object.__setattr__(self, "mean", float(m))
        else:
            r = self.range
            ok = isinstance(r, list | tuple) and len(r) == 2
            ok = ok and all(not isinstance(x, bool) and isinstance(x, int | np.integer) for x in r)
            if not ok or not 1 <= r[0] <= r[1] <= cap:
                raise ConfigError(
                    f"n_particles.range must be 2 integers [a, b] with 1 <= a <= b <= {cap} "
                    f"(both included), got {r!r}"
                )
            object.__setattr__(self, "range", (int(r[0]), int(r[1])))

    @classmethod
    def of(cls, value) -> Multiplicity:
        """A :class:`Multiplicity` from an int (fixed), a Multiplicity, or a table
        ``{distribution = "poisson", mean = 10.0}`` / ``{distribution = "uniform",
        range = [5, 15]}``."""
        if isinstance(value, Multiplicity):
            return value
        if isinstance(value, dict):
            dist = value.get("distribution")
            allowed = {"poisson": {"distribution", "mean"}, "uniform": {"distribution", "range"}}
            if dist not in allowed:
                raise ConfigError(
                    f"n_particles.distribution must be 'poisson' or 'uniform', got {dist!r}"
                )
            for key in value:
                if key not in allowed[dist]:
                    raise ConfigError(
                        f"unknown key 'n_particles.{key}' for a {dist} multiplicity "
                        f"(keys: {', '.join(sorted(allowed[dist]))})"
                    )
            if dist == "poisson":
                return cls("poisson", mean=value.get("mean"))
            return cls("uniform", range=value.get("range"))
        return cls("fixed", n=value)

    def to_config(self) -> int | dict:
        """The configuration value: an int, or the table."""
        if self.distribution == "fixed":
            return self.n
        if self.distribution == "poisson":
            return {"distribution": "poisson", "mean": self.mean}
        return {"distribution": "uniform", "range": list(self.range)}

    @property
    def bound(self) -> float:
        """A generous bound on the particles of one event (for memory budgets): ``n``,
        ``b``, or the mean plus 6 standard deviations plus 1 (Poisson)."""
        if self.distribution == "fixed":
            return float(self.n)
        if self.distribution == "uniform":
            return float(self.range[1])
        return self.mean + 6.0 * self.mean**0.5 + 1.0

    def draw(self, n_events: int, rng: np.random.Generator) -> np.ndarray:
        """Particles per event, int64 (n_events,), each >= 1."""
        if self.distribution == "fixed":
            return np.full(n_events, self.n, dtype=np.int64)
        if self.distribution == "uniform":
            return rng.integers(self.range[0], self.range[1], size=n_events, endpoint=True)
        lam = self.mean
        t = -np.log1p(-rng.random(n_events) * -np.expm1(-lam))  # first arrival, < lambda
        return 1 + rng.poisson(np.maximum(lam - t, 0.0)).astype(np.int64)
