"""Presentation mode (F11 or `--present`): the window as a projector slide.

Entering it: full screen, the high-contrast light theme with large fonts and thick lines, the
lesson's caption large, only the panels the lesson names (`panels = [...]` in its TOML), the
controls it hides (`hide = [...]`, as TensorFlow Playground's `_hide`) hidden, and the Stats
panel's developer figures (frames/s, event-loop lateness, memory) hidden. PageDown / Right
arrow (what a presenter's clicker sends) steps training, PageUp / Left arrow plays or pauses.
Leaving it restores everything exactly as it was (layout, theme, zoom, hidden widgets).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from PySide6 import QtCore, QtGui, QtWidgets


# Stats rows a class does not need: they describe the machine, not the model
DEVELOPER_STATS = ("fps", "lateness", "rss", "device")
# lesson `hide` names -> the control group's title in the window
GROUP_TITLES = {"dataset": "Dataset", "family": "Model family", "sampler": "Sampler", "training": "Training"}
CAPTION_SCALE = 1.25            # the lesson caption, on top of the theme's larger fonts
TOP_SHARE = 0.64                # of the height, for the pictures above the loss curve
SIDE_SHARE = 0.22               # of the width, for the lesson and the controls left visible
STEP_KEYS = (QtCore.Qt.Key.Key_PageDown, QtCore.Qt.Key.Key_Right)
PLAY_KEYS = (QtCore.Qt.Key.Key_PageUp, QtCore.Qt.Key.Key_Left)


@dataclass
class _Saved:
    """What entering changed, to put back on leaving."""
    state: QtCore.QByteArray
    geometry: QtCore.QByteArray
    theme_choice: str
    zoom: float
    hidden: list = field(default_factory=list)       # widgets we hid (they were visible)
    caption_font: QtGui.QFont | None = None
    was_full_screen: bool = False


def control_widgets(win, name: str) -> list[QtWidgets.QWidget]:
    """The widgets a lesson's `hide` name refers to: a whole group box, or one field's editor
    and label ('options.T' -> the family form, 'train.lr', 'sampler.steps')."""
    if name in GROUP_TITLES:
        title = GROUP_TITLES[name]
        return [b for b in win.findChildren(QtWidgets.QGroupBox) if b.title() == title]
    group, _, key = name.partition(".")
    owner = {"options": getattr(win, "family", None), "train": getattr(win, "train", None),
             "sampler": getattr(win, "sampler", None)}.get(group)
    form = getattr(owner, "form", None)
    if form is None or key not in getattr(form, "editors", {}):
        return []
    return [form.editors[key], form.labels[key]]


class Presentation(QtCore.QObject):
    """Owned by the window's classroom layer; `toggle()` is bound to F11."""
    changed = QtCore.Signal(bool)

    def __init__(self, win, apply_theme, parent=None):
        """apply_theme(choice, zoom) switches the window's theme and restyles what is built."""
        super().__init__(parent or win)
        self.win = win
        self.apply_theme = apply_theme
        self.active = False
        self._saved: _Saved | None = None
        self._keys: list[QtGui.QShortcut] = []
        for key in STEP_KEYS + PLAY_KEYS:
            sc = QtGui.QShortcut(QtGui.QKeySequence(key), win)
            sc.setContext(QtCore.Qt.ShortcutContext.ApplicationShortcut)
            sc.setEnabled(False)
            sc.activated.connect(self._step if key in STEP_KEYS else self._play)
            self._keys.append(sc)

    # ---------------------------------------------------------------- keys
    def _step(self):
        self.win.step_once(1)

    def _play(self):
        self.win.set_playing(not self.win.playing)

    # ---------------------------------------------------------------- what the lesson asks
    def lesson(self) -> dict:
        return dict(getattr(self.win, "preset_info", None) or {})

    def shown_panels(self) -> list[str]:
        """Registry keys of the panels shown: the lesson's list, else every panel now visible."""
        keys = [k for k in self.lesson().get("panels", ()) if k in self.win.docks]
        return keys or [k for k, d in self.win.docks.items() if d.isVisible()]

    # ---------------------------------------------------------------- enter / leave
    def toggle(self, choice_now: str = "dark", zoom_now: float = 1.0):
        if self.active:
            self.leave()
        else:
            self.enter(choice_now, zoom_now)

    def enter(self, choice_now: str = "dark", zoom_now: float = 1.0):
        if self.active:
            return
        win = self.win
        saved = _Saved(win.saveState(), win.saveGeometry(), choice_now, zoom_now,
                       was_full_screen=win.isFullScreen())
        hide: list[QtWidgets.QWidget] = []
        shown = set(self.shown_panels())
        hide += [d for k, d in win.docks.items() if k not in shown and d.isVisible()]
        for name in self.lesson().get("hide", ()):
            hide += [w for w in control_widgets(win, name) if w.isVisible()]
        stats = win.panels.get("stats")
        if stats is not None:
            for key in DEVELOPER_STATS:
                lab = stats.labels.get(key)
                if lab is not None:
                    hide += [w for w in (lab, _buddy(lab)) if w is not None and w.isVisible()]
        for w in hide:
            w.hide()
        saved.hidden = hide
        self.apply_theme("contrast", zoom_now)
        caption = getattr(win, "lesson", None)
        if caption is not None:
            saved.caption_font = QtGui.QFont(caption.font())
            f = QtGui.QFont(caption.font())
            f.setPointSizeF(QtWidgets.QApplication.font().pointSizeF() * CAPTION_SCALE)
            caption.setFont(f)
        self._saved = saved
        self.active = True
        for sc in self._keys:
            sc.setEnabled(True)
        win.showFullScreen()
        QtCore.QTimer.singleShot(0, lambda: self._arrange(shown))
        self.changed.emit(True)

    def _arrange(self, shown: set):
        """Pictures large, the loss curve a strip below them, the lesson a column on the left."""
        win = self.win
        if not self.active:
            return
        H, V = QtCore.Qt.Orientation.Horizontal, QtCore.Qt.Orientation.Vertical
        side = getattr(win, "controls_dock", None)
        if side is not None and side.isVisible():
            win.resizeDocks([side], [int(win.width() * SIDE_SHARE)], H)
        top = [k for k in ("field", "particles", "samples") if k in shown]
        if top and "losses" in shown:
            h = win.height()
            win.resizeDocks([win.docks[top[0]], win.docks["losses"]], [int(h * TOP_SHARE), int(h * (1 - TOP_SHARE))], V)

    def leave(self):
        if not self.active:
            return
        win, saved = self.win, self._saved
        self.active = False
        for sc in self._keys:
            sc.setEnabled(False)
        if not saved.was_full_screen:
            win.showNormal()
        self.apply_theme(saved.theme_choice, saved.zoom)
        caption = getattr(win, "lesson", None)
        if caption is not None and saved.caption_font is not None:
            caption.setFont(saved.caption_font)
        for w in saved.hidden:
            w.show()
        win.restoreState(saved.state)
        win.restoreGeometry(saved.geometry)
        self._saved = None
        self.changed.emit(False)


def _buddy(field_widget: QtWidgets.QWidget) -> QtWidgets.QWidget | None:
    """The label beside a field in its QFormLayout."""
    parent = field_widget.parentWidget()
    if parent is None:
        return None
    for form in parent.findChildren(QtWidgets.QFormLayout):
        label = form.labelForField(field_widget)
        if label is not None:
            return label
    lay = parent.layout()
    if isinstance(lay, QtWidgets.QFormLayout):
        return lay.labelForField(field_widget)
    return None
