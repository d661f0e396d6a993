"""Session: one Run, what the viewers want from it, and when each piece of work is done. No Qt.

A caller (the app's worker thread, a test with a fake clock, Run.iterate) drives it:

    s = Session(cfg, clock=clock)
    s.build()                           # the Run, cancellable; posts RunInfo (or a fatal Error)
    s.handle(messages.Play(True))       # commands (engines.messages), validated when made
    job = s.next_job(clock())           # the next piece of work, or None (then: wait s.wake_in(now))
    job.run()                           # trains a chunk, or computes a snapshot / samples / particles
    s.drain()                           # the typed messages produced so far

The rate policy (engines.pacing) sizes training chunks to ~20 ms and lets each side job take at
most its share of the wall time by its measured cost. Cancellation is cooperative: `cancel()`
(any thread) makes the next check raise Cancelled: between data-loading chunks and phases of
Run construction, between training chunks, and in every sampler callback; the caller's
`pending(kinds)` predicate lets a waiting command interrupt a long sampling job, which is then
re-run later if still wanted. So Stop is honoured within one chunk or one sampler step.

Here: state, commands, scheduling, training and snapshot jobs. Mixed in: building the Run
(engines.session_build), losses kept, saving and divergence recovery (engines.session_persist),
samples and particles (engines.session_sampling), the inspector's jobs (engines.session_inspect).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

from . import messages as M
from .config import ConfigError
from .history import History, loss_mean_recent
from .pacing import Pacer
from .session_build import RunBuilding, describe_error
from .session_inspect import InspectorJobs
from .session_persist import CHECKPOINT, SavingAndRecovery
from .session_sampling import (MAX_SAMPLE_BYTES, MAX_TRAJECTORY_BYTES, SAMPLE_BATCH_BYTES, Cancelled,  # noqa: F401
                               Interrupted, SamplingJobs)

FRAME_HZ = 30.0                   # the window's frame rate that "steps per frame" refers to
# commands only kept (the latest of each kind) until next_job runs them; the inspector's too
KEPT_REQUESTS = {M.Particles: "particles_req", M.StopAt: "stop_at", M.Rewind: "rewind_req",
                 M.Branch: "branch_req", M.RunLab: "lab_req"}


@dataclass
class Job:
    kind: str                     # train, step, snapshot, samples, particles, checkpoint
    fn: Callable[[], None]

    def run(self):
        self.fn()


class Session(RunBuilding, SavingAndRecovery, SamplingJobs, InspectorJobs):
    def __init__(self, cfg, data=None, *, run_id: int = 0, want: M.Want | dict | None = None,
                 playing: bool = False, speed: float | None = None, sampler: str = "",
                 sampler_options: dict | None = None, stop_at: M.StopAt | None = None, play_seq: int = 0,
                 clock: Callable[[], float] = time.perf_counter,
                 pending: Callable[[tuple], bool] | None = None, run=None, make_run=None):
        """make_run(cfg, data=..., cancel=...) builds the Run (engines.run.Run; passed in so
        that this module does not import run.py, which drives a Session in Run.iterate);
        or `run` is an existing Run."""
        self.cfg, self.data, self.run_id = cfg, data, run_id
        self.make_run = make_run
        self.clock = clock
        self.pending = pending or (lambda kinds: False)
        self.cancel_event = threading.Event()
        self.outbox: deque = deque()
        self.run = run
        self.info: M.RunInfo | None = None
        self.pacer = Pacer()
        self.pacer.budgets["checkpoint"] = CHECKPOINT
        self.want = want if isinstance(want, M.Want) else M.Want.from_dict(want)
        self.playing = bool(playing)
        self.play_seq = play_seq
        self.speed = speed
        self.sampler, self.sampler_options = sampler or "", dict(sampler_options or {})
        self.stop_at = stop_at or M.StopAt()
        self.finished = False
        # what is owed to the viewers
        self.dirty = True                 # steps the window has not seen
        self.force_field = self.force_views = True
        self.force_samples = False
        self.field_step = self.views_step = self.samples_step = -1
        self.steps_pending = 0            # from Step(n)
        self.particles_req: M.Particles | None = None
        self.views_probe = False
        self._budget, self._t_budget = 0.0, None
        self._good = None                 # (step, weights) of the last finite model
        self._reference_cache: dict[int, dict] = {}
        self._steps_hint: dict = {}       # sampler -> steps it took last time (progress totals)
        self.history = History()          # every loss record of the run, bounded (engines.history)
        self._init_inspector()            # probe, Rewind / Branch / RunLab requests (engines.session_inspect)

    # ================================================================ outside
    def post(self, msg):
        self.outbox.append(replace(msg, run_id=self.run_id))

    def drain(self) -> list:
        out = []
        while self.outbox:
            out.append(self.outbox.popleft())
        return out

    def cancel(self):
        """Any thread: stop whatever runs at its next check (within one chunk / sampler step)."""
        self.cancel_event.set()

    def check(self):
        if self.cancel_event.is_set():
            raise Cancelled()

    # ================================================================ commands
    def handle(self, cmd):
        """Apply one command (engines.messages). A bad value posts an Error; nothing is lost."""
        run = self.run
        if type(cmd) in KEPT_REQUESTS:
            setattr(self, KEPT_REQUESTS[type(cmd)], cmd)
        elif isinstance(cmd, M.Stop):
            self.cancel()
            self.finished = True
        elif isinstance(cmd, M.Play):
            self.play_seq = cmd.seq
            self._budget, self._t_budget = 0.0, None
            on = bool(cmd.on)
            if on and run is not None and run.diverged:
                if not self._recover():
                    self.post(M.Notice(run.diverged))
                    on = False
                    self.post(M.State(False, self.play_seq, run.step))
            self.playing = on
            self.steps_pending = 0 if on else self.steps_pending
            self.dirty = True
        elif isinstance(cmd, M.Step):
            if self.playing:
                self.playing = False
                self.post(M.State(False, self.play_seq, run.step if run else 0))
            if run is not None and run.diverged and not self._recover():
                self.post(M.Notice(run.diverged))
                return
            self.steps_pending += cmd.n
        elif isinstance(cmd, M.Speed):
            self.speed = cmd.steps_per_frame
            self._budget = 0.0
        elif isinstance(cmd, M.SetTrain):
            self._set_train(cmd)
        elif isinstance(cmd, M.Want):
            old, self.want = self.want, cmd
            self.force_field |= cmd.field != old.field
            self.force_views |= cmd.views != old.views
            self.force_samples |= bool(cmd.samples) and not old.samples
            self.dirty = True
        elif isinstance(cmd, M.Sampler):
            if run is not None:
                try:
                    run.family.sampler_options(cmd.name or None, cmd.options)
                except (ConfigError, ValueError) as e:
                    self.post(M.Error("Bad sampler setting", str(e)))
                    return
            self.sampler, self.sampler_options = cmd.name or "", dict(cmd.options)
            if run is not None:
                self.post(M.SamplerLevels(self._sampler_levels()))
            self.force_samples = bool(self.want.samples)
        elif isinstance(cmd, M.SamplesNow):
            self.force_samples = True
        elif isinstance(cmd, (M.SaveRun, M.ExportLosses)):
            self._save(cmd)
        elif isinstance(cmd, M.StopLab):
            self.lab_req = None           # a running lab sees the waiting StopLab and stops
        else:
            raise TypeError(f"not a session command: {cmd!r}")

    def _set_train(self, cmd: M.SetTrain):
        run = self.run
        if run is None:
            return
        try:
            setter = getattr(run, "set_train_setting", None)
            if setter is not None:
                setter(cmd.name, cmd.value)
            elif cmd.name == "lr":
                run.set_lr(float(cmd.value))
            else:
                setattr(run.cfg.train, cmd.name, cmd.value)
        except ConfigError as e:
            self.post(M.Error("Bad setting", str(e)))
            return
        self.post(M.Notice(f"{cmd.name} set to {cmd.value:g} from step {run.step} on"))
        if run.diverged:
            self._recover()

    # ================================================================ scheduling
    def next_job(self, now: float) -> Job | None:
        """The most urgent piece of work at time `now`, or None (nothing is due)."""
        if self.finished or self.run is None:
            return None
        run, pacer = self.run, self.pacer
        if self.branch_req is not None or self.rewind_req is not None:
            return Job("checkpoints", self._checkpoint_jobs)
        if self.steps_pending:
            return Job("step", self._step_job)
        if self.particles_req is not None and pacer.due("particles", now, self.playing):
            return Job("particles", self._particles_job)
        if self._samples_due(now):
            return Job("samples", self._samples_job)
        if self.dirty and pacer.due("snapshot", now, self.playing):
            return Job("snapshot", self._snapshot_job)
        if self.lab_req is not None:
            return Job("lab", self._lab_job)
        if self.playing and run.family.trainable and not run.diverged:
            if self.speed is None or self._slow_motion_steps(now) >= 1:
                if self._good is None or (pacer.due("checkpoint", now, True) and run.step > 0):
                    return Job("checkpoint", self._checkpoint_job)
                return Job("train", self._train_job)
        return None

    def wake_in(self, now: float) -> float:
        """With no job due: how long the caller may wait for a command before asking again."""
        if self.finished or self.run is None:
            return 0.05
        due = []
        if self.particles_req is not None:
            due.append(self.pacer.next_due("particles", self.playing))
        if self.dirty:
            due.append(self.pacer.next_due("snapshot", self.playing))
        if self.want.samples and not self.run.diverged:
            due.append(self.pacer.next_due("samples", self.playing, self._samples_period()))
        if self.playing and self.speed is not None:
            due.append(now + 1.0 / FRAME_HZ)
        if not due:
            return 0.05
        return float(min(max(min(due) - now, 0.001), 0.05))

    def _slow_motion_steps(self, now: float) -> int:
        """Slow motion: `speed` steps per window frame, from a budget that fills with time
        (at most two frames' worth, so a pause does not bank steps)."""
        t = self._t_budget if self._t_budget is not None else now
        self._budget = min(self._budget + (now - t) * self.speed * FRAME_HZ, max(1.0, self.speed * 2))
        self._t_budget = now
        return int(self._budget)

    def _samples_period(self) -> float:
        return float((self.want.samples or {}).get("every", 3.0))

    def _samples_due(self, now: float) -> bool:
        if not self.want.samples or self.run.diverged or not self.run.family.samplers:
            self.force_samples = False
            return False
        if self.force_samples:
            return True
        if self.run.step == self.samples_step:
            return False
        if self.playing:
            # looping particle trajectories already refresh the samples (their last frame)
            last_p = self.pacer.last_end.get("particles")
            if self.particles_req is not None or (last_p is not None and now - last_p < 2 * self._samples_period()):
                return False
        return self.pacer.due("samples", now, self.playing, self._samples_period())

    def _timed(self, kind, fn):
        t0 = self.clock()
        try:
            return fn()
        finally:
            self.pacer.record(kind, t0, self.clock())

    # ================================================================ jobs
    def _train_steps(self, k: int) -> int:
        run = self.run
        t0 = self.clock()
        try:
            done = run.train(k)
        except Cancelled:
            raise
        except Exception as e:
            self._fail("Training failed", e)
            return 0
        self.pacer.record_chunk(k, done, self.clock() - t0)
        if done:
            self.dirty = True
            self._after_train()
        if run.diverged:
            self.post(M.Error("Training diverged", run.diverged))   # before the pause that it explains
            self._pause()
            self.force_field = True
        elif self.stop_at.kind == "loss" and self.playing:
            recent = loss_mean_recent(run.history.get("loss"), 50)
            if recent is not None and recent <= self.stop_at.value:
                self._pause()
                self.post(M.Notice(f"Stopped at step {run.step}: the loss (mean of the last 50 steps) "
                                   f"{recent:.4g} reached the target {self.stop_at.value:g}."))
        if self.views_probe and run.step > 0:
            self.views_probe = False
            try:
                self.post(M.ViewsAvailable(bool(run.views({"n": 8}))))
            except Exception:
                pass
        return done

    def _train_job(self):
        self.check()
        k = self.pacer.chunk if self.speed is None else int(self._budget)
        if k <= 0:
            return
        done = self._train_steps(k)
        if self.speed is not None:
            self._budget -= k

    def _step_job(self):
        self.check()
        k = min(self.steps_pending, self.pacer.chunk)
        done = self._train_steps(k)
        self.steps_pending = 0 if (done < k or self.run.diverged) else self.steps_pending - k
        self.force_field = self.force_views = True

    def _checkpoint_job(self):
        self._timed("checkpoint", self._checkpoint)

    def _pause(self):
        if self.playing:
            self.playing = False
            self.post(M.State(False, self.play_seq, self.run.step))

    def _fail(self, title, e, pause=True):
        if pause:
            self._pause()
        self.post(M.Error(title, describe_error(e)))

    def _snapshot_job(self):
        run, now = self.run, self.clock()
        snap = self._timed("snapshot", lambda: run.snapshot({}))
        self._keep_history(snap)
        extra = {}
        w = self.want
        if w.field is not None and not run.is_image and (
                self.force_field or (run.step != self.field_step and self.pacer.due("field", now, self.playing))):
            try:
                field = self._timed("field", lambda: run.field(**w.field))
                level = w.field.get("level")
                try:
                    # x_t = alpha x0 + s eps in the standardized units the family trains in, where
                    # alpha^2 + s^2 = 1 holds for VP processes (the window's caption shows it)
                    fn = getattr(run.family, "level_alpha_sigma", None)
                    alpha_sigma = fn(level) if fn is not None else None
                except Exception:
                    alpha_sigma = None
                extra["field"] = {**field, "level": level, "alpha_sigma": alpha_sigma}
            except Cancelled:
                raise
            except Exception as e:
                self.want = replace(self.want, field=None)     # don't repeat a failing view every frame
                self._fail("Computing the field failed", e, pause=False)
            self.field_step, self.force_field = run.step, False
        elif w.field is None or run.is_image:
            self.force_field = False
        if w.views is not None and (
                self.force_views or (run.step != self.views_step and self.pacer.due("views", now, self.playing))):
            try:
                # version: the model's step, so a family may reuse work for an unchanged model
                extra["views"] = self._timed("views", lambda: run.views({**w.views, "version": run.step}))
            except Cancelled:
                raise
            except Exception as e:
                self.want = replace(self.want, views=None)
                self._fail("Computing the family's views failed", e, pause=False)
            self.views_step, self.force_views = run.step, False
        elif w.views is None:
            self.force_views = False
        self.post(replace(snap, **extra) if extra else snap)
        self._post_extras(now)
        self.dirty = self.force_field or self.force_views

    # ================================================================ driving it without a thread
    def iterate(self, steps_per_snapshot: int = 100, max_steps: int | None = None, seconds: float | None = None,
                want: dict | None = None):
        """Run.iterate: train in chunks of steps_per_snapshot through the same training path as
        the app (_train_steps: divergence, stop targets), yielding a Snapshot after each chunk;
        stops at max_steps, after `seconds`, on divergence or a reached target."""
        run, start = self.run, self.clock()
        self.playing = True
        while True:
            k = steps_per_snapshot if max_steps is None else min(steps_per_snapshot, max_steps - run.step)
            if k <= 0:
                return
            done = self._train_steps(k)
            self.drain()
            yield run.snapshot(want)
            if done < k or not self.playing or (seconds is not None and self.clock() - start >= seconds):
                return

    def work(self) -> bool:
        """Do the next due job; False when nothing was due."""
        job = self.next_job(self.clock())
        if job is None:
            return False
        job.run()
        return True
