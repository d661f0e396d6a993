"""Image datasets and user image files, all as (N, C, H, W) float32 in [-1, 1].

Built-in sets register themselves in `engines.data.IMAGES` (name -> fn(n, generator)):
  digits         scikit-learn's 1797 8x8 handwritten digits (UCI optdigits), pixel / 16 * 2 - 1
  digits16       the same, bilinearly upsampled to 16x16
  digits_binary  the 8x8 digits thresholded at half intensity: values in {-1, 1}
  shapes         16x16 antialiased circles, squares and triangles at random positions and sizes
  shapes_binary  the same shapes without antialiasing, values in {-1, 1}
The digit sets are finite, like a user's file: n <= 1797 gives n distinct digits, a larger n
gives all 1797 (shuffled), not n. Duplicates would add nothing to training (batches are drawn
with replacement anyway) and would fake a too-low "iid" floor for the sample metrics.

User images (`load_images`): a folder of PNG/JPEG/BMP/GIF/WebP/TIFF files (read with Pillow),
one such image file, a .npy/.npz array (N, H, W), (N, C, H, W) or (N, H, W, C), or an
MNIST-format IDX file (`train-images-idx3-ubyte`, optionally gzipped). Every problem raises a
`DataFileError` (a ValueError) whose message names the file and says what is wrong.
"""
from __future__ import annotations

import gzip
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .registry import IMAGES
from .files import DataFileError, open_npy

__all__ = ["digits", "digits16", "digits_binary", "shapes", "make_shapes", "digits_with_labels",
           "load_images", "is_image_path", "read_idx", "write_idx", "ImageFileError",
           "IMAGE_EXTENSIONS", "MAX_IMAGE_VALUES"]

ImageFileError = DataFileError  # one error type for every user file, points or images

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_IMAGE_VALUES = 300_000_000     # N*C*H*W float32 values (1.2 GB); MNIST is 47 M
MAX_FILE_BYTES = 2 * 1024 ** 3
_GZ_MAGIC = b"\x1f\x8b"
# IDX type byte -> numpy big-endian dtype (LeCun's MNIST page)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str[1:]: k for k, v in _IDX_TYPES.items()}


# ============================================================================ built-in sets

@lru_cache(maxsize=1)
def _digits_np() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 1, 8, 8) float32 in [-1, 1] and (1797,) int64 labels, from scikit-learn."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[:, None]   # (N, 1, 8, 8)
    return x, d.target.astype(np.int64)


def _pick(n: int, total: int, g: torch.Generator) -> torch.Tensor:
    """min(n, total) distinct indices into range(total), in random order."""
    return torch.randperm(total, generator=g)[:n]


def digits_with_labels(n: int | None = None, g: torch.Generator | None = None, size: int = 8):
    """(images (m, 1, size, size) in [-1, 1], labels (m,)), m = min(n, 1797) in random order;
    n=None: all 1797 in file order."""
    x, y = _digits_np()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    if n is not None:
        idx = _pick(n, len(x), g if g is not None else torch.Generator().manual_seed(0))
        x, y = x[idx], y[idx]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x.contiguous(), y


def digits(n: int, g: torch.Generator) -> torch.Tensor:
    """8x8 handwritten digits (scikit-learn / UCI optdigits): (min(n, 1797), 1, 8, 8) in [-1, 1]."""
    return digits_with_labels(n, g)[0]


def digits16(n: int, g: torch.Generator) -> torch.Tensor:
    """The 8x8 digits upsampled bilinearly to (n, 1, 16, 16)."""
    return digits_with_labels(n, g, size=16)[0]


def digits_binary(n: int, g: torch.Generator) -> torch.Tensor:
    """The 8x8 digits thresholded at half intensity (pixel >= 8 of 16): values in {-1, 1}."""
    x = digits(n, g)
    return torch.where(x >= 0, 1.0, -1.0)


SHAPE_KINDS = ("circle", "square", "triangle")


def make_shapes(n: int, g: torch.Generator, size: int = 16, antialias: bool = True,
                return_labels: bool = False):
    """n images (n, 1, size, size) of one white shape on black (-1): a circle, an axis-aligned
    square or an upright equilateral triangle, its centre and size uniform at random, the shape
    inside the frame with a 1-pixel background border. Antialiasing: 4x4 supersampling, the
    pixel value is the covered fraction. Deterministic given the generator.
    labels: 0 circle, 1 square, 2 triangle."""
    kind = torch.randint(0, 3, (n,), generator=g)
    # r: circumradius (circle radius, square half-diagonal, triangle circumradius), in pixels
    r = size * (0.18 + 0.17 * torch.rand(n, generator=g))                   # (n,)
    half = torch.where(kind == 1, r / 2 ** 0.5, r)                         # half extent in x
    lo, hi = half + 1.0, size - half - 1.0                                # a clean 1-pixel border
    cx = lo + (hi - lo) * torch.rand(n, generator=g)
    cy = lo + (hi - lo) * torch.rand(n, generator=g)
    ss = 4 if antialias else 1
    c = (torch.arange(size * ss, dtype=torch.float32) + 0.5) / ss           # sub-pixel centres
    out = torch.empty(n, 1, size, size)
    s3 = 3 ** 0.5
    for i0 in range(0, n, 1024):                                            # (b, S, S) at a time
        sl = slice(i0, i0 + 1024)
        X = c[None, None, :] - cx[sl, None, None]                          # (b, 1, S)
        Y = c[None, :, None] - cy[sl, None, None]                          # (b, S, 1), y down
        R, k = r[sl, None, None], kind[sl, None, None]
        circ = X ** 2 + Y ** 2 <= R ** 2
        h = R / 2 ** 0.5
        sq = (X.abs() <= h) & (Y.abs() <= h)
        # upright triangle, apex at (0, -R): inside the three half-planes of its edges
        tri = (Y <= R / 2) & (s3 * X - Y <= R) & (-s3 * X - Y <= R)
        m = torch.where(k == 0, circ, torch.where(k == 1, sq, tri)).float()  # (b, S, S)
        if ss > 1:
            m = F.avg_pool2d(m[:, None], ss)[:, 0]
        out[sl, 0] = m * 2 - 1
    return (out, kind) if return_labels else out


def shapes(n: int, g: torch.Generator) -> torch.Tensor:
    """16x16 antialiased circles, squares and triangles: (n, 1, 16, 16) in [-1, 1]."""
    return make_shapes(n, g)


def shapes_binary(n: int, g: torch.Generator) -> torch.Tensor:
    """16x16 shapes without antialiasing: values in {-1, 1}."""
    return make_shapes(n, g, antialias=False)


IMAGES.update(digits=digits, digits16=digits16, digits_binary=digits_binary,
              shapes=shapes, shapes_binary=shapes_binary)


# ============================================================================ user files

def _is_idx_name(p: Path) -> bool:
    s = p.name.lower()
    return s.endswith(".idx") or "-idx" in s or ".idx" in s or s.endswith("ubyte") or s.endswith("ubyte.gz")


def is_image_path(path) -> bool:
    """Does this path look like images (not a 2D point file)? A folder, an image file, an IDX
    file, or a .npy/.npz whose array has 3 or 4 dimensions (read from its header only)."""
    p = Path(path)
    if p.is_dir():
        return True
    if not p.is_file():
        return False
    ext = p.suffix.lower()
    if ext in IMAGE_EXTENSIONS or _is_idx_name(p):
        return True
    try:
        if ext == ".npy":
            with open(p, "rb") as f:
                return len(_npy_header(f)[0]) in (3, 4)
        if ext == ".npz":
            with zipfile.ZipFile(p) as z:
                key = _npz_key([n[:-4] for n in z.namelist() if n.endswith(".npy")])
                if key is None:
                    return False
                with z.open(key + ".npy") as f:
                    return len(_npy_header(f)[0]) in (3, 4)
    except Exception:   # a damaged file: let the point loader report it
        return False
    return False


def load_images(path, size=None, progress=None) -> torch.Tensor:
    """Images from a folder, an image file, a .npy/.npz array or an IDX file: (N, C, H, W)
    float32 in [-1, 1].

    size: None keeps the images' own size (a folder of mixed sizes is then an error), an int
    or (H, W) resizes every image (Pillow's antialiased bilinear filter).
    progress: optional callable(fraction in [0, 1]), called as the files are read.
    Colour: 1 channel when every image is grey, else 3 (RGB; alpha is dropped).
    Scaling: integer data is read as 0..255 (0..1 for booleans); float data in [0, 1] or
    [-1, 1] is used as such, other float ranges are mapped linearly onto [-1, 1].
    """
    p = Path(path)
    name = p.name or str(p)
    if not p.exists():
        raise DataFileError(f"{name}: not found ({p})")
    if p.is_dir():
        x = _load_folder(p, size, progress)
    else:
        ext = p.suffix.lower()
        st = p.stat().st_size
        if st == 0:
            raise DataFileError(f"{name}: the file is empty")
        if st > MAX_FILE_BYTES:
            raise DataFileError(f"{name}: the file is {st / 2 ** 20:.0f} MB; the limit is "
                                f"{MAX_FILE_BYTES // 2 ** 20} MB")
        if ext in IMAGE_EXTENSIONS:
            x = _load_folder_files([p], name, size, progress)
        elif ext == ".npy":
            x = _array_to_images(_read_npy(p, name), name, size, progress)
        elif ext == ".npz":
            x = _array_to_images(_read_npz(p, name), name, size, progress)
        elif _is_idx_name(p) or _looks_like_idx(p):
            x = _array_to_images(read_idx(p, progress=_part(progress, 0.0, 0.7)), name, size,
                                 _part(progress, 0.7, 1.0))
        else:
            raise DataFileError(f"{name}: not an image file; use a folder of PNG/JPEG images, an image "
                                f"file ({', '.join(IMAGE_EXTENSIONS)}), a .npy/.npz array or an IDX file")
    if progress is not None:
        progress(1.0)
    return x


def _part(progress, a: float, b: float):
    """Map a sub-task's 0..1 onto a..b of the caller's progress."""
    if progress is None:
        return None
    return lambda f: progress(a + (b - a) * min(max(float(f), 0.0), 1.0))


def _size_hw(size) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(h) < 1 or int(w) < 1 or int(h) > 1024 or int(w) > 1024:
        raise ValueError(f"image size {size!r}: height and width must lie in 1..1024")
    return int(h), int(w)


# ---------------------------------------------------------------------------- folders

def _load_folder(p: Path, size, progress) -> torch.Tensor:
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                   and not f.name.startswith("."))
    if not files:
        others = sum(1 for f in p.iterdir() if not f.name.startswith("."))
        what = f"it holds {others} other entries" if others else "it is empty"
        raise DataFileError(f"{p.name}: no image files in this folder ({what}); put PNG or JPEG "
                            f"images ({', '.join(IMAGE_EXTENSIONS)}) in it")
    return _load_folder_files(files, p.name, size, progress)


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a declared dependency
        raise DataFileError("reading PNG/JPEG images needs Pillow: pip install Pillow") from None
    return Image


def _load_folder_files(files: list[Path], where: str, size, progress) -> torch.Tensor:
    Image = _pil()
    hw = _size_hw(size)
    arrays, first = [], None
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im.load()                       # decode now: a truncated file fails here
                if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    a = np.asarray(im, dtype=np.float64)
                    hi = 65535.0 if a.max() > 255 else 255.0
                    im = Image.fromarray(np.clip(a / hi * 255, 0, 255).astype(np.uint8))
                im = im.convert("RGB")
                if hw is not None and im.size != (hw[1], hw[0]):
                    im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)  # (H, W, 3)
        except DataFileError:
            raise
        except Exception as e:
            raise DataFileError(f"{f.name}: cannot be read as an image ({type(e).__name__}: {e}); "
                                f"the file may be damaged or not really a {f.suffix} image") from None
        if first is None:
            first = (f.name, a.shape)
        elif a.shape != first[1]:
            raise DataFileError(f"{f.name}: is {a.shape[1]}x{a.shape[0]} pixels but {first[0]} is "
                                f"{first[1][1]}x{first[1][0]}; all images must have one size "
                                f"(or pass a size to resize them)")
        arrays.append(a)
        if len(arrays) * a.size > MAX_IMAGE_VALUES:
            raise DataFileError(f"{where}: too many pixels (limit {MAX_IMAGE_VALUES:,} values); "
                                f"use fewer or smaller images")
        if progress is not None and (i % 64 == 0 or i == len(files) - 1):
            progress((i + 1) / len(files))
    x = np.stack(arrays)                                                  # (N, H, W, 3) uint8
    if (x[..., 0] == x[..., 1]).all() and (x[..., 0] == x[..., 2]).all():
        x = x[..., :1]                                                   # every image is grey
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # (N, C, H, W)
    return (x.float() / 255.0 * 2 - 1).contiguous()


# ---------------------------------------------------------------------------- arrays

def _npy_header(f) -> tuple[tuple, np.dtype]:
    ver = np.lib.format.read_magic(f)
    if ver == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return shape, dtype


def _npz_key(keys: list[str]) -> str | None:
    if not keys:
        return None
    return next((k for k in ("x", "images", "data", "x_train", "arr_0") if k in keys), keys[0])


def _read_npy(p: Path, name: str) -> np.ndarray:
    return open_npy(p, name)


def _read_npz(p: Path, name: str) -> np.ndarray:
    try:
        with np.load(p, allow_pickle=False) as z:
            key = _npz_key(list(z.files))
            if key is None:
                raise DataFileError(f"{name}: the .npz archive contains no arrays")
            return z[key]
    except DataFileError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataFileError(f"{name}: the array stores Python objects, which are not loaded for "
                                f"safety; save a plain numeric array") from None
        raise DataFileError(f"{name}: the .npz file is damaged ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise DataFileError(f"{name}: not a valid .npz file ({e})") from None


def _array_to_images(arr: np.ndarray, name: str, size=None, progress=None) -> torch.Tensor:
    """(N, H, W), (N, C, H, W) or (N, H, W, C) numbers -> (N, C, H, W) float32 in [-1, 1]."""
    if arr.dtype.kind not in "iufb":
        raise DataFileError(f"{name}: the array holds {arr.dtype} values, not numbers")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[1] > 4 and arr.shape[3] <= 4:   # channels last (N, H, W, C)
            arr = arr.transpose(0, 3, 1, 2)
        if arr.shape[1] > 4:
            raise DataFileError(f"{name}: shape {tuple(arr.shape)} has {arr.shape[1]} channels; "
                                f"images have 1 (grey), 3 (RGB) or 4 (RGBA)")
    else:
        raise DataFileError(f"{name}: the array has shape {tuple(arr.shape)}; images need 3 or 4 "
                            f"dimensions: (N, H, W), (N, C, H, W) or (N, H, W, C)")
    N, C, H, W = arr.shape
    if N == 0 or H == 0 or W == 0:
        raise DataFileError(f"{name}: the array has shape {tuple(arr.shape)}: no images")
    if arr.size > MAX_IMAGE_VALUES:
        raise DataFileError(f"{name}: {arr.size:,} values is too many (limit {MAX_IMAGE_VALUES:,})")
    out = torch.empty((N, C, H, W), dtype=torch.float32)
    kind = arr.dtype.kind
    if kind == "f":
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise DataFileError(f"{name}: the array contains NaN or infinite values")
        if lo >= 0 and hi <= 1:
            a, b = 2.0, -1.0            # [0, 1]
        elif lo >= -1 and hi <= 1:
            a, b = 1.0, 0.0             # already [-1, 1]
        elif lo >= 0 and hi <= 255:
            a, b = 2 / 255, -1.0        # 0..255 stored as floats
        else:
            a = 2.0 / max(hi - lo, 1e-12)
            b = -1.0 - lo * a           # min -> -1, max -> 1
    elif kind == "b":
        a, b = 2.0, -1.0
    else:
        lo, hi = int(np.min(arr)), int(np.max(arr))
        if lo < 0 or hi > 255:
            if hi > 255 and lo >= 0 and hi <= 65535:
                a, b = 2 / 65535, -1.0  # 16-bit images
            else:
                raise DataFileError(f"{name}: integer values run from {lo} to {hi}; expected 0..255")
        else:
            a, b = 2 / 255, -1.0
    step = max(1, 4_000_000 // max(C * H * W, 1))  # convert in slices: progress and memory
    for i in range(0, N, step):
        blk = torch.from_numpy(np.ascontiguousarray(arr[i:i + step]).astype(np.float32, copy=False))
        out[i:i + step] = blk * a + b
        if progress is not None:
            progress(min(i + step, N) / N)
    out.clamp_(-1, 1)
    hw = _size_hw(size)
    if hw is not None and (H, W) != hw:
        out = F.interpolate(out, size=hw, mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)
    return out


# ---------------------------------------------------------------------------- IDX (MNIST)

def _looks_like_idx(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:2] == _GZ_MAGIC:
        try:
            with gzip.open(p, "rb") as f:
                head = f.read(4)
        except OSError:
            return False
    return len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in _IDX_TYPES and 1 <= head[3] <= 4


def read_idx(path, progress=None) -> np.ndarray:
    """Read an IDX file (LeCun et al.'s MNIST format; gzip allowed): a 4-byte magic
    0x00 0x00 <type> <ndim>, ndim big-endian uint32 sizes, then the values big-endian, row-major.
    Returns the array in native byte order. Raises DataFileError on a bad magic or a size mismatch."""
    p = Path(path)
    name = p.name
    try:
        with open(p, "rb") as f:
            gz = f.read(2) == _GZ_MAGIC
        if gz:
            raw = _read_gzip(p, progress)
        else:
            raw = p.read_bytes()
            if progress is not None:
                progress(1.0)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFileError(f"{name}: the gzip stream is damaged or truncated ({e})") from None
    if len(raw) < 4:
        raise DataFileError(f"{name}: only {len(raw)} bytes; too short for an IDX header")
    z0, z1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if z0 != 0 or z1 != 0 or code not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise DataFileError(f"{name}: bad IDX magic number {raw[:4].hex(' ')}; an IDX file starts with "
                            f"00 00, a type byte (08 ubyte, 09 byte, 0b short, 0c int, 0d float, 0e double) "
                            f"and the number of dimensions (e.g. 00 00 08 03 for MNIST images)")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataFileError(f"{name}: the IDX header is cut short ({len(raw)} of {head} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dt = np.dtype(_IDX_TYPES[code])
    need = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    have = len(raw) - head
    if have < need:
        raise DataFileError(f"{name}: truncated: the header promises {' x '.join(map(str, dims))} values "
                            f"({need:,} bytes) but only {have:,} bytes follow")
    if have > need:
        raise DataFileError(f"{name}: {have - need:,} unexpected bytes after the "
                            f"{' x '.join(map(str, dims))} values; is this really an IDX file?")
    arr = np.frombuffer(raw, dtype=dt, count=need // dt.itemsize, offset=head).reshape(dims)
    return arr.astype(dt.newbyteorder("="), copy=False) if dt.itemsize > 1 else arr


def _read_gzip(p: Path, progress) -> bytes:
    """Decompress in 1 MB pieces so a 60,000-image file reports progress (by compressed bytes)."""
    total = max(p.stat().st_size, 1)
    parts = []
    with open(p, "rb") as raw, gzip.GzipFile(fileobj=raw) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            parts.append(b)
            if progress is not None:
                progress(min(raw.tell() / total, 1.0))
    return b"".join(parts)


def write_idx(path, arr) -> None:
    """Write an array as an IDX file (gzipped when path ends in .gz): the inverse of read_idx."""
    arr = np.ascontiguousarray(arr)
    code = _IDX_CODES.get(arr.dtype.str[1:])
    if code is None:
        raise ValueError(f"IDX cannot store {arr.dtype}")
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = arr.astype(np.dtype(_IDX_TYPES[code]), copy=False).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + body)
