"""The sampler as an animation: record one frame per sampler step, draw it with Pillow, write a
GIF (Pillow) or an MP4 (ffmpeg through a pipe, when ffmpeg is on PATH).

Points are drawn in data coordinates (the run's square view box, `Run.bounds`), with the
training data faint behind the particles; image runs show a grid of the first images. The
frames come from the sampler's per-step callback (DESIGN.md: samplers call
`callback(dict(i, x, t, sigma, ...))` each step), so frame k is x after k steps.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
DATA = (120, 150, 200)              # the training data, drawn faintly (see DATA_ALPHA)
DATA_ALPHA = 70
PARTICLES = (220, 110, 20)          # the same orange as the window's samples, darker for white
TEXT = (30, 30, 30)
MAX_TRAJECTORY_BYTES = 256 << 20    # frames are kept in memory: past this, every k-th step is kept


class AnimationError(ValueError):
    """An animation that cannot be written; the message says why and what to do."""


@dataclass(frozen=True)
class Trajectory:
    """Sampler frames in data coordinates: frames (F, N, 2) for points or (F, N, C, H, W) for
    images; steps (F,) the sampler step of each frame (-1 for the starting noise); sigmas (F,)
    the noise level the sampler reported (NaN where it reports none); data (M, 2) or images."""
    frames: np.ndarray
    steps: np.ndarray
    sigmas: np.ndarray
    data: np.ndarray
    bounds: tuple[float, float, float, float]
    sampler: str

    @property
    def is_image(self) -> bool:
        return self.frames.ndim == 5


def record(run, n: int, sampler: str | None = None, options: dict | None = None, seed: int | None = None,
           max_bytes: int = MAX_TRAJECTORY_BYTES) -> tuple[Trajectory, "np.ndarray"]:
    """Sample n points from `run` and keep the particles after every sampler step.
    Returns (trajectory, final samples (N, ...)); the last frame is the final samples."""
    frame_bytes = n * int(np.prod(run.data.shape[1:])) * 4
    stride = max(1, math.ceil(frame_bytes * 2 / max_bytes))       # estimate: refined as steps come
    frames, steps, sigmas = [], [], []

    def keep(info):
        i = int(info.get("i", len(steps)))
        if i % stride:
            return
        if (len(frames) + 1) * frame_bytes > max_bytes:             # drop every other kept frame
            del frames[1::2], steps[1::2], sigmas[1::2]
        frames.append(np.asarray(info["x"], dtype=np.float32).copy())
        steps.append(i)
        s = info.get("sigma")
        sigmas.append(float(np.asarray(s, dtype=np.float64).reshape(-1)[0]) if s is not None else float("nan"))

    x = run.sample(n, sampler, options, seed=seed, callback=keep)
    final = x.numpy().astype(np.float32)
    frames.append(final)
    steps.append(steps[-1] + 1 if steps else 0)
    sigmas.append(0.0 if sigmas else float("nan"))
    data = run.data.numpy()
    if data.ndim == 2:
        data = data[: 4000]             # a faint backdrop: a few thousand points show the shape
    name = sampler or run.cfg.sampler or run.family.default_sampler or ""
    traj = Trajectory(np.stack(frames), np.asarray(steps), np.asarray(sigmas), data,
                      run.bounds() if data.ndim == 2 else (0.0, 1.0, 0.0, 1.0), name)
    return traj, final


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)      # Pillow >= 10.1 scales its built-in font
    except TypeError:
        return ImageFont.load_default()


class _PointPainter:
    """Maps data coordinates to pixels (y up) and draws discs."""

    def __init__(self, bounds, size: int, margin: int = 8):
        x0, x1, y0, y1 = bounds
        self.x0, self.y1, self.size, self.margin = x0, y1, size, margin
        self.sx = (size - 2 * margin) / max(x1 - x0, 1e-12)
        self.sy = (size - 2 * margin) / max(y1 - y0, 1e-12)

    def pixels(self, pts: np.ndarray) -> np.ndarray:
        """(N, 2) data -> (K, 2) pixel centres of the finite points inside the canvas."""
        pts = pts[np.isfinite(pts).all(1)]
        px = np.stack([self.margin + (pts[:, 0] - self.x0) * self.sx,
                       self.margin + (self.y1 - pts[:, 1]) * self.sy], 1)
        inside = ((px >= -4) & (px <= self.size + 4)).all(1)
        return px[inside]

    @staticmethod
    def discs(draw: ImageDraw.ImageDraw, px: np.ndarray, radius: float, fill):
        for cx, cy in px:
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)


def render_frames(traj: Trajectory, size: int = 480) -> list[Image.Image]:
    """One RGB image per frame: faint data, particles, and a caption (step, sigma, diverged)."""
    size = size + size % 2                        # even sides: what H.264 needs
    font = _font(max(12, size // 32))
    n_steps = int(traj.steps[-1])
    if traj.is_image:
        back = Image.new("RGB", (size, size), BACKGROUND)
        paint = None
    else:
        paint = _PointPainter(traj.bounds, size)
        layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        paint.discs(ImageDraw.Draw(layer), paint.pixels(traj.data), max(1.0, size / 400), DATA + (DATA_ALPHA,))
        back = Image.alpha_composite(Image.new("RGBA", (size, size), BACKGROUND + (255,)), layer).convert("RGB")
    out = []
    radius = max(1.5, size / 240)
    for k, x in enumerate(traj.frames):
        img = back.copy()
        draw = ImageDraw.Draw(img)
        if traj.is_image:
            _draw_image_grid(img, x)
            bad = int((~np.isfinite(x.reshape(len(x), -1))).any(1).sum())
        else:
            paint.discs(draw, paint.pixels(x), radius, PARTICLES)
            bad = int((~np.isfinite(x)).any(1).sum())
        caption = f"{traj.sampler}  step {int(traj.steps[k])}/{n_steps}"
        if np.isfinite(traj.sigmas[k]):
            caption += f"  sigma={traj.sigmas[k]:.3g}"
        if bad:
            caption += f"  {bad} diverged"
        draw.text((8, 6), caption, fill=TEXT, font=font)
        out.append(img)
    return out


def _draw_image_grid(img: Image.Image, x: np.ndarray, max_images: int = 16):
    """The first images of x (N, C, H, W) in [-1, 1] as a square grid filling `img`."""
    x = np.nan_to_num(x[:max_images], nan=0.0, posinf=1.0, neginf=-1.0)
    cols = math.ceil(math.sqrt(len(x)))
    cell = (img.width - 16) // cols
    top = 28
    cell = min(cell, (img.height - top - 8) // cols)
    for j, im in enumerate(x):
        a = ((np.clip(im, -1, 1) + 1) * 127.5).astype(np.uint8)          # (C, H, W)
        tile = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)[..., :3])
        tile = tile.convert("RGB").resize((cell - 2, cell - 2), Image.Resampling.NEAREST)
        img.paste(tile, (8 + (j % cols) * cell, top + (j // cols) * cell))


def write_gif(traj: Trajectory, path: str, size: int = 480, fps: float = 12.0) -> int:
    """An animated GIF with one frame per recorded step (the last held 1.5 s); returns the count."""
    frames = render_frames(traj, size)
    durations = [int(round(1000 / fps))] * len(frames)
    durations[-1] = 1500
    # one adaptive palette for all frames keeps colours steady (no per-frame flicker)
    palette = frames[-1].quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    indexed = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=durations, loop=0,
                    optimize=False, disposal=1)
    return len(frames)


def write_mp4(traj: Trajectory, path: str, size: int = 480, fps: float = 12.0, ffmpeg: str | None = None) -> int:
    """H.264 MP4 through ffmpeg's stdin (raw RGB frames); AnimationError when ffmpeg is absent."""
    exe = ffmpeg or shutil.which("ffmpeg")
    if not exe:
        raise AnimationError("MP4 needs ffmpeg on PATH (e.g. `apt install ffmpeg`); "
                             "write a .gif instead, which needs nothing else")
    frames = render_frames(traj, size)
    w, h = frames[0].size
    cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", f"{fps:g}", "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", path]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for f in frames:
            proc.stdin.write(f.tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass                            # ffmpeg stopped early: its message is read below
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise AnimationError(f"ffmpeg could not write {path}: {err or 'exit code ' + str(proc.returncode)}")
    return len(frames)


def write_animation(traj: Trajectory, path: str, size: int = 480, fps: float = 12.0) -> int:
    """.gif or .mp4 by extension; returns the frame count."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        return write_gif(traj, path, size, fps)
    if ext == ".mp4":
        return write_mp4(traj, path, size, fps)
    raise AnimationError(f"{path}: an animation is written as .gif or .mp4, not {ext or 'no extension'}")
