"""Fair CPU sharing between the runs of a comparison, without Qt.

Two things make "steps to quality" honest when runs share one machine:
- thread budgets: the cores are split among the runs that train at the same time, so no run
  gets the whole torch thread pool while another waits;
- a share policy: each run gets an equal number of training steps, or an equal amount of
  training wall time (the user's choice). `FairShare` keeps the count; the run that is most
  behind trains next. Headless, `run_in_turn` trains them one chunk at a time; in the app each
  run's worker asks `may_train(i)` before a chunk, so with `slots` concurrent trainers only the
  `slots` most-behind runs train.

Everything takes a `clock` so tests drive it with a fake one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

MODES = ("steps", "time")


def available_cores(cores: int | None = None, reserve: int = 0) -> int:
    """Cores left for training: all (or `cores`) minus `reserve` (1 for a GUI's event loop), at least 1."""
    return max(1, (cores or os.cpu_count() or 1) - reserve)


def concurrent_slots(n_runs: int, cores: int | None = None, reserve: int = 0) -> int:
    """How many runs may train at the same time: one per available core, at most n_runs."""
    return max(1, min(n_runs, available_cores(cores, reserve)))


def thread_budgets(n_runs: int, cores: int | None = None, reserve: int = 0, slots: int | None = None) -> list[int]:
    """torch threads per run when `slots` of them train at once (default: as many as cores allow).
    The available cores are split evenly (the first runs get the remainder), each at least 1:
    8 cores, 4 runs -> [2, 2, 2, 2]; 8 cores, 3 runs -> [3, 3, 2]; 2 cores, reserve 1 -> [1, 1, ...]."""
    if n_runs < 1:
        return []
    avail = available_cores(cores, reserve)
    slots = slots or concurrent_slots(n_runs, cores, reserve)
    if slots < n_runs:   # runs take turns: each gets the share of one slot while it trains
        return [max(1, avail // slots)] * n_runs
    base, extra = divmod(avail, n_runs)
    return [max(1, base + (1 if i < extra else 0)) for i in range(n_runs)]


@dataclass(frozen=True)
class ShareState:
    """What a fairness display needs: per-run steps and training seconds, and who trains next."""
    steps: tuple
    seconds: tuple
    active: tuple
    next_run: int | None


class FairShare:
    """Equal steps (mode "steps") or equal training seconds (mode "time") per run.

    budget: per-run steps or seconds after which a run is finished (None: open-ended, as in the
    app). slots: how many runs may train at once (1 headless in turn)."""

    def __init__(self, n_runs: int, mode: str = "steps", slots: int = 1, budget: float | None = None):
        if mode not in MODES:
            raise ValueError(f"fair share mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode, self.slots, self.budget = mode, max(1, int(slots)), budget
        self.steps = [0] * n_runs
        self.seconds = [0.0] * n_runs
        self.active = [True] * n_runs

    # ------------------------------------------------------------------ bookkeeping
    def record(self, index: int, steps: int, seconds: float):
        """Run `index` trained `steps` steps in `seconds` of wall time."""
        self.steps[index] += int(steps)
        self.seconds[index] += float(seconds)

    def add(self) -> int:
        """A new run joins; it starts at zero and so trains first until it catches up."""
        self.steps.append(0)
        self.seconds.append(0.0)
        self.active.append(True)
        return len(self.steps) - 1

    def remove(self, index: int):
        """Out of the rotation (removed, diverged, or nothing to train): it no longer holds others back."""
        self.active[index] = False

    def reset(self, index: int):
        self.steps[index], self.seconds[index] = 0, 0.0
        self.active[index] = True

    # ------------------------------------------------------------------ policy
    def progress(self, index: int) -> float:
        return float(self.steps[index]) if self.mode == "steps" else self.seconds[index]

    def finished(self, index: int) -> bool:
        return not self.active[index] or (self.budget is not None and self.progress(index) >= self.budget)

    def order(self) -> list[int]:
        """Unfinished active runs, most behind first (ties: the lower index)."""
        live = [i for i in range(len(self.steps)) if not self.finished(i)]
        return sorted(live, key=lambda i: (self.progress(i), i))

    def next_run(self) -> int | None:
        order = self.order()
        return order[0] if order else None

    def may_train(self, index: int) -> bool:
        """For concurrent trainers: only the `slots` most-behind runs train now."""
        return index in self.order()[: self.slots]

    def remaining(self, index: int) -> float | None:
        return None if self.budget is None else max(0.0, self.budget - self.progress(index))

    def state(self) -> ShareState:
        return ShareState(tuple(self.steps), tuple(self.seconds), tuple(self.active), self.next_run())


FIRST_CHUNK = 5   # steps of a run's first turn, which measures its speed


def chunk_for(share: FairShare, index: int, chunk: int, slice_seconds: float | None) -> int:
    """Steps of run `index`'s next turn: about `slice_seconds` of its measured speed, at most
    `chunk` (and FIRST_CHUNK before it has a speed), so a slow run never holds the others for long."""
    if slice_seconds is None:
        return chunk
    steps, secs = share.steps[index], share.seconds[index]
    if steps == 0 or secs <= 0:
        return min(chunk, FIRST_CHUNK)
    return max(1, min(chunk, int(steps / secs * slice_seconds)))


def run_in_turn(runs, share: FairShare, chunk: int = 50, clock=time.perf_counter, should_stop=None,
                on_chunk=None, slice_seconds: float | None = None) -> FairShare:
    """Train `runs` (objects with `train(k) -> steps done`) one chunk at a time, the most-behind
    first, until every run has its budget or `should_stop()` says so. A run that trains nothing
    (diverged, or a family without training) leaves the rotation. on_chunk(i, steps, seconds)
    after each chunk (evaluations done there are not counted as training time). slice_seconds:
    size each turn by the run's speed (see chunk_for) instead of a fixed `chunk`."""
    while not (should_stop and should_stop()):
        i = share.next_run()
        if i is None:
            break
        k = chunk_for(share, i, chunk, slice_seconds)
        if share.mode == "steps" and share.budget is not None:
            k = max(1, min(k, int(share.budget - share.steps[i])))
        t0 = clock()
        done = runs[i].train(k)
        dt = clock() - t0
        share.record(i, done, dt)
        if done == 0:
            share.remove(i)
        if on_chunk is not None:
            on_chunk(i, done, dt)
    return share


class Turns:
    """Turn-taking for runs that train in their own threads (the app's workers), thread-safe.

    At most `share.slots` runs hold a turn at once; a turn lasts `quantum` seconds of that run's
    training, then goes to the most-behind active run (by `share`'s policy). A run that is
    behind but busy (sampling particles) keeps its place: the others wait rather than pull
    ahead, so the share stays equal within one turn. A run that cannot train (diverged, a
    family without training, a failed build) must be `remove`d so that it holds no one back.
    Workers call `acquire(i)` before a training chunk (False: wait briefly and ask again) and
    `record(i, steps, seconds)` after it."""

    def __init__(self, share: FairShare, quantum: float = 0.25):
        import threading
        self.share, self.quantum = share, float(quantum)
        self._lock = threading.Lock()
        self._holders: dict[int, float] = {}        # run -> its training seconds when the turn began

    def acquire(self, index: int) -> bool:
        with self._lock:
            if index in self._holders:
                return True
            if len(self._holders) >= self.share.slots or self.share.finished(index):
                return False
            waiting = [i for i in self.share.order() if i not in self._holders]
            if waiting and waiting[0] == index:
                self._holders[index] = self.share.seconds[index]
                return True
            return False

    def record(self, index: int, steps: int, seconds: float):
        with self._lock:
            self.share.record(index, steps, seconds)
            start = self._holders.get(index)
            if start is not None and (self.share.seconds[index] - start >= self.quantum or steps == 0):
                del self._holders[index]

    def remove(self, index: int):
        """Out of the rotation until `reset`."""
        with self._lock:
            self._holders.pop(index, None)
            self.share.remove(index)

    def add(self) -> int:
        with self._lock:
            return self.share.add()

    def reset(self, index: int):
        """A rebuilt run starts again from zero (it then trains first until it catches up)."""
        with self._lock:
            self._holders.pop(index, None)
            self.share.reset(index)

    def set_mode(self, mode: str):
        """Switch between equal steps and equal time; the turns in progress end."""
        if mode not in MODES:
            raise ValueError(f"fair share mode {mode!r}: choose one of {', '.join(MODES)}")
        with self._lock:
            self.share.mode = mode
            self._holders.clear()

    def holders(self) -> list[int]:
        with self._lock:
            return sorted(self._holders)

    def snapshot(self) -> ShareState:
        with self._lock:
            return self.share.state()
