"""Samplers: pure functions `sampler(model_fn, x, ..., generator=None, callback=None) -> x`.

Each calls `callback(dict(i=, x=, t=, sigma=, denoised=))` once per step (k-diffusion style)
so the app can animate particles; the CLI passes no callback. Shapes are never assumed:
x is (N, D) points or (N, C, H, W) images; per-sample scalars go through `append_dims`.
"""
from __future__ import annotations

import math

import torch

from .schedules import SDE, VESDE, VPSDE, alphas_cumprod, append_dims, posterior_variance


def _noise(x, generator):
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _full(x, value):
    return torch.full((x.shape[0],), float(value), device=x.device, dtype=x.dtype)


def _emit(callback, **kw):
    if callback is not None:
        callback(kw)


@torch.no_grad()
def langevin(score_fn, x, step_size, n_steps, generator=None, callback=None):
    """Unadjusted Langevin dynamics: x <- x + (eps/2) score(x) + sqrt(eps) z (course notes;
    Welling & Teh 2011). Samples p exactly only as eps -> 0 and n_steps -> inf."""
    for i in range(n_steps):
        x = x + 0.5 * step_size * score_fn(x) + math.sqrt(step_size) * _noise(x, generator)
        _emit(callback, i=i, x=x, t=None, sigma=0.0, denoised=None)
    return x


@torch.no_grad()
def annealed_langevin(score_fn, x, sigmas, eps, steps_per_level, generator=None, callback=None,
                      denoise_final=False):
    """Annealed Langevin dynamics, Algorithm 1 of Song & Ermon 2019: for each sigma_i (descending)
    run T steps with alpha_i = eps sigma_i^2 / sigma_L^2:  x <- x + alpha_i/2 s(x, sigma_i) + sqrt(alpha_i) z.
    denoise_final adds one Tweedie step x + sigma_L^2 s(x, sigma_L) (Jolicoeur-Martineau et al. 2021)."""
    sigmas = [float(s) for s in sigmas]
    sigma_L = sigmas[-1]
    i = 0
    for s in sigmas:
        alpha = eps * s ** 2 / sigma_L ** 2
        sig = _full(x, s)
        for _ in range(steps_per_level):
            score = score_fn(x, sig)
            x = x + 0.5 * alpha * score + math.sqrt(alpha) * _noise(x, generator)
            _emit(callback, i=i, x=x, t=None, sigma=s, denoised=None)
            i += 1
    if denoise_final:
        x = x + sigma_L ** 2 * score_fn(x, _full(x, sigma_L))
        _emit(callback, i=i, x=x, t=None, sigma=0.0, denoised=x)
    return x


def _x0_from_eps(x, eps, abar_t):
    return (x - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)


@torch.no_grad()
def ddpm(eps_fn, x, betas, variance="beta_tilde", clip_x0=None, generator=None, callback=None):
    """Ancestral sampling, Algorithm 2 of Ho et al. 2020, written through the x0 prediction:
    mu_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t)(1 - abar_{t-1}) / (1 - abar_t) x_t
    (eq. 7), x_{t-1} = mu_t + sigma_t z with sigma_t^2 = beta_t or beta-tilde_t. Integer t runs
    T-1 .. 0 (0-based); eps_fn(x, t_int_tensor) predicts the noise."""
    betas = torch.as_tensor(betas, dtype=torch.float64)
    abar = alphas_cumprod(betas).tolist()
    b = betas.tolist()
    var = (posterior_variance(betas) if variance == "beta_tilde" else betas).tolist()
    T = len(b)
    for t in range(T - 1, -1, -1):
        t_in = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_fn(x, t_in)
        x0 = _x0_from_eps(x, eps, abar[t])
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        a_prev = abar[t - 1] if t > 0 else 1.0
        c0 = math.sqrt(a_prev) * b[t] / (1 - abar[t])
        ct = math.sqrt(1 - b[t]) * (1 - a_prev) / (1 - abar[t])
        x = c0 * x0 + ct * x
        if t > 0:
            x = x + math.sqrt(var[t]) * _noise(x, generator)
        _emit(callback, i=T - 1 - t, x=x, t=t, sigma=math.sqrt((1 - abar[t]) / abar[t]), denoised=x0)
    return x


@torch.no_grad()
def ddim(eps_fn, x, alphas_cumprod, timesteps, eta=0.0, clip_x0=None, final_alpha_cumprod=1.0,
         generator=None, callback=None):
    """DDIM, Song, Meng & Ermon 2021 eq. 12: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z,
    s = eta sqrt((1 - a_prev)/(1 - a_t)) sqrt(1 - a_t/a_prev). eta=0 is deterministic, eta=1 is
    DDPM-like. `timesteps` are descending ints; after the last one a_prev = final_alpha_cumprod."""
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).tolist()
    ts = [int(t) for t in timesteps]
    for i, t in enumerate(ts):
        a_t = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else float(final_alpha_cumprod)
        t_in = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_fn(x, t_in)
        x0 = _x0_from_eps(x, eps, a_t)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        s = eta * math.sqrt(max((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), 0.0))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - s ** 2, 0.0)) * eps
        if s > 0:
            x = x + s * _noise(x, generator)
        _emit(callback, i=i, x=x, t=t, sigma=math.sqrt((1 - a_t) / a_t), denoised=x0)
    return x


def ddim_timesteps(T: int, n_steps: int) -> list[int]:
    """n_steps descending integer timesteps t_i = floor(i T / n), i = n-1 .. 0: from T - T/n down to 0,
    the "leading" spacing of DDIM's own code (Song et al. 2021, `range(0, T, T // n)`; diffusers'
    timestep_spacing="leading"). It does not start at t = T-1: there the cosine schedule's abar is
    2.4e-7 (beta clipped at 0.999), and the first x0 = (x - sqrt(1-abar) eps) / sqrt(abar) multiplies
    the eps error by 1/sqrt(abar) ~ 2000. Measured on the moons lesson's model (T=100 cosine), DDIM
    with 10 / 25 / 50 steps read 21x / 6.3x / 3.0x iid starting at T-1 and 3.3x / 1.6x / 1.4x with
    this spacing (DDPM: 1.1x). n_steps >= T gives every step T-1 .. 0."""
    n_steps = max(1, min(n_steps, T))
    return [i * T // n_steps for i in range(n_steps - 1, -1, -1)]


# ----------------------------------------------------------------------------- score SDE samplers


def _discretize(sde: SDE, x, t, dt):
    """One forward step x_{i+1} = x_i + f_i + G_i z (Song et al. 2021, appendix E): the SMLD
    chain for VE, the DDPM chain for VP, Euler–Maruyama otherwise. Returns (f, G)."""
    if isinstance(sde, VESDE):
        sig, adj = sde.sigma(t), sde.sigma(torch.clamp(t - dt, min=0.0))
        adj = torch.where(t - dt <= 0, torch.zeros_like(adj), adj)
        return torch.zeros_like(x), torch.sqrt((sig ** 2 - adj ** 2).clamp(min=0))
    if type(sde) is VPSDE:
        # beta_i = beta(t) dt reaches 1 when there are fewer steps than beta_max: capped so that a
        # coarse chain stays finite (sqrt(1 - beta_i)) instead of returning NaN
        beta = (sde.beta(t) * dt).clamp(max=0.999)
        return append_dims(torch.sqrt(1 - beta) - 1, x.ndim) * x, torch.sqrt(beta)
    drift, g = sde.sde(x, t)
    return drift * dt, g * math.sqrt(dt)


def _corrector_alpha(sde: SDE, t: float, n_steps: int) -> float:
    """alpha_i of the Langevin corrector (Song et al. 2021, Alg. 5): 1 - beta_i for VP and sub-VP,
    with the discrete beta_i = beta(t) / N of the N-step chain (score_sde's LangevinCorrector reads
    sde.alphas = 1 - beta(t) / N), and 1 for VE."""
    if isinstance(sde, VPSDE):  # SubVPSDE is a VPSDE
        return max(1.0 - float(sde.beta(torch.tensor(t, dtype=torch.float64))) / n_steps, 0.0)
    return 1.0


@torch.no_grad()
def reverse_sde(score_fn, x, sde, n_steps, predictor="euler_maruyama", corrector=None, snr=0.16,
                n_corrector_steps=1, eps=1e-3, generator=None, callback=None):
    """Predictor–corrector sampling, Algorithms 1–3 of Song et al. 2021, on t from T to eps.

    predictor: "euler_maruyama" (x <- x - [f - g^2 s] dt + g sqrt(dt) z), "reverse_diffusion"
    (x <- x - f + G^2 s + G z on the discretized chain) or None (corrector only).
    corrector: "langevin" with step 2 alpha_i (snr ||z|| / ||s||)^2 (Alg. 4-5; alpha_i = 1 - beta_i for
    VP / sub-VP, 1 for VE, as in score_sde's LangevinCorrector), or None. The last step is
    taken without noise (Tweedie-style noise removal as in the reference implementation)."""
    ts = torch.linspace(sde.T, eps, n_steps, device=x.device, dtype=x.dtype)
    dt = (sde.T - eps) / n_steps
    for i in range(n_steps):
        t = torch.full((x.shape[0],), float(ts[i]), device=x.device, dtype=x.dtype)
        if corrector == "langevin":
            alpha = _corrector_alpha(sde, float(ts[i]), n_steps)
            for _ in range(n_corrector_steps):
                grad = score_fn(x, t)
                z = _noise(x, generator)
                gn = grad.reshape(len(x), -1).norm(dim=1).mean()
                zn = z.reshape(len(x), -1).norm(dim=1).mean()
                step = 2 * alpha * (snr * zn / gn.clamp(min=1e-12)) ** 2
                x = x + step * grad + torch.sqrt(2 * step) * z
        elif corrector is not None:
            raise ValueError(f"unknown corrector {corrector!r}; choose langevin or none")
        last = i == n_steps - 1
        if predictor == "euler_maruyama":
            drift, g = sde.sde(x, t)
            g2 = append_dims(g ** 2, x.ndim)
            x_mean = x - (drift - g2 * score_fn(x, t)) * dt
            x = x_mean if last else x_mean + append_dims(g, x.ndim) * math.sqrt(dt) * _noise(x, generator)
        elif predictor == "reverse_diffusion":
            f, G = _discretize(sde, x, t, dt)
            G = append_dims(G, x.ndim)
            x_mean = x - f + G ** 2 * score_fn(x, t)
            x = x_mean if last else x_mean + G * _noise(x, generator)
        elif predictor is not None:
            raise ValueError(f"unknown predictor {predictor!r}; choose euler_maruyama, reverse_diffusion or none")
        std = sde.marginal_std(t[:1])
        _emit(callback, i=i, x=x, t=float(ts[i]), sigma=float(std), denoised=None)
    return x


def probability_flow(score_fn, x, sde, rtol=1e-5, atol=1e-5, eps=1e-3, method="dopri5",
                     callback=None):
    """Probability-flow ODE dx/dt = f(x, t) - g(t)^2 s(x, t) / 2 (Song et al. 2021, eq. 13), solved
    from t=T to eps with torchdiffeq (adaptive dopri5 by default). The callback fires at each
    function evaluation (i counts NFEs)."""
    from torchdiffeq import odeint

    rsde = sde.reverse(score_fn, probability_flow=True)
    nfe = [0]
    shape = x.shape

    def f(t, y):
        xt = y.reshape(shape)
        tt = torch.full((shape[0],), float(t), device=y.device, dtype=y.dtype)
        with torch.no_grad():
            drift, _ = rsde.sde(xt, tt)
        nfe[0] += 1
        _emit(callback, i=nfe[0], x=xt, t=float(t), sigma=float(sde.marginal_std(tt[:1])), denoised=None)
        return drift

    ts = torch.tensor([sde.T, eps], device=x.device, dtype=x.dtype)
    # adaptive solvers otherwise probe a first step and step past eps (then interpolate back),
    # reading the score at t < 0 where the VP std is NaN: a given first step and step_t keep
    # every evaluation inside [eps, T]
    h = (sde.T - eps) / 100
    options = {"step_size": h} if method in ("euler", "rk4", "midpoint") else {"step_t": ts[-1:], "first_step": h}
    out = odeint(f, x, ts, rtol=rtol, atol=atol, method=method, options=options)
    return out[-1]


# ----------------------------------------------------------------------------- samplers on a denoiser
# k-diffusion's convention: denoiser(x, sigma) -> x0-hat for x = x0 + sigma z (VE coordinates; see
# families/noise_model.py for the map from VP / flow-matching models), sigma an (N,) tensor, and a
# descending sigma grid whose last entry is 0 (schedules.karras_sigmas). Each step emits the x it
# reaches and that level, sigma = sigmas[i + 1].


@torch.no_grad()
def euler(denoiser, x, sigmas, generator=None, callback=None):
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022,
    eq. 3 with sigma(t) = t; Algorithm 1 without churn). The same update as DDIM with eta = 0
    (Song, Meng & Ermon 2021, eq. 13), written in VE coordinates. n steps = n NFE."""
    sig = [float(s) for s in sigmas]
    for i in range(len(sig) - 1):
        denoised = denoiser(x, _full(x, sig[i]))
        x = x + (x - denoised) / sig[i] * (sig[i + 1] - sig[i])     # the last step to 0 lands on x0-hat
        _emit(callback, i=i, x=x, t=None, sigma=sig[i + 1], denoised=denoised)
    return x


@torch.no_grad()
def heun(denoiser, x, sigmas, generator=None, callback=None):
    """Heun's 2nd-order method, Karras et al. 2022 Algorithm 1 (deterministic, no churn): an Euler
    step, then the trapezoid of the slopes at both ends; the last step to sigma = 0 stays an Euler
    step (the slope is undefined there). n steps = 2n - 1 NFE. With few steps (big sigma ratios) the
    slope at the small end, ~ (x - D) / sigma', dominates the trapezoid and overshoots: on the
    8gaussians oracle Heun needs ~20 NFE where dpmpp_2m needs 10 (python main.py lab)."""
    sig = [float(s) for s in sigmas]
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, _full(x, s))
        d = (x - denoised) / s                                      # dx/dsigma at (x, s)
        x_euler = x + d * (s_next - s)
        if s_next == 0:
            x = x_euler
        else:
            d_next = (x_euler - denoiser(x_euler, _full(x, s_next))) / s_next
            x = x + 0.5 * (d + d_next) * (s_next - s)
        _emit(callback, i=i, x=x, t=None, sigma=s_next, denoised=denoised)
    return x


@torch.no_grad()
def dpmpp_2m(denoiser, x, sigmas, generator=None, callback=None):
    """DPM-Solver++(2M), Lu et al. 2022 (arXiv 2211.01095) Algorithm 2, in lambda = -log sigma (the
    half log-SNR in VE coordinates): x_{i+1} = (sigma_{i+1}/sigma_i) x_i - (e^{-h} - 1) D_i with
    h = lambda_{i+1} - lambda_i and the multistep data prediction
    D_i = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1}/h_i. The first step (no history) and the
    last one to sigma = 0 are first order (DDIM). n steps = n NFE."""
    sig = [float(s) for s in sigmas]
    old = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, _full(x, s))
        if s_next == 0:
            x = denoised
        else:
            h = math.log(s / s_next)
            d = denoised
            if old is not None:
                r = math.log(sig[i - 1] / s) / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (s_next / s) * x - math.expm1(-h) * d
        old = denoised
        _emit(callback, i=i, x=x, t=None, sigma=s_next, denoised=denoised)
    return x


@torch.no_grad()
def ddim_sigma(denoiser, x, sigmas, eta=0.0, generator=None, callback=None):
    """DDIM(eta), Song, Meng & Ermon 2021 eq. 12, on a sigma grid in VE coordinates x/alpha, sigma = s/alpha:
    its noise sigma_eta becomes sigma_up = min(sigma', eta sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2)),
    the deterministic part moves to sigma_down = sqrt(sigma'^2 - sigma_up^2) (the ancestral step of
    k-diffusion's euler_ancestral). eta = 0 is `euler`; eta = 1 is DDPM's posterior variance. n steps = n NFE."""
    sig = [float(s) for s in sigmas]
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, _full(x, s))
        up = min(s_next, eta * math.sqrt(max(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2, 0.0)))
        down = math.sqrt(max(s_next ** 2 - up ** 2, 0.0))
        x = denoised + (down / s) * (x - denoised)
        if up > 0:
            x = x + up * _noise(x, generator)
        _emit(callback, i=i, x=x, t=None, sigma=s_next, denoised=denoised)
    return x


def _data_prediction_field(denoiser, shape, callback, counter):
    """The probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, eq. 3) in
    y = x / sigma and xi = 1 / sigma: dy/dxi = D(sigma y, sigma). This is the data-prediction form
    of DPM-Solver++ (Lu et al. 2022, eq. 9 with alpha = 1: d(x/sigma)/d e^lambda = x0-hat): the ODE's
    stiff linear part is solved exactly, so large steps stay stable (the same ODE in x and log sigma
    makes RK4 blow up at 2-4 steps), and Euler on it is exactly DDIM."""
    def f(xi, y):
        sigma = 1.0 / float(xi)
        denoised = denoiser(y * sigma, torch.full((shape[0],), sigma, device=y.device, dtype=y.dtype))
        counter[0] += 1
        _emit(callback, i=counter[0], x=y * sigma, t=None, sigma=sigma, denoised=denoised, nfe=counter[0])
        return denoised
    return f


def _finish(denoiser, x, sigma_min, counter, callback):
    """The last step from sigma_min to 0: x <- D(x, sigma_min) (Euler's step to 0)."""
    counter[0] += 1
    x = denoiser(x, _full(x, sigma_min))
    _emit(callback, i=counter[0], x=x, t=None, sigma=0.0, denoised=x, nfe=counter[0])
    return x


@torch.no_grad()
def pf_ode_rk4(denoiser, x, sigmas, generator=None, callback=None):
    """The probability-flow ODE (Song et al. 2021, eq. 13; Karras et al. 2022, eq. 3) by fixed-step
    classical 4th-order Runge-Kutta (torchdiffeq "rk4", the 3/8 rule) on the positive sigmas, in the
    variables y = x / sigma, xi = 1 / sigma (see _data_prediction_field), then one Euler step to
    sigma = 0. NFE = 4 (n - 1) + 1 for n positive sigmas; callbacks carry the running count (nfe)."""
    from torchdiffeq import odeint

    pos = [float(s) for s in sigmas if float(s) > 0]
    counter = [0]
    if len(pos) > 1:
        f = _data_prediction_field(denoiser, x.shape, callback, counter)
        xi = 1.0 / torch.tensor(pos, dtype=x.dtype, device=x.device)
        x = odeint(f, x / pos[0], xi, method="rk4")[-1] * pos[-1]
    return _finish(denoiser, x, pos[-1], counter, callback) if float(sigmas[-1]) == 0 else x


@torch.no_grad()
def pf_ode_dopri5(denoiser, x, sigma_max, sigma_min, rtol=1e-3, atol=1e-3, generator=None, callback=None,
                  stats=None):
    """The probability-flow ODE as in `pf_ode_rk4`, by adaptive Dormand-Prince 5(4) (torchdiffeq
    "dopri5") from sigma_max to sigma_min, then x <- D(x, sigma_min). The number of function
    evaluations is set by rtol / atol (on y = x / sigma), not chosen: it is counted (callback's nfe,
    and stats["nfe"] when a dict is given)."""
    from torchdiffeq import odeint

    counter = [0]
    f = _data_prediction_field(denoiser, x.shape, callback, counter)
    xi = 1.0 / torch.tensor([float(sigma_max), float(sigma_min)], dtype=x.dtype, device=x.device)
    # step_t: the last step lands on xi = 1/sigma_min instead of overshooting it and interpolating
    # back, so the model is never read below sigma_min
    x = odeint(f, x / float(sigma_max), xi, rtol=rtol, atol=atol, method="dopri5",
               options={"step_t": xi[-1:]})[-1] * float(sigma_min)
    x = _finish(denoiser, x, float(sigma_min), counter, callback)
    if stats is not None:
        stats["nfe"] = counter[0]
    return x
