"""What the window remembers between starts: geometry, dock layout, theme, zoom, last lesson,
last folder. A thin, typed wrapper over QSettings.

The settings file is injectable: the real app uses the platform's place (QSettings with the
organisation/application name), tests pass a temporary .ini path, and
`GENPLAYGROUND_SETTINGS=PATH` points a session at another file. A window built without a
Settings object remembers nothing (the test suite's windows stay independent of each other).
"""
from __future__ import annotations

import os

from PySide6 import QtCore, QtGui, QtWidgets

ORGANISATION = APPLICATION = "genplayground"
THEMES = ("system", "dark", "light", "contrast")
DEFAULT_SIZE = (1600, 1000)
SCREEN_FRACTION = 0.92          # a first window leaves a margin for the panel and the task bar


class Settings:
    def __init__(self, path: str | None = None):
        path = path or os.environ.get("GENPLAYGROUND_SETTINGS") or None
        if path:
            self._q = QtCore.QSettings(path, QtCore.QSettings.Format.IniFormat)
        else:
            self._q = QtCore.QSettings(ORGANISATION, APPLICATION)

    @property
    def path(self) -> str:
        return self._q.fileName()

    def sync(self):
        self._q.sync()

    # ---- plain values
    def _str(self, key: str, default: str = "") -> str:
        v = self._q.value(key, default)
        return v if isinstance(v, str) else default

    @property
    def theme(self) -> str:
        v = self._str("view/theme", "system")
        return v if v in THEMES else "system"

    @theme.setter
    def theme(self, name: str):
        if name not in THEMES:
            raise ValueError(f"theme {name!r}: choose one of {', '.join(THEMES)}")
        self._q.setValue("view/theme", name)

    @property
    def zoom(self) -> float:
        try:
            z = float(self._q.value("view/zoom", 1.0))
        except (TypeError, ValueError):
            return 1.0
        return min(max(z, 0.5), 3.0)

    @zoom.setter
    def zoom(self, z: float):
        self._q.setValue("view/zoom", float(z))

    @property
    def last_lesson(self) -> str:
        return self._str("session/last_lesson")

    @last_lesson.setter
    def last_lesson(self, name: str):
        self._q.setValue("session/last_lesson", name or "")

    @property
    def last_folder(self) -> str:
        v = self._str("session/last_folder")
        return v if v and os.path.isdir(v) else os.path.expanduser("~")

    @last_folder.setter
    def last_folder(self, path: str):
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        self._q.setValue("session/last_folder", folder)

    # ---- the window
    def save_window(self, win: QtWidgets.QMainWindow):
        """Geometry (position, size, maximized) and the docks' layout."""
        self._q.setValue("window/geometry", win.saveGeometry())
        self._q.setValue("window/state", win.saveState())
        self._q.sync()

    def restore_window(self, win: QtWidgets.QMainWindow) -> bool:
        """Put the window back where it was; on a first start (or when the saved place is off
        every screen now) fit it to the available screen. True when a saved layout was used."""
        geometry, state = self._q.value("window/geometry"), self._q.value("window/state")
        restored = False
        if isinstance(geometry, QtCore.QByteArray) and not geometry.isEmpty():
            restored = win.restoreGeometry(geometry) and on_some_screen(win.frameGeometry())
        if not restored:
            fit_to_screen(win)
        if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
            win.restoreState(state)
        return restored


def on_some_screen(rect: QtCore.QRect) -> bool:
    """At least a 100x60 corner of the title bar area is on a connected screen."""
    probe = QtCore.QRect(rect.topLeft(), QtCore.QSize(min(rect.width(), 100), 60))
    return any(s.availableGeometry().intersects(probe) for s in QtGui.QGuiApplication.screens())


def fit_to_screen(win: QtWidgets.QWidget, screen: QtGui.QScreen | None = None,
                  size: tuple[int, int] = DEFAULT_SIZE):
    """Resize to `size`, shrunk to SCREEN_FRACTION of the screen's available area, and centre."""
    screen = screen or win.screen() or QtGui.QGuiApplication.primaryScreen()
    if screen is None:
        win.resize(*size)
        return
    avail = screen.availableGeometry()
    w = min(size[0], int(avail.width() * SCREEN_FRACTION))
    h = min(size[1], int(avail.height() * SCREEN_FRACTION))
    win.resize(max(w, win.minimumWidth()), max(h, win.minimumHeight()))
    frame = win.frameGeometry()
    frame.moveCenter(avail.center())
    win.move(frame.topLeft())
