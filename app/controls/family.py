"""Family picker with the family's hyper-parameter form, and the sampler picker with its own.

Families are discovered from engines.families.names(); one that fails to import (still being
written, a missing dependency) is listed greyed out with the error as its tooltip, and the
rest keep working. The app never names a family in code.
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from engines import families
from engines.config import ConfigError, build

from .form import ConfigForm, combo


def discover() -> tuple[dict, dict]:
    """({name: class} of the families that import, {name: error message} of those that don't)."""
    ok, bad = {}, {}
    for name in families.names():
        try:
            ok[name] = families.get(name)
        except Exception as e:  # ImportError, AttributeError, a SyntaxError in a half-written file...
            bad[name] = f"{type(e).__name__}: {e}"
    return ok, bad


class FamilyPicker(QtWidgets.QWidget):
    """familyChanged(name) when another family is chosen; optionsChanged(name, value) when a
    hyper-parameter is committed and the options still validate."""
    familyChanged = QtCore.Signal(str)
    optionsChanged = QtCore.Signal(str, object)
    invalid = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.classes, self.broken = discover()
        self.combo = combo()
        model = self.combo.model()
        for name in families.names():
            cls = self.classes.get(name)
            label = f"{cls.title or name}" if cls else f"{name} (unavailable)"
            self.combo.addItem(label, name)
            item = model.item(self.combo.count() - 1)
            if cls is None:
                item.setEnabled(False)
                item.setToolTip(self.broken[name])
            else:
                item.setToolTip(cls.summary or name)
        self.combo.activated.connect(self._picked)
        self.summary = QtWidgets.QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setObjectName("hint")
        self.form_holder = QtWidgets.QVBoxLayout()
        self.form_holder.setContentsMargins(0, 0, 0, 0)
        self.form: ConfigForm | None = None
        self.current = ""
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.combo)
        lay.addWidget(self.summary)
        lay.addLayout(self.form_holder)

    def cls(self):
        return self.classes.get(self.current)

    def _picked(self, idx):
        name = self.combo.itemData(idx)
        if name == self.current:
            return
        if name not in self.classes:
            self.invalid.emit(f"{name} is not available: {self.broken.get(name, '')}")
            self.combo.setCurrentIndex(self.combo.findData(self.current))
            return
        self.set_family(name)
        self.familyChanged.emit(name)

    def set_family(self, name: str, options: dict | None = None):
        """Show `name` with its form (no signal). Raises ValueError for an unknown/broken family."""
        if name not in self.classes:
            raise ValueError(f"family {name!r} is not available"
                             + (f": {self.broken[name]}" if name in self.broken else ""))
        self.current = name
        self.combo.setCurrentIndex(self.combo.findData(name))
        cls = self.classes[name]
        self.summary.setText(cls.summary or "")
        if self.form is not None:
            self.form.setParent(None)
            self.form.deleteLater()
        self.form = ConfigForm(cls.Config, options)
        self.form.changed.connect(self.optionsChanged.emit)
        self.form.invalid.connect(self.invalid.emit)
        self.form_holder.addWidget(self.form)

    def options(self) -> dict:
        return self.form.values() if self.form else {}


class SamplerPicker(QtWidgets.QWidget):
    """The samplers a family offers (family.samplers: name -> options dataclass), with a
    generated form. samplerChanged(name, options) after a valid change."""
    samplerChanged = QtCore.Signal(str, dict)
    invalid = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.samplers: dict = {}
        self.combo = combo()
        self.combo.setToolTip("How samples and particles are generated from the trained model")
        self.combo.activated.connect(self._picked)
        self.form_holder = QtWidgets.QVBoxLayout()
        self.form_holder.setContentsMargins(0, 0, 0, 0)
        self.form: ConfigForm | None = None
        self.note = QtWidgets.QLabel("")
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.combo)
        lay.addWidget(self.note)
        lay.addLayout(self.form_holder)
        self.current = ""

    def set_family(self, cls, sampler: str = "", options: dict | None = None):
        self.samplers = dict(getattr(cls, "samplers", {}) or {})
        self.combo.clear()
        for n in self.samplers:
            self.combo.addItem(n, n)
        self.combo.setEnabled(bool(self.samplers))
        self.note.setText("" if self.samplers else "This family samples in its own way (no options).")
        name = sampler if sampler in self.samplers else (cls.default_sampler if cls.default_sampler in self.samplers
                                                         else next(iter(self.samplers), ""))
        self._show(name, options)

    def _show(self, name, options=None):
        self.current = name
        if self.form is not None:
            self.form.setParent(None)
            self.form.deleteLater()
            self.form = None
        if not name:
            return
        self.combo.setCurrentIndex(self.combo.findData(name))
        self.form = ConfigForm(self.samplers[name], options)
        self.form.changed.connect(lambda *a: self.samplerChanged.emit(self.current, self.options()))
        self.form.invalid.connect(self.invalid.emit)
        self.form_holder.addWidget(self.form)

    def _picked(self, idx):
        name = self.combo.itemData(idx)
        if name and name != self.current:
            self._show(name)
            self.samplerChanged.emit(name, self.options())

    def options(self) -> dict:
        return self.form.values() if self.form else {}
