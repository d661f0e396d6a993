"""A bounded ring of training checkpoints, denser early; rewinding and branching from one.

`CheckpointRing.offer(run)` copies the run's state when its step is due on a geometric grid
(step >= growth x the last kept step), then thins the ring back to `max_count` checkpoints and
`max_bytes` bytes by dropping the checkpoint whose neighbours are closest in log(step + 1): the
kept steps stay roughly log-spaced over the whole run (early training changes the model most,
so it gets the most checkpoints), the first (step 0) and the latest are never dropped.

`branch(run, checkpoint)` makes a new Run from a checkpoint: net, EMA, optimizer state, the
training generator's state, the step and the learning rate, so that it starts from the
checkpoint's weights bit for bit and, trained on, repeats the original run exactly (on CPU).
`view(run, checkpoint)` is the same without the optimizer, for drawing the field, samples and
particles as they were at that step (`pictures_at`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch


def _clone_tree(obj):
    """Deep copy with every tensor cloned to the CPU (optimizer states nest dicts and lists)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone_tree(v) for v in obj)
    return copy.deepcopy(obj)


def _tree_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tree_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tree_bytes(v) for v in obj)
    return 0


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue a run from `step` (tensors on the CPU)."""
    step: int
    net: dict                                  # family.state_dict()
    ema: dict | None                           # family.ema_net.state_dict()
    extra: dict                                # family.extra_state() (replay buffers, ...)
    optimizers: list                           # [optimizer.state_dict()]
    generator_state: torch.Tensor              # the run's training generator
    lr: float
    base_lrs: list = field(default_factory=list)
    nbytes: int = 0


def capture(run) -> Checkpoint:
    """A checkpoint of the run as it is now."""
    fam = run.family
    parts = dict(net=_clone_tree(fam.state_dict()),
                 ema=_clone_tree(fam.ema_net.state_dict()) if fam.ema_net is not None else None,
                 extra=_clone_tree(fam.extra_state()),
                 optimizers=[_clone_tree(o.state_dict()) for o in run.optimizers])
    nbytes = sum(_tree_bytes(v) for v in parts.values())
    return Checkpoint(step=int(run.step), generator_state=run.generator.get_state().clone(), lr=float(run.lr),
                      base_lrs=copy.deepcopy(getattr(run, "_base_lrs", [])), nbytes=nbytes, **parts)


class CheckpointRing:
    """At most `max_count` checkpoints and `max_bytes` bytes of them, log-spaced in step."""

    def __init__(self, max_count: int = 16, max_bytes: int = 256 << 20, growth: float = 1.3):
        if max_count < 2:
            raise ValueError("keep at least 2 checkpoints (the first and the latest)")
        if growth <= 1:
            raise ValueError("growth must exceed 1")
        self.max_count, self.max_bytes, self.growth = int(max_count), int(max_bytes), float(growth)
        self.items: list[Checkpoint] = []

    def __len__(self):
        return len(self.items)

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.items]

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.items)

    def due(self, step: int) -> bool:
        """Whether a checkpoint at `step` would be taken (cheap: ask before copying weights)."""
        if not self.items:
            return True
        last = self.items[-1].step
        return step > last and step + 1 >= self.growth * (last + 1)

    def offer(self, run, force: bool = False) -> bool:
        """Take a checkpoint of the run if its step is due (or force); True if one was taken."""
        if not (self.due(run.step) or (force and (not self.items or run.step > self.items[-1].step))):
            return False
        ckpt = capture(run)
        if ckpt.nbytes > self.max_bytes:
            return False                       # one copy would not fit the budget: keep none
        self.items.append(ckpt)
        self._thin()
        return True

    def _thin(self):
        while len(self.items) > self.max_count or (self.nbytes > self.max_bytes and len(self.items) > 2):
            logs = [math.log(c.step + 1) for c in self.items]
            # drop the interior checkpoint whose removal leaves the smallest log-step gap
            gaps = [logs[i + 1] - logs[i - 1] for i in range(1, len(logs) - 1)]
            del self.items[1 + int(np.argmin(gaps))]
        while self.nbytes > self.max_bytes and len(self.items) > 1:
            del self.items[0]

    def nearest(self, step: int) -> Checkpoint:
        """The kept checkpoint closest to `step` (the timeline slider's position)."""
        if not self.items:
            raise LookupError("no checkpoint kept yet: train for a few steps first")
        return min(self.items, key=lambda c: (abs(c.step - step), c.step))

    def clear(self):
        self.items.clear()


# ----------------------------------------------------------------------------- restore / branch

def _load(new, ckpt: Checkpoint, with_optimizer: bool):
    fam = new.family
    dev = new.device
    fam.load_state_dict({k: v.to(dev) for k, v in ckpt.net.items()})
    if ckpt.ema is not None and fam.ema_net is not None:
        fam.ema_net.load_state_dict({k: v.to(dev) for k, v in ckpt.ema.items()})
    if ckpt.extra and hasattr(fam, "load_extra_state"):
        fam.load_extra_state({k: v.to(dev) for k, v in ckpt.extra.items()})
    if with_optimizer:
        for opt, state in zip(new.optimizers, ckpt.optimizers):
            opt.load_state_dict(copy.deepcopy(state))   # torch casts the state to the params' device
        new.generator.set_state(ckpt.generator_state.clone())
        new.lr = ckpt.lr
        if ckpt.base_lrs:   # the warm-up's targets; the current lr is in the optimizer state
            new._base_lrs = copy.deepcopy(ckpt.base_lrs)
    new.step = ckpt.step
    new.branched_from = ckpt.step


def branch(run, ckpt: Checkpoint):
    """A new Run (same config and data) starting from the checkpoint: weights, EMA, optimizer
    state, generator, step and learning rate, so that it continues bit for bit."""
    new = type(run)(copy.deepcopy(run.cfg), data=run.data)
    _load(new, ckpt, with_optimizer=True)
    return new


def view(run, ckpt: Checkpoint):
    """A Run holding the checkpoint's weights, for pictures (its optimizer is not restored)."""
    new = type(run)(copy.deepcopy(run.cfg), data=run.data)
    _load(new, ckpt, with_optimizer=False)
    return new


class PicturesStopped(Exception):
    """pictures_at's should_stop() said yes between two sampler steps: the pictures are dropped."""


@dataclass(frozen=True)
class CheckpointPictures:
    """The views of a run as it was at a checkpoint, in data coordinates."""
    step: int
    field: dict                      # Run.field(...): xs (R,), ys (R,), score (R, R, 2), ...
    samples: np.ndarray | None       # (n, D)
    particles: np.ndarray | None     # (F, n, D) frames of the sampler, first to last
    run_id: int = 0                  # which run of a session / comparison they belong to


def pictures_at(run, ckpt: Checkpoint, resolution: int = 24, level=None, n: int = 500, frames: int = 24,
                seed: int = 0, sampler: str | None = None, options: dict | None = None,
                run_id: int = 0, should_stop=None) -> CheckpointPictures:
    """Field, samples and particle frames of `run` rewound to the checkpoint. The view box is the
    run's own, and the sampler noise is seeded, so pictures at two checkpoints are comparable.
    should_stop(): polled before the field, before sampling and at every sampler step (so a
    rewind ends within one step); when it says yes, PicturesStopped is raised and nothing is kept.
    Whatever should_stop raises itself (a session's Cancelled) goes through."""
    stop = should_stop or (lambda: False)

    def poll():
        if stop():
            raise PicturesStopped

    poll()
    v = view(run, ckpt)
    fld = {} if v.is_image else v.field(resolution, level, bounds=run.bounds())
    samples = particles = None
    if v.family.samplers:
        xs = []

        def cb(info):
            poll()
            xs.append(info["x"])

        poll()
        out = v.sample(n, sampler, options, seed=seed, callback=cb)
        samples = out.numpy()
        if xs and not v.is_image:
            pick = np.unique(np.linspace(0, len(xs) - 1, min(frames, len(xs))).round().astype(int))
            particles = np.stack([np.asarray(xs[i]) for i in pick])
    return CheckpointPictures(ckpt.step, fld, samples, particles, run_id)
