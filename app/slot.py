"""One run's lifecycle under a controller (issue 9): its running worker, at most one being built,
and the retired ones being joined. A restart builds the new run next to the current one, which
goes on until the new run is ready (promote); commands go to both, so nothing said during a build
is lost. The single-run window has one Slot, compare mode one per run (app/compare/runs.py).
"""
from __future__ import annotations

import time

from engines import messages as M

from .worker import Worker


class Slot:
    """One run's lifecycle: the running worker, at most one being built, retired ones being joined."""

    def __init__(self):
        self.worker: Worker | None = None
        self.building: Worker | None = None
        self.retiring: list[Worker] = []
        self.info: M.RunInfo | None = None
        self.step = 0
        self.steps_per_s = 0.0
        self.lr = None
        self.diverged_msg = ""

    def start(self, cfg, data=None, **session_kw) -> Worker:
        """Build a new run next to the current one; a build already under way is cancelled."""
        if self.building is not None:
            self._retire(self.building)
        self.building = Worker(cfg, data, **session_kw)
        self.building.start()
        return self.building

    def send(self, cmd):
        for w in (self.worker, self.building):
            if w is not None:
                w.send(cmd)

    def promote(self):
        """The new run is ready: it becomes current, the old one is retired."""
        if self.worker is not None:
            self._retire(self.worker)
        self.worker, self.building = self.building, None

    def drop_building(self):
        if self.building is not None:
            self._retire(self.building)
            self.building = None

    def _retire(self, w: Worker):
        w.stop()
        self.retiring.append(w)

    def reap(self):
        """Join the retired workers that have ended (never blocks)."""
        for w in list(self.retiring):
            w.drain()
            if w.join(0):
                self.retiring.remove(w)

    def workers(self) -> list[Worker]:
        return [w for w in (self.worker, self.building) if w is not None] + self.retiring

    def close(self, deadline: float) -> bool:
        """Cancel everything; join until `deadline` (perf_counter). True when all have ended."""
        for w in (self.worker, self.building):
            if w is not None:
                self._retire(w)
        self.worker = self.building = None
        for w in self.retiring:
            w.stop()
        for w in list(self.retiring):
            if w.join(deadline - time.perf_counter()):
                self.retiring.remove(w)
        return not self.retiring
