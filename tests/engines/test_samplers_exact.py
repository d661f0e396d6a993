"""Every sampler in engines.samplers, driven by the exact score of a Gaussian mixture, must
reproduce the mixture: sampler error alone, no model error. Plus the analytic mixture itself
(score = gradient of log_prob, vp_marginal = law of alpha x0 + sigma eps) and the classic NCSN
demonstration that plain Langevin gets mode weights wrong where annealed Langevin does not."""

import pytest
import torch

from engines import metrics
from engines import samplers as S
from engines import schedules as sch
from engines.data import GaussianMixture
from engines.families.exact import noised_mixture

# two overlapping modes, mean ~0 and unit-ish spread, as data looks after the Run's standardization
MIX = GaussianMixture([0.7, 0.3], [[-0.5, -0.3], [1.1, 0.7]], 0.45)
N = 1500


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def iid():
    """Mean energy distance between two independent N-point draws of the mixture."""
    return sum(metrics.energy_distance(MIX.sample(N, seed=200 + i), MIX.sample(N, seed=300 + i))
               for i in range(4)) / 4


def assert_like_mixture(x, iid, factor=3.0):
    assert x.shape == (N, 2) and torch.isfinite(x).all()
    ed = metrics.energy_distance(x, MIX.sample(N, seed=1000))
    assert ed < factor * iid, f"energy distance {ed:.2e} is {ed / iid:.1f}x the iid level {iid:.2e}"


def sde_score(sde):
    """grad log p_t for the SDE marginal N(alpha(t) x0, std(t)^2) of the mixture; t (N,)."""
    def f(x, t):
        mean, std = sde.marginal_prob(torch.ones(len(t), 1), t)
        return noised_mixture(MIX, x, mean[:, 0], std)[0]
    return f


def eps_fn_for(abar):
    """The optimal DDPM noise prediction eps*(x_t, t) = -sqrt(1 - abar_t) grad log p_t(x_t)."""
    def f(x, t):
        a = abar[t].float()
        return -sch.append_dims((1 - a).sqrt(), 2) * noised_mixture(MIX, x, a.sqrt(), (1 - a).sqrt())[0]
    return f


# ----------------------------------------------------------------------------- the mixture itself


@pytest.mark.parametrize("sigma", [0.0, 0.1, 0.5, 2.0])
def test_mixture_score_is_the_gradient_of_log_prob(sigma):
    x = MIX.sample(50, seed=1).double() + 0.3 * torch.randn(50, 2, generator=gen(2)).double()
    h = 1e-3
    fd = torch.zeros_like(x)
    for d in range(2):
        e = torch.zeros(2, dtype=x.dtype)
        e[d] = h
        fd[:, d] = (MIX.log_prob(x + e, sigma).double() - MIX.log_prob(x - e, sigma).double()) / (2 * h)
    score = MIX.score(x, sigma).double()
    assert torch.allclose(score, fd, atol=2e-2 * (1 + score.abs().max()), rtol=1e-2)
    # the per-sample (alpha, sigma) version used by the exact family agrees with GaussianMixture
    assert torch.allclose(noised_mixture(MIX, x.float(), 1.0, sigma)[0], MIX.score(x.float(), sigma), atol=1e-4)
    assert torch.allclose(noised_mixture(MIX, x.float(), 1.0, sigma)[1], MIX.log_prob(x.float(), sigma), atol=1e-4)


@pytest.mark.parametrize("alpha,sigma", [(1.0, 0.3), (0.6, 0.8), (0.1, 1.0)])
def test_vp_marginal_matches_sampling_alpha_x0_plus_sigma_eps(alpha, sigma):
    n = 40000
    x0 = MIX.sample(n, seed=3)
    xt = alpha * x0 + sigma * torch.randn(n, 2, generator=gen(4))
    m = MIX.vp_marginal(alpha, sigma)
    y = m.sample(n, seed=5)
    assert torch.allclose(xt.mean(0), y.mean(0), atol=0.03)
    assert torch.allclose(torch.cov(xt.T), torch.cov(y.T), atol=0.04)
    # and its closed-form moments: mean alpha sum w mu, covariance from the law of total variance
    mu = alpha * (MIX.weights[:, None] * MIX.means).sum(0)
    assert torch.allclose(xt.mean(0), mu, atol=0.03)
    # the marginal's log-density is normalized: a grid sum integrates to ~1
    g = torch.linspace(-5, 5, 201)
    grid = torch.cartesian_prod(g, g)
    mass = float(m.log_prob(grid).exp().sum() * (g[1] - g[0]) ** 2)
    assert abs(mass - 1) < 1e-2


# ----------------------------------------------------------------------------- every sampler


def test_langevin(iid):
    x = S.langevin(lambda x: MIX.score(x), 2 * torch.randn(N, 2, generator=gen()), 0.02, 1000, gen())
    assert_like_mixture(x, iid)


@pytest.mark.parametrize("denoise_final", [False, True])
def test_annealed_langevin(iid, denoise_final):
    steps = []
    x = S.annealed_langevin(lambda x, s: MIX.score(x, s), 5 * torch.randn(N, 2, generator=gen()),
                            sch.geometric_sigmas(5.0, 0.02, 12), 8e-5, 100, gen(),
                            callback=lambda info: steps.append(info["sigma"]), denoise_final=denoise_final)
    assert len(steps) == 12 * 100 + denoise_final and steps[0] == pytest.approx(5.0)
    assert_like_mixture(x, iid)


T = 200
BETAS = sch.betas("linear", T, 5e-4, 0.1)
ABAR = sch.alphas_cumprod(BETAS)


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm(iid, variance):
    x = S.ddpm(eps_fn_for(ABAR), torch.randn(N, 2, generator=gen()), BETAS, variance, None, gen())
    assert_like_mixture(x, iid)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim(iid, eta):
    x = S.ddim(eps_fn_for(ABAR), torch.randn(N, 2, generator=gen()), ABAR, S.ddim_timesteps(T, 100), eta,
               None, 1.0, gen())
    assert_like_mixture(x, iid)


SDES = {"vp": sch.VPSDE(), "ve": sch.VESDE(0.01, 10.0), "subvp": sch.SubVPSDE()}


@pytest.mark.parametrize("predictor,corrector,sde,steps", [
    ("euler_maruyama", None, "vp", 500),
    ("euler_maruyama", "langevin", "vp", 200),
    ("reverse_diffusion", None, "vp", 500),
    ("reverse_diffusion", None, "ve", 500),
    ("reverse_diffusion", "langevin", "ve", 200),
    ("euler_maruyama", None, "subvp", 500),
    (None, "langevin", "ve", 300),
])
def test_reverse_sde(iid, predictor, corrector, sde, steps):
    sde = SDES[sde]
    x = sde.prior_sampling((N, 2), gen())
    x = S.reverse_sde(sde_score(sde), x, sde, steps, predictor, corrector,
                      n_corrector_steps=2 if predictor is None else 1, generator=gen())
    assert_like_mixture(x, iid)


@pytest.mark.parametrize("sde,method", [("vp", "dopri5"), ("ve", "dopri5"), ("vp", "rk4")])
def test_probability_flow(iid, sde, method):
    sde = SDES[sde]
    ts = []
    x = S.probability_flow(sde_score(sde), sde.prior_sampling((N, 2), gen()), sde, method=method,
                           callback=lambda info: ts.append(info["t"]))
    assert_like_mixture(x, iid)
    # the adaptive solver must never read the score outside [eps, T] (VP's std is NaN below 0)
    assert min(ts) >= 1e-3 - 1e-9 and max(ts) <= sde.T + 1e-9


def test_a_wrong_score_is_caught(iid):
    """The check above can fail: a score off by a factor 0.5 (a wrong model) is caught."""
    sde = SDES["vp"]
    wrong = lambda x, t: 0.5 * sde_score(sde)(x, t)  # noqa: E731
    x = S.reverse_sde(wrong, sde.prior_sampling((N, 2), gen()), sde, 200, generator=gen())
    with pytest.raises(AssertionError):
        assert_like_mixture(x, iid)


# ----------------------------------------------------------------------------- the NCSN lesson


def test_plain_langevin_gets_mode_weights_wrong_annealed_gets_them_right():
    """Song & Ermon 2019, sec. 3.2: with well-separated modes, Langevin from uniform noise
    fills each mode in proportion to its basin (about 1/2 each), not its weight 0.8 / 0.2;
    annealing from a large sigma, where the modes still overlap, recovers the weights."""
    mix = GaussianMixture([0.8, 0.2], [[-2.0, -2.0], [2.0, 2.0]], 0.4)
    n = 1500
    x0 = (torch.rand(n, 2, generator=gen()) * 2 - 1) * 8  # U[-8, 8]^2

    plain = S.langevin(lambda x: mix.score(x), x0.clone(), 0.01, 500, gen(1))
    w_plain = metrics.mode_coverage(plain, mix.means, 1.5)["weights"][0]
    assert abs(w_plain - 0.8) > 0.2, w_plain

    annealed = S.annealed_langevin(lambda x, s: mix.score(x, s), x0.clone(), sch.geometric_sigmas(20.0, 0.05, 20),
                                   5e-4, 100, gen(1))
    cov = metrics.mode_coverage(annealed, mix.means, 1.5)
    assert abs(cov["weights"][0] - 0.8) < 0.05, cov["weights"]
    assert cov["outside"] < 0.01
