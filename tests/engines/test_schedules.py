"""Noise schedules, SDE marginals and the discrete diffusion samplers, checked against closed forms
and simulation; the DDPM family's parametrizations and a brief training run."""
import math

import pytest
import torch
from torch import nn

from engines import samplers as S
from engines import schedules as sch
from engines.config import RunConfig, TrainConfig, build
from engines.families.ddpm import DDPM, DDPMConfig
from engines.run import Run


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- discrete betas

@pytest.mark.parametrize("kind", sch.BETA_KINDS)
def test_beta_schedules_are_valid(kind):
    b = sch.betas(kind, 1000)
    assert b.shape == (1000,) and b.dtype == torch.float64
    assert bool(((b > 0) & (b < 1)).all())
    abar = sch.alphas_cumprod(b)
    assert bool((abar[1:] < abar[:-1]).all())          # strictly decreasing
    assert 0 < float(abar[-1]) < float(abar[0]) < 1
    if kind in ("linear", "scaled_linear", "quadratic"):  # span [beta_start, beta_end] exactly
        assert float(b[0]) == pytest.approx(1e-4, rel=1e-6) and float(b[-1]) == pytest.approx(0.02, rel=1e-6)
    if kind == "sigmoid":                                  # sigmoid(+-6) of the way in (GeoDiff / diffusers)
        assert float(b[0]) == pytest.approx(1e-4 + (0.02 - 1e-4) / (1 + math.exp(6)), rel=1e-6)
        assert bool((b >= 1e-4).all() & (b <= 0.02).all())
    if kind != "cosine":
        assert bool((b[1:] >= b[:-1]).all())


def test_cosine_schedule_reaches_pure_noise_and_follows_its_abar():
    T, s = 1000, 0.008
    abar = sch.alphas_cumprod(sch.betas("cosine", T))
    assert float(abar[-1]) < 1e-3
    # away from the 0.999 clip, abar_t = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2) (Nichol & Dhariwal eq. 17)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = lambda u: torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    want = f(t) / f(torch.zeros(1, dtype=torch.float64))
    assert torch.allclose(abar[:900], want[:900], rtol=1e-9)
    assert float(sch.betas("cosine", T).max()) <= 0.999


def test_unknown_beta_kind_is_refused():
    with pytest.raises(ValueError, match="cosine"):
        sch.betas("exponential", 10)


def test_closed_form_q_xt_given_x0_matches_iterating_the_chain():
    """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z, iterated, against
    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (DDPM eq. 4)."""
    b = sch.betas("linear", 50, 1e-3, 0.2)
    abar = sch.alphas_cumprod(b)
    g = gen(0)
    N = 100000
    x0 = torch.tensor([1.5, -0.7], dtype=torch.float64)
    x = x0.expand(N, 2).clone()
    for t in range(50):
        x = math.sqrt(1 - b[t]) * x + math.sqrt(b[t]) * torch.randn(N, 2, generator=g, dtype=torch.float64)
        if t in (0, 9, 24, 49):
            mean, var = math.sqrt(abar[t]) * x0, 1 - float(abar[t])
            se = math.sqrt(var / N)
            assert torch.allclose(x.mean(0), mean, atol=5 * se)
            assert torch.allclose(x.var(0), torch.full((2,), var, dtype=torch.float64), rtol=5 * math.sqrt(2 / N))


def test_posterior_variance_is_the_gaussian_conditional_variance():
    """beta-tilde_t = Var[x_{t-1} | x_t, x_0]: from the joint of (x_{t-1}, x_t) given x_0,
    Var(x_{t-1}) - Cov^2 / Var(x_t) with Var(x_{t-1}) = 1 - abar_{t-1}, Cov = sqrt(alpha_t) Var(x_{t-1})."""
    b = sch.betas("cosine", 100)
    abar = sch.alphas_cumprod(b)
    pv = sch.posterior_variance(b)
    assert pv.shape == (100,) and float(pv[0]) == 0.0
    v_prev = 1 - abar[:-1]
    cond = v_prev - (1 - b[1:]) * v_prev ** 2 / (1 - abar[1:])
    assert torch.allclose(pv[1:], cond, rtol=1e-9, atol=1e-15)
    assert bool((pv[1:] <= b[1:]).all())                # beta-tilde <= beta (DDPM sec. 3.2)


def test_snr_and_log_snr():
    abar = sch.alphas_cumprod(sch.betas("linear", 100))
    assert torch.allclose(sch.log_snr(abar), torch.log(sch.snr(abar)), rtol=1e-10)
    assert bool((sch.log_snr(abar)[1:] < sch.log_snr(abar)[:-1]).all())


# ----------------------------------------------------------------------------- sigma ladders

def test_geometric_sigmas():
    s = sch.geometric_sigmas(50.0, 0.01, 10)
    assert s.shape == (10,)
    assert float(s[0]) == pytest.approx(50.0, rel=1e-5) and float(s[-1]) == pytest.approx(0.01, rel=1e-5)
    r = s[1:] / s[:-1]
    assert torch.allclose(r, r[0].expand(9), rtol=1e-4) and float(r[0]) < 1
    with pytest.raises(ValueError):
        sch.geometric_sigmas(0.01, 50.0, 10)


def test_karras_sigmas():
    s = sch.karras_sigmas(18, 0.002, 80.0)
    assert s.shape == (19,) and float(s[-1]) == 0.0
    assert bool((s[1:] < s[:-1]).all())
    assert float(s[0]) == pytest.approx(80.0, rel=1e-5) and float(s[-2]) == pytest.approx(0.002, rel=1e-4)
    # Karras eq. 5: sigma^(1/rho) is evenly spaced
    r = s[:-1].double() ** (1 / 7)
    d = r[1:] - r[:-1]
    assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-4)


# ----------------------------------------------------------------------------- SDEs

def test_sde_marginal_stds():
    t = torch.linspace(0, 1, 101)
    vp, sub, ve = sch.VPSDE(), sch.SubVPSDE(), sch.VESDE()
    s_vp, s_sub = vp.marginal_std(t), sub.marginal_std(t)
    assert float(s_vp[0]) == 0.0 and float(s_vp[-1]) == pytest.approx(1.0, abs=1e-3)
    assert float(s_sub[0]) == 0.0 and bool((s_sub <= s_vp + 1e-7).all()) and bool((s_sub[1:] < s_vp[1:]).all())
    assert torch.allclose(ve.marginal_std(t), ve.sigma(t))
    assert float(ve.marginal_std(t[-1:])) == pytest.approx(50.0, rel=1e-5)
    x0 = torch.randn(4, 3)
    mean, _ = vp.marginal_prob(x0, torch.full((4,), 1.0))
    assert float(mean.abs().max()) < 0.01 * float(x0.abs().max()) + 1e-6      # the data is forgotten
    assert torch.equal(ve.marginal_prob(x0, torch.full((4,), 0.5))[0], x0)


@pytest.mark.parametrize("sde", [sch.VPSDE(), sch.SubVPSDE(), sch.VESDE(sigma_min=0.01, sigma_max=5.0)],
                         ids=["vp", "subvp", "ve"])
def test_sde_marginal_matches_euler_maruyama_simulation(sde):
    """Simulate dx = f dt + g dw forward from a fixed x0 and compare moments with marginal_prob."""
    g = gen(1)
    N, steps = 20000, 1000
    x0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    x = x0.expand(N, 2).clone()
    dt = 1.0 / steps
    checks = {500: None, 1000: None}
    for i in range(steps):
        t = torch.full((N,), i * dt, dtype=torch.float64)
        drift, diff = sde.sde(x, t)
        x = x + drift * dt + sch.append_dims(diff, 2) * math.sqrt(dt) * torch.randn(N, 2, generator=g, dtype=torch.float64)
        if i + 1 in checks:
            tt = torch.full((1,), (i + 1) * dt, dtype=torch.float64)
            mean, std = sde.marginal_prob(x0[None], tt)
            std = float(std)
            assert torch.allclose(x.mean(0), mean[0], atol=5 * std / math.sqrt(N) + 0.01 * std)
            assert torch.allclose(x.std(0), torch.full((2,), std, dtype=torch.float64), rtol=0.03)


def test_prior_sampling_and_logp():
    for sde, std in ((sch.VPSDE(), 1.0), (sch.VESDE(), 50.0)):
        z = sde.prior_sampling((50000, 2), generator=gen(2))
        assert float(z.std()) == pytest.approx(std, rel=0.02)
        want = -math.log(2 * math.pi * std ** 2) - (z ** 2).sum(1) / (2 * std ** 2)
        assert torch.allclose(sde.prior_logp(z), want, rtol=1e-5)


# ----------------------------------------------------------------------------- samplers with an exact model

M_DATA, C_DATA = torch.tensor([1.0, -0.5]), 0.3       # data N(m, c^2 I): every noised score is analytic


def gaussian_eps_fn(abar):
    """The exact eps(x_t, t) = -sqrt(1 - abar_t) grad log q_t(x_t) for N(m, c^2 I) data,
    q_t = N(sqrt(abar_t) m, (abar_t c^2 + 1 - abar_t) I)."""
    abar = torch.as_tensor(abar, dtype=torch.float64)

    def f(x, t):
        a = abar[t].float()[:, None]
        var = a * C_DATA ** 2 + 1 - a
        return (1 - a).sqrt() * (x - a.sqrt() * M_DATA) / var
    return f


def check_gaussian(x, tol_mean=0.03, tol_std=0.04):
    assert torch.allclose(x.mean(0), M_DATA, atol=tol_mean), x.mean(0)
    assert torch.allclose(x.std(0), torch.full((2,), C_DATA), atol=tol_std), x.std(0)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_sampler_with_the_exact_eps_recovers_gaussian_data(variance):
    b = sch.betas("cosine", 200)
    steps = []
    x = S.ddpm(gaussian_eps_fn(sch.alphas_cumprod(b)), torch.randn(20000, 2, generator=gen(3)), b, variance,
               generator=gen(4), callback=steps.append)
    assert len(steps) == 200 and steps[-1]["t"] == 0 and steps[0]["t"] == 199
    check_gaussian(x)


def test_ddim_timesteps_use_leading_spacing():
    """t_i = floor(i T / n) for i = n-1 .. 0 (DDIM's own `range(0, T, T // n)`): the first step is
    T - T/n, never T-1 where the cosine schedule's abar (2.4e-7 at T=100) makes x0 = (x - s eps)/a
    multiply the eps error by ~2000."""
    assert S.ddim_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert S.ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert S.ddim_timesteps(10, 500) == list(range(9, -1, -1))          # capped at T steps
    ts = S.ddim_timesteps(1000, 7)
    assert len(ts) == 7 and ts == sorted(set(ts), reverse=True) and ts[-1] == 0 and ts[0] == 6 * 1000 // 7
    abar = sch.alphas_cumprod(sch.betas("cosine", 100))
    assert float(abar[99]) < 1e-6 < 1e-2 < float(abar[S.ddim_timesteps(100, 10)[0]])


def test_scaled_linear_and_quadratic_are_one_formula_and_the_help_says_so():
    """Two names (diffusers / Ho et al.'s code) for sqrt(beta) evenly spaced, squared."""
    a, b = sch.betas("scaled_linear", 37, 1e-3, 0.05), sch.betas("quadratic", 37, 1e-3, 0.05)
    assert torch.equal(a, b)
    want = torch.linspace(1e-3 ** 0.5, 0.05 ** 0.5, 37, dtype=torch.float64) ** 2
    assert torch.allclose(a, want, rtol=1e-12)
    from engines.config import describe
    spec = {d["name"]: d for d in describe(DDPMConfig)}["schedule"]
    assert "same formula" in spec["help"] and "scaled_linear = quadratic" in spec["formula"]


def test_ddpm_default_uses_the_betas_typed_and_the_form_can_say_which():
    """Ho et al.'s schedule is reproduced by typing it: linear 1e-4..0.02 at T=1000 trains on exactly
    those betas (abar_T = 4.0e-5); the moons lesson's T=50 linear schedule keeps its prior mismatch
    (abar_T ~ 0.6) unless scale_betas is switched on (then betas 0.002..0.4)."""
    ho = build(DDPMConfig, dict(T=1000, schedule="linear"))
    b = ho.betas()
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    assert float(sch.alphas_cumprod(b)[-1]) == pytest.approx(4.04e-5, rel=0.01)
    short = build(DDPMConfig, dict(T=50, schedule="linear"))
    want = math.prod(1 - float(x) for x in torch.linspace(1e-4, 0.02, 50, dtype=torch.float64))
    assert "0.0001 .. 0.02" in short.summary() and f"{want:.2g}" in short.summary()
    scaled = build(DDPMConfig, dict(T=50, schedule="linear", scale_betas=True))
    assert float(scaled.betas()[0]) == pytest.approx(2e-3) and float(scaled.betas()[-1]) == pytest.approx(0.4)
    assert "0.002 .. 0.4" in scaled.summary()
    fam = DDPM(short, (2,), "cpu")                                   # the family trains on cfg.betas()
    assert torch.equal(fam.betas, short.betas())
    # the form greys out what the schedule ignores
    assert build(DDPMConfig, dict(schedule="cosine")).inactive_fields() >= {"beta_start", "beta_end", "scale_betas"}
    assert not build(DDPMConfig, dict(schedule="linear")).inactive_fields()


def test_ddim_eta1_with_the_exact_eps_recovers_gaussian_data():
    abar = sch.alphas_cumprod(sch.betas("cosine", 200))
    ts = S.ddim_timesteps(200, 50)
    assert ts[0] == 196 and ts[-1] == 0 and len(ts) == 50 and ts == sorted(ts, reverse=True)
    x = S.ddim(gaussian_eps_fn(abar), torch.randn(20000, 2, generator=gen(5)), abar, ts, 1.0, generator=gen(6))
    check_gaussian(x)


@pytest.mark.parametrize("n_steps", [5, 10, 50])
def test_deterministic_ddim_is_euler_in_sigma(n_steps):
    """DDIM with eta = 0 is Euler's method for dy/dsigma = eps in y = x / sqrt(abar),
    sigma = sqrt((1 - abar) / abar) (Song et al. 2021, DDIM eq. 14). For N(m, c^2) data
    eps = sigma (y - m) / (c^2 + sigma^2), so each step scales y - m by
    1 + (sigma_next - sigma) sigma / (c^2 + sigma^2): the samples' std is known in closed form
    (it undershoots c with few steps: 0.201 at 5 steps, 0.244 at 10, 0.287 at 50 for c = 0.3)."""
    abar = sch.alphas_cumprod(sch.betas("cosine", 200)).tolist()
    ts = S.ddim_timesteps(200, n_steps)
    sig = [math.sqrt((1 - abar[t]) / abar[t]) for t in ts] + [0.0]
    F = math.prod(1 + (sig[i + 1] - sig[i]) * sig[i] / (C_DATA ** 2 + sig[i] ** 2) for i in range(len(ts)))
    x = S.ddim(gaussian_eps_fn(torch.tensor(abar)), torch.randn(20000, 2, generator=gen(5)), abar, ts, 0.0)
    std = F / math.sqrt(abar[ts[0]])                    # x_T ~ N(0, I): y_T has std 1/sqrt(abar_T), mean 0
    mean = (1 - F) * M_DATA
    assert torch.allclose(x.std(0), torch.full((2,), std), rtol=0.02), (x.std(0), std)
    assert torch.allclose(x.mean(0), mean, atol=4 * std / math.sqrt(20000))
    if n_steps == 50:
        check_gaussian(x, tol_std=0.02)


def test_ddim_eta0_is_deterministic_and_eta1_is_not():
    abar = sch.alphas_cumprod(sch.betas("cosine", 100))
    x = torch.randn(100, 2, generator=gen(7))
    ts = S.ddim_timesteps(100, 20)
    a = S.ddim(gaussian_eps_fn(abar), x, abar, ts, 0.0, generator=gen(1))
    b = S.ddim(gaussian_eps_fn(abar), x, abar, ts, 0.0, generator=gen(2))
    c = S.ddim(gaussian_eps_fn(abar), x, abar, ts, 1.0, generator=gen(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


# ----------------------------------------------------------------------------- the DDPM family

class Oracle(nn.Module):
    """A 'network' that returns a fixed tensor, whatever its input."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, c):
        return self.out


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddpm_parametrizations_give_the_same_eps(prediction):
    fam = DDPM(build(DDPMConfig, dict(T=100, prediction=prediction)), (2,), "cpu")
    g = gen(8)
    x0, eps = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    t = torch.randint(0, 100, (64,), generator=g)
    a = fam.abar[t].sqrt().float()[:, None]
    s = (1 - fam.abar[t]).sqrt().float()[:, None]
    xt = a * x0 + s * eps
    target = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction]
    fam.net = Oracle(target)
    assert torch.allclose(fam.eps_fn(fam.net)(xt, t), eps, atol=1e-4)
    # the loss of a perfect prediction is 0: the training target matches eps_fn's reading of it
    fam.net = Oracle(None)

    def perfect(x, c):  # rebuild the target from (x_t, t) the loss draws, using the true x0 = 0.5
        tt = (c * 100).round().long()
        aa, ss = fam.abar[tt].sqrt().float()[:, None], (1 - fam.abar[tt]).sqrt().float()[:, None]
        e = (x - aa * 0.5) / ss
        return {"eps": e, "x0": torch.full_like(x, 0.5), "v": aa * e - ss * 0.5}[prediction]
    fam.net.forward = perfect
    loss, _ = fam.loss(torch.full((32, 2), 0.5), gen(9))
    assert float(loss) < 1e-8
    # the field is the score -eps / sqrt(1 - abar_t)
    fam.net = Oracle(target[:1].expand(5, 2))
    fam.ema_net = None
    lvl = 30
    grid = torch.zeros(5, 2) + xt[:1]
    f = fam.field(grid, level=lvl)["score"]
    a30, s30 = fam.level_alpha_sigma(lvl)
    want = fam.eps_fn()(grid, torch.full((5,), lvl))
    assert torch.allclose(torch.from_numpy(f), -want / s30, atol=1e-4)
    assert a30 ** 2 + s30 ** 2 == pytest.approx(1.0)


def test_ddpm_trained_briefly_on_moons_samples_with_ddpm_and_ddim():
    train = build(TrainConfig, dict(batch=256, n_data=4000, warmup=20, threads=1, seed=0))
    run = Run(RunConfig(dataset="moons", family="ddpm", options=dict(hidden=64, depth=3, T=100), train=train))
    before = run.evaluate(run.sample(1000))["energy_distance_x_iid"]
    run.train(1500)
    h = run.history["loss"]
    assert sum(h[-100:]) / 100 < 0.7 * sum(h[:20]) / 20
    after = run.evaluate(run.sample(1000))["energy_distance_x_iid"]
    fast = run.evaluate(run.sample(1000, "ddim", dict(steps=25)))["energy_distance_x_iid"]
    # seed 0: 433 untrained, 2.3 ancestral, 7.1 with 25 DDIM steps
    assert after < min(0.02 * before, 8), (before, after)
    assert fast < min(0.05 * before, 20), (before, fast)
    steps = []
    run.sample(10, "ddim", dict(steps=7), callback=steps.append)
    assert len(steps) == 7


def test_exact_family_ddpm_schedule_axis_counts_from_0_like_the_samplers():
    """The samplers report t = T-1 .. 0; the exact family's DDPM curves were drawn on 1..T (issue 8, item 9)."""
    import numpy as np
    from engines.families.exact import ExactConfig, ExactScore
    from engines.data import mixture
    mix = mixture("8gaussians")
    fam = ExactScore(build(ExactConfig, dict(process="ddpm", T=40)), (2,), "cpu", dict(mixture=mix, mixture_data=mix))
    t, abar = fam.schedule()["alpha_bar"]
    assert t[0] == 0 and t[-1] == 39 and len(t) == 40
    steps = []
    fam.sample(8, "ddpm", {}, generator=gen(0), callback=steps.append)
    assert [s["t"] for s in steps] == list(np.asarray(t)[::-1])
