"""A label for text that changes many times a second (a step counter, a rate).

QLabel.setText calls updateGeometry(), which posts a LayoutRequest to the parent: in the status
bar that re-laid out the status bar *and the main window* and repainted a bounding region of
~0.5 M pixels, 1.7-3.4 ms of GUI-thread time per new step number, ~30 times a second (measured
with an event filter counting Paint and LayoutRequest events while training). Qt skips the
layout request for a widget whose minimum and maximum sizes are equal, so a LiveLabel is sized
once, for the widest text it will show, and then only repaints its own pixels.
"""
from __future__ import annotations

from PySide6 import QtWidgets


class LiveLabel(QtWidgets.QLabel):
    def __init__(self, text: str = "", widest: str = "", parent=None):
        super().__init__(text, parent)
        fm = self.fontMetrics()
        m = self.contentsMargins()
        w = max(fm.horizontalAdvance(widest or text), fm.horizontalAdvance(text)) + m.left() + m.right() + 8
        h = max(self.sizeHint().height(), fm.height() + m.top() + m.bottom())
        self.setFixedSize(w, h)

    def setText(self, text: str):
        if text != self.text():
            super().setText(text)
