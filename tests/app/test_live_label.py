"""Text that changes every frame must not re-lay out the window (issue 9: event-loop lateness).

A plain QLabel posts a LayoutRequest to its parent on every setText; in the status bar that
re-laid out the main window and repainted ~0.5 M pixels 30 times a second while training."""
from PySide6 import QtCore, QtWidgets

from app.live_label import LiveLabel


class LayoutRequests(QtCore.QObject):
    def __init__(self):
        super().__init__()
        self.seen = []

    def eventFilter(self, obj, ev):
        if ev.type() == QtCore.QEvent.Type.LayoutRequest:
            self.seen.append(obj)
        return False


def _count_layout_requests(app, parent, label, texts):
    spy = LayoutRequests()
    app.processEvents()
    app.installEventFilter(spy)
    try:
        for t in texts:
            label.setText(t)
            app.processEvents()
    finally:
        app.removeEventFilter(spy)
    return [o for o in spy.seen if o is parent or o is parent.window()]


def test_a_live_label_changes_text_without_a_layout_request(themed_app):
    texts = [f"step {k:,}" for k in (1, 12, 1234, 123456, 12345678)]
    win = QtWidgets.QMainWindow()
    plain, live = QtWidgets.QLabel("step 0"), LiveLabel("step 0", widest="step 999,999,999")
    win.statusBar().addPermanentWidget(plain)
    win.statusBar().addPermanentWidget(live)
    win.show()
    try:
        # the premise: a plain label does re-lay out its parent (else this test proves nothing)
        assert _count_layout_requests(themed_app, win.statusBar(), plain, texts)
        assert _count_layout_requests(themed_app, win.statusBar(), live, texts) == []
        assert live.text() == texts[-1]
        # sized for the widest text: it fits whole
        assert live.fontMetrics().horizontalAdvance("step 999,999,999") <= live.contentsRect().width()
    finally:
        win.close()
        win.deleteLater()


def test_the_windows_live_texts_are_live_labels():
    from app.main_window import MainWindow
    win = MainWindow()
    try:
        assert isinstance(win.step_label, LiveLabel) and isinstance(win.speed_label, LiveLabel)
        # every speed's text fits the label sized for the widest one
        from app.controller import SPEEDS
        for i in range(len(SPEEDS)):
            win.speed.setValue(i)
            fm = win.speed_label.fontMetrics()
            assert fm.horizontalAdvance(win.speed_label.text()) <= win.speed_label.contentsRect().width()
    finally:
        win.shutdown()
        win.close()
        win.deleteLater()


def test_the_particle_scrubber_follows_playback_at_label_rate_and_ends_on_the_last_frame(themed_app):
    """The styled scrubber's repaint cost ~1.3 ms: playing 60 frames in a burst moves it a few
    times, not 60; the last frame is always shown on it, and dragging it still shows any frame."""
    import numpy as np

    from engines import messages as M
    from app.panels.particles import ParticlesPanel

    panel = ParticlesPanel()
    F = 60
    frames = np.random.default_rng(0).standard_normal((F, 50, 2)).astype(np.float32)
    panel.traj = M.Trajectory(frames=frames, i=np.arange(F, dtype=float), t=np.linspace(F, 1, F),
                              sigma=np.full(F, np.nan), nfe=F, steps=F, seconds=1.0, step=10, sampler="ddpm")
    panel.scrub.setRange(0, F - 1)
    moves = []
    set_value = panel.scrub.setValue
    panel.scrub.setValue = lambda v: (moves.append(v), set_value(v))     # signals are blocked there
    for f in range(F):
        panel._show(f)
    assert panel.frame == F - 1 and panel.scrub.value() == F - 1
    assert len(moves) <= 5, moves
    np.testing.assert_allclose(panel.points._xy if panel.points._xy is not None else
                               np.asarray([[p.x(), p.y()] for p in panel.points._poly]), frames[-1], rtol=1e-6)
    panel._scrubbed(7)                      # the user drags: that frame is drawn
    assert panel.frame == 7
    panel.deleteLater()
