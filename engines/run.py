"""Run: a config turned into dataset + family + optimizer, trained step by step.

A Run is driven by its caller (the CLI or the app's worker thread): `train(k)` does k steps,
`snapshot(want)` computes only the views asked for, `iterate()` is a generator of Snapshots
that the caller pauses simply by not asking for the next one (Orange3-style long work).
Points are standardized with one shift and one scalar scale (so isotropic things stay
isotropic); everything that leaves the Run is in the dataset's own coordinates.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time

import numpy as np
import torch

from . import data as D
from . import controls, families, likelihood, metrics, quality
from .config import ConfigError, RunConfig, TrainConfig, build
from .families import train_config
from .messages import Snapshot
from .session import Cancelled, Session

LOAD_CHUNK = 500_000   # generated datasets are made in chunks this big, with a cancel check between


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


def configure_threads(n: int | None = None) -> int:
    """Set torch's CPU thread count for the process (n, or all cores but one); called once by
    the app and by the CLI, never by a Run (two runs at once would fight over it)."""
    n = int(n) if n else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


SPLIT_SEED = 7919            # the held-out split's generator: seed + SPLIT_SEED (not the batches' stream)
SAMPLE_CHUNK_VALUES = 1 << 18  # Run.sample draws at most this many values (points x dims) per family call


def _no_cancel():
    pass


def load_data(dataset, n: int, seed: int, cancel=_no_cancel) -> torch.Tensor:
    """D.load, with `cancel()` called between chunks of a large generated dataset (a 10^7-point
    set takes seconds): chunk i is drawn with seed + i, so sets of up to LOAD_CHUNK are unchanged."""
    if n <= LOAD_CHUNK or not (isinstance(dataset, str) and dataset in D.names() and not D.is_image(dataset)):
        return D.load(dataset, n, seed=seed)
    parts = []
    for i, start in enumerate(range(0, n, LOAD_CHUNK)):
        cancel()
        parts.append(D.load(dataset, min(LOAD_CHUNK, n - start), seed=seed + i))
    return torch.cat(parts)


class Run:
    def __init__(self, cfg: RunConfig | None = None, data: torch.Tensor | None = None, cancel=None):
        """cancel: called between the phases of construction (data loading, standardization,
        the model); it raises (engines.session.Cancelled) to abandon the run."""
        cancel = cancel or _no_cancel
        self.cfg = cfg = cfg or RunConfig()
        if not isinstance(cfg.train, TrainConfig):
            image = D.is_image(cfg.dataset) if data is None else torch.as_tensor(data).ndim == 4
            cfg.train = train_config(cfg.family, image, cfg.train)
        tc = cfg.train
        self.device = pick_device(tc.device)
        self.family_cls = families.get(cfg.family)
        fam_cfg = build(self.family_cls.Config, cfg.options)

        # ---- data, (N, *shape) in data coordinates; normalized copy on the device
        cancel()
        if data is None:
            data = load_data(cfg.dataset, tc.n_data, tc.seed, cancel)
        cancel()
        data = torch.as_tensor(data, dtype=torch.float32)
        if len(data) < 2:
            raise ConfigError("the dataset needs at least 2 points")
        self.data = data
        self.is_image = data.ndim == 4
        # a held-out reference set (quality score, likelihoods) the model never trains on, drawn
        # by the run's own generator; small datasets train on everything and say so
        train_idx, ref_idx = quality.held_out_split(len(data), torch.Generator().manual_seed(tc.seed + SPLIT_SEED))
        fit = data if ref_idx is None else data[train_idx]
        self.reference = data if ref_idx is None else data[ref_idx]
        self.reference_kind = quality.TRAINING_SET if ref_idx is None else quality.HELD_OUT
        if self.is_image:
            self.shift, self.scale = torch.zeros(data.shape[1:]), 1.0
        else:
            # in float64: float32 sums of values near 3e38 overflow to inf (and the scale with them)
            self.shift = fit.double().mean(0).float()
            self.scale = float(fit.double().std(0).mean().clamp(min=1e-6))
        cancel()
        self.train_data = self.to_norm(fit).to(self.device)
        del fit
        cancel()
        context = {}
        if self.is_image:  # the spacing of the grey levels, for dequantization (engines.likelihood)
            context["grey_step"] = likelihood.grey_step(data)
        mix = D.mixture(cfg.dataset) if isinstance(cfg.dataset, str) else None
        if mix is not None and data is not None and not self.is_image:
            context["mixture"] = mix.affine(self.shift, self.scale)
            context["mixture_data"] = mix

        # ---- model, seeded so that the same config gives the same run
        cancel()
        with controls.seeded(tc.seed, self.device):  # init draws: a function of the seed alone
            self.family = self.family_cls(fam_cfg, tuple(data.shape[1:]), self.device, context)
        self._set_ema(tc.ema)
        self.optimizers = self.family.optimizers(self._make_optimizer) if self.family.trainable else []
        # warm-up as a LambdaLR whose factor reads the live setting (controls.warmup_factor)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, self._lr_factor) for o in self.optimizers]
        self.generator = torch.Generator(self.device).manual_seed(tc.seed)   # batches and training noise
        self.step = 0
        self.lr = tc.lr
        self.diverged = ""
        self.history_steps: list[int] = []
        self.history: dict[str, list[float]] = {}
        self._sent = 0
        self._t0 = time.perf_counter()
        self._train_time = 0.0
        self._rate = 0.0
        self._quality = None                     # quality.QualityReference, built on first use
        self._likelihood = None                  # (step, held-out likelihood report)
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

    def _lr_factor(self, _epoch=None) -> float:
        """The LambdaLR factor for the next step: linear warm-up over the live `warmup` setting,
        counted in this run's optimizer steps (so a reloaded run does not warm up again)."""
        return controls.warmup_factor(getattr(self, "step", 0), self.cfg.train.warmup)

    def _refresh_lr(self):
        """Write base_lr x factor into every parameter group now (after a setting changed, or for
        a reloaded run); the schedulers' step() keeps it current between changes."""
        f = self._lr_factor()
        for sched in self.schedulers:
            for g, base in zip(sched.optimizer.param_groups, sched.base_lrs):
                g["lr"] = base * f
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]

    @property
    def _base_lrs(self) -> list:
        """Every optimizer's base learning rates, [[lr per group] per optimizer] (the schedulers'
        base_lrs); engines.checkpoints saves and restores them with a checkpoint."""
        return [list(s.base_lrs) for s in self.schedulers]

    @_base_lrs.setter
    def _base_lrs(self, bases):
        for sched, b in zip(self.schedulers, bases):
            sched.base_lrs = list(b)
            for g, x in zip(sched.optimizer.param_groups, sched.base_lrs):
                g["initial_lr"] = x
        self._refresh_lr()

    def _set_ema(self, decay: float):
        """Keep a weight average for sampling when decay > 0 (starting from the current weights),
        none otherwise; a family without parameters (EM's closed-form updates) never has one."""
        fam = self.family
        has_params = any(True for _ in fam.net.parameters())
        if decay > 0 and has_params:
            if fam.ema_net is None:
                fam.ema_net = copy.deepcopy(fam.net).requires_grad_(False)
        else:
            fam.ema_net = None
        self._ema_pairs = None

    def set_train_setting(self, name: str, value):
        """Change one TrainConfig setting mid-run; it reaches the optimizer / loader at the next
        step. Settings that cannot change mid-run (controls.FIXED) raise ConfigError with the
        reason, as do values outside the setting's range. Returns the value now in force."""
        tc = self.cfg.train
        v = controls.validated(tc, name, value)
        if name == "lr":
            ratio = v / self.lr                   # self.lr: the base lr now in force (a checkpoint may set it)
            for sched in self.schedulers:
                sched.base_lrs = [b * ratio for b in sched.base_lrs]
                for g, b in zip(sched.optimizer.param_groups, sched.base_lrs):
                    g["initial_lr"] = b
            self.lr = v
        elif name == "weight_decay":
            for o in self.optimizers:
                for g in o.param_groups:
                    g["weight_decay"] = v
        elif name == "ema":
            self._set_ema(v)
        setattr(tc, name, v)     # batch, grad_clip, warmup: read by train() at every step
        self._refresh_lr()
        return v

    def set_lr(self, lr: float):
        """Change the learning rate mid-run (the app's lr control): set_train_setting("lr", lr)."""
        return self.set_train_setting("lr", lr)

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
        history, ema = self.history, fam.ema_net is not None
        self._refresh_lr()
        for _ in range(n_steps):
            batch = min(tc.batch, N) if self.is_image else tc.batch
            idx = torch.randint(0, N, (batch,), generator=self.generator, device=self.device)
            terms = fam.train_step(self.train_data[idx], self.optimizers, tc.grad_clip, self.generator)
            loss = float(terms["loss"])  # cheap on CPU; a sync point on GPU
            if not math.isfinite(loss):
                self.diverged = (f"the loss became {loss} at step {self.step}: training paused. "
                                 f"Lower the learning rate (now {self.lr:g}) or press Reset.")
                break
            self.step += 1
            done += 1
            for sched in self.schedulers:   # the next step's lr: base x _lr_factor()
                sched.step()
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
        """n samples in data coordinates, (n, *data_shape) on the CPU. Drawn in chunks of at most
        SAMPLE_CHUNK_VALUES values from one generator, so a large request holds one chunk's
        sampler state at a time beyond the output. callback gets the per-step dict of the first
        chunk only, with x in data coordinates."""
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
        shape = tuple(self.data.shape[1:])
        chunk = max(1, SAMPLE_CHUNK_VALUES // math.prod(shape))
        if n <= chunk:  # the common case: one call, no copy
            with _eval_mode(self.family.model):
                return self.from_norm(self.family.sample(n, sampler, options, generator=g, callback=cb))
        out = torch.empty((n,) + shape)
        with _eval_mode(self.family.model):
            for i0 in range(0, n, chunk):
                k = min(chunk, n - i0)
                x = self.family.sample(k, sampler, options, generator=g, callback=cb if i0 == 0 else None)
                out[i0:i0 + k] = self.from_norm(x)
        return out

    def bounds(self, margin: float = 0.25) -> tuple[float, float, float, float]:
        """A square view box around the data, (xmin, xmax, ymin, ymax) in data coordinates."""
        lo, hi = self.data.min(0).values.double(), self.data.max(0).values.double()   # float64: hi - lo may pass 3.4e38
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

    def quality_reference(self) -> quality.QualityReference:
        """The reference set and floor statistics of the quality score (computed once)."""
        if self._quality is None:
            self._quality = quality.QualityReference(self.data, self.reference, self.reference_kind,
                                                     seed=self.cfg.train.seed + SPLIT_SEED)
        return self._quality

    def iid_level(self, n: int = 2000, repeats: int | None = None, m: int | None = None) -> float:
        """The energy distance a perfect sampler's n samples get on average against m reference
        points (default: the reference set evaluate() uses, at most 2000): E|X - X'| (1/n + 1/m)
        in closed form (engines.quality). `repeats` is accepted for old callers and unused: the
        floor is no longer an average of random draws. NaN on degenerate data."""
        q = self.quality_reference()
        if q.dof is None:
            return math.nan
        return q.floor(n, m or min(2000, len(self.reference)))

    def evaluate(self, samples: torch.Tensor, n_ref: int = 2000, max_samples: int = 4000) -> dict:
        """Quality of samples (data coordinates) against the reference set (held-out data when
        there are enough, else the training set; `reference_set` says which): the energy distance,
        its ratio to the perfect sampler's expectation at these sizes (energy_distance_x_iid) with
        the 90 % band of one perfect reading (x_iid_band), or a `quality_note` on degenerate data.
        At most max_samples samples and n_ref reference points are compared. Families with a cheap
        likelihood add the held-out NLL in its unit (engines.likelihood)."""
        s = torch.as_tensor(samples)[:max_samples]
        out = self.quality_reference().score(s, n_ref).as_metrics()
        mix = self.family.context.get("mixture_data")
        if mix is not None:
            cov = metrics.mode_coverage(s, mix.means, radius=float(3 * mix.stds.max()))
            out["modes_covered"] = cov["covered"]
            out["modes_total"] = cov["total"]
        if self.is_image:  # FID / Inception Score analogues from a small digit classifier
            from .digit_classifier import run_metrics
            out.update(run_metrics(self.cfg.dataset, s))
        out.update(self.held_out_likelihood(n_ref))
        return out

    def held_out_likelihood(self, n: int = 2000) -> dict:
        """{nll_nats | bits_per_dim, nll_unit, nll_reference} of the model on up to n reference
        points, in data units (engines.likelihood); {} for families without a cheap likelihood.
        Cached per training step; the dequantization noise is the same draw every time."""
        if self._likelihood is not None and self._likelihood[0] == (self.step, n):
            return self._likelihood[1]
        x = self.to_norm(self.reference[:n]).to(self.device)
        g = torch.Generator(self.device).manual_seed(self.cfg.train.seed + SPLIT_SEED + 1)
        with _eval_mode(self.family.model), torch.no_grad():
            rep = likelihood.held_out_likelihood(
                self.family, x, scale=self.scale, is_image=self.is_image,
                step=self.family.context.get("grey_step", likelihood.DEFAULT_STEP),
                reference=self.reference_kind, generator=g)
        self._likelihood = ((self.step, n), rep)
        return rep

    def snapshot(self, want: dict | None = None) -> Snapshot:
        """Only what is wanted: want = dict(field=dict(resolution, level), views=dict(...),
        samples=dict(n, sampler, options)). The losses are those recorded since the last snapshot."""
        want = want or {}
        k0 = self._sent
        self._sent = len(self.history_steps)
        extra, metrics_ = {}, {}
        if "field" in want:
            extra["field"] = self.field(**want["field"])
        if "views" in want:
            extra["views"] = self.views(want["views"])
        if "samples" in want:
            w = dict(want["samples"])
            w.pop("every", None)
            x = self.sample(w.pop("n", 1000), **w)
            extra["samples"] = x.numpy()
            metrics_.update(self.evaluate(x))
        return Snapshot(
            step=self.step, wall_time=time.perf_counter() - self._t0,
            loss_steps=np.asarray(self.history_steps[k0:], dtype=np.int64),
            losses={k: np.asarray(v[k0:], dtype=np.float64) for k, v in self.history.items()},
            lr=self.lr, steps_per_s=self._rate, message=self.diverged, diverged=bool(self.diverged),
            metrics=metrics_, **extra)

    def iterate(self, steps_per_snapshot: int = 100, max_steps: int | None = None, seconds: float | None = None,
                want: dict | None = None):
        """Generator of Snapshots; stops at max_steps, after `seconds` of training, or on divergence.
        Driven by a Session (engines.session): the same training path, stop targets and
        divergence handling as the app."""
        return Session(self.cfg, run=self).iterate(steps_per_snapshot, max_steps, seconds, want)

    # ------------------------------------------------------------------ persistence
    def save(self, run_dir: str):
        from .persist import save_run
        save_run(self, run_dir)

    @classmethod
    def load(cls, run_dir: str) -> "Run":
        from .persist import load_run
        return load_run(cls, run_dir)


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module):
    """module.eval() for the body, then train() again (sampling and likelihoods need no dropout
    or batch statistics)."""
    module.eval()
    try:
        yield
    finally:
        module.train()


def mix_score_vp(mix, x, alpha: float, sigma: float) -> torch.Tensor:
    """Exact score of alpha x0 + sigma eps with x0 ~ mix, at points x (N, D)."""
    return mix.vp_marginal(alpha, sigma).score(x)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=float)
