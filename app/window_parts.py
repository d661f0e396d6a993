"""Small parts of the main and comparison windows that hold no window state: memory figures for
the stats line, a word-wrapping label, the live loop (heartbeat + frame timer), a lesson as rich
text, and the scroll area that keeps a large panel's dock small enough for a laptop screen.
"""
from __future__ import annotations

import html
import os
import time

from PySide6 import QtCore, QtWidgets

from .heartbeat import Heartbeat

FRAME_MS = 33                      # ~30 Hz drawing


def peak_rss_mb() -> float:
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 1024.0 if os.uname().sysname != "Darwin" else r / 2 ** 20
    except Exception:
        return float("nan")


def rss_mb() -> float:
    """Current resident memory (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


class WrapLabel(QtWidgets.QLabel):
    """A word-wrapped label that asks for the height its text needs at its actual width (a
    plain QLabel in a scroll area sizes itself for a guessed width and gets clipped)."""

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        h = self.heightForWidth(self.width())
        if h > 0 and h != self.minimumHeight():
            self.setMinimumHeight(h)

    def setText(self, text):
        super().setText(text)
        h = self.heightForWidth(self.width()) if self.width() > 50 else -1
        if h > 0:
            self.setMinimumHeight(h)


def start_live_loop(window):
    """The window's event-loop probe (window.heartbeat: lateness) and its frame timer calling
    window._frame every FRAME_MS; the same for the main and the comparison window."""
    window.heartbeat = Heartbeat(10, parent=window)
    window.heartbeat.start()
    window.frame_timer = QtCore.QTimer(window)
    window.frame_timer.setInterval(FRAME_MS)
    window.frame_timer.timeout.connect(window._frame)
    window.frame_timer.start()
    window._t_open = time.perf_counter()


def lesson_html(title: str, lesson: str) -> str:
    """A preset's title and lesson as rich text: formulas like <v h^T> are escaped, hard line
    breaks of the TOML text are joined, blank lines start paragraphs."""
    paras = [" ".join(l.strip() for l in p.splitlines()) for p in lesson.split("\n\n") if p.strip()]
    body = "<br><br>".join(html.escape(p) for p in paras)
    return f"<b>{html.escape(title)}</b>" + (f"<br>{body}" if body else "")


# a dock never asks for more than this: a panel that needs more scrolls inside its dock, so the
# window still fits a 1366x768 screen beside the other panels (see fit_on_laptop)
DOCK_MAX_MIN = QtCore.QSize(420, 260)


def fit_on_laptop(panel: QtWidgets.QWidget) -> QtWidgets.QWidget:
    """The panel itself, or, when its minimum size exceeds DOCK_MAX_MIN, the panel in a scroll
    area (the dock's minimum is then the cap, and the panel keeps its own size inside)."""
    need = panel.minimumSizeHint()
    if need.width() <= DOCK_MAX_MIN.width() and need.height() <= DOCK_MAX_MIN.height():
        return panel
    scroll = QtWidgets.QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    scroll.setWidget(panel)
    scroll.setMinimumSize(min(need.width(), DOCK_MAX_MIN.width()), min(need.height(), DOCK_MAX_MIN.height()))
    return scroll
