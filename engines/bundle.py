"""Run bundles: a RUN_DIR (engines/persist.py) or the same files in one .zip, opened safely.

A bundle is what File > Save run writes and what `main.py train --out` writes: config.toml,
weights.safetensors, data.safetensors, losses.csv, metrics.json, an optional view_state.json
(what the window showed) and manifest.json (size + SHA-256 of every other file).

Opening never trusts the file:
- nothing is unpickled (safetensors, TOML, JSON and CSV only);
- a zip entry is refused when its name is absolute, has a drive letter, a backslash or a `..`
  component, is a symlink, is encrypted, repeats, or is not one of the names a RUN_DIR holds;
  a folder is refused when it holds a symlink or a special file;
- sizes are checked before anything is read: each file, the total and (zip bombs) each entry's
  compression ratio, from the central directory; while extracting, an entry that inflates past
  the size it declared is cut off and refused;
- every file is checked against the manifest before it is parsed (persist.verify_manifest).
"""
from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field

from .persist import MANIFEST, RUN_FILES, RunDirError, read_view_state, save_run

BUNDLE_NAMES = RUN_FILES + (MANIFEST,)


class BundleError(RunDirError):
    """A bundle that is refused; the message says which entry and why."""


@dataclass(frozen=True)
class BundleLimits:
    """What a bundle may hold. The defaults fit an image run (data.safetensors of tens of
    thousands of 28x28 images is ~100 MB) with a wide margin, and refuse a zip bomb."""
    max_entries: int = 32
    max_file_bytes: int = 1 << 30            # 1 GiB per file
    max_total_bytes: int = 2 << 30           # 2 GiB for the whole run
    max_ratio: float = 200.0                 # uncompressed / compressed, for entries past ratio_floor
    ratio_floor_bytes: int = 1 << 20         # small entries (a CSV of zeros) may compress a lot


@dataclass(frozen=True)
class OpenedRun:
    """A loaded run with the window state saved beside it."""
    run: object                              # engines.run.Run (not imported here: no cycle)
    view_state: dict = field(default_factory=dict)
    source: str = ""


def save_bundle(run, path: str, view_state: dict | None = None, losses: tuple | None = None) -> str:
    """Write `run` as a RUN_DIR, or as a zip of one when `path` ends in .zip; returns `path`.
    losses: (steps, {term: values}) for losses.csv instead of the run's own lists (see save_run)."""
    if not path.lower().endswith(".zip"):
        save_run(run, path, view_state, losses)
        return path
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genplayground-save-") as tmp:
        save_run(run, tmp, view_state, losses)
        partial = path + ".partial"
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in BUNDLE_NAMES:
                p = os.path.join(tmp, name)
                if os.path.isfile(p):
                    zf.write(p, arcname=name)
        os.replace(partial, path)          # never a half-written bundle under the real name
    return path


def open_bundle(path: str, limits: BundleLimits = BundleLimits()) -> OpenedRun:
    """Load a RUN_DIR or a zipped bundle; BundleError/RunDirError with a clear message otherwise."""
    from .run import Run
    if os.path.islink(path):
        raise BundleError(f"{path}: a symbolic link; open the run it points to directly")
    if os.path.isdir(path):
        check_run_dir(path, limits)
        return OpenedRun(Run.load(path), read_view_state(path), path)
    if not os.path.isfile(path):
        raise BundleError(f"{path}: no such file or folder")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path}: neither a RUN_DIR folder nor a zip bundle")
    with tempfile.TemporaryDirectory(prefix="genplayground-open-") as tmp:
        extract_bundle(path, tmp, limits)
        # the Run keeps its tensors in memory: the extracted files can go when this returns
        return OpenedRun(Run.load(tmp), read_view_state(tmp), path)


def check_run_dir(path: str, limits: BundleLimits = BundleLimits()):
    """A folder holds only regular files (no symlinks) of bounded size."""
    total = 0
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            if name in BUNDLE_NAMES:
                raise BundleError(f"{p}: a symbolic link; a run folder holds plain files only")
            continue
        if name not in BUNDLE_NAMES:
            continue                        # other files in the folder are never read
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{p}: not a regular file")
        if st.st_size > limits.max_file_bytes:
            raise BundleError(f"{p}: {st.st_size} bytes, over the {limits.max_file_bytes}-byte limit per file")
        total += st.st_size
    if total > limits.max_total_bytes:
        raise BundleError(f"{path}: {total} bytes in all, over the {limits.max_total_bytes}-byte limit")


def _entry_problem(info: zipfile.ZipInfo) -> str:
    """Why a zip entry's name or kind is refused, or '' when it is acceptable."""
    name = info.filename
    if "\x00" in name or "\\" in name:
        return "has a backslash or NUL in its name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "climbs out of the bundle (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return ""


def _plan(zf: zipfile.ZipFile, limits: BundleLimits) -> dict[str, zipfile.ZipInfo]:
    """Check the central directory (no data read yet); {run file name: entry}."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise BundleError(f"{len(infos)} entries; a run bundle holds at most {limits.max_entries}")
    files = [i for i in infos if not i.is_dir()]
    for info in infos:
        why = _entry_problem(info)
        if why:
            raise BundleError(f"entry {info.filename!r} {why}; refusing the bundle")
    # one optional top-level folder ("run/config.toml"), as zipping a folder gives
    prefixes = {i.filename.rsplit("/", 1)[0] if "/" in i.filename else "" for i in files}
    if len(prefixes) > 1 or any(p.count("/") for p in prefixes):
        raise BundleError("entries in several folders; a run bundle is one flat folder")
    plan, total = {}, 0
    for info in files:
        base = info.filename.rsplit("/", 1)[-1]
        if base not in BUNDLE_NAMES:
            raise BundleError(f"entry {info.filename!r} is not a file of a run "
                              f"(expected {', '.join(BUNDLE_NAMES)})")
        if base in plan:
            raise BundleError(f"entry {base!r} appears twice")
        if info.file_size > limits.max_file_bytes:
            raise BundleError(f"entry {base!r} inflates to {info.file_size} bytes, over the "
                              f"{limits.max_file_bytes}-byte limit per file")
        if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise BundleError(f"entry {base!r} compresses {info.file_size / max(info.compress_size, 1):.0f}:1, "
                              f"more than {limits.max_ratio:.0f}:1 (a zip bomb?)")
        total += info.file_size
        plan[base] = info
    if total > limits.max_total_bytes:
        raise BundleError(f"the bundle inflates to {total} bytes, over the {limits.max_total_bytes}-byte limit")
    if MANIFEST not in plan:
        raise BundleError(f"no {MANIFEST}: not a run bundle (or one saved before checksums; "
                          "unzip it and open the folder)")
    return plan


def extract_bundle(zip_path: str, dest: str, limits: BundleLimits = BundleLimits()):
    """Check, then extract the run files of `zip_path` flat into the existing folder `dest`."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            plan = _plan(zf, limits)
            for base, info in plan.items():
                out = os.path.join(dest, base)          # a whitelisted base name: stays in dest
                written = 0
                with zf.open(info) as src, open(out, "wb") as dst:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > info.file_size:
                            raise BundleError(f"entry {base!r} inflates past the {info.file_size} bytes it declares")
                        dst.write(chunk)
    except BundleError as e:
        raise BundleError(f"{zip_path}: {e}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, OSError) as e:
        # a CRC mismatch or a truncated stream lands here: the zip's own check caught damage
        raise BundleError(f"{zip_path}: a damaged zip ({e})") from None

