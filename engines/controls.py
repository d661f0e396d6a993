"""What a Run's training settings may do mid-run, and the run-local RNG for construction.

`LIVE` lists the TrainConfig settings that take effect at the next training step when changed
mid-run (Run.set_train_setting); `FIXED` gives, for every other setting, the reason it cannot
change without starting over. Every TrainConfig field is in exactly one of them (a test checks).

The learning rate follows torch.optim.lr_scheduler.LambdaLR with the linear warm-up factor
    lr_k = lr * min(1, (k + 1) / warmup)    (k = optimizer steps done; Goyal et al. 2017, sec. 2.2),
read at every step, so a new lr or a new warm-up length applies from the next step on.
"""
from __future__ import annotations

import contextlib
import threading

import torch

from .config import ConfigError, TrainConfig, as_dict, build

LIVE = {
    "lr": "scales every optimizer's base learning rate (a GAN's two keep their ratio)",
    "batch": "examples drawn for the next step",
    "grad_clip": "gradient-norm clip of the next step",
    "ema": "decay of the weight average (0 drops the average; >0 from 0 starts it from the current weights)",
    "weight_decay": "every optimizer parameter group's weight decay",
    "warmup": "the warm-up length the learning-rate factor is read from",
}
FIXED = {
    "optimizer": "the optimizer's moment estimates belong to it: switching Adam/AdamW starts over (press Reset)",
    "n_data": "the training set is drawn once when the run starts (press Reset to draw another)",
    "seed": "the seed fixes the initialization, the data and the held-out split of the whole run (press Reset)",
    "device": "the model and data live on one device for the whole run (press Reset to move)",
    "threads": "the torch thread count belongs to the process; the app or CLI sets it once (configure_threads)",
}


def validated(tc: TrainConfig, name: str, value):
    """value coerced and range-checked as TrainConfig would at construction; ConfigError if the
    setting is unknown or cannot change mid-run."""
    if name in FIXED:
        raise ConfigError(f"{name} cannot change during a run: {FIXED[name]}")
    if name not in LIVE:
        raise ConfigError(f"unknown training setting {name!r}; live settings: {', '.join(LIVE)}")
    return getattr(build(TrainConfig, {**as_dict(tc), name: value}), name)


def warmup_factor(step: int, warmup: int) -> float:
    """min(1, (step + 1) / warmup); 1 without warm-up."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


_SEEDED = threading.Lock()   # one seeded construction at a time: the global RNG is process-wide


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Run the body with torch's global RNG (CPU, and the run's GPU) seeded with `seed`, and put
    the caller's RNG state back afterwards (torch.random.fork_rng). Families build their networks
    in __init__ with torch's default initializers, which draw from the global RNG; this makes
    those draws a function of the seed alone, leaves everyone else's RNG stream untouched, and the
    lock keeps two runs built at once on two threads from interleaving their draws."""
    devices = [device.index or 0] if device.type in ("cuda", "mps") else []
    kind = device.type if device.type in ("cuda", "mps") else "cuda"
    with _SEEDED, torch.random.fork_rng(devices=devices, device_type=kind):
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device.index or 0):
                torch.cuda.manual_seed(seed)
        elif device.type == "mps":
            torch.mps.manual_seed(seed)
        yield
