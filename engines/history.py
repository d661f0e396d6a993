"""A loss history whose memory stays flat however long the run: a multi-resolution ring.

Level 0 keeps the last `capacity` records as they were. Every `factor` records that enter a
level are averaged into one record of the next level (each level-L record is the mean of
factor^L consecutive steps, at the mean of their step numbers), which again keeps its last
`capacity`. With capacity 4096, factor 4 and 12 levels the coarsest level spans 4096 * 4^11
(about 1.7e10) steps, so the whole run stays drawable: recent steps exactly, older ones as
block means. Memory: levels * capacity * (terms + 1) * 8 bytes, about 1.2 MB for 3 terms.

The picture of a long run a reader needs is the trend, which block means keep; the exact
last few thousand values stay available for the stop target and the hover read-out.
"""
from __future__ import annotations

import numpy as np


def loss_mean_recent(values, n: int = 50, min_count: int = 20) -> float | None:
    """Mean of the last n values (list, array or History term), None with fewer than min_count."""
    if values is None or len(values) < min_count:
        return None
    return float(np.mean(np.asarray(values[-n:], dtype=np.float64)))


class Ring:
    """The last `capacity` rows of a (steps, values (k, T)) stream, in order."""

    def __init__(self, capacity: int, terms: int):
        self.steps = np.empty(capacity, np.float64)
        self.values = np.empty((capacity, terms), np.float64)
        self.head = 0          # next write position
        self.count = 0

    def add_terms(self, extra: int):
        self.values = np.concatenate([self.values, np.full((len(self.values), extra), np.nan)], 1)

    def extend(self, steps: np.ndarray, values: np.ndarray):
        cap = len(self.steps)
        if len(steps) >= cap:
            steps, values = steps[-cap:], values[-cap:]
            self.steps[:], self.values[:] = steps, values
            self.head, self.count = 0, cap
            return
        k = len(steps)
        idx = (self.head + np.arange(k)) % cap
        self.steps[idx] = steps
        self.values[idx] = values
        self.head = (self.head + k) % cap
        self.count = min(cap, self.count + k)

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        cap = len(self.steps)
        if self.count < cap:
            return self.steps[:self.count], self.values[:self.count]
        order = np.r_[self.head:cap, 0:self.head]
        return self.steps[order], self.values[order]


class History:
    """Named loss terms against the step, bounded (see the module docstring)."""

    def __init__(self, capacity: int = 4096, factor: int = 4, levels: int = 12):
        self.capacity, self.factor, self.n_levels = capacity, factor, levels
        self.terms: list[str] = []
        self.levels = [Ring(capacity, 0) for _ in range(levels)]
        # records waiting to fill a block of the next level: per level, steps (m,), values (m, T)
        self._pending = [(np.empty(0), np.empty((0, 0))) for _ in range(levels)]
        self.total = 0         # records ever appended

    def __len__(self):
        return self.total

    def clear(self):
        self.__init__(self.capacity, self.factor, self.n_levels)

    def append(self, steps, losses: dict):
        """steps (k,), losses {term: (k,)}; a term missing from a call is nan there."""
        steps = np.asarray(steps, np.float64).ravel()
        if len(steps) == 0:
            return
        new = [t for t in losses if t not in self.terms]
        if new:
            self.terms += new
            for ring in self.levels:
                ring.add_terms(len(new))
            self._pending = [(s, np.concatenate([v, np.full((len(v), len(new)), np.nan)], 1))
                             for s, v in self._pending]
        vals = np.full((len(steps), len(self.terms)), np.nan)
        for j, t in enumerate(self.terms):
            if t in losses:
                vals[:, j] = np.asarray(losses[t], np.float64).ravel()
        self.total += len(steps)
        self._push(0, steps, vals)

    def _push(self, level: int, steps, vals):
        self.levels[level].extend(steps, vals)
        if level + 1 >= self.n_levels:
            return
        ps, pv = self._pending[level]
        steps, vals = np.concatenate([ps, steps]), np.concatenate([pv, vals]) if len(pv) else vals
        m = len(steps) // self.factor * self.factor
        self._pending[level] = (steps[m:], vals[m:])
        if m:
            f = self.factor
            with np.errstate(all="ignore"), _quiet():
                bs = steps[:m].reshape(-1, f).mean(1)
                bv = np.nanmean(vals[:m].reshape(-1, f, vals.shape[1]), 1)
            self._push(level + 1, bs, bv)

    def series(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The whole run for drawing: exact recent records, block means before them.
        At most levels * capacity points, steps increasing."""
        if term not in self.terms:
            return np.empty(0), np.empty(0)
        j = self.terms.index(term)
        out_s, out_v = [], []
        first = np.inf                        # oldest step already covered by a finer level
        for ring in self.levels:
            s, v = ring.ordered()
            if len(s) == 0:
                break
            keep = s < first
            out_s.append(s[keep])
            out_v.append(v[keep, j])
            first = min(first, s[0])
        if not out_s:
            return np.empty(0), np.empty(0)
        return np.concatenate(out_s[::-1]), np.concatenate(out_v[::-1])

    def recent(self, term: str, n: int) -> np.ndarray:
        """The last n exact values of a term (n <= capacity)."""
        if term not in self.terms:
            return np.empty(0)
        s, v = self.levels[0].ordered()
        return v[-n:, self.terms.index(term)]

    def nbytes(self) -> int:
        return sum(r.steps.nbytes + r.values.nbytes for r in self.levels)


class _quiet:
    """nanmean of an all-nan block warns; a nan block mean is the right answer."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        self._w.__exit__(*a)
