"""Event-loop lateness, measured rather than guessed: a precise QTimer ticks every `interval`
ms on the GUI thread, and each tick records how much later than due it fired. Anything that
blocks the event loop (a long redraw, a GIL held by the worker) shows up here."""
from __future__ import annotations

import collections
import itertools
import time

import numpy as np
from PySide6 import QtCore


class Heartbeat(QtCore.QObject):
    def __init__(self, interval_ms: int = 10, keep: int = 100000, parent=None):
        super().__init__(parent)
        self.interval = interval_ms / 1000.0
        self.late_ms: collections.deque = collections.deque(maxlen=keep)
        self._last = None
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def start(self):
        self._last = None
        self.timer.start()

    def stop(self):
        self.timer.stop()

    def reset(self):
        self.late_ms.clear()
        self._last = None

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.late_ms.append(max(0.0, (now - self._last - self.interval) * 1000.0))
        self._last = now

    def percentile(self, q: float = 99.0, last: int | None = None) -> float:
        if not self.late_ms:
            return 0.0
        src = itertools.islice(reversed(self.late_ms), last) if last else self.late_ms
        return float(np.percentile(np.fromiter(src, float), q))
