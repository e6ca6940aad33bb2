"""Ionisation energy loss: closed forms of the PDG Review, both propagators, stopping.

The Bethe formula (PDG Review "Passage of particles through matter", eq. 34.5), its
density-effect correction (eq. 34.7) and the Landau-Vavilov most probable loss (eq. 34.12)
are written out here again, independently of :mod:`spectrocnn.simulate.material`, with the
PDG constants of silicon.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import landau as scipy_landau

from spectrocnn.config import config_from_dict
from spectrocnn.simulate import material as mat
from spectrocnn.simulate.fields import UniformField
from spectrocnn.simulate.geometry import CylinderLayer, Detector
from spectrocnn.simulate.propagation import StopReason, propagate_helix
from spectrocnn.simulate.stepper import propagate_rk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from simulate import uniform_map

# PDG constants (Review table 34.1; atomic and nuclear properties of silicon)
K = 0.307075  # MeV cm^2 / mol
ME = 0.51099895  # MeV
SI_Z_OVER_A = 14 / 28.0855  # 0.49848
SI_I = 173e-6  # MeV
SI_RHO = 2.329  # g / cm^3
SI_X0_CM = 21.82 / 2.329  # 9.370 cm
# Sternheimer density-effect parameters of silicon (PDG tables)
SI_A, SI_K, SI_X0S, SI_X1, SI_CBAR, SI_D0 = 0.1492, 3.2546, 0.2015, 2.8716, 4.4355, 0.14
MU = 105.6583755  # MeV
PI = 139.57039  # MeV
PROTON = 938.27208816  # MeV


def delta(bg: float) -> float:
    """Density effect, PDG eq. 34.7."""
    x = math.log10(bg)
    if x >= SI_X1:
        return 2 * math.log(10) * x - SI_CBAR
    if x >= SI_X0S:
        return 2 * math.log(10) * x - SI_CBAR + SI_A * (SI_X1 - x) ** SI_K
    return SI_D0 * 10 ** (2 * (x - SI_X0S))


def bethe(p_MeV: float, m_MeV: float) -> float:
    """<-dE/dx> [MeV cm^2/g] of a unit charge in silicon, PDG eq. 34.5 with W_max of 34.4."""
    bg = p_MeV / m_MeV
    g = math.sqrt(1 + bg * bg)
    b2 = bg * bg / (g * g)
    wmax = 2 * ME * bg * bg / (1 + 2 * g * ME / m_MeV + (ME / m_MeV) ** 2)
    return (
        K * SI_Z_OVER_A / b2
        * (0.5 * math.log(2 * ME * bg * bg * wmax / SI_I**2) - b2 - delta(bg) / 2)
    )  # fmt: skip


def mpv(p_MeV: float, m_MeV: float, x_g_cm2: float) -> tuple[float, float]:
    """(Delta_p, xi) [MeV], PDG eq. 34.12 with j = 0.200."""
    bg = p_MeV / m_MeV
    b2 = bg * bg / (1 + bg * bg)
    xi = K / 2 * SI_Z_OVER_A * x_g_cm2 / b2
    dp = xi * (math.log(2 * ME * bg * bg / SI_I) + math.log(xi / SI_I) + 0.200 - b2 - delta(bg))
    return dp, xi


#: Landau's phi(lambda) (mode -0.22278, FWHM 4.018): SciPy's standard Landau is the c = 1
#: member of the (mu, c) family, Landau's the c = pi/2 one: loc = (2c/pi) ln c, scale = c.
landau = scipy_landau(loc=math.log(math.pi / 2), scale=math.pi / 2)
SILICON = mat.MATERIALS["silicon"]
X_300UM = 0.03 * SI_RHO  # g/cm^2


def test_silicon_constants_are_the_pdg_ones():
    assert SILICON.Z_over_A == pytest.approx(0.49848, abs=1e-5)
    assert SILICON.I_eV == 173.0
    assert SILICON.density_g_cm3 == 2.329
    assert SILICON.X0_g_cm2 == 21.82
    assert SILICON.X0_mm == pytest.approx(93.70, abs=0.01)


def test_minimum_ionisation_of_silicon_is_1_66():
    bg = np.geomspace(1.0, 20.0, 4001)
    code = mat.bethe_dedx(bg * MU / 1000, MU / 1000, 1.0, SILICON)
    ours = np.array([bethe(b * MU, MU) for b in bg])
    assert code.min() == pytest.approx(1.664, rel=0.02)  # PDG: 1.664 MeV cm^2/g
    assert ours.min() == pytest.approx(1.66, rel=0.02)
    np.testing.assert_allclose(code, ours, rtol=1e-5)  # Z/A rounded to 0.49848
    assert 2.5 < bg[np.argmin(code)] < 4.5  # minimum ionisation near beta gamma 3.5


def _losses(p_MeV: float, m_MeV: float, n: int, seed: int) -> np.ndarray:
    """Energy losses [MeV] of n particles in 300 um of silicon, drawn by the library."""
    p = np.full(n, p_MeV / 1000)
    m = np.full(n, m_MeV / 1000)
    out = mat.energy_loss_at_layers(
        p, m, np.ones(n), np.full(n, X_300UM), SILICON, np.random.default_rng(seed)
    )
    assert np.all(out > 0)
    return (np.sqrt(p * p + m * m) - np.sqrt(out * out + m * m)) * 1000


def _mode(loss: np.ndarray, xi: float, guess: float) -> float:
    """The mode of samples: a parabola through the histogram (bins xi/4) about its peak."""
    edges = np.arange(guess - 4 * xi, guess + 6 * xi, xi / 4)
    h, e = np.histogram(loss, bins=edges)
    c = 0.5 * (e[1:] + e[:-1])
    k = int(np.argmax(h))
    sel = slice(max(k - 4, 0), k + 5)
    a, b, _ = np.polyfit(c[sel], h[sel], 2)
    return -b / (2 * a)


@pytest.mark.parametrize(
    ("p_MeV", "m_MeV", "name"), [(1000.0, MU, "1 GeV/c muon"), (200.0, PI, "0.2 GeV/c pion")]
)
def test_mean_and_most_probable_loss_in_300um_silicon(p_MeV, m_MeV, name):
    mean_pdg = bethe(p_MeV, m_MeV) * X_300UM
    dp_pdg, xi = mpv(p_MeV, m_MeV, X_300UM)
    # the model: Delta_p + w xi (lambda - lambda_mp), lambda Landau truncated at the cut;
    # its expected value, integrating scipy's Landau density, is the Bethe mean
    st = {
        k: float(v[0])
        for k, v in mat.straggling(
            np.array([p_MeV / 1000]), np.array([m_MeV / 1000]), np.ones(1),
            np.array([X_300UM]), SILICON,
        ).items()
    }  # fmt: skip
    assert st["mpv"] == pytest.approx(dp_pdg, rel=1e-4)
    assert st["xi"] == pytest.approx(xi, rel=1e-4)
    assert st["mean"] == pytest.approx(mean_pdg, rel=1e-4)
    cut = st["cut"]
    m1 = quad(lambda x: x * landau.pdf(x), -10, min(cut, 10), limit=200)[0]
    if cut > 10:
        m1 += quad(
            lambda u: math.exp(2 * u) * landau.pdf(math.exp(u)),
            math.log(10),
            math.log(cut),
            limit=400,
        )[0]
    expected = dp_pdg + st["width"] * xi * (m1 / landau.cdf(cut) - mat.LANDAU_LAMBDA_MP)
    assert expected == pytest.approx(mean_pdg, rel=0.005), name
    # the largest loss: W_max (PDG eq. 34.4), the largest transfer to one electron
    bg = p_MeV / m_MeV
    g = math.sqrt(1 + bg * bg)
    wmax = 2 * ME * bg * bg / (1 + 2 * g * ME / m_MeV + (ME / m_MeV) ** 2)
    assert st["max_loss"] == pytest.approx(wmax, rel=1e-6)
    assert st["width"] == 1.0  # Landau's own width: the truncation lies below W_max
    assert st["mpv"] + st["xi"] * (cut - mat.LANDAU_LAMBDA_MP) < wmax
    # the samples: their mean (a heavy tail up to W_max: 10^6 draws, a standard error
    # below 0.5 %) and their largest value
    loss = np.concatenate([_losses(p_MeV, m_MeV, 500_000, seed) for seed in range(2)])
    assert loss.mean() == pytest.approx(mean_pdg, rel=0.02), name
    assert loss.max() <= wmax
    # the most probable value: PDG eq. 34.12 within 5 %
    assert _mode(loss, xi, dp_pdg) == pytest.approx(dp_pdg, rel=0.05), name
    # a thin layer: no particle stops, no loss is negative
    assert loss.min() >= 0


def test_landau_location_and_scale_follow_xi_and_mpv():
    """Losses are ``Delta_p + w xi (lambda - lambda_mp)``: their quantiles are those of
    scipy's Landau truncated at the cut, mapped so."""
    dp, xi = mpv(1000.0, MU, X_300UM)
    st = mat.straggling(
        np.array([1.0]), np.array([MU / 1000]), np.ones(1), np.array([X_300UM]), SILICON
    )
    w, cut = float(st["width"][0]), float(st["cut"][0])
    loss = _losses(1000.0, MU, 400_000, 7)
    for q in (0.05, 0.2, 0.5, 0.75):
        want = dp + w * xi * (landau.ppf(q * landau.cdf(cut)) - mat.LANDAU_LAMBDA_MP)
        assert np.quantile(loss, q) == pytest.approx(want, abs=0.05 * w * xi)


def test_landau_convention_is_landaus_phi():
    """Mode -0.22278 and full width at half maximum 4.018 (PDG Review 34.2.9)."""
    from scipy.optimize import brentq, minimize_scalar

    mode = minimize_scalar(lambda x: -landau.pdf(x), bracket=(-1, -0.2, 1), tol=1e-10).x
    assert mode == pytest.approx(-0.22278, abs=1e-4)
    assert abs(mat.LANDAU_LAMBDA_MP - mode) < 1e-6
    half = landau.pdf(mode) / 2
    lo = brentq(lambda x: landau.pdf(x) - half, -5, mode)
    hi = brentq(lambda x: landau.pdf(x) - half, mode, 10)
    assert hi - lo == pytest.approx(4.018, abs=1e-3)


def test_loss_never_exceeds_the_kinetic_energy():
    """A particle whose drawn loss reaches its kinetic energy stops (|p| = 0)."""
    n = 20000
    p = np.full(n, 0.06)  # a 60 MeV/c pion: T = 12 MeV, stops in a thick layer
    out = mat.energy_loss_at_layers(
        p, np.full(n, PI / 1000), np.ones(n), np.full(n, 5.0 * SI_RHO), SILICON,
        np.random.default_rng(3),
    )  # fmt: skip
    assert np.all(out == 0)
    out = mat.energy_loss_at_layers(
        np.full(n, 0.005), np.full(n, PI / 1000), np.ones(n), np.full(n, 1e-6), SILICON,
        np.random.default_rng(3),
    )  # fmt: skip
    assert np.all(out == 0)  # beta gamma < 0.1: outside Bethe's range, stops
    out = mat.energy_loss_at_layers(
        np.full(n, 0.1), np.full(n, PI / 1000), np.ones(n), np.full(n, X_300UM), SILICON,
        np.random.default_rng(3),
    )  # fmt: skip
    assert np.all((out > 0) & (out < 0.1))


def _barrel(field, *, thickness_mm: float, energy_loss: bool = True) -> Detector:
    layers = tuple(
        CylinderLayer(
            radius_mm=float(r),
            half_length_mm=1000.0,
            thickness_x0=thickness_mm / SILICON.X0_mm,
            energy_loss=energy_loss,
        )
        for r in range(50, 201, 10)
    )
    return Detector(layers, field)


def _tracks(n: int, p_GeV: float, seed: int = 5):
    rng = np.random.default_rng(seed)
    phi = rng.uniform(0, 2 * np.pi, n)
    dip = rng.uniform(-0.2, 0.2, n)
    mom = p_GeV * np.stack([np.cos(phi) * np.cos(dip), np.sin(phi) * np.cos(dip), np.sin(dip)], 1)
    return np.zeros((n, 3)), mom


def test_helix_and_stepper_agree_with_energy_loss_and_scattering():
    """Same tracks, same seed, through the exact helix and the stepper on a uniform map:
    the |p| at every layer and the stopping fractions agree within their statistics."""
    det = _barrel(UniformField((0.0, 0.0, 2.0)), thickness_mm=3.0)
    det_map = Detector(det.layers, uniform_map(det))
    n = 1000
    pos, mom = _tracks(n, 0.128)
    args = (pos, mom, np.ones(n), np.full(n, PI / 1000))
    res = {
        "helix": propagate_helix(det, *args, np.random.default_rng(1)),
        "stepper": propagate_rk(det_map, *args, np.random.default_rng(1)),
    }
    stats = {}
    for name, c in res.items():
        pm = np.linalg.norm(c.momentum, axis=1)
        # |p| decreases along each track (energy loss; scattering keeps it)
        same = c.particle[1:] == c.particle[:-1]
        assert np.all(pm[1:][same] < pm[:-1][same]), name
        stats[name] = (c.layer, pm, np.mean(c.stop == StopReason.AT_REST))
    (lh, ph, fh), (ls, ps, fs) = stats["helix"], stats["stepper"]
    assert 0.1 < fh < 0.9  # many stop, many leave: the test sees both outcomes
    assert abs(fh - fs) < 4 * math.sqrt(2 * fh * (1 - fh) / n)
    for layer in range(16):
        a, b = ph[lh == layer], ps[ls == layer]
        if min(len(a), len(b)) < 30:
            continue
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se + 1e-9, layer
        assert abs(len(a) - len(b)) < 4 * math.sqrt(len(a) + len(b)) + 5, layer
    # and the first crossing, before any material: identical momenta
    first_h = ph[np.r_[True, res["helix"].particle[1:] != res["helix"].particle[:-1]]]
    first_s = ps[np.r_[True, res["stepper"].particle[1:] != res["stepper"].particle[:-1]]]
    np.testing.assert_allclose(first_h, first_s, rtol=1e-12)


@pytest.mark.parametrize("propagator", ["helix", "stepper"])
def test_a_particle_that_stops_leaves_no_further_hits(propagator):
    """A 0.2 GeV/c proton (T = 21 MeV, CSDA range about 2.3 mm of silicon) in 1 mm layers
    stops within the first few layers; its crossings end there."""
    det = _barrel(UniformField((0.0, 0.0, 2.0)), thickness_mm=1.0)
    if propagator == "stepper":
        det = Detector(det.layers, uniform_map(det))
    n = 200
    pos, mom = _tracks(n, 0.2, seed=9)
    f = propagate_helix if propagator == "helix" else propagate_rk
    args = (pos, mom, np.ones(n), np.full(n, PROTON / 1000))
    c = f(det, *args, np.random.default_rng(2))
    assert np.all(c.stop == StopReason.AT_REST)
    assert c.stop_counts()["at_rest"] == n
    per_particle = np.bincount(c.particle, minlength=n)
    assert per_particle.max() <= 4 and per_particle.min() >= 1
    # consecutive layers from the innermost: none after the one it stopped in
    for i in range(n):
        np.testing.assert_array_equal(c.layer[c.particle == i], np.arange(per_particle[i]))
    # without energy loss the same protons cross every layer
    det_off = _barrel(det.field, thickness_mm=1.0, energy_loss=False)
    c_off = f(det_off, *args, np.random.default_rng(2))
    assert np.all(np.bincount(c_off.particle, minlength=n) == 16)


def test_energy_loss_off_draws_nothing_more():
    """energy_loss off (the default) leaves the random stream and the result as before."""
    det_on = _barrel(UniformField((0.0, 0.0, 2.0)), thickness_mm=0.3, energy_loss=False)
    det_none = Detector(
        tuple(
            CylinderLayer(radius_mm=layer.radius_mm, thickness_x0=layer.thickness_x0)
            for layer in det_on.layers
        ),
        det_on.field,
    )
    pos, mom = _tracks(300, 0.5)
    args = (pos, mom, np.ones(300), np.full(300, PI / 1000))
    a = propagate_helix(det_on, *args, np.random.default_rng(4))
    b = propagate_helix(det_none, *args, np.random.default_rng(4))
    np.testing.assert_array_equal(a.momentum, b.momentum)


def test_configuration_keys():
    cfg = config_from_dict(
        {
            "detector": {
                "material": "silicon",
                "thickness_mm": 0.3,
                "energy_loss": True,
                "layers": [
                    {"radius_mm": 50.0},
                    {"radius_mm": 60.0, "thickness_x0": 0.01},
                    {"radius_mm": 70.0, "thickness_mm": 0.6, "energy_loss": False},
                ],
            }
        }
    )
    layers = cfg.simulation.detector.layers
    assert layers[0].thickness_x0 == pytest.approx(0.3 / 93.70, rel=1e-4)
    assert layers[0].thickness_mm == pytest.approx(0.3)
    assert layers[0].energy_loss and layers[0].material == "silicon"
    assert layers[1].thickness_x0 == 0.01 and layers[1].energy_loss
    assert layers[2].thickness_mm == pytest.approx(0.6) and not layers[2].energy_loss
    resolved = cfg.to_dict()
    assert resolved["detector"]["thickness_mm"] == 0.3
    assert "thickness_x0" not in resolved["detector"]
    assert config_from_dict(resolved).to_dict() == resolved
    default = config_from_dict({})
    assert default.to_dict()["detector"]["energy_loss"] is False
    assert all(not layer.energy_loss for layer in default.simulation.detector.layers)
