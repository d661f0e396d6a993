"""One run of a comparison: its own session on its own worker thread, fairly sharing the CPU.

`GatedSession` is the ordinary session (engines.session) with one rule added: before a training
chunk it asks the comparison's `Turns` (engines.compare.fair) for a turn, and it reports every
chunk's steps and seconds back. While it waits it asks again every 15 ms (often enough that a turn
passes on with little idle time, rarely enough not to fight the window for the GIL). Everything
else (snapshots, samples, particles, cancellation) is the session's own.
"""
from __future__ import annotations

from engines.run import Run
from engines.session import Session

from ..slot import Slot
from ..worker import Worker

GATED_WAKE_S = 0.015          # a waiting run asks again this often (a poll holds the GIL briefly)


NLL_POINTS = 256
NLL_SHARE = 0.05          # the likelihood may cost at most this share of the wall time


class GatedSession(Session):
    def __init__(self, *args, turns=None, index: int = 0, **kw):
        super().__init__(*args, **kw)
        self.turns, self.index = turns, index
        self.gated = False
        self._nll = (None, "")
        self._nll_next = 0.0

    def _post_samples(self, samples, metrics: dict):
        """The comparison table's NLL rides with the samples' metrics: the Run's own held-out
        report where it has one; else, for a family with a costlier likelihood (a VAE's bound, a
        score SDE's ODE), measure.nll, recomputed no more often than its cost allows."""
        run = self.run
        if "nll_unit" not in metrics and "likelihood" in getattr(run.family, "capabilities", ()):
            now = self.clock()
            if now >= self._nll_next:
                from engines.compare.measure import nll
                try:
                    self._nll = nll(run, NLL_POINTS)
                except Exception:                 # a report, never a reason to stop the run
                    self._nll = (None, "")
                cost = self.clock() - now
                self._nll_next = self.clock() + cost / NLL_SHARE
            if self._nll[0] is not None:        # the Run's own report's keys (engines.likelihood)
                metrics = {**metrics, "nll_nats": self._nll[0], "nll_unit": self._nll[1]}
        super()._post_samples(samples, metrics)

    def next_job(self, now):
        job = super().next_job(now)
        self.gated = False
        if job is not None and job.kind == "train" and self.turns is not None:
            if not self.turns.acquire(self.index):
                self.gated = True
                return None
        return job

    def wake_in(self, now):
        w = super().wake_in(now)
        return min(w, GATED_WAKE_S) if self.gated else w

    def _train_steps(self, k: int) -> int:
        t0 = self.clock()
        done = super()._train_steps(k)
        if self.turns is not None:
            self.turns.record(self.index, done, self.clock() - t0)
        return done


class CompareWorker(Worker):
    """A worker whose session takes turns with the comparison's other runs."""

    def __init__(self, cfg, data=None, turns=None, index: int = 0, **session_kw):
        super().__init__(cfg, data, **session_kw)
        self.session = GatedSession(cfg, data, run_id=self.run_id, make_run=Run, pending=self._pending,
                                    turns=turns, index=index, **session_kw)


class CompareSlot(Slot):
    """The controller's Slot (lifecycle: build next to the current run, promote, retire, reap)
    with comparison workers."""

    def __init__(self, turns, index: int):
        super().__init__()
        self.turns, self.index = turns, index

    def start(self, cfg, data=None, **session_kw) -> Worker:
        if self.building is not None:
            self._retire(self.building)
        self.building = CompareWorker(cfg, data, turns=self.turns, index=self.index, **session_kw)
        self.building.start()
        return self.building

    def retire_all(self):
        """Cancel both workers (returns at once); `reap()` joins them on later frames."""
        for w in (self.worker, self.building):
            if w is not None:
                self._retire(w)
        self.worker = self.building = None
