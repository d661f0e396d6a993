"""The controller's inbox: every frame it drains the sessions' messages and routes each one to
what shows it (the window, the registry's panels, the controller's own state). A run being built
speaks here too: its RunInfo makes it current, a fatal Error drops it. One handler failing never
drops the other messages (shown once, logged).
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace

from PySide6 import QtCore

from engines import messages as M

from .panels import registry

log = logging.getLogger(__name__)


class Inbox:
    """Mixed into the Controller (app/controller.py): uses its win, slot, slots, playing, play_seq,
    cfg, pending_cfg, pending_level, resume_play, dataset, want_sent, _reported, _play_time,
    _play_since, info, worker, set_playing(), open_branch(), update_want() and _note_play()."""

    def poll(self):
        """Called on every frame: join retired runs, hand every new message to its handler."""
        for s in self.slots:
            s.reap()
        slot = self.slot
        if slot.building is not None:
            for msg in slot.building.drain():
                self._guarded(self.dispatch_building, msg)
        if slot.worker is not None:
            for msg in slot.worker.drain():
                self._guarded(self.dispatch, msg)

    def _guarded(self, fn, msg):
        """One message's handler failing never drops the others: shown once, logged."""
        try:
            fn(msg)
        except Exception as e:
            self.report(f"handling {type(msg).__name__}", e)

    def report(self, where: str, e: Exception):
        key = (where, type(e).__name__, str(e))
        log.exception("%s failed", where)
        if key not in self._reported:
            self._reported.add(key)
            self.win.show_error(f"Drawing failed ({where})", f"{type(e).__name__}: {e}")

    def dispatch_building(self, msg):
        """Messages of the run being built: its RunInfo makes it current; a failure drops it."""
        slot = self.slot
        if isinstance(msg, M.RunInfo):
            slot.promote()
            self.cfg = getattr(self, "pending_cfg", self.cfg)
            self.dispatch(msg)
            for later in slot.worker.drain():        # anything it said after RunInfo
                self._guarded(self.dispatch, later)
        elif isinstance(msg, M.Error) and msg.fatal:
            slot.drop_building()
            keep = "the current run goes on" if slot.worker is not None else "no run is active"
            self.win.show_error(msg.title, f"{msg.text}\n\nThe new run could not start; {keep}.")
            self.sync_controls_to_run()
        elif not isinstance(msg, M.Finished):
            self.dispatch(msg)

    def sync_controls_to_run(self):
        """After a failed start: the toolbar tells the truth about the run that goes on."""
        self.win.show_playing(self.playing and self.worker is not None)
        if self.worker is None:
            self.playing = False

    def dispatch(self, msg):
        w, slot = self.win, self.slot
        if isinstance(msg, M.Snapshot):
            slot.step, slot.steps_per_s, slot.lr = msg.step, msg.steps_per_s, msg.lr
            slot.diverged_msg = msg.message if msg.diverged else ""   # the session reported it (Error)
        elif isinstance(msg, M.RunInfo):
            self._to_panels(msg)             # the panels first: _ready sets their levels
            self._ready(msg)
            return
        elif isinstance(msg, M.Progress):
            w.show_progress(msg)
        elif isinstance(msg, M.Trajectory):
            w.show_progress(None)
            w.stats.set_values(nfe=(f"{msg.nfe:,} ({msg.steps} steps)" if msg.nfe else f"- ({msg.steps} steps)"),
                               sample_time=f"{msg.seconds:.2f} s")
        elif isinstance(msg, M.State):
            # the session paused itself (diverged, target reached, an error); ignore a notice
            # that predates the user's latest Play/Pause
            if msg.seq >= self.play_seq and msg.playing != self.playing:
                self.set_playing(msg.playing)
        elif isinstance(msg, M.Notice):
            w.statusBar().showMessage(msg.text, 10000)
        elif isinstance(msg, M.Error):
            w.show_error(msg.title, msg.text)
        elif isinstance(msg, M.Branched):
            self.open_branch(msg)
            return
        elif isinstance(msg, M.ViewsAvailable):
            # the family's pictures exist once training has started (an EBM's chains): bring them to the front
            if msg.available and slot.info is not None and not slot.info.has_views:
                slot.info = replace(slot.info, has_views=True)
                w.docks["views"].raise_()
        self._to_panels(msg)

    def _to_panels(self, msg):
        for spec in registry.PANELS:
            if isinstance(msg, spec.consumes):
                try:
                    registry.deliver(self.win.panels[spec.key], msg)
                except Exception as e:
                    self.report(f"{spec.key} panel, {type(msg).__name__}", e)

    def _ready(self, info: M.RunInfo):
        w, slot = self.win, self.slot
        slot.info, slot.step, slot.diverged_msg = info, 0, ""
        self._play_time, self._play_since = 0.0, None
        if self.pending_level is not None and info.level:
            w.field.level.set_value(self.pending_level)
            self.pending_level = None
        if not info.trainable:
            # nothing to train: pause, and play again when the user moves on to a family that trains
            self.resume_play = self.resume_play or self.playing
            self.set_playing(False)
        elif self.resume_play:
            self.resume_play = False
            self.set_playing(True)
        w.set_trainable(info.trainable)
        self._note_play(self.playing)
        # a family with pictures of its own brings its panel to the front of the tab; one
        # without a noise schedule shows its views panel (which says what it is waiting for)
        has_schedule = any(k != "x_label" for k in (info.schedule or {}))
        (w.docks["views"] if info.has_views or not has_schedule else w.docks["schedule"]).raise_()
        QtCore.QTimer.singleShot(0, self.after_ready)
        w.statusBar().showMessage(
            f"{info.title} on {os.path.basename(str(self.dataset))}: {info.n_data:,} examples, "
            f"{info.parameters:,} parameters, {info.device}" + ("" if self.playing else " — press Play (Space)"),
            6000)

    def after_ready(self):
        """Once the panels have the new run: its wants, and a first particle run."""
        w = self.win
        self.want_sent = None
        self.update_want()
        if w.panel_visible("particles") and self.info is not None and self.info.samplers:
            w.particles.request()
