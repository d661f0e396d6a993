"""Particles: the chosen sampler running on the current model, particle by particle.

The worker runs Run.sample(n, sampler, options, callback=...) and records the trajectory
(every callback's x, decimated to at most a few hundred frames); long runs also stream the
latest x so the particles move while the sampler is still working. The panel plays the
trajectory back, a scrubber replays any moment of it, and optional trails show the paths of
a subset of particles. With "loop" on, a new trajectory is asked for from the latest model
whenever a playback has ended, so the animation follows training.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines import messages as M
from engines.families.base import time_display_offset

from .. import theme
from ..flow_layout import FlowLayout
from .base import Panel, Points, centered_message, info_text, plot_widget, show_image_grid, set_range_now

TRAIL_PARTICLES = 300
TRAIL_FRAMES = 40


class ParticlesPanel(Panel):
    title = "Particles"
    requestParticles = QtCore.Signal(int)
    frameShown = QtCore.Signal(object)      # dict(i, t, sigma) of the frame on screen

    def __init__(self, parent=None):
        super().__init__(parent)
        self.traj = None
        self.frame = -1
        self.play_t0 = None
        self.hold_until = None
        self.waiting = False
        self.live = None
        self.last_step = -1
        self.model_step = 0
        self.sampler_name = ""
        self._last_label = 0.0

        self.plot = plot_widget("Sampler particles", "x₁", "x₂", aspect=True)
        self.pi = self.plot.getPlotItem()
        self.data = Points(theme.DATA, alpha=70, size=2, static=True)
        self.data.setZValue(-5)
        self.pi.addItem(self.data)
        self.trails = pg.PlotCurveItem(pen=pg.mkPen(*theme.SAMPLES, 60), connect="finite", skipFiniteCheck=True)
        self.pi.addItem(self.trails)
        self.points = Points(theme.SAMPLES, alpha=200, size=3)
        self.pi.addItem(self.points)
        self.img = pg.ImageItem()
        self.pi.addItem(self.img)
        self.img.setVisible(False)
        leg = self.legend = theme.legend(self.pi, (-5, -5))
        self._leg_data = pg.ScatterPlotItem(symbol="s", size=7, pen=None, brush=pg.mkBrush(*theme.DATA, 200))
        self._leg_part = pg.ScatterPlotItem(symbol="s", size=7, pen=None, brush=pg.mkBrush(*theme.SAMPLES, 230))
        leg.addItem(self._leg_data, "data")
        leg.addItem(self._leg_part, "particles")
        self.text = info_text(self.pi)
        self.empty = centered_message(self.pi)

        self.sample_btn = QtWidgets.QPushButton("Sample")
        self.sample_btn.setToolTip("Run the sampler now on the current model (EMA weights)")
        self.sample_btn.clicked.connect(self.request)
        self.n = QtWidgets.QSpinBox()
        self.n.setRange(1, 200000)
        self.n.setValue(1000)
        self.n.setSingleStep(500)
        self.n.setToolTip("Number of particles")
        self.loop = QtWidgets.QCheckBox("loop")
        self.loop.setChecked(True)
        self.loop.setToolTip("Sample again with the latest model whenever a playback ends")
        self.trail_box = QtWidgets.QCheckBox("trails")
        self.trail_box.setToolTip(f"Paths of {TRAIL_PARTICLES} particles over the last {TRAIL_FRAMES} recorded steps")
        self.trail_box.toggled.connect(lambda *a: self._show(self.frame, force=True))
        self.play_btn = QtWidgets.QToolButton()
        self.play_btn.setText("▶")
        self.play_btn.setToolTip("Replay the last trajectory")
        self.play_btn.clicked.connect(self.replay)
        self.scrub = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.scrub.setToolTip("Time scrubber: drag to any step of the last trajectory")
        self.scrub.setRange(0, 0)
        self.scrub.sliderMoved.connect(self._scrubbed)
        self.duration = QtWidgets.QComboBox()
        for s in ("1 s", "2.5 s", "5 s", "10 s"):
            self.duration.addItem(s, float(s.split()[0]))
        self.duration.setCurrentIndex(1)
        self.duration.setToolTip("How long one playback of the trajectory lasts")

        row = FlowLayout()                         # wraps on a narrow panel (fits a 1366 px screen)
        row.addWidget(self.sample_btn)
        row.addWidget(self.n)
        row.addWidget(self.loop)
        row.addWidget(self.trail_box)
        row.addWidget(self.duration)
        row2 = QtWidgets.QHBoxLayout()
        row2.addWidget(self.play_btn)
        row2.addWidget(self.scrub, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(row)
        lay.addWidget(self.plot, 1)
        lay.addLayout(row2)
        self.empty.setText("Waiting for the model…")

    # ------------------------------------------------------------ state
    def reset(self, info):
        super().reset(info)
        self.traj, self.frame, self.live = None, -1, None
        self.play_t0 = self.hold_until = None
        self.waiting = False
        self.points.setData(None)
        self.trails.setData([], [])
        self.scrub.setRange(0, 0)
        self.text.setText("")
        img = bool(info.is_image)
        self.img.setVisible(img)
        self.data.setVisible(not img)
        self.pi.setAspectLocked(True)
        for ax in ("left", "bottom"):
            self.pi.showAxis(ax, not img)
        self.legend.setVisible(not img)
        self.trail_box.setEnabled(not img)
        if img:
            self.data.setData(None)
        else:
            self.data.setData(info.preview)
            b = info.bounds
            if b:
                set_range_now(self.pi, xRange=b[:2], yRange=b[2:], padding=0)
        self.empty.setText("Sampling…" if info.samplers else f"{info.title} has no sampler to animate")
        self.empty.setVisible(True)

    def set_image_mode(self, img: bool):
        """Before a run starts: image runs animate a 6 x 6 grid, point runs ~1000 particles."""
        if img != getattr(self, "_img_mode", False):
            self._img_mode = img
            if img:
                self._points_n = self.n.value()
                self.n.setValue(36)
            else:
                self.n.setValue(getattr(self, "_points_n", 1000))

    def set_sampler_name(self, name: str):
        self.sampler_name = name

    def request(self):
        if not self.info:
            return
        self.waiting = True
        self.hold_until = None
        self.requestParticles.emit(int(self.n.value()))

    def on_snapshot(self, snap):
        self.model_step = snap.step

    def on_message(self, msg):
        """A Trajectory (a recorded particle run) or a Progress of a running one."""
        if isinstance(msg, M.Trajectory):
            self.waiting = False
            self.live = None
            self.traj = msg
            self.frame = -1                   # a new trajectory: frame 0 must be drawn anew
            self.last_step = msg.step
            self.scrub.setRange(0, len(msg.frames) - 1)
            self.replay()
        elif isinstance(msg, M.Progress) and msg.job == "particles":
            if msg.done:                      # interrupted: a new request follows when it is due
                self.live = None
                return
            self.live = msg
            self.dirty = True

    def replay(self):
        if self.traj is None:
            return
        self.play_t0 = time.perf_counter()
        self.hold_until = None
        self.dirty = True

    def _scrubbed(self, v):
        self.play_t0 = None
        self.hold_until = None
        self._show(int(v))

    # ------------------------------------------------------------ drawing
    def draw(self) -> bool:
        # animation is time-driven: mark dirty while a playback is running
        if self.play_t0 is not None or self.hold_until is not None:
            self.dirty = True
        return super().draw()

    def _draw(self):
        now = time.perf_counter()
        if self.live is not None and self.waiting and self.play_t0 is None:
            p = self.live
            self._set_points(p.x)
            tot = f"/{p.total}" if p.total else ""
            self.text.setText(f"{self.sampler_name or 'sampler'}: running, step {p.i}{tot}"
                              f"  ({p.elapsed:.1f} s)")
            self.empty.setVisible(False)
            self.frameShown.emit(dict(i=p.i, t=None if math.isnan(p.t) else p.t,
                                      sigma=None if math.isnan(p.sigma) else p.sigma))
            return
        if self.traj is None:
            return
        F = len(self.traj.frames)
        if self.play_t0 is not None:
            dur = float(self.duration.currentData() or 2.5)
            f = int((now - self.play_t0) / dur * F)
            if f >= F - 1:
                f = F - 1
                self.play_t0 = None
                self.hold_until = now + 0.8
            self._show(f)
        elif self.hold_until is not None and now >= self.hold_until:
            self.hold_until = None
            if self.loop.isChecked() and not self.waiting and self.model_step != self.last_step:
                self.request()

    def _set_points(self, x):
        x = np.asarray(x)
        if x.ndim >= 3:       # images (n, C, H, W)
            show_image_grid(self.img, x[:36])
            set_range_now(self.pi, xRange=(0, self.img.width()), yRange=(0, self.img.height()), padding=0.02)
        else:
            self.points.setData(x)

    def _show(self, f, force=False):
        if self.traj is None or f < 0:
            return
        F = len(self.traj.frames)
        f = min(f, F - 1)
        if f == self.frame and not force:
            return
        self.frame = f
        fr = self.traj.frames[f]
        self._set_points(fr)
        self.empty.setVisible(False)
        if self.trail_box.isChecked() and fr.ndim == 2:
            k0 = max(0, f - TRAIL_FRAMES)
            seg = self.traj.frames[k0:f + 1, :TRAIL_PARTICLES, :2]          # (K, P, 2)
            K, P = seg.shape[:2]
            xs = np.full((P, K + 1), np.nan)
            ys = np.full((P, K + 1), np.nan)
            xs[:, :K] = seg[:, :, 0].T
            ys[:, :K] = seg[:, :, 1].T
            self.trails.setData(xs.ravel(), ys.ravel())
        else:
            self.trails.setData([], [])
        tr = self.traj
        now = time.perf_counter()
        if now - self._last_label < 0.12 and 0 < f < len(tr.frames) - 1 and not force:
            return                    # the label, the scrubber and the schedule marker at ~8 Hz are plenty
        self._last_label = now
        if self.scrub.value() != f:   # a styled slider's repaint costs ~1.3 ms: not at every frame
            self.scrub.blockSignals(True)
            self.scrub.setValue(f)
            self.scrub.blockSignals(False)
        t, s, i = tr.t[f], tr.sigma[f], int(tr.i[f])
        t = t + time_display_offset(getattr(self.info, "level", None))   # the papers' t (1..T on a discrete chain)
        parts = [f"{tr.sampler or self.sampler_name or 'sampler'}: step {i + 1}/{tr.steps}"]
        if not math.isnan(t):
            parts.append(f"t = {t:.3g}")
        head = "   ".join(parts)
        if not math.isnan(s) and s > 0:       # VAE, GAN, flows, EBM chains: no noise level to state
            head += "\n" + sigma_label(getattr(self.info, "level", None) or {}, s)   # a line of its own: not clipped
        sub = f"{len(fr)} particles · model of step {tr.step}"
        bad = len(fr) - self.points.count() if fr.ndim == 2 else 0
        if bad:                       # non-finite particles are not drawn: say how many
            sub += f" · {bad} diverged (not finite)"
        if tr.mode_shares is not None and f == len(tr.frames) - 1:
            sub += "\n" + shares_text(tr.mode_shares, tr.mode_weights)
        self.text.setText(head + "\n" + sub)
        self.frameShown.emit(dict(i=i, t=None if math.isnan(t) else t, sigma=None if math.isnan(s) else s))

    def particle_count(self) -> int:
        return self.points.count()


def sigma_label(level_info: dict, s: float) -> str:
    """The sampler's noise level, defined. Families indexed by a time t report the noise-to-signal
    ratio of x_t = √ᾱ x₀ + √(1−ᾱ) ε, σ = √((1−ᾱ)/ᾱ) (x_t/√ᾱ = x₀ + σ ε: the VE-equivalent level,
    Karras et al. 2022 Table 1, VP: s = √ᾱ, σ = √(1/ᾱ − 1)); NCSN-like families their own σ."""
    if level_info.get("kind") == "t":
        return f"σ = √((1−ᾱ)/ᾱ) = {s:.3g}"
    return f"σ = {s:.3g}"


def shares_text(shares, weights) -> str:
    """The final particles' split over the mixture's modes, beside the split the data has."""
    got = " / ".join(f"{x:.2f}" for x in shares)
    want = " / ".join(f"{w:.2f}" for w in weights)
    return f"particles per mode: {got}  (data: {want})"
