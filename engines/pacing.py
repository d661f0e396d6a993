"""The rate policy shared by Session and Run.iterate: how long a training chunk is, and when a
side job (snapshot, field, views, samples, particles) may run, by its measured cost.

A side job of kind k that last cost c_k seconds may start again once the time since it last
ended is at least c_k (1 / share_k - 1): then it takes at most share_k of the wall time,
whatever the model, so a slow field or sampler never starves the trainer (issue 9: planar
flow's log-density field cost more than its training). Every kind also has a minimum period
(a maximum rate): a cheap field is not recomputed more often than the eye can use.

Everything is in seconds of an injected clock, so the policy is tested with a fake clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CHUNK_S = 0.02            # a training chunk's target length: commands are answered within ~20 ms
MAX_CHUNK = 5000          # steps
EMA = 0.3                 # weight of the newest cost measurement


@dataclass(frozen=True)
class Budget:
    share: float          # at most this share of the wall time while training
    min_period: float     # and not more often than this (seconds)


# While training. When paused, the same kinds run as soon as they are asked for (the trainer
# is not waiting for anything), still no faster than min_period.
BUDGETS = {
    "snapshot": Budget(share=0.02, min_period=1 / 15),   # losses and the step: 15 a second (the loss
                                                         # plot redraws at 5 Hz; each snapshot costs the
                                                         # GUI thread, and through the GIL the trainer)
    "field": Budget(share=0.03, min_period=1 / 5),
    "views": Budget(share=0.03, min_period=1 / 2),       # explanatory plots: 2 a second is plenty
    "samples": Budget(share=0.03, min_period=3.0),       # min_period is replaced by the panel's "every"
    "particles": Budget(share=0.04, min_period=0.5),
}
# Together at most ~15% of the worker's time (the session adds its checkpoint, 1%), ~10% in
# practice (a run shows a field or views, rarely both). Measured reasons (issue 9):
#  - planar flow trained at 3 steps/s in the window vs 41 headless: its Family views invert 32
#    planar layers by bisection (~0.8 s a call on a loaded 2-core machine) and the old worker
#    asked for them at a fixed 4 Hz (and the log-density field at 5 Hz);
#  - the goal is >= 0.85x headless steps/s in the window, and the GUI thread's drawing already
#    takes 5-8% of the trainer's time through the GIL (`bench --gui`, in-process A/B of all
#    panels hidden vs shown). With the earlier budgets (up to 29%: particles 8%, samples 6%,
#    field 6%, views 6%, snapshot 3%) score-SDE moons spent 14% on particles and samples and
#    ran at 0.72x; with these a DDPM particle run (100 steps, 1000 particles, ~0.1 s) still
#    comes every ~2.5 s, as often as the panel's playback loop asks.


class Pacer:
    """Measured costs and last-run times per job kind, and the training chunk size."""

    def __init__(self, budgets: dict | None = None, chunk_s: float = CHUNK_S):
        self.budgets = dict(BUDGETS if budgets is None else budgets)
        self.chunk_s = chunk_s
        self.cost: dict[str, float] = {}
        self.last_end: dict[str, float] = {}
        self.chunk = 1                        # steps; grows to chunk_s of work
        self.total: dict[str, float] = {}     # seconds spent per kind (the GUI benchmark reads them)

    # ------------------------------------------------------------ side jobs
    def wait(self, kind: str, playing: bool, min_period: float | None = None) -> float:
        """Seconds that must pass after the last `kind` job ended before the next one."""
        b = self.budgets[kind]
        period = b.min_period if min_period is None else min_period
        if not playing:
            return period if kind != "samples" else min(period, 0.3)
        c = self.cost.get(kind, 0.0)
        return max(period, c * (1.0 / b.share - 1.0))

    def due(self, kind: str, now: float, playing: bool, min_period: float | None = None) -> bool:
        last = self.last_end.get(kind)
        return last is None or now - last >= self.wait(kind, playing, min_period)

    def next_due(self, kind: str, playing: bool, min_period: float | None = None) -> float:
        last = self.last_end.get(kind)
        return -math.inf if last is None else last + self.wait(kind, playing, min_period)

    def record(self, kind: str, start: float, end: float):
        dt = max(0.0, end - start)
        c = self.cost.get(kind)
        self.cost[kind] = dt if c is None else (1 - EMA) * c + EMA * dt
        self.last_end[kind] = end
        self.total[kind] = self.total.get(kind, 0.0) + dt

    # ------------------------------------------------------------ training
    def record_chunk(self, steps_asked: int, steps_done: int, seconds: float):
        """Aim the next chunk at chunk_s of work (sqrt damping: one odd chunk does not swing it)."""
        self.total["train"] = self.total.get("train", 0.0) + seconds
        if steps_done and steps_asked == self.chunk:
            ratio = self.chunk_s / max(seconds, 1e-4)
            self.chunk = int(min(max(1, self.chunk * math.sqrt(ratio)), MAX_CHUNK))
