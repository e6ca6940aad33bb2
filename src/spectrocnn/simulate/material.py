"""Material effects at layer crossings: multiple scattering and ionisation energy loss.

Multiple Coulomb scattering follows Highland (:mod:`spectrocnn.simulate.scattering`,
:func:`highland_theta0`); ionisation energy loss (:mod:`spectrocnn.simulate.energy_loss`,
:func:`energy_loss_at_layers`, on layers with ``energy_loss``) draws, at each crossing, a
loss with the Bethe mean (:func:`bethe_dedx`) and the Landau most probable value
(:func:`landau_mpv`). This module holds the material table and the rule at a crossing, and
names the formulas of both (``from spectrocnn.simulate import material as mat``, then
``mat.bethe_dedx``...). References are to the PDG Review of Particle Physics, chapter
34 "Passage of particles through matter" (R.L. Workman et al., PTEP 2022, 083C01, and
its 2024 update, S. Navas et al., Phys. Rev. D 110, 030001). :func:`interact_at_layers`
is the one rule that both propagators apply at a crossing; between layers a magnetic
field does no work and ``|p|`` is conserved.

Material constants (:data:`MATERIALS`) are those of the PDG "Atomic and nuclear
properties of materials" tables (pdg.lbl.gov/AtomicNuclearProperties).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.simulate.energy_loss import (
    ELECTRON_MASS_MEV,
    K_MEV_CM2_PER_MOL,
    LANDAU_J,
    LANDAU_LAMBDA_MP,
    LANDAU_LOC,
    LANDAU_SCALE,
    MIN_BETA_GAMMA,
    bethe_dedx,
    density_effect,
    energy_loss_at_layers,
    landau_mpv,
    landau_xi,
    straggling,
)
from spectrocnn.simulate.scattering import (
    MIN_COS_INCIDENCE,
    beta_of,
    highland_theta0,
    material_path_x0,
    scatter_at_layers,
    scatter_directions,
)

# the formulas of both interactions are named here too (``mat.bethe_dedx``)
__all__ = [
    "ELECTRON_MASS_MEV",
    "K_MEV_CM2_PER_MOL",
    "LANDAU_J",
    "LANDAU_LAMBDA_MP",
    "LANDAU_LOC",
    "LANDAU_SCALE",
    "MATERIALS",
    "MIN_BETA_GAMMA",
    "MIN_COS_INCIDENCE",
    "LayerMaterials",
    "Material",
    "beta_of",
    "bethe_dedx",
    "density_effect",
    "energy_loss_at_layers",
    "get_material",
    "highland_theta0",
    "interact_at_layers",
    "landau_mpv",
    "landau_xi",
    "material_path_x0",
    "scatter_at_layers",
    "scatter_directions",
    "straggling",
]


@dataclass(frozen=True)
class Material:
    """A layer material: the constants of the Bethe formula and of the radiation length.

    Values from the PDG "Atomic and nuclear properties of materials" tables.

    Attributes
    ----------
    name : str
        Name used in the configuration (``material = "silicon"``).
    Z_over_A : float
        ``<Z/A>`` [mol/g].
    I_eV : float
        Mean excitation energy [eV].
    density_g_cm3 : float
        Density [g/cm^3].
    X0_g_cm2 : float
        Radiation length [g/cm^2].
    X0_cm : float
        Radiation length [cm], as the table gives it (``X0_g_cm2 / density_g_cm3`` to its
        rounding); it converts ``thickness_mm`` to ``x/X0`` and back, so a layer of
        ``thickness_mm`` has the mass thickness ``thickness_mm / 10 * density_g_cm3``.
    a, k, x0, x1, C_bar, delta0 : float
        Sternheimer's density-effect parameters (PDG Review eq. 34.7; Sternheimer,
        Berger and Seltzer, Atomic Data and Nuclear Data Tables 30 (1984) 261).
    """

    name: str
    Z_over_A: float
    I_eV: float
    density_g_cm3: float
    X0_g_cm2: float
    X0_cm: float
    a: float
    k: float
    x0: float
    x1: float
    C_bar: float
    delta0: float

    @property
    def X0_mm(self) -> float:
        """Radiation length [mm]."""
        return self.X0_cm * 10.0

    @property
    def mass_per_x0_g_cm2(self) -> float:
        """Mass thickness of one radiation length of path [g/cm^2]: ``X0_cm * density``."""
        return self.X0_cm * self.density_g_cm3


#: The known layer materials (PDG atomic and nuclear properties tables).
MATERIALS: dict[str, Material] = {
    "silicon": Material(
        name="silicon",
        Z_over_A=0.49848,  # Z = 14, A = 28.0855
        I_eV=173.0,
        density_g_cm3=2.329,
        X0_g_cm2=21.82,
        X0_cm=9.370,
        a=0.1492,
        k=3.2546,
        x0=0.2015,
        x1=2.8716,
        C_bar=4.4355,
        delta0=0.14,
    ),
}


def get_material(name: str, key: str = "material") -> Material:
    """The :class:`Material` called ``name``.

    Raises
    ------
    ConfigError
        For an unknown name (the message names ``key``, the value and the known materials).
    """
    if isinstance(name, str) and name in MATERIALS:
        return MATERIALS[name]
    close = difflib.get_close_matches(str(name), sorted(MATERIALS), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"{key} {name!r} is not a known material (known: {', '.join(sorted(MATERIALS))}){hint}"
    )


@dataclass(frozen=True)
class LayerMaterials:
    """Per-layer material arrays of a detector, in the form :func:`interact_at_layers` uses.

    Attributes
    ----------
    thickness_x0 : ndarray, shape (L,)
        Thickness at normal incidence [radiation lengths].
    energy_loss : ndarray of bool, shape (L,)
        Whether a crossing loses energy.
    material : tuple of Material
        The distinct materials of the layers, in order of first appearance.
    material_index : ndarray of int, shape (L,)
        Each layer's entry in ``material``.
    any_material, any_energy_loss : bool
        Whether some layer has material; whether some layer loses energy.
    """

    thickness_x0: np.ndarray
    energy_loss: np.ndarray
    material: tuple
    material_index: np.ndarray
    any_material: bool
    any_energy_loss: bool

    @classmethod
    def of(cls, detector) -> LayerMaterials:
        """Build from a detector's layers."""
        th = np.array([layer.thickness_x0 for layer in detector.layers], dtype=np.float64)
        el = np.array([bool(layer.energy_loss) for layer in detector.layers]) & (th > 0)
        names = [layer.material for layer in detector.layers]
        distinct = list(dict.fromkeys(names))
        mats = tuple(get_material(name) for name in distinct)
        index = np.array([distinct.index(name) for name in names], dtype=np.intp)
        return cls(th, el, mats, index, bool(np.any(th > 0)), bool(el.any()))


def interact_at_layers(
    direction: np.ndarray,
    normal: np.ndarray,
    layer: np.ndarray,
    materials: LayerMaterials,
    p_GeV: np.ndarray,
    mass_GeV: np.ndarray,
    charge: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The material interactions at layer crossings: the one rule of both propagators.

    First multiple scattering (:func:`scatter_at_layers`, ``2 n`` normals from ``rng``),
    then, at the crossings of layers with ``energy_loss``, ionisation energy loss
    (:func:`energy_loss_at_layers`, one uniform per such crossing, in order) over the
    mass thickness ``x/X0 * X0_cm * density`` of the material path
    (:func:`material_path_x0`: ``thickness / |cos|`` with the grazing cap
    :data:`MIN_COS_INCIDENCE`). Without energy-loss layers nothing more is
    drawn from ``rng``.

    Parameters
    ----------
    direction, normal : ndarray, shape (n, 3)
        Unit directions arriving at the layers; unit surface normals there.
    layer : ndarray of int, shape (n,)
        Index of the crossed layer of each crossing.
    materials : LayerMaterials
    p_GeV, mass_GeV, charge : ndarray, shape (n,)
        Momentum arriving [GeV/c], mass [GeV/c^2], charge [e].
    rng : numpy.random.Generator

    Returns
    -------
    direction : ndarray, shape (n, 3)
        Scattered unit directions.
    p_GeV : ndarray, shape (n,)
        ``|p|`` leaving the layers [GeV/c]; 0 for a particle that stops in its layer.
    """
    layer = np.asarray(layer, dtype=np.intp)
    p = np.asarray(p_GeV, dtype=np.float64)
    thickness = materials.thickness_x0[layer]
    new_dir = scatter_at_layers(direction, normal, thickness, p, mass_GeV, charge, rng)
    if not materials.any_energy_loss:
        return new_dir, p
    p_out = p.copy()
    lose = np.flatnonzero(materials.energy_loss[layer])
    if lose.size:
        x_over_x0 = material_path_x0(direction[lose], normal[lose], thickness[lose])
        mass = np.broadcast_to(np.asarray(mass_GeV, dtype=np.float64), p.shape)[lose]
        q = np.broadcast_to(np.asarray(charge, dtype=np.float64), p.shape)[lose]
        # one material after the other, in the order of the detector's material table
        mat_of = materials.material_index[layer[lose]]
        for k, mat in enumerate(materials.material):
            sel = np.flatnonzero(mat_of == k) if len(materials.material) > 1 else slice(None)
            p_out[lose[sel]] = energy_loss_at_layers(
                p[lose[sel]], mass[sel], q[sel], x_over_x0[sel] * mat.mass_per_x0_g_cm2, mat, rng
            )
    return new_dir, p_out
