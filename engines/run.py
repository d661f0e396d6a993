"""Run: a config turned into dataset + family + optimizer, trained step by step.

A Run is driven by its caller (the CLI or the app's worker thread): `train(k)` does k steps,
`snapshot(want)` computes only the views asked for, `iterate()` is a generator of Snapshots
that the caller pauses simply by not asking for the next one (Orange3-style long work).
Points are standardized with one shift and one scalar scale (so isotropic things stay
isotropic); everything that leaves the Run is in the dataset's own coordinates.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, field as dc_field

import numpy as np
import torch

from . import data as D
from . import families, metrics
from .config import ConfigError, RunConfig, TrainConfig, build, train_config


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device mps was asked for, but Apple's MPS is not available")
    return torch.device(name)


def default_threads() -> int:
    """All cores but one: a torch thread on every core starves the GUI's event loop."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class Snapshot:
    """Plain values and numpy arrays only: safe to hand to another thread."""
    step: int
    wall_time: float
    loss_steps: np.ndarray                       # (k,) steps of the loss records since the last snapshot
    losses: dict                                 # term -> (k,) float64
    lr: float
    steps_per_s: float
    field: dict | None = None                    # xs (R,), ys (R,), score (R, R, 2), energy/log_density (R, R)
    samples: np.ndarray | None = None            # (n, 2) or (n, C, H, W), data coordinates
    views: dict | None = None                    # family-specific pictures (Family.views)
    metrics: dict = dc_field(default_factory=dict)
    message: str = ""                            # e.g. why the run paused
    diverged: bool = False


class Run:
    def __init__(self, cfg: RunConfig | None = None, data: torch.Tensor | None = None):
        self.cfg = cfg = cfg or RunConfig()
        if not isinstance(cfg.train, TrainConfig):
            image = D.is_image(cfg.dataset) if data is None else torch.as_tensor(data).ndim == 4
            cfg.train = train_config(cfg.family, image, cfg.train)
        tc = cfg.train
        self.device = pick_device(tc.device)
        torch.set_num_threads(tc.threads or default_threads())
        self.family_cls = families.get(cfg.family)
        fam_cfg = build(self.family_cls.Config, cfg.options)

        # ---- data, (N, *shape) in data coordinates; normalized copy on the device
        if data is None:
            data = D.load(cfg.dataset, tc.n_data, seed=tc.seed)
        data = torch.as_tensor(data, dtype=torch.float32)
        if len(data) < 2:
            raise ConfigError("the dataset needs at least 2 points")
        self.data = data
        self.is_image = data.ndim == 4
        if self.is_image:
            self.shift, self.scale = torch.zeros(data.shape[1:]), 1.0
        else:
            self.shift = data.mean(0)
            self.scale = float(data.std(0).mean().clamp(min=1e-6))
        self.train_data = self.to_norm(data).to(self.device)
        context = {}
        mix = D.mixture(cfg.dataset) if isinstance(cfg.dataset, str) else None
        if mix is not None and data is not None and not self.is_image:
            context["mixture"] = mix.affine(self.shift, self.scale)
            context["mixture_data"] = mix

        # ---- model, seeded so that the same config gives the same run
        torch.manual_seed(tc.seed)
        self.family = self.family_cls(fam_cfg, tuple(data.shape[1:]), self.device, context)
        # a family without parameters (EM's closed-form updates) has nothing to average
        has_params = any(True for _ in self.family.net.parameters())
        self.family.ema_net = copy.deepcopy(self.family.net).requires_grad_(False) if tc.ema > 0 and has_params else None
        self.optimizers = self.family.optimizers(self._make_optimizer) if self.family.trainable else []
        self.generator = torch.Generator(self.device).manual_seed(tc.seed)
        self._base_lrs = [[g["lr"] for g in o.param_groups] for o in self.optimizers]
        self.step = 0
        self.lr = tc.lr
        self.diverged = ""
        self.history_steps: list[int] = []
        self.history: dict[str, list[float]] = {}
        self._sent = 0
        self._t0 = time.perf_counter()
        self._train_time = 0.0
        self._rate = 0.0
        self._iid = None
        self._ema_pairs = None

    # ------------------------------------------------------------------ coordinates
    def to_norm(self, x):
        return (torch.as_tensor(x, dtype=torch.float32) - self.shift) / self.scale

    def from_norm(self, x):
        return x.detach().float().cpu() * self.scale + self.shift

    # ------------------------------------------------------------------ training
    def _make_optimizer(self, params, lr=None, betas=(0.9, 0.999)):
        tc = self.cfg.train
        lr = lr or tc.lr
        params = list(params)
        Opt = torch.optim.Adam if tc.optimizer == "adam" else torch.optim.AdamW
        # the fused kernel updates every tensor in one call: on small nets the per-tensor Python
        # loop of the default implementation costs more than the maths
        try:
            return Opt(params, lr=lr, betas=betas, weight_decay=tc.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return Opt(params, lr=lr, betas=betas, weight_decay=tc.weight_decay)

    def set_lr(self, lr: float):
        """Change the learning rate mid-run (the app's lr control)."""
        if not (math.isfinite(lr) and 0 < lr <= 10):
            raise ConfigError(f"learning rate {lr} is not usable; pick a value in (0, 10], e.g. 1e-3")
        ratio = lr / self.lr
        self._base_lrs = [[b * ratio for b in bl] for bl in self._base_lrs]
        self.lr = lr

    def _apply_warmup(self):
        w = self.cfg.train.warmup
        if w and self.step <= w:
            f = min(1.0, (self.step + 1) / w)
            for o, bl in zip(self.optimizers, self._base_lrs):
                for g, b in zip(o.param_groups, bl):
                    g["lr"] = b * f
        elif self.step == w + 1 or not w:
            for o, bl in zip(self.optimizers, self._base_lrs):
                for g, b in zip(o.param_groups, bl):
                    g["lr"] = b

    @torch.no_grad()
    def _update_ema(self):
        d = min(self.cfg.train.ema, (1 + self.step) / (10 + self.step))
        ema = self.family.ema_net
        # buffers (embedding frequencies) are constants, copied once by deepcopy
        if self._ema_pairs is None:
            self._ema_pairs = (list(ema.parameters()), list(self.family.net.parameters()))
        torch._foreach_lerp_(*self._ema_pairs, 1 - d)

    def train(self, n_steps: int = 1) -> int:
        """Do up to n_steps optimization steps; returns how many were done (fewer if it diverged)."""
        if self.diverged or not self.family.trainable:
            return 0
        tc, fam = self.cfg.train, self.family
        N, done = self.train_data.shape[0], 0
        t0 = time.perf_counter()
        batch = min(tc.batch, N) if self.is_image else tc.batch
        warm_until = tc.warmup + 1
        history, ema = self.history, fam.ema_net is not None
        for _ in range(n_steps):
            if self.step <= warm_until:
                self._apply_warmup()
            idx = torch.randint(0, N, (batch,), generator=self.generator, device=self.device)
            terms = fam.train_step(self.train_data[idx], self.optimizers, tc.grad_clip, self.generator)
            loss = float(terms["loss"])  # cheap on CPU; a sync point on GPU
            if not math.isfinite(loss):
                self.diverged = (f"the loss became {loss} at step {self.step}: training paused. "
                                 f"Lower the learning rate (now {self.lr:g}) or press Reset.")
                break
            self.step += 1
            done += 1
            if ema:
                self._update_ema()
            self.history_steps.append(self.step)
            for k, v in terms.items():
                h = history.get(k)
                if h is None:
                    h = history[k] = []
                h.append(loss if k == "loss" else float(v))
        dt = time.perf_counter() - t0
        self._train_time += dt
        if done and dt > 0:
            r = done / dt
            self._rate = r if self._rate == 0 else 0.8 * self._rate + 0.2 * r
        return done

    # ------------------------------------------------------------------ views
    def sample(self, n: int, sampler: str | None = None, options: dict | None = None, seed: int | None = None,
               callback=None) -> torch.Tensor:
        """n samples in data coordinates. callback gets the per-step dict with x in data coordinates."""
        g = torch.Generator(self.device).manual_seed(self.cfg.train.seed + 1 if seed is None else seed)
        cb = None
        if callback is not None:
            def cb(info):
                info = dict(info)
                info["x"] = self.from_norm(info["x"])
                if info.get("denoised") is not None:
                    info["denoised"] = self.from_norm(info["denoised"])
                callback(info)
        sampler = sampler or self.cfg.sampler or None
        options = options if options is not None else (self.cfg.sampler_options if sampler == self.cfg.sampler else {})
        self.family.model.eval()
        x = self.family.sample(n, sampler, options, generator=g, callback=cb)
        self.family.model.train()
        return self.from_norm(x)

    def bounds(self, margin: float = 0.25) -> tuple[float, float, float, float]:
        """A square view box around the data, (xmin, xmax, ymin, ymax) in data coordinates."""
        lo, hi = self.data.min(0).values, self.data.max(0).values
        c, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * (1 + margin) + 1e-3
        return float(c[0] - half), float(c[0] + half), float(c[1] - half), float(c[1] + half)

    def field(self, resolution: int = 24, level: float | None = None, bounds=None) -> dict:
        """The family's views on a resolution x resolution grid, in data coordinates:
        score arrows (R, R, 2) (d log p / dx in data units) and scalar maps (R, R)."""
        if self.is_image:
            return {}
        x0, x1, y0, y1 = bounds or self.bounds()
        xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
        gx, gy = np.meshgrid(xs, ys, indexing="xy")                   # (R, R), row = y
        pts = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).float()
        out = self.family.field(self.to_norm(pts).to(self.device), level)
        res = dict(xs=xs, ys=ys)
        for k, v in out.items():
            v = np.asarray(v)
            if k == "score":
                res[k] = (v / self.scale).reshape(resolution, resolution, 2)
            elif v.ndim == 1 and v.size == pts.shape[0]:
                # log-densities shift by -D log(scale) under the change of variables
                res[k] = (v - 2 * math.log(self.scale) if k == "log_density" else v).reshape(resolution, resolution)
            else:
                res[k] = v
        mix = self.family.context.get("mixture")
        fn = getattr(self.family, "level_alpha_sigma", None)  # which noised data the field is of
        if mix is not None and "score" in res and fn is not None:
            # the forward process runs in normalized coordinates (alpha shrinks toward the normalized
            # origin, not the data's), so the exact score is taken there and mapped back: / scale
            a, s = fn(level)
            ts = mix_score_vp(mix, self.to_norm(pts), a, s) / self.scale
            res["true_score"] = ts.numpy().reshape(resolution, resolution, 2)
        return res

    def views(self, request: dict | None = None) -> dict:
        """The family's extra pictures, with normalized data coordinates mapped back (see Family.views)."""
        out = {}
        request = dict(request or {})
        if self.is_image and "data" not in request:  # a fixed handful of data images to noise / encode
            idx = torch.randperm(len(self.train_data), generator=torch.Generator().manual_seed(0))[:8]
            request["data"] = self.train_data[idx.to(self.train_data.device)]
        with torch.no_grad():
            raw = self.family.views(request)
        sh, sc = self.shift.numpy(), self.scale
        for name, v in raw.items():
            v = dict(v)
            if v.get("space") == "data" and not self.is_image:
                for key in ("x", "centers"):
                    if key in v:
                        v[key] = np.asarray(v[key]) * sc + sh
                if "lines" in v:
                    v["lines"] = [np.asarray(l) * sc + sh for l in v["lines"]]
                if "covs" in v:
                    v["covs"] = np.asarray(v["covs"]) * sc ** 2
                if "v" in v:
                    v["v"] = np.asarray(v["v"]) * sc
            out[name] = v
        return out

    def level_sigma(self, level):
        """(alpha, sigma) of the noised data at a field level, in data units, when defined."""
        f = self.family
        fn = getattr(f, "level_alpha_sigma", None)
        if fn is None:
            return None
        a, s = fn(level)
        return a, s * self.scale

    def iid_level(self, n: int = 2000, repeats: int = 4) -> float:
        """Mean energy distance between two independent n-point draws of the data: the floor
        any model's samples are compared with."""
        if self._iid is None:
            vals = []
            for r in range(repeats):
                g = torch.Generator().manual_seed(1000 + r)
                p = torch.randperm(len(self.data), generator=g)
                if len(self.data) >= 2 * n:
                    a, b = self.data[p[:n]], self.data[p[n:2 * n]]
                else:
                    h = len(self.data) // 2
                    a, b = self.data[p[:h]], self.data[p[h:2 * h]]
                vals.append(metrics.energy_distance(a, b))
            self._iid = float(np.mean(vals))
        return self._iid

    def evaluate(self, samples: torch.Tensor, n_ref: int = 2000) -> dict:
        """Quality of samples (data coordinates) against held-out data."""
        g = torch.Generator().manual_seed(7)
        ref = self.data[torch.randperm(len(self.data), generator=g)[:n_ref]]
        s = torch.as_tensor(samples)[:n_ref]
        ed = metrics.energy_distance(s, ref)
        out = dict(energy_distance=ed, energy_distance_x_iid=ed / max(self.iid_level(min(n_ref, len(self.data) // 2)), 1e-12))
        mix = self.family.context.get("mixture_data")
        if mix is not None:
            cov = metrics.mode_coverage(s, mix.means, radius=float(3 * mix.stds.max()))
            out["modes_covered"] = cov["covered"]
            out["modes_total"] = cov["total"]
        if self.is_image:  # FID / Inception Score analogues from a small digit classifier
            from .digit_classifier import run_metrics
            out.update(run_metrics(self.cfg.dataset, s))
        return out

    def snapshot(self, want: dict | None = None) -> Snapshot:
        """Only what is wanted: want = dict(field=dict(resolution, level), samples=dict(n, sampler, options))."""
        want = want or {}
        k0 = self._sent
        self._sent = len(self.history_steps)
        snap = Snapshot(
            step=self.step, wall_time=time.perf_counter() - self._t0,
            loss_steps=np.asarray(self.history_steps[k0:], dtype=np.int64),
            losses={k: np.asarray(v[k0:], dtype=np.float64) for k, v in self.history.items()},
            lr=self.lr, steps_per_s=self._rate, message=self.diverged, diverged=bool(self.diverged))
        if "field" in want:
            snap.field = self.field(**want["field"])
        if "views" in want:
            snap.views = self.views(want["views"])
        if "samples" in want:
            w = dict(want["samples"])
            x = self.sample(w.pop("n", 1000), **w)
            snap.samples = x.numpy()
            snap.metrics.update(self.evaluate(x))
        return snap

    def iterate(self, steps_per_snapshot: int = 100, max_steps: int | None = None, seconds: float | None = None,
                want: dict | None = None):
        """Generator of Snapshots; stops at max_steps, after `seconds` of training, or on divergence."""
        start = time.perf_counter()
        while True:
            k = steps_per_snapshot if max_steps is None else min(steps_per_snapshot, max_steps - self.step)
            if k <= 0:
                return
            done = self.train(k)
            yield self.snapshot(want)
            if done < k or (seconds is not None and time.perf_counter() - start >= seconds):
                return

    # ------------------------------------------------------------------ persistence
    def save(self, run_dir: str):
        from .persist import save_run
        save_run(self, run_dir)

    @classmethod
    def load(cls, run_dir: str) -> "Run":
        from .persist import load_run
        return load_run(cls, run_dir)


def mix_score_vp(mix, x, alpha: float, sigma: float) -> torch.Tensor:
    """Exact score of alpha x0 + sigma eps with x0 ~ mix, at points x (N, D)."""
    return mix.vp_marginal(alpha, sigma).score(x)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=float)
