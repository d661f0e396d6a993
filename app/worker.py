"""A Session (engines.session) in a background thread: the only thread the window starts.

The window talks to it with `send(command)` (engines.messages commands, checked when made)
and reads what the session produced with `drain()` on its frame timer. The thread never
touches a widget. `stop()` cancels whatever runs (data loading, a training chunk, a sampler
step: within ~0.5 s) and `join(timeout)` waits for the end; the thread is a daemon, so a
process that must exit never waits for it.
"""
from __future__ import annotations

import itertools
import queue
import sys
import threading
import time

from engines import messages as M
from engines.run import Run
from engines.session import Cancelled, Session, describe_error

from . import gcguard

# The training thread hands the GIL back and forth with the GUI thread around every torch op.
# With CPython's default 5 ms switch interval the trainer can wait that long whenever the GUI
# runs Python drawing code; 0.5 ms measured 0.79x -> 0.85x of headless steps/s in
# `python main.py bench --gui`, event-loop lateness unchanged (~10 ms p99).
GIL_SWITCH_INTERVAL_S = 0.0005
_ids = itertools.count(1)


def share_the_gil():
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def configure_process(threads: int | None = None) -> int:
    """What every process that shows a window sets once, before its first run: the GIL switch
    interval and torch's thread count (all cores but one: the GUI thread keeps a core). The app,
    and the GUI benchmarks that measure it, call this one function, so that a benchmark measures
    the configuration a user gets (with torch on every core, paints took 2-3x longer)."""
    share_the_gil()
    from engines.run import configure_threads
    return configure_threads(threads)


class Worker:
    def __init__(self, cfg, data=None, **session_kw):
        self.run_id = next(_ids)
        self._commands: queue.Queue = queue.Queue()
        self.session = Session(cfg, data, run_id=self.run_id, make_run=Run, pending=self._pending, **session_kw)
        self.cfg = cfg
        self._thread = threading.Thread(target=self._main, name=f"session-{self.run_id}", daemon=True)
        self._gc_held = False
        self.idle = False            # waiting for commands with nothing to do (tests wait for this)
        self._cpu = 0.0              # this thread's CPU seconds so far (the GUI benchmark reads it)

    # ================================================================ GUI side
    @property
    def run_obj(self):
        return self.session.run

    @property
    def timing(self) -> dict:
        """Seconds this thread spent per kind of job, and its CPU seconds ("cpu")."""
        return {**self.session.pacer.total, "cpu": self._cpu}

    def start(self):
        # while this thread runs, cyclic garbage (which may hold Qt objects) is collected on
        # the GUI thread only: a collection inside this thread could destroy widgets here
        if not self._gc_held:
            self._gc_held = True
            gcguard.acquire()
        self._thread.start()

    def send(self, cmd):
        self._commands.put(cmd)

    def drain(self) -> list:
        return self.session.drain()

    def stop(self):
        """Ask the thread to end (returns at once): the running job stops at its next check."""
        self.session.cancel()
        self._commands.put(M.Stop())

    def join(self, timeout_s: float = 1.0) -> bool:
        """Wait up to timeout_s for the thread to end; True when it has (and the GC is given back)."""
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout_s))
        if self._thread.is_alive():
            return False
        if self._gc_held:
            self._gc_held = False
            gcguard.release()
        return True

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # ================================================================ thread side
    def _pending(self, kinds) -> bool:
        with self._commands.mutex:
            return any(isinstance(c, kinds) for c in self._commands.queue)

    def _main(self):
        s = self.session
        try:
            if not s.build():
                return
            while not s.finished:
                self._cpu = time.thread_time()
                self._handle(block=0.0)
                job = s.next_job(time.perf_counter())
                if job is None:
                    self.idle = self._commands.empty()
                    self._handle(block=s.wake_in(time.perf_counter()))
                    self.idle = False
                else:
                    job.run()
        except Cancelled:
            pass
        except Exception as e:       # the session catches its own errors; this is the last resort
            s.post(M.Error("The training thread stopped", describe_error(e)))
        finally:
            s.finished = True
            s.run = None             # a retired run's memory goes with its thread
            s.post(M.Finished())

    def _handle(self, block: float):
        try:
            cmd = self._commands.get(timeout=block) if block > 0 else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            self.session.handle(cmd)
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
