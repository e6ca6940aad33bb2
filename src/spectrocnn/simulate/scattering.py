"""Multiple Coulomb scattering at layer crossings (Highland).

The RMS projected scattering angle is Highland's (:func:`highland_theta0`, PDG Review of
Particle Physics, chapter 34 "Passage of particles through matter", eq. 34.15; R.L. Workman
et al., PTEP 2022, 083C01) for the material path through the layer
(:func:`material_path_x0`); :func:`scatter_at_layers` is the rule both propagators apply
(through :func:`spectrocnn.simulate.material.interact_at_layers`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MIN_COS_INCIDENCE",
    "beta_of",
    "highland_theta0",
    "material_path_x0",
    "scatter_at_layers",
    "scatter_directions",
]

#: Smallest ``|cos|`` of the incidence angle used for the material path through a layer:
#: the path ``x / cos`` is capped at 100 layer thicknesses (incidence beyond 89.4 deg).
#: A straight line tangent to a shell of thickness ``x`` and radius ``r`` stays in it over
#: ``2 sqrt(2 r x)``, about 35 to 70 thicknesses for 0.3 mm at r = 50 to 200 mm, and a
#: curved track leaves a plane as fast; ``1 / cos`` itself diverges at grazing incidence.
MIN_COS_INCIDENCE = 0.01


def beta_of(p_GeV: np.ndarray, mass_GeV: np.ndarray) -> np.ndarray:
    """Velocity ``beta = p / E`` of particles.

    Parameters
    ----------
    p_GeV : array_like
        Momentum magnitude [GeV/c].
    mass_GeV : array_like
        Mass [GeV/c^2].
    """
    p = np.asarray(p_GeV, dtype=np.float64)
    return p / np.sqrt(p * p + np.asarray(mass_GeV, dtype=np.float64) ** 2)


def highland_theta0(
    p_GeV: np.ndarray, beta: np.ndarray, charge: np.ndarray, x_over_x0: np.ndarray
) -> np.ndarray:
    """RMS projected multiple-scattering angle (Highland, PDG review eq. 34.15).

    ``theta0 = 13.6 MeV / (beta c p) * |z| * sqrt(x/X0) * (1 + 0.038 ln(x z^2 / (X0 beta^2)))``

    Parameters
    ----------
    p_GeV : array_like
        Momentum [GeV/c].
    beta : array_like
        Velocity.
    charge : array_like
        Charge number z.
    x_over_x0 : array_like
        Material traversed in radiation lengths (the layer thickness divided by the
        cosine of the incidence angle).

    Returns
    -------
    ndarray
        theta0 [rad]; 0 where ``x_over_x0`` or ``charge`` is 0.
    """
    p = np.asarray(p_GeV, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    z = np.abs(np.asarray(charge, dtype=np.float64))
    x = np.asarray(x_over_x0, dtype=np.float64)
    arg = x * z * z / (beta * beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = 0.0136 / (beta * p) * z * np.sqrt(x) * (1.0 + 0.038 * np.log(arg))
    return np.where(arg > 0, theta, 0.0)


def scatter_directions(
    direction: np.ndarray, theta0: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Deflect unit directions by two independent Gaussian projected angles.

    Parameters
    ----------
    direction : ndarray, shape (n, 3)
        Unit direction vectors.
    theta0 : ndarray, shape (n,)
        RMS projected angle of each particle [rad].
    rng : numpy.random.Generator
        Draws ``2 n`` standard normals.

    Returns
    -------
    ndarray, shape (n, 3)
        New unit directions; the angles projected on the planes (t, u) and (t, v), with u and
        v orthonormal and normal to t, are exactly the drawn Gaussian angles.
    """
    t = np.asarray(direction, dtype=np.float64)
    n = t.shape[0]
    g = rng.standard_normal((n, 2))
    if n == 0:
        return t.copy()
    # u: normal to t, built from the axis least aligned with t.
    axis = np.zeros_like(t)
    axis[np.arange(n), np.argmin(np.abs(t), axis=1)] = 1.0
    u = np.cross(t, axis)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(t, u)
    th = g * np.asarray(theta0, dtype=np.float64)[:, None]
    new = t + np.tan(th[:, :1]) * u + np.tan(th[:, 1:]) * v
    return new / np.linalg.norm(new, axis=1, keepdims=True)


def material_path_x0(
    direction: np.ndarray, normal: np.ndarray, thickness_x0: np.ndarray
) -> np.ndarray:
    """Material traversed at a layer crossing, in radiation lengths.

    ``x/X0 = thickness_x0 / max(|t . n|, MIN_COS_INCIDENCE)``: the layer thickness along
    the direction, capped at grazing incidence (:data:`MIN_COS_INCIDENCE`).

    Parameters
    ----------
    direction : ndarray, shape (n, 3)
        Unit directions at the crossings.
    normal : ndarray, shape (n, 3)
        Unit normals of the crossed surfaces at the crossings.
    thickness_x0 : ndarray, shape (n,)
        Layer thickness along its normal [radiation lengths].

    Returns
    -------
    ndarray, shape (n,)
    """
    cos = np.abs(np.einsum("ij,ij->i", direction, normal))
    return np.asarray(thickness_x0, dtype=np.float64) / np.maximum(cos, MIN_COS_INCIDENCE)


def scatter_at_layers(
    direction: np.ndarray,
    normal: np.ndarray,
    thickness_x0: np.ndarray,
    p_GeV: np.ndarray,
    mass_GeV: np.ndarray,
    charge: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Multiple scattering at layer crossings: the one rule of both propagators.

    The RMS projected angle is Highland's (:func:`highland_theta0`, docs/design.md 4) for the
    material path :func:`material_path_x0`; the direction is deflected by two independent
    Gaussian angles in the two planes normal to it (:func:`scatter_directions`).

    Parameters
    ----------
    direction : ndarray, shape (n, 3)
        Unit directions arriving at the layers.
    normal : ndarray, shape (n, 3)
        Unit surface normals at the crossings.
    thickness_x0 : ndarray, shape (n,)
        Layer thicknesses [radiation lengths]; 0 leaves the direction unchanged.
    p_GeV, mass_GeV, charge : ndarray, shape (n,)
        Momentum [GeV/c], mass [GeV/c^2], charge [e].
    rng : numpy.random.Generator
        Draws ``2 n`` standard normals.

    Returns
    -------
    ndarray, shape (n, 3)
        Scattered unit directions.
    """
    x_over_x0 = material_path_x0(direction, normal, thickness_x0)
    theta0 = highland_theta0(p_GeV, beta_of(p_GeV, mass_GeV), charge, x_over_x0)
    return scatter_directions(direction, theta0, rng)
