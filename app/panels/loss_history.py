"""The Losses panel's history: what is kept of every loss term, and what is drawn of it.

Growable numpy arrays (amortized doubling), an incremental peak-decimation pyramid (`Peaks`:
min and max per block, so a redraw of a 1M-point history draws a few thousand vertices), and a
log-time multi-resolution compaction (`compact`) that keeps memory flat over hours while the
whole run stays drawable in place. No Qt here: the panel (losses.py) draws what these keep.
"""
from __future__ import annotations

import numpy as np


class Growable:
    """An append-only 1-D numpy array with amortized O(1) extend."""

    def __init__(self, dtype=np.float64, capacity=4096):
        self.a = np.empty(capacity, dtype)
        self.n = 0

    def extend(self, v):
        v = np.asarray(v, dtype=self.a.dtype)
        k = self.n + len(v)
        if k > len(self.a):
            b = np.empty(max(k, 2 * len(self.a)), self.a.dtype)
            b[:self.n] = self.a[:self.n]
            self.a = b
        self.a[self.n:k] = v
        self.n = k

    def clear(self):
        self.n = 0

    @property
    def v(self):
        return self.a[:self.n]

    def __len__(self):
        return self.n


class Peaks:
    """What to draw of a long, growing series: min/max per block of B points ("peak"
    decimation), kept incrementally so that a redraw costs O(new points + blocks), not O(N).

    Below SMALL points the series is drawn as is. Above, B is a power of two chosen so there
    are at most MAX_BLOCKS blocks (pairs of blocks merge when there are more); the unfinished
    last block is drawn raw. Each block becomes two vertices (x_b, min_b), (x_b, max_b), the
    picture pyqtgraph's own peak mode draws, computed once instead of on every redraw."""
    SMALL = 4096
    MAX_BLOCKS = 1024         # 2-4 blocks per pixel of a ~500 px wide plot

    def __init__(self):
        self.B = 0
        self.x = Growable()
        self.mn = Growable()
        self.mx = Growable()
        self.done = 0

    def clear(self):
        self.__init__()

    def arrays(self, steps, values):
        n = len(values)
        if n <= self.SMALL:
            return steps, values
        if self.B == 0:
            self.B = 1 << int(np.ceil(np.log2(n / self.MAX_BLOCKS)))
        B = self.B
        nb = (n - self.done) // B
        if nb > 0:
            seg = values[self.done:self.done + nb * B].reshape(nb, B)
            self.mn.extend(seg.min(1))
            self.mx.extend(seg.max(1))
            self.x.extend(steps[self.done:self.done + nb * B:B])
            self.done += nb * B
        while len(self.mn) > 2 * self.MAX_BLOCKS:   # merge pairs: B doubles
            B = self.B
            k = len(self.mn) // 2
            mn, mx, x = self.mn.v, self.mx.v, self.x.v
            nmn, nmx, nx = np.minimum(mn[0:2 * k:2], mn[1:2 * k:2]), np.maximum(mx[0:2 * k:2], mx[1:2 * k:2]), x[0:2 * k:2]
            self.mn.clear(), self.mx.clear(), self.x.clear()
            self.mn.extend(nmn), self.mx.extend(nmx), self.x.extend(nx)
            self.done = 2 * k * B
            self.B = 2 * B
        m = len(self.mn)
        xs = np.empty(2 * m + (n - self.done))
        ys = np.empty_like(xs)
        xs[0:2 * m:2] = xs[1:2 * m:2] = self.x.v
        ys[0:2 * m:2] = self.mn.v
        ys[1:2 * m:2] = self.mx.v
        xs[2 * m:] = steps[self.done:]
        ys[2 * m:] = values[self.done:]
        return xs, ys


def decimate(steps, values, max_blocks=2048):
    """Peak-decimate a slice on the fly (for a zoomed-in view)."""
    n = len(values)
    if n <= 2 * max_blocks:
        return steps, values
    B = int(np.ceil(n / max_blocks))
    nb = n // B
    seg = values[:nb * B].reshape(nb, B)
    xs = np.repeat(steps[:nb * B:B], 2)
    ys = np.empty(2 * nb)
    ys[0::2], ys[1::2] = seg.min(1), seg.max(1)
    return np.concatenate([xs, steps[nb * B:]]), np.concatenate([ys, values[nb * B:]])


class Term:
    """One loss term: raw values, their EMA, and what is drawn (log10 or linear)."""

    def __init__(self):
        self.steps = Growable(np.float64)
        self.raw = Growable()
        self.smooth = Growable()
        self.shown_raw = Growable()
        self.shown_smooth = Growable()
        self.count = Growable()  # steps each record stands for (1, or 2^k once compacted)
        self.resolution = 1e4    # a compacted record covers at most 1/resolution of its age
        self.peaks_raw = Peaks()
        self.peaks_smooth = Peaks()
        self.zi = None           # EMA filter state
        self.k = 0               # values filtered so far (for the EMA's bias correction)
        self.positive = True


def merge_groups(steps: np.ndarray, w: np.ndarray, resolution: float) -> np.ndarray:
    """Group index (m,) for records at `steps` standing for `w` steps each: within each run of
    equal weights, record 2j+1 joins record 2j when the merged record would cover at most
    1/resolution of its age (newest step - its step). So every record covers 2^k consecutive
    steps, equal ones merge as in a binary counter, and the spacing grows with age (a log-time
    history: fine where the run is now, coarse only far back, never a large part of the run)."""
    m = len(w)
    new_run = np.r_[True, w[1:] != w[:-1]]
    starts = np.flatnonzero(new_run)
    pos = np.arange(m) - starts[np.cumsum(new_run) - 1]       # position within its run
    age = steps[-1] - steps
    joins = (pos % 2 == 1) & (2 * w * resolution <= age)
    return np.cumsum(~joins) - 1


def compact(t: Term, shown, target: int):
    """Memory stays flat over hours: records far back merge (weighted means of steps, raw and
    smoothed values alike, so they stay aligned) until at most `target` records remain; recent
    records stay exact. Every record is the mean of the steps it covers and the first one stays
    at the start of the run, so the whole run stays drawable in place. (The first version
    averaged the older half in blocks of 4 records whatever they stood for: the first record
    drifted to the middle of the run, to step 49,121 after 60,000 steps with a 4,096-record cap,
    and the plot lost its beginning.) A pass merges pairs at most, so a huge history takes a few
    passes; the resolution halves when a pass would not make enough room, and never grows back,
    so in a long run a compaction is usually one pass. `shown` maps values to what is drawn."""
    while len(t.raw) > target:
        n = len(t.raw)
        steps, w = t.steps.v, t.count.v
        group = merge_groups(steps, w, t.resolution)
        m = int(group[-1]) + 1
        if n - m < 0.1 * (n - target) and t.resolution > 1e-9:
            t.resolution /= 2                   # not enough room at this resolution: coarser
            continue
        if m == n:
            break                               # nothing left to merge (tiny histories)
        W = np.bincount(group, weights=w)
        for g in (t.steps, t.raw, t.smooth):
            new = np.bincount(group, weights=g.v * w) / W
            g.clear()
            g.extend(new)
        t.count.clear()
        t.count.extend(W)
    for g, src in ((t.shown_raw, t.raw), (t.shown_smooth, t.smooth)):
        g.clear()
        g.extend(shown(src.v))
    t.peaks_raw.clear()
    t.peaks_smooth.clear()
