"""The NoiseModel adapter (engines/families/noise_model.py): every noise-based family reads as a
denoiser / score / eps at a VE noise level sigma = s / alpha, checked against closed forms; every
applicable sampler runs on every such family."""

import math

import pytest
import torch

from engines import families
from engines import schedules as sch
from engines.config import build
from engines.data import GaussianMixture
from engines.families.exact import noised_mixture
from engines.families.noise_model import (GENERIC_SAMPLERS, SIGMA_MAX, DiscreteVP, LinearPath, NoiseModel,
                                          SDEProcess, steps_for_nfe)

MIX = GaussianMixture([0.6, 0.4], [[-0.8, 0.2], [0.9, -0.3]], 0.5)
NOISE_FAMILIES = ["ddpm", "ncsn", "score_sde", "dsm", "score_matching", "exact", "flow_matching"]


def make(name, shape=(2,), **opts):
    cls = families.get(name)
    small = {k: v for k, v in dict(hidden=16, depth=1, T=20).items() if k in cls.Config.__dataclass_fields__}
    return cls(build(cls.Config, {**small, **opts}), shape, "cpu", dict(mixture=MIX))


PROCESSES = {
    "ddpm cosine": DiscreteVP(sch.alphas_cumprod(sch.betas("cosine", 50))),
    "vp": SDEProcess(sch.VPSDE(0.1, 20.0), 1e-3),
    "subvp": SDEProcess(sch.SubVPSDE(0.1, 20.0), 1e-3),
    "ve": SDEProcess(sch.VESDE(0.01, 5.0), 1e-3),
    "linear path": LinearPath(1e-3, 1 - 1e-3),
}


@pytest.mark.parametrize("name", PROCESSES)
def test_sigma_of_t_inverts(name):
    p = PROCESSES[name]
    t = torch.linspace(p.t_min, p.t_max, 37, dtype=torch.float64)
    assert torch.allclose(p.t_of_sigma(p.sigma(t)), t, atol=1e-6 * max(1.0, p.t_max))
    a, s = p.alpha_s(t)
    assert (p.sigma(t).diff() > 0).all()
    if name in ("vp", "ddpm cosine"):
        assert torch.allclose(a ** 2 + s ** 2, torch.ones_like(a))
    if name == "linear path":
        assert torch.allclose(a, 1 - t) and torch.allclose(s, t)


@pytest.mark.parametrize("process", ["ddpm", "vp", "subvp", "ve", "ncsn"])
def test_native_path_gives_the_exact_denoiser(process):
    """The base class's map (x_t = alpha x at t(sigma), eps from the family's own parametrization)
    applied to the exact family's native eps equals the closed form in VE coordinates."""
    fam = make("exact", process=process)
    lo, hi = fam.process.sigma_range()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    sigma = torch.exp(torch.linspace(math.log(lo), math.log(hi), 64, dtype=torch.float64))
    via_native = NoiseModel.eps(fam, x, sigma)          # the generic mapping
    closed = fam.eps(x, sigma)                          # -sigma grad log p_sigma, exact
    assert torch.allclose(via_native, closed, atol=1e-6, rtol=1e-5)
    d = fam.denoise(x, sigma)
    want = x + sigma[:, None] ** 2 * noised_mixture(MIX, x, 1.0, sigma)[0]   # Tweedie
    assert torch.allclose(d, want, atol=1e-9)
    assert torch.allclose(fam.score(x, sigma), noised_mixture(MIX, x, 1.0, sigma)[0], atol=1e-9)


def test_ddpm_adapter_agrees_with_its_own_eps_at_integer_steps():
    fam = make("ddpm")
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(1))
    for t in (0, 7, 19):
        tt = torch.full((10,), t)
        want = fam.eps_fn()(x, tt)
        assert torch.allclose(fam.native_eps(x, tt.float()), want, atol=1e-6)
        sigma = math.sqrt((1 - float(fam.abar[t])) / float(fam.abar[t]))
        got = fam.eps(x / math.sqrt(float(fam.abar[t])), torch.full((10,), sigma))
        assert torch.allclose(got, want, atol=1e-4)
        # the field is the score of x_t: -eps / sqrt(1 - abar_t)
        f = fam.field(x, t)["score"]
        assert torch.allclose(torch.as_tensor(f), -want / math.sqrt(1 - float(fam.abar[t])), atol=1e-5)


@pytest.mark.parametrize("v_pred", ["eps", "x0", "v"])
def test_ddpm_prediction_types_read_the_same_noise(v_pred):
    fam = make("ddpm", prediction=v_pred)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    t = torch.full((8,), 5)
    assert torch.allclose(fam.native_eps(x, t.float()), fam.eps_fn()(x, t), atol=1e-5)


CHEAP = dict(steps=3, n_steps=4, steps_per_level=1, rtol=1e-1, atol=1e-1)


def cheap_options(fam, sampler):
    fields = fam.samplers[sampler].__dataclass_fields__
    return {k: v for k, v in CHEAP.items() if k in fields}


CASES = [("ddpm", {}), ("ncsn", {}), ("score_sde", dict(sde="vp")), ("score_sde", dict(sde="ve")),
         ("score_sde", dict(sde="subvp")), ("dsm", {}), ("score_matching", {}), ("exact", {}),
         ("exact", dict(process="ddpm")), ("flow_matching", {})]


@pytest.mark.parametrize("name,opts", CASES, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CASES])
def test_every_applicable_sampler_runs_on_every_noise_family(name, opts):
    torch.manual_seed(0)
    fam = make(name, **opts)
    assert isinstance(fam, NoiseModel)
    names = fam.applicable_samplers()
    if name not in ("dsm", "score_matching"):
        assert set(GENERIC_SAMPLERS) <= set(names), names
    else:  # one noise level: nothing to walk down, only Langevin applies
        assert names == ["langevin"]
    for sampler in names:
        steps = []
        x = fam.sample(12, sampler, cheap_options(fam, sampler), generator=torch.Generator().manual_seed(3),
                       callback=steps.append)
        assert x.shape == (12, 2) and torch.isfinite(x).all(), sampler
        assert steps, sampler


@pytest.mark.parametrize("name", ["ddpm", "flow_matching"])
def test_generic_samplers_on_images(name):
    fam = make(name, shape=(1, 8, 8))
    for sampler in ("euler", "dpmpp_2m"):
        x = fam.sample(2, sampler, dict(steps=2), generator=torch.Generator().manual_seed(0))
        assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()


def test_callbacks_report_native_coordinates():
    """A generic sampler's steps arrive as the family's x_t = alpha x at its own time t."""
    fam = make("exact", process="ddpm", T=20)
    seen = []
    out = fam.sample(5, "euler", dict(steps=6), generator=torch.Generator().manual_seed(0), callback=seen.append)
    ts = [s["t"] for s in seen]
    assert all(0 <= t <= 19 for t in ts) and ts == sorted(ts, reverse=True) and ts[-1] == 0
    assert torch.allclose(seen[-1]["x"], out)
    # every x_t is at most a few units: the VE coordinates (~sigma_max) are not what is shown
    assert max(float(s["x"].abs().max()) for s in seen) < 10


def test_budgets_spend_what_they_say():
    assert steps_for_nfe("euler", 10) == 10 and steps_for_nfe("heun", 10) == 5
    assert steps_for_nfe("ode_rk4", 10) == 2 and steps_for_nfe("ode_rk4", 4) is None
    fam = make("exact")
    for sampler, nfe in (("euler", 7), ("heun", 9), ("dpmpp_2m", 5), ("ode_rk4", 13)):
        calls = []
        real = fam.eps
        fam.eps = lambda x, s: (calls.append(1), real(x, s))[1]
        fam.sample(4, sampler, fam.budget_options(sampler, nfe))
        del fam.eps
        assert len(calls) == nfe, (sampler, len(calls))


def test_single_level_families_read_their_level():
    fam = make("dsm", sigma=0.3)
    assert fam.process.sigma_range() == (0.3, 0.3) and fam.level_alpha_sigma(None) == (1.0, 0.3)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        s = fam.net_score(x)
        assert torch.allclose(fam.score(x), s) and torch.allclose(fam.denoise(x, 0.3), x + 0.09 * s)
    with pytest.raises(ValueError, match="one noise level"):
        fam.sigma_grid(5)


def test_discrete_models_are_read_at_their_trained_levels():
    """DDPM (integer steps) and a ladder-trained NCSN are read at the nearest trained level, and their
    sigma grids are snapped to those levels, so the budget counts the grid actually walked."""
    fam = make("ddpm")                                            # T = 20
    nodes = fam.process.nodes
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    between = math.sqrt(float(nodes[7] * nodes[8]))              # halfway in log sigma, nearer neither much
    near7 = float(nodes[7]) * 1.01
    assert torch.allclose(fam.eps(x, torch.full((4,), near7)), fam.eps(x, torch.full((4,), float(nodes[7]))))
    assert torch.isfinite(fam.eps(x, torch.full((4,), between))).all()
    g = fam.sigma_grid(50, "karras")                              # more steps than levels: collapses
    assert len(g) - 1 <= 20 and all(any(abs(float(s) / float(n) - 1) < 1e-9 for n in nodes) for s in g[:-1])
    for sampler in ("euler", "heun", "dpmpp_2m", "ode_rk4"):
        opts = fam.budget_options(sampler, 12)
        o = fam.sampler_options(sampler, opts)[1]
        assert fam.nfe_of(sampler, o) <= 12
        calls = []
        real = fam.eps
        fam.eps = lambda x, s: (calls.append(1), real(x, s))[1]
        fam.sample(3, sampler, opts)
        del fam.eps
        assert len(calls) == fam.nfe_of(sampler, o), sampler
    ncsn = make("ncsn", n_levels=6)
    assert torch.allclose(ncsn.process.nodes, ncsn.sigmas.flip(0).double())
    assert set(ncsn.sigma_grid(10, "logsnr")[:-1].tolist()) <= set(ncsn.sigmas.double().tolist())
    assert make("ncsn", sigma_sampling="continuous").process.nodes is None


def test_grids_start_at_most_at_sigma_max():
    fam = make("exact", process="ddpm", T=100)                    # its chain ends near sigma = 2000
    assert fam.process.sigma_range()[1] > 1000
    assert float(fam.sigma_grid(10)[0]) == pytest.approx(SIGMA_MAX)
    assert float(fam.sigma_grid(10, sigma_max=1e6)[0]) == pytest.approx(fam.process.sigma_range()[1])
