"""Compare mode's controller: several sessions under one controller (issue 10). It draws nothing.

Each run has a `CompareSlot` (its worker, the one being built, retired ones) and a column of
panels. Play / Pause / Step / Reset go to every run; a run can be changed (rebuilt next to the
old one, which goes on until the new one is ready), removed or added. The runs share the
dataset (loaded once), the training seed and the sampler seed (particles of every run start
from the same x_T), and take turns on the CPU (engines.compare.fair.Turns). The table is built
from each run's own messages: quality from its Samples snapshots, NFE and sampling time from its
particle trajectories, steps/s and steps from its snapshots, parameters from its RunInfo.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from PySide6 import QtCore

from engines import messages as M
from engines.compare import (ComparisonTable, FairShare, Row, concurrent_slots, shared_data,
                             thread_budgets)
from engines.compare.fair import Turns
from engines.compare.measure import QualityLog, nll_of, quality_of
from engines.compare.spec import MAX_RUNS, Comparison
from engines.config import ConfigError

from .runs import CompareSlot
from .views import RunColumn, run_color

log = logging.getLogger(__name__)
CLOSE_WAIT_S = 1.0
TURN_S = 0.4              # training seconds per turn: few hand-overs, fair within 0.4 s


@dataclasses.dataclass(eq=False)
class RunState:
    key: int                      # stable for the run's life (its loss curve)
    spec: object                  # engines.compare.RunSpec
    slot: CompareSlot
    column: RunColumn
    index: int = -1               # the current worker's place in the fair share (-1: none yet)
    pending_index: int = -1       # the place of the worker being built (a fresh one per build, so
                                  # a retired worker's last chunks never count for its successor)
    info: M.RunInfo | None = None
    step: int = 0
    steps_per_s: float = 0.0
    quality: float | None = None
    metrics: dict = dataclasses.field(default_factory=dict)
    nfe: float | None = None
    sample_seconds: float | None = None
    log: QualityLog = dataclasses.field(default_factory=QualityLog)
    want_sent: M.Want | None = None
    prebuilt: object = None       # an engines.run.Run to continue on the first start (a branch)


class CompareController(QtCore.QObject):
    def __init__(self, win, comp: Comparison, playing: bool = False, view: dict | None = None, data=None,
                 runs=None):
        """`runs`: per run of `comp`, an engines.run.Run (owned from now on) that its session
        continues instead of building one from the config, or None (e.g. a branch next to the
        run it came from); Reset and Change build from the config."""
        super().__init__(win)
        self.win, self.comp = win, comp
        self.view = dict(view or {})      # particles, samples: counts per run (a preset's [view])
        self.playing, self.play_seq = bool(playing), 0
        self.errors: list[tuple[str, str]] = []
        self.closing = False
        # one dataset for all runs: loaded once (or the single-run window's loaded/drawn data)
        self.data = data if data is not None else shared_data(comp)
        self.share = FairShare(0, comp.fair, slots=concurrent_slots(MAX_RUNS, reserve=1))
        self.turns = Turns(self.share, quantum=TURN_S)
        self.runs: list[RunState] = []
        self.retired: list[CompareSlot] = []
        prebuilt = list(runs or [])
        for i, spec in enumerate(comp.runs):
            self._add(spec, prebuilt[i] if i < len(prebuilt) else None)

    # ================================================================ runs
    def threads(self) -> int:
        """torch threads per run: the cores (one kept for the window) split among concurrent trainers."""
        return thread_budgets(max(len(self.runs), 1), reserve=1, slots=self.share.slots)[0]

    def _add(self, spec, prebuilt=None) -> RunState:
        key = self._keys = getattr(self, "_keys", -1) + 1
        column = RunColumn(spec.label, run_color(key))
        rs = RunState(key, spec, CompareSlot(self.turns, -1), column, prebuilt=prebuilt)
        if "particles" in self.view:
            column.particles.n.setValue(int(self.view["particles"]))
        if "samples" in self.view:
            column.samples.n.setValue(int(self.view["samples"]))
        column.particles.requestParticles.connect(lambda n, rs=rs: self.request_particles(rs, n))
        for p in column.panels():
            p.wantChanged.connect(lambda rs=rs: self.update_want(rs))
        self.runs.append(rs)
        self._start(rs)
        self.win.run_added(rs)
        return rs

    def _start(self, rs: RunState):
        cfg = rs.spec.cfg
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=self.threads()))
        want = M.Want.from_dict(rs.column.want())
        rs.want_sent = want
        if rs.pending_index != rs.index:            # a build under way is replaced: its place goes
            self.turns.remove(rs.pending_index)
        rs.pending_index = rs.slot.index = self.turns.add()
        run, rs.prebuilt = rs.prebuilt, None        # a prebuilt run is continued once, then rebuilt
        rs.slot.start(cfg, self.data, playing=self.playing, want=want, sampler=cfg.sampler,
                      sampler_options=cfg.sampler_options, play_seq=self.play_seq, run=run)
        rs.column.status.setText("building…")

    def change_run(self, rs: RunState, text: str) -> bool:
        """Rebuild one run from a new item (e.g. `ddpm:schedule=linear`); the others go on.
        A bad item is shown and nothing changes."""
        i = self.runs.index(rs)
        try:
            comp = self.comp.replace_run(i, text)
        except ConfigError as e:
            self.invalid(str(e))
            return False
        self.comp = comp
        rs.spec = comp.runs[i]
        rs.column.set_label(rs.spec.label)
        self._fresh_numbers(rs)
        self._start(rs)
        self.win.run_changed(rs)
        return True

    def add_run(self, text: str) -> RunState | None:
        try:
            comp = self.comp.with_added(text)
        except ConfigError as e:
            self.invalid(str(e))
            return None
        self.comp = comp
        return self._add(comp.runs[-1])

    def remove_run(self, rs: RunState):
        if len(self.runs) <= 1:
            self.invalid("a comparison keeps at least one run")
            return
        i = self.runs.index(rs)
        self.comp = self.comp.without(i)
        self.runs.remove(rs)
        for i in {rs.index, rs.pending_index} - {-1}:
            self.turns.remove(i)
        rs.slot.retire_all()
        self.retired.append(rs.slot)
        self.win.run_removed(rs)

    def reset_all(self):
        for rs in self.runs:
            self._fresh_numbers(rs)
            self._start(rs)

    def _fresh_numbers(self, rs: RunState):
        rs.step, rs.steps_per_s, rs.quality, rs.metrics = 0, 0.0, None, {}
        rs.nfe = rs.sample_seconds = None
        rs.log = QualityLog()

    # ================================================================ commands to all runs
    def send_all(self, cmd):
        for rs in self.runs:
            rs.slot.send(cmd)

    def set_playing(self, on: bool):
        self.playing = bool(on)
        self.play_seq += 1
        self.send_all(M.Play(self.playing, self.play_seq))
        self.win.show_playing(self.playing)

    def step_once(self, n: int = 1):
        if self.playing:
            self.set_playing(False)
        self.send_all(M.Step(n))

    def set_fair(self, mode: str):
        """Equal steps or equal training time from now on (the counts so far are kept)."""
        self.turns.set_mode(mode)
        self.comp = dataclasses.replace(self.comp, fair=mode)

    def request_particles(self, rs: RunState, n: int):
        if rs.info is not None and rs.info.samplers:
            # one sampler seed for every run: the same x_T
            rs.slot.send(M.Particles(int(n), seed=self.comp.sample_seed))

    def sample_all(self):
        for rs in self.runs:
            rs.column.particles.request()

    def update_want(self, rs: RunState):
        try:
            want = M.Want.from_dict(rs.column.want())
        except ConfigError as e:
            self.invalid(str(e))
            return
        if want != rs.want_sent:
            rs.want_sent = want
            rs.slot.send(want)

    def invalid(self, msg: str):
        self.errors.append(("Bad setting", msg))
        self.win.show_error("Bad setting", msg)

    def shutdown(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        if self.closing:
            return True
        self.closing = True
        deadline = time.perf_counter() + timeout_s
        slots = [rs.slot for rs in self.runs] + self.retired
        return all([s.close(deadline) for s in slots])

    # ================================================================ messages
    def poll(self):
        for slot in list(self.retired):
            slot.reap()
            if not slot.workers():
                self.retired.remove(slot)
        for rs in list(self.runs):
            rs.slot.reap()
            if rs.slot.building is not None:
                for msg in rs.slot.building.drain():
                    self._guarded(self._dispatch_building, rs, msg)
            if rs.slot.worker is not None:
                for msg in rs.slot.worker.drain():
                    self._guarded(self._dispatch, rs, msg)

    def _guarded(self, fn, rs, msg):
        try:
            fn(rs, msg)
        except Exception as e:            # one handler's failure never drops the other messages
            log.exception("handling %s", type(msg).__name__)
            self.errors.append((f"handling {type(msg).__name__}", str(e)))

    def _dispatch_building(self, rs: RunState, msg):
        if isinstance(msg, M.RunInfo):
            rs.slot.promote()
            if rs.index not in (-1, rs.pending_index):   # the retired worker's place leaves the share
                self.turns.remove(rs.index)
            rs.index = rs.pending_index
            self._dispatch(rs, msg)
            for later in rs.slot.worker.drain():
                self._guarded(self._dispatch, rs, later)
        elif isinstance(msg, M.Error) and msg.fatal:
            rs.slot.drop_building()
            if rs.pending_index != rs.index:          # the failed build's place leaves the share
                self.turns.remove(rs.pending_index)
            rs.pending_index = rs.slot.index = rs.index
            keep = "its previous run goes on" if rs.slot.worker is not None else "it has no run"
            self.win.show_error(f"{rs.spec.label}: {msg.title}", f"{msg.text}\n\nThe run could not start; {keep}.")
            if rs.slot.worker is None:
                rs.column.status.setText("failed")
        elif not isinstance(msg, M.Finished):
            self._dispatch(rs, msg)

    def _dispatch(self, rs: RunState, msg):
        col = rs.column
        if isinstance(msg, M.RunInfo):
            rs.info = msg
            for p in col.panels():
                p.reset(msg)
            col.status.setText(f"{msg.parameters:,} parameters")
            if not msg.trainable:         # nothing to train (an exact score): no turn to wait for
                self.turns.remove(rs.index)
            self.win.run_ready(rs)
            rs.want_sent = None
            self.update_want(rs)
            if msg.samplers:
                col.particles.request()
            return
        if isinstance(msg, M.Snapshot):
            rs.step, rs.steps_per_s = msg.step, msg.steps_per_s
            if msg.samples is not None:
                q = quality_of(msg.metrics)
                if q is not None:
                    rs.quality, rs.metrics = q, dict(msg.metrics)
                    rs.log.add(self.share.seconds[rs.index], msg.metrics.get("samples_step", msg.step), q)
            self.win.losses.add(rs.key, msg.loss_steps, msg.losses.get("loss", []))
            for p in col.panels():
                p.on_snapshot(msg)
            if msg.diverged:              # it trains no more until changed or reset
                col.status.setText("diverged")
                self.turns.remove(rs.index)
            return
        if isinstance(msg, M.Trajectory):
            rs.nfe = float(msg.nfe) if msg.nfe else float(msg.steps)
            rs.sample_seconds = float(msg.seconds)
            col.particles.on_message(msg)
            self.win.trajectory_arrived(rs)
        elif isinstance(msg, M.Progress):
            col.particles.on_message(msg)
        elif isinstance(msg, M.Error):
            self.win.show_error(f"{rs.spec.label}: {msg.title}", msg.text)
        elif isinstance(msg, M.Notice):
            self.win.statusBar().showMessage(f"{rs.spec.label}: {msg.text}", 8000)

    # ================================================================ the table
    def table(self) -> ComparisonTable:
        rows = []
        for rs in self.runs:
            secs = self.share.seconds[rs.index] if rs.index >= 0 else 0.0
            nll, unit = nll_of(rs.metrics)
            rows.append(Row.of(rs.spec.label, rs.spec.cfg.family, nll_unit=unit,
                               quality_x_iid=rs.quality, nll=nll, nfe=rs.nfe, sample_seconds=rs.sample_seconds,
                               steps_per_s=rs.steps_per_s or None, steps=rs.step, train_seconds=secs,
                               parameters=(rs.info.parameters or None) if rs.info else None,
                               seconds_to_target=rs.log.seconds_to(self.comp.target_quality)))
        return ComparisonTable(tuple(rows), self.comp.target_quality)
