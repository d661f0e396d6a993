"""Garbage collection only on the GUI thread.

Python's cyclic garbage collector runs in whichever thread happens to allocate when its
thresholds trip; with a training thread allocating constantly, that is usually the worker.
If the garbage holds Qt objects (a removed plot item in a reference cycle), they would be
destroyed from the worker thread, which can crash Qt. So while a window is open, automatic
collection is off and a GUI-thread timer collects instead (pyqtgraph's GarbageCollector idea,
with a release so that tests and scripts get normal collection back)."""
from __future__ import annotations

import gc

from PySide6 import QtCore

_users = 0
_timer: QtCore.QTimer | None = None
_was_enabled = True


def _collect():
    # generation 0 often, older ones when their thresholds say so (gc.get_count)
    t0, t1, t2 = gc.get_threshold()
    c0, c1, c2 = gc.get_count()
    if c2 > t2:
        gc.collect(2)
    elif c1 > t1:
        gc.collect(1)
    elif c0 > t0:
        gc.collect(0)


def acquire(interval_ms: int = 500):
    global _users, _timer, _was_enabled
    _users += 1
    if _users == 1:
        _was_enabled = gc.isenabled()
        gc.disable()
        _timer = QtCore.QTimer()
        _timer.timeout.connect(_collect)
        _timer.start(interval_ms)


def release():
    global _users, _timer
    if _users == 0:
        return
    _users -= 1
    if _users == 0:
        if _timer is not None:
            _timer.stop()
            _timer = None
        gc.collect()
        if _was_enabled:
            gc.enable()
