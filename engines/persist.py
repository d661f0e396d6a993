"""RUN_DIR save/load: config.toml, weights.safetensors (never pickle), data.safetensors,
losses.csv, metrics.json, an optional view_state.json (what the window showed), and
manifest.json: the byte size and SHA-256 of every other file, checked before any file is parsed,
so a changed, truncated or swapped file is refused (engines/bundle.py zips a RUN_DIR)."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import RunConfig

WEIGHTS, DATA, CONFIG, LOSSES, METRICS = "weights.safetensors", "data.safetensors", "config.toml", "losses.csv", "metrics.json"
VIEW_STATE, MANIFEST = "view_state.json", "manifest.json"
REQUIRED = (CONFIG, WEIGHTS, DATA, LOSSES, METRICS)
RUN_FILES = REQUIRED + (VIEW_STATE,)          # every name a RUN_DIR may hold, besides the manifest
FORMAT = "genplayground-run/1"
MAX_VIEW_STATE_BYTES = 1 << 20
MAX_LOSS_ROWS = 2_000_000                     # a losses.csv longer than this is cut (memory bound)


class RunDirError(ValueError):
    """A RUN_DIR that cannot be used; the message names the file and the problem."""


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(run_dir: str):
    """manifest.json: {format, files: {name: {bytes, sha256}}} over every RUN_FILES name present."""
    files = {}
    for name in RUN_FILES:
        p = os.path.join(run_dir, name)
        if os.path.isfile(p):
            files[name] = dict(bytes=os.path.getsize(p), sha256=_sha256(p))
    with open(os.path.join(run_dir, MANIFEST), "w") as f:
        json.dump(dict(format=FORMAT, files=files), f, indent=2)


def verify_manifest(run_dir: str) -> bool:
    """Check every file against manifest.json (size first, then SHA-256) before anything is parsed.
    False when the RUN_DIR predates manifests (then only the weights' checksum in metrics.json is
    checked); RunDirError for a missing, changed, truncated or unexpected file."""
    mpath = os.path.join(run_dir, MANIFEST)
    if not os.path.exists(mpath):
        return False
    if os.path.getsize(mpath) > MAX_VIEW_STATE_BYTES:
        raise RunDirError(f"{mpath}: too large for a manifest ({os.path.getsize(mpath)} bytes)")
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{mpath}: not a run manifest ({e})") from None
    unknown = sorted(set(files) - set(RUN_FILES))
    if unknown:
        raise RunDirError(f"{mpath}: names a file a RUN_DIR never holds: {unknown[0]!r}")
    missing = [n for n in REQUIRED if n not in files]
    if missing:
        raise RunDirError(f"{mpath}: does not cover {missing[0]}; refusing an unchecked file")
    for name, entry in files.items():
        p = os.path.join(run_dir, name)
        if not os.path.isfile(p):
            raise RunDirError(f"{p}: missing (listed in {MANIFEST})")
        try:
            size, digest = int(entry["bytes"]), str(entry["sha256"])
        except (KeyError, TypeError, ValueError):
            raise RunDirError(f"{mpath}: bad entry for {name}") from None
        if os.path.getsize(p) != size:
            raise RunDirError(f"{p}: truncated or corrupted: {os.path.getsize(p)} bytes where the "
                              f"manifest records {size}; refusing to load it")
        if _sha256(p) != digest:
            raise RunDirError(f"{p}: does not match the checksum recorded when the run was saved "
                              "(the file was changed or damaged); refusing to load it")
    return True


def write_view_state(run_dir: str, view_state: dict):
    """What the window showed (panels, levels, sampler, zoom): plain JSON, a dict of plain values."""
    with open(os.path.join(run_dir, VIEW_STATE), "w", encoding="utf-8") as f:
        json.dump(view_state, f, indent=2, default=float)


def read_view_state(run_dir: str) -> dict:
    p = os.path.join(run_dir, VIEW_STATE)
    if not os.path.exists(p):
        return {}
    if os.path.getsize(p) > MAX_VIEW_STATE_BYTES:
        raise RunDirError(f"{p}: {os.path.getsize(p)} bytes, more than a view state ever needs")
    try:
        with open(p, encoding="utf-8") as f:
            state = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(state, dict):
        raise RunDirError(f"{p}: expected a JSON object, got {type(state).__name__}")
    return state


def read_losses(run_dir: str) -> tuple[list[int], dict[str, list[float]]]:
    """losses.csv -> (steps, {name: values}); at most MAX_LOSS_ROWS rows are kept."""
    p = os.path.join(run_dir, LOSSES)
    steps, hist = [], {}
    if not os.path.exists(p):
        return steps, hist
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if not header or header[0] != "step":
                raise ValueError("the first column must be 'step'")
            names = header[1:]
            hist = {n: [] for n in names}
            for i, row in enumerate(rows):
                if i >= MAX_LOSS_ROWS:
                    break
                if len(row) != len(header):
                    raise ValueError(f"row {i + 2} has {len(row)} columns, expected {len(header)}")
                steps.append(int(row[0]))
                for n, v in zip(names, row[1:]):
                    hist[n].append(float(v))
    except (ValueError, UnicodeDecodeError, csv.Error) as e:
        raise RunDirError(f"{p}: not a loss history ({e})") from None
    return steps, hist


def save_run(run, run_dir: str, view_state: dict | None = None, losses: tuple | None = None):
    """Write the RUN_DIR, then its manifest last (a crash mid-save leaves no valid manifest).
    losses: (steps (k,), {term: (k,)}) to write instead of the run's own (possibly trimmed) lists."""
    os.makedirs(run_dir, exist_ok=True)
    stale = os.path.join(run_dir, MANIFEST)
    if os.path.exists(stale):
        os.remove(stale)
    fam = run.family
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in fam.state_dict().items()}
    if fam.ema_net is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in fam.ema_net.state_dict().items()})
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in fam.extra_state().items()})
    wpath = os.path.join(run_dir, WEIGHTS)
    save_file(tensors, wpath)
    save_file({"data": run.data.contiguous()}, os.path.join(run_dir, DATA))
    with open(os.path.join(run_dir, CONFIG), "w") as f:
        # every family option written out resolved, not only the ones the user changed: a RUN_DIR
        # must load with the model it was trained with even after a default changes
        resolved = {k: v for k, v in dataclasses.asdict(fam.cfg).items() if v is not None}
        f.write(dataclasses.replace(run.cfg, options=resolved).to_toml())
    with open(os.path.join(run_dir, LOSSES), "w", newline="") as f:
        w = csv.writer(f)
        steps, history = losses if losses is not None else (run.history_steps, run.history)
        names = list(history)
        w.writerow(["step"] + names)
        for i, s in enumerate(steps):
            w.writerow([int(round(float(s)))] + [float(history[n][i]) for n in names])
    meta = dict(step=run.step, weights_sha256=_sha256(wpath), scale=run.scale,
                shift=run.shift.flatten().tolist(), metrics=getattr(run, "last_metrics", {}))
    with open(os.path.join(run_dir, METRICS), "w") as f:
        json.dump(meta, f, indent=2, default=float)
    vpath = os.path.join(run_dir, VIEW_STATE)
    if view_state is not None:
        write_view_state(run_dir, view_state)
    elif os.path.exists(vpath):
        os.remove(vpath)          # a view state left from an earlier save would describe another run
    write_manifest(run_dir)


def _load_tensors(path, what) -> dict:
    if not os.path.exists(path):
        raise RunDirError(f"{path}: missing; is this a RUN_DIR written by `main.py train`?")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunDirError(f"{path}: the {what} file is truncated or corrupted and was not loaded ({e})") from None


def load_run(cls, run_dir: str):
    if not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: not a folder; a RUN_DIR is written by `main.py train --out`")
    cpath, mpath = os.path.join(run_dir, CONFIG), os.path.join(run_dir, METRICS)
    for p in (cpath, mpath):
        if not os.path.exists(p):
            raise RunDirError(f"{p}: missing; is this a RUN_DIR written by `main.py train`?")
    verify_manifest(run_dir)
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
    run.history_steps, run.history = read_losses(run_dir)
    run.last_metrics = dict(meta.get("metrics") or {})
    return run
