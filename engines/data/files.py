"""Load a user's 2D point file (.csv, .tsv, .txt, .npy, .npz) into an (N, 2) float32 tensor.

Every problem is reported as a `DataFileError` whose message starts with the file's name and
says, in plain words, what is wrong and where ("moons.csv: row 3, column 2 is 'abc', not a
number"). Rows are counted like an editor counts lines: row 1 is the first line of the file,
header included.

Text files are parsed with `np.loadtxt` (a C parser since NumPy 1.23: ~0.05 s for 200k rows);
only when it fails do we walk the lines in Python to find and name the bad cell. `.npy` and
`.npz` are read with `allow_pickle=False`, always: a data file must never run code.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["DataFileError", "load_points_file", "save_points_csv", "MAX_POINTS", "EXTENSIONS"]

MAX_POINTS = 1_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024  # a 1M-row CSV is ~40 MB; refuse to read gigabytes
TEXT_EXTENSIONS = (".csv", ".tsv", ".txt")
EXTENSIONS = TEXT_EXTENSIONS + (".npy", ".npz")
NPZ_PREFERRED_KEYS = ("x", "data", "points")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with files / an empty zip


class DataFileError(ValueError):
    """A point file could not be used; the message names the file and the problem."""


def load_points_file(path) -> torch.Tensor:
    """Read a 2D point file and return its points as a float32 tensor of shape (N, 2).

    Text (.csv/.tsv/.txt): comma, tab, semicolon or whitespace delimited; an optional single
    header row of names; blank lines and lines starting with '#' are skipped.
    .npy: a numeric (N, 2) array. .npz: the array named 'x', 'data' or 'points', else the first.
    Raises DataFileError for anything else (see the module docstring).
    """
    path = Path(path)
    name = path.name
    if not path.exists():
        raise DataFileError(f"{name}: file not found ({path})")
    if not path.is_file():
        raise DataFileError(f"{name}: is a folder, not a file")
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        shown = f"'{ext}'" if ext else "no extension"
        raise DataFileError(f"{name}: unsupported file type ({shown}); "
                            f"use one of {', '.join(EXTENSIONS)}")
    size = path.stat().st_size
    if size == 0:
        raise DataFileError(f"{name}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise DataFileError(f"{name}: the file is {size / 2**20:.0f} MB; "
                            f"the limit is {MAX_FILE_BYTES // 2**20} MB")

    if ext == ".npy":
        arr, where = _read_npy(path, name), _array_row
    elif ext == ".npz":
        arr, where = _read_npz(path, name), _array_row
    else:
        arr, where = _read_text(path, name, ext)
    return _check_points(arr, name, where)


def save_points_csv(path, x) -> None:
    """Write points (N, 2) as CSV with a header row `x,y` (9 significant digits: float32 exact)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"save_points_csv expects an (N, 2) array, got shape {tuple(arr.shape)}")
    np.savetxt(path, arr.astype(np.float64), fmt="%.9g", delimiter=",", header="x,y", comments="")


# ----------------------------------------------------------------------------- binary formats

def open_npy(path, name: str) -> np.ndarray:
    """A memory-mapped .npy, never unpickled; DataFileError for a damaged or object array.
    Shared by the point and the image loaders."""
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head != _NPY_MAGIC:
        raise DataFileError(f"{name}: not a valid .npy file (it does not start with the NumPy "
                            f"signature); it may be damaged or a different kind of file renamed")
    try:
        # mmap first: the shape is checked before the data is read into memory.
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataFileError(f"{name}: the array stores Python objects, which are not loaded "
                                f"for safety; save a plain numeric array instead") from None
        raise DataFileError(f"{name}: the .npy file is damaged or truncated ({e})") from None
    except (OSError, EOFError) as e:
        raise DataFileError(f"{name}: the .npy file is damaged or truncated ({e})") from None
    return arr


def _read_npy(path: Path, name: str) -> np.ndarray:
    arr = open_npy(path, name)
    _check_array_shape(arr, name)
    return np.array(arr)  # copy out of the memory map


def _read_npz(path: Path, name: str) -> np.ndarray:
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _ZIP_MAGICS:
        raise DataFileError(f"{name}: not a valid .npz file (it is not a zip archive); "
                            f"it may be damaged or a different kind of file renamed")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if not keys:
                raise DataFileError(f"{name}: the .npz archive contains no arrays")
            key = next((k for k in NPZ_PREFERRED_KEYS if k in keys), keys[0])
            arr = npz[key]
    except DataFileError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataFileError(f"{name}: the array stores Python objects, which are not loaded "
                                f"for safety; save a plain numeric array instead") from None
        raise DataFileError(f"{name}: the .npz file is damaged ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise DataFileError(f"{name}: the .npz file is damaged ({e})") from None
    _check_array_shape(arr, name, what=f"array '{key}'")
    return arr


def _check_array_shape(arr: np.ndarray, name: str, what: str = "the array") -> None:
    kind = arr.dtype.kind
    if kind not in "iuf":  # ints, unsigned ints, floats; not bool/complex/str/structured
        raise DataFileError(f"{name}: {what} holds {arr.dtype} values, not real numbers")
    if arr.ndim != 2 or arr.shape[1] != 2:
        hint = "; transpose it to (N, 2)" if arr.ndim == 2 and arr.shape[0] == 2 else ""
        raise DataFileError(f"{name}: {what} has shape {tuple(arr.shape)}; "
                            f"expected (N, 2): one row per point, columns x and y{hint}")
    if arr.shape[0] > MAX_POINTS:
        raise DataFileError(f"{name}: {arr.shape[0]:,} points is too many; "
                            f"the limit is {MAX_POINTS:,}")


# ----------------------------------------------------------------------------- text formats

def _read_text(path: Path, name: str, ext: str):
    """Returns (arr (N, C) float64, where) with where(k) naming data row k by its file line."""
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise DataFileError(f"{name}: looks like a binary file, not {ext[1:].upper()} text")
    try:
        text = raw.decode("utf-8-sig")  # -sig: drop the byte-order mark Excel writes
    except UnicodeDecodeError:
        raise DataFileError(f"{name}: looks like a binary file, not {ext[1:].upper()} text "
                            f"(it is not valid UTF-8)") from None
    del raw

    lines = text.splitlines()
    first_idx, first = next(_content_lines(lines, stop_after=1), (None, None))
    if first is None:
        raise DataFileError(f"{name}: the file is empty (no data rows)")
    delim = _sniff_delimiter(first)
    has_header = not any(_is_number(c) for c in _split(first, delim))
    body_start = first_idx + 1 if has_header else first_idx

    # Guard before parsing: counting is cheap, parsing millions of rows to refuse them is not.
    if len(lines) - body_start > MAX_POINTS:
        n_rows = sum(1 for _ in _content_lines(lines[body_start:]))
        if n_rows > MAX_POINTS:
            raise DataFileError(f"{name}: {n_rows:,} rows is too many points; "
                                f"the limit is {MAX_POINTS:,}")

    if next(_content_lines(lines[body_start:], stop_after=1), None) is None:
        raise DataFileError(f"{name}: has a header row but no data rows")
    body = "\n".join(lines[body_start:])
    try:
        arr = np.loadtxt(io.StringIO(body), delimiter=delim, comments="#", ndmin=2,
                         dtype=np.float64, quotechar='"')
    except ValueError as e:
        _diagnose(lines, body_start, delim, name)  # raises a precise DataFileError if it can
        raise DataFileError(f"{name}: could not read the numbers ({e})") from None
    if arr.shape[1] != 2:
        raise DataFileError(f"{name}: expected exactly 2 numeric columns (x, y), "
                            f"found {arr.shape[1]}")

    def where(k: int) -> str:  # data row k (0-based) -> "row R", R its line number in the file
        i, _ = next(itertools.islice(_content_lines(lines[body_start:]), k, None))
        return f"row {body_start + i + 1}"
    return arr, where


def _content_lines(lines, stop_after=None):
    """Yield (index, line) for lines that are neither blank nor '#' comments."""
    found = 0
    for i, ln in enumerate(lines):
        s = ln.strip()
        if s and not s.startswith("#"):
            yield i, ln
            found += 1
            if stop_after is not None and found >= stop_after:
                return


def _sniff_delimiter(line: str):
    for d in (",", "\t", ";"):
        if d in line:
            return d
    return None  # any run of whitespace


def _split(line: str, delim) -> list[str]:
    return [c.strip().strip('"').strip() for c in line.split(delim)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return "_" not in cell  # Python accepts '1_000'; NumPy does not


def _diagnose(lines, body_start: int, delim, name: str) -> None:
    """Walk the data rows to name the first ragged row or non-numeric cell."""
    expected = None
    for i, ln in _content_lines(lines[body_start:]):
        row = body_start + i + 1  # 1-based line number in the file
        cells = _split(ln.split("#", 1)[0], delim)
        if expected is None:
            expected, first_row = len(cells), row
        elif len(cells) != expected:
            raise DataFileError(f"{name}: row {row} has {len(cells)} columns but row {first_row} "
                                f"has {expected}; every row needs the same number of columns")
        for col, cell in enumerate(cells, start=1):
            if cell == "":
                raise DataFileError(f"{name}: row {row}, column {col} is empty")
            if not _is_number(cell):
                shown = cell if len(cell) <= 30 else cell[:27] + "..."
                raise DataFileError(f"{name}: row {row}, column {col} is '{shown}', not a number")


# ----------------------------------------------------------------------------- final checks

def _array_row(k: int) -> str:
    return f"row {k} of the array (counting from 0)"


def _check_points(arr: np.ndarray, name: str, where) -> torch.Tensor:
    """arr: (N, 2); where(k) names data row k for messages."""
    arr = np.asarray(arr, dtype=np.float64)  # (N, 2)
    n = arr.shape[0]
    if n > MAX_POINTS:
        raise DataFileError(f"{name}: {n:,} points is too many; the limit is {MAX_POINTS:,}")
    if n < 2:
        raise DataFileError(f"{name}: has {n} point{'s' if n != 1 else ''}; need at least 2")
    bad = ~np.isfinite(arr).all(axis=1)  # (N,)
    if bad.any():
        n_bad = int((~np.isfinite(arr)).sum())
        raise DataFileError(f"{name}: {n_bad} value{'s are' if n_bad != 1 else ' is'} NaN or "
                            f"infinite (the first in {where(int(np.argmax(bad)))}); "
                            f"remove or fix those rows")
    too_big = np.abs(arr).max(axis=1) > np.finfo(np.float32).max  # (N,)
    if too_big.any():
        raise DataFileError(f"{name}: {where(int(np.argmax(too_big)))} has a value too large "
                            f"to store as a 32-bit float")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
