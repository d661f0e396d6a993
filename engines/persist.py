"""RUN_DIR save/load: config.toml, weights.safetensors (never pickle), data.safetensors,
losses.csv, metrics.json (with the weights' SHA-256 so a tampered file is refused)."""
from __future__ import annotations

import csv
import hashlib
import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import RunConfig

WEIGHTS, DATA, CONFIG, LOSSES, METRICS = "weights.safetensors", "data.safetensors", "config.toml", "losses.csv", "metrics.json"


class RunDirError(ValueError):
    """A RUN_DIR that cannot be used; the message names the file and the problem."""


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_run(run, run_dir: str):
    os.makedirs(run_dir, exist_ok=True)
    fam = run.family
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in fam.state_dict().items()}
    if fam.ema_net is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in fam.ema_net.state_dict().items()})
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in fam.extra_state().items()})
    wpath = os.path.join(run_dir, WEIGHTS)
    save_file(tensors, wpath)
    save_file({"data": run.data.contiguous()}, os.path.join(run_dir, DATA))
    with open(os.path.join(run_dir, CONFIG), "w") as f:
        f.write(run.cfg.to_toml())
    with open(os.path.join(run_dir, LOSSES), "w", newline="") as f:
        w = csv.writer(f)
        names = list(run.history)
        w.writerow(["step"] + names)
        for i, s in enumerate(run.history_steps):
            w.writerow([s] + [run.history[n][i] for n in names])
    meta = dict(step=run.step, weights_sha256=_sha256(wpath), scale=run.scale,
                shift=run.shift.flatten().tolist(), metrics=getattr(run, "last_metrics", {}))
    with open(os.path.join(run_dir, METRICS), "w") as f:
        json.dump(meta, f, indent=2, default=float)


def _load_tensors(path, what) -> dict:
    if not os.path.exists(path):
        raise RunDirError(f"{path}: missing; is this a RUN_DIR written by `main.py train`?")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunDirError(f"{path}: the {what} file is truncated or corrupted and was not loaded ({e})") from None


def load_run(cls, run_dir: str):
    cpath, mpath = os.path.join(run_dir, CONFIG), os.path.join(run_dir, METRICS)
    for p in (cpath, mpath):
        if not os.path.exists(p):
            raise RunDirError(f"{p}: missing; is this a RUN_DIR written by `main.py train`?")
    with open(cpath) as f:
        cfg = RunConfig.from_toml(f.read())
    try:
        with open(mpath) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{mpath}: not valid JSON ({e})") from None
    wpath = os.path.join(run_dir, WEIGHTS)
    tensors = _load_tensors(wpath, "weights")
    if meta.get("weights_sha256") and _sha256(wpath) != meta["weights_sha256"]:
        raise RunDirError(f"{wpath}: the weights do not match the checksum recorded at training time "
                          "(the file was changed or damaged); refusing to load it")
    data = _load_tensors(os.path.join(run_dir, DATA), "data")["data"]
    run = cls(cfg, data=data)
    fam = run.family

    def part(prefix):
        return {k[len(prefix):]: v.to(run.device) for k, v in tensors.items() if k.startswith(prefix)}
    try:
        fam.load_state_dict(part("net."))
        if fam.ema_net is not None and part("ema."):
            fam.ema_net.load_state_dict(part("ema."))
        extra = part("extra.")
        if extra and hasattr(fam, "load_extra_state"):
            fam.load_extra_state(extra)
    except (RuntimeError, KeyError) as e:
        raise RunDirError(f"{wpath}: the weights do not fit the {cfg.family} model in {CONFIG} ({e})") from None
    run.step = int(meta.get("step", 0))
    return run
