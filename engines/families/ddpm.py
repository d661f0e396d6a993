"""DDPM (Ho et al. 2020): predict the noise of x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
sample ancestrally (Algorithm 2) or with DDIM(eta) from the same trained model."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .. import samplers as S
from .. import schedules as sch
from ..config import ConfigError, opt
from ..loss_bins import report_t_loss
from ..nets import IMAGE_NETS, conditional_net, image_net_for
from .noise_model import DiscreteVP, NoiseModel
from .base import discrete_time_level
from .options import DDIMOptions, DDPMOptions


LINEAR_TYPE = ("linear", "scaled_linear", "quadratic", "sigmoid")  # the schedules that read beta_start/end


@dataclass
class DDPMConfig:
    T: int = opt(100, "number of diffusion steps T", "q(x_t|x_0) = N(sqrt(abar_t) x_0, (1-abar_t) I)", lo=2, hi=5000)
    schedule: str = opt("cosine", "beta schedule; scaled_linear and quadratic are the same formula under two names "
                        "(diffusers' and Ho et al.'s code)",
                        "abar_t = prod (1 - beta_s); linear: beta evenly spaced (Ho et al.); scaled_linear = quadratic: "
                        "sqrt(beta) evenly spaced; cosine: Nichol & Dhariwal eq. 17; sigmoid: GeoDiff",
                        choices=sch.BETA_KINDS)
    beta_start: float = opt(1e-4, "beta_1 (linear-type schedules; unused by cosine)", lo=1e-8, hi=0.5, log=True)
    beta_end: float = opt(0.02, "beta_T (linear-type schedules; unused by cosine)", lo=1e-6, hi=0.999, log=True)
    scale_betas: bool = opt(False, "multiply beta_start/end by 1000/T so a short chain still ends near pure noise; "
                            "off: the betas typed are the betas used (Ho et al.: linear 1e-4..0.02 at T=1000)",
                            "beta -> beta * 1000 / T (beta_T capped at 0.999)")
    prediction: str = opt("eps", "what the network predicts", "eps: ||eps - eps_theta||^2 (DDPM eq. 14); x0; v = a eps - s x0",
                          choices=("eps", "x0", "v"))
    hidden: int = opt(0, "hidden width of the MLP; 0: 64 for points (fast enough for 1.5x iid on moons in 5 s of a "
                      "slow 2-core CPU), 128 for images (the pixel MLP is 4 x hidden wide, the U-Net gets hidden/4 "
                      "base channels)", lo=0, hi=4096)
    depth: int = opt(3, "hidden layers of the MLP", lo=1, hi=16)
    embedding: str = opt("sinusoidal", "time embedding", choices=("sinusoidal", "fourier"))
    image_net: str = opt("auto", "network for images: auto = the U-Net on a GPU, the half-width U-Net on a CPU "
                         "(twice the steps per second, better digits in 2 CPU-minutes); mlp = a residual MLP on the "
                         "flattened pixels (fastest sampling)",
                         "unet: hidden/4 base channels; unet_small: hidden/8; mlp: 4 x hidden wide",
                         choices=IMAGE_NETS)

    def validate(self):
        if self.schedule in LINEAR_TYPE and self.beta_start >= self.beta_end:
            raise ConfigError(f"beta_start ({self.beta_start}) must be below beta_end ({self.beta_end})")

    def betas(self) -> torch.Tensor:
        """beta_1..beta_T actually used, (T,) float64: the typed beta_start/end, times 1000/T when
        scale_betas (beta_T capped at 0.999)."""
        scale = 1000.0 / self.T if self.scale_betas else 1.0
        return sch.betas(self.schedule, self.T, self.beta_start * scale, min(self.beta_end * scale, 0.999))

    def inactive_fields(self) -> frozenset:
        """Fields this setting ignores (the app greys them out): cosine reads no beta_start/end."""
        return frozenset() if self.schedule in LINEAR_TYPE else frozenset({"beta_start", "beta_end", "scale_betas"})

    def summary(self) -> str:
        """One line on the schedule actually used, for the form: the betas and how close
        q(x_T | x_0) gets to the N(0, I) the sampler starts from (sqrt(abar_T) is the data's share)."""
        b = self.betas()
        abar_T = float(sch.alphas_cumprod(b)[-1])
        return f"betas used: {float(b[0]):.3g} .. {float(b.max()):.3g}; abar_T = {abar_T:.2g}"


class DDPM(NoiseModel):
    name = "ddpm"
    title = "DDPM / DDIM"
    summary = "Denoising diffusion: learn to predict the noise added at step t, then denoise step by step."
    capabilities = frozenset({"score", "noise_levels", "schedule"})
    Config = DDPMConfig
    native_samplers = {"ddpm": DDPMOptions, "ddim": DDIMOptions}
    default_sampler = "ddpm"

    @classmethod
    def train_defaults(cls, is_image):
        # 2D, with the 64-wide MLP: batch 256 at lr 1e-2, a 20-step warm-up and a short EMA reach
        # 1.5x the iid energy distance on moons in ~1300 steps (5 s of a 2-core CPU 3x slower than
        # the development machine; tests/engines/test_defaults.py, python main.py bench)
        # images: batch 64, the most steps per CPU-second for the small U-Net (the digits lesson's batch)
        return dict(batch=64) if is_image else dict(batch=256, lr=1e-2, warmup=20, ema=0.99)

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        b = cfg.betas()
        self.betas = b                                          # (T,) float64
        self.abar = sch.alphas_cumprod(b)                       # (T,) float64
        self._sqrt_abar = self.abar.sqrt().float().to(self.device)
        self._sqrt_1m = (1 - self.abar).sqrt().float().to(self.device)
        self.process = DiscreteVP(self.abar)                    # the NoiseModel adapter's view of the chain
        self.level = discrete_time_level(cfg.T, default=max(cfg.T // 10, 1))   # shown as t = 1..T
        self.net = self.make_net(cfg).to(self.device)

    def make_net(self, cfg):
        hidden = cfg.hidden or (64 if len(self.data_shape) == 1 else 128)
        return conditional_net(self.data_shape, hidden, cfg.depth, cfg.embedding,
                               image_net=image_net_for(cfg.image_net, self.device))

    def _c(self, t_int):  # integer steps -> net conditioning in [0, 1)
        return t_int.float() / self.cfg.T

    def loss(self, x0, generator=None):
        B = x0.shape[0]
        t = torch.randint(0, self.cfg.T, (B,), device=x0.device, generator=generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        a = sch.append_dims(self._sqrt_abar[t], x0.ndim)
        s = sch.append_dims(self._sqrt_1m[t], x0.ndim)
        xt = a * x0 + s * eps
        out = self.net(xt, self._c(t))
        target = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[self.cfg.prediction]
        per = (out - target).pow(2).flatten(1).mean(1)                    # (B,)
        report_t_loss(self, (t + 1).float() / self.cfg.T, per)           # t = 1..T on normalized time
        return per.mean(), {}

    def eps_fn(self, net=None):
        """eps_theta(x_t, t) whatever the parametrization (v: eps = a v + s x_t)."""
        net = net or self.model
        p = self.cfg.prediction

        def f(x, t):
            out = net(x, self._c(t))
            if p == "eps":
                return out
            a = sch.append_dims(self._sqrt_abar[t], x.ndim)
            s = sch.append_dims(self._sqrt_1m[t], x.ndim)
            if p == "x0":
                return (x - a * out) / s
            return a * out + s * x
        return f

    def native_eps(self, x_t, t):
        """eps_theta at a possibly fractional step t (N,) (the generic samplers' sigmas fall between steps)."""
        out = self.model(x_t, t / self.cfg.T)
        if self.cfg.prediction == "eps":
            return out
        a, s = (sch.append_dims(v.to(x_t), x_t.ndim) for v in self.process.alpha_s(t))
        return (x_t - a * out) / s if self.cfg.prediction == "x0" else a * out + s * x_t

    def budget_options(self, sampler, nfe):
        """DDIM: one network call per step; ancestral DDPM always takes T."""
        if sampler == "ddim":
            return dict(steps=nfe) if nfe <= self.cfg.T else None
        if sampler == "ddpm":
            return {} if nfe == self.cfg.T else None
        return super().budget_options(sampler, nfe)

    def sample_native(self, name, o, n, generator=None, callback=None):
        x = torch.randn((n,) + self.data_shape, generator=generator, device=self.device)
        clip = o.clip_x0 or None
        if name == "ddpm":
            return S.ddpm(self.eps_fn(), x, self.betas, o.variance, clip, generator, callback)
        ts = S.ddim_timesteps(self.cfg.T, o.steps)
        return S.ddim(self.eps_fn(), x, self.abar, ts, o.eta, clip, 1.0, generator, callback)

    def schedule(self):
        t = torch.arange(self.cfg.T).numpy()  # 0-based, like the t the samplers report (shown 1..T: level display_offset)
        return dict(x_label="step t", beta=(t, self.betas.numpy()), alpha_bar=(t, self.abar.numpy()),
                    log_snr=(t, sch.log_snr(self.abar).numpy()))

    @torch.no_grad()
    def views(self, request=None):
        """Images only. trajectory: x_t of k samples along the reverse chain (fixed noise, so the
        strip is comparable as training goes on), `frames` columns from the noise end to x_0. forward: rows of
        data x_0, x_t ~ q(x_t|x_0) (DDPM eq. 4) at t = request["level"], and the model's
        x0_hat = (x_t - sqrt(1-abar_t) eps_theta) / sqrt(abar_t). score_magnitude: per-pixel
        |s(x_t, t)| = |eps_theta| / sqrt(1 - abar_t), scaled so its max is white.
        request["data"]: a few normalized data images (the Run passes them)."""
        if len(self.data_shape) != 3:
            return {}
        request = request or {}
        k, frames = int(request.get("trajectories", 4)), int(request.get("frames", 10))
        g = torch.Generator(self.device).manual_seed(0)
        key = (request.get("sampler"), repr(request.get("options")), k, frames)
        old = getattr(self, "_traj_cache", None)
        # a whole chain is T network calls: at most one every 3 s however often the views are asked
        # for, and none while the model is unchanged (request["version"]: the training step), so
        # moving the t slider only redoes the cheap forward / score rows at the new t
        version = request.get("version")
        stale = old is None or old[0] != key or (time.perf_counter() - old[1] > 3.0
                                                 and (version is None or version != old[3]))
        if stale:
            xs = []
            self.sample(k, request.get("sampler"), request.get("options"), generator=g,
                        callback=lambda info: xs.append(info["x"]))
            pick = torch.linspace(0, len(xs) - 1, min(frames, len(xs))).round().long().tolist()
            traj = torch.stack([xs[i] for i in pick], 1)                  # (k, F, C, H, W)
            view = dict(kind="images", title="reverse process: x_t from t = T (left) to x_0 (right)",
                        images=traj.reshape((-1,) + self.data_shape).clamp(-1, 1).cpu().numpy(), nrow=len(pick))
            self._traj_cache = old = (key, time.perf_counter(), view, version)
        out = dict(trajectory=old[2])
        x0 = request.get("data")
        if x0 is None or len(x0) == 0:
            return out
        x0 = torch.as_tensor(x0, dtype=torch.float32, device=self.device)  # (m, C, H, W)
        t = int(self.level["default"] if request.get("level") is None else round(request["level"]))
        t = min(max(t, 0), self.cfg.T - 1)
        a, s = float(self._sqrt_abar[t]), float(self._sqrt_1m[t])
        xt = a * x0 + s * torch.randn(x0.shape, generator=g, device=self.device)
        eps = self.eps_fn()(xt, torch.full((len(x0),), t, device=self.device, dtype=torch.long))
        x0_hat = (xt - s * eps) / a
        rows = torch.cat([x0, xt, x0_hat]).clamp(-1, 1)
        mag = eps.norm(dim=1, keepdim=True) / s                           # (m, 1, H, W)
        top = float(mag.max())
        out["forward"] = dict(kind="images", nrow=len(x0), images=rows.cpu().numpy(),
                              title=f"t = {t + 1}: data x_0 / noised x_t / model's x0_hat")   # index t is the papers' t + 1
        out["score_magnitude"] = dict(kind="images", nrow=len(x0), vmax=top,
                                      images=(mag / max(top, 1e-12) * 2 - 1).cpu().numpy(),
                                      title=f"|score(x_t, t)| per pixel at t = {t + 1} (white = {top:.3g})")
        return out
