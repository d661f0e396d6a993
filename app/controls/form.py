"""A form generated from a config dataclass: one editor per `opt(...)` field.

engines.config.describe(cls) gives name/type/default/help/formula/choices/lo/hi/log; the
editor follows the type (check box, combo box for choices, spin box for integers, a text
field for floats so that 2e-3 and 1e-7 read naturally), the tooltip names the formula, the
range and the default. Values are validated with engines.config.build, whose ConfigError
message is shown under the form; the previous good values stay in force.
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from engines.config import ConfigError, build, describe

INT_MAX = 2 ** 31 - 1


def combo() -> QtWidgets.QComboBox:
    """A combo box whose width does not follow its longest item (the left dock stays narrow)."""
    c = QtWidgets.QComboBox()
    c.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    c.setMinimumContentsLength(6)
    return c


def tooltip(d: dict) -> str:
    parts = []
    if d.get("help"):
        parts.append(f"<b>{d['name']}</b>: {d['help']}")
    else:
        parts.append(f"<b>{d['name']}</b>")
    if d.get("formula"):
        parts.append(f"<br>formula: <i>{_esc(d['formula'])}</i>")
    rng = []
    if d.get("lo") is not None or d.get("hi") is not None:
        lo = "-∞" if d.get("lo") is None else f"{d['lo']:g}"
        hi = "∞" if d.get("hi") is None else f"{d['hi']:g}"
        rng.append(f"range [{lo}, {hi}]" + (" (log scale)" if d.get("log") else ""))
    if d.get("choices"):
        rng.append("choices: " + ", ".join(map(str, d["choices"])))
    rng.append(f"default {_fmt(d['default'])}")
    parts.append("<br>" + "; ".join(rng))
    return "".join(parts)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


class ConfigForm(QtWidgets.QWidget):
    """Editors for the fields of a config dataclass. `changed(name, value)` fires when an edit
    is committed and the whole config still validates; `invalid(message)` when it does not."""
    changed = QtCore.Signal(str, object)
    invalid = QtCore.Signal(str)

    def __init__(self, cls, values: dict | None = None, exclude=(), parent=None):
        super().__init__(parent)
        self.cls = cls
        self.spec = [d for d in describe(cls) if d["name"] not in exclude]
        self.editors: dict[str, QtWidgets.QWidget] = {}
        self.labels: dict[str, QtWidgets.QLabel] = {}
        self._good: dict = {d["name"]: d["default"] for d in self.spec}
        lay = QtWidgets.QFormLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        lay.setLabelAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
        for d in self.spec:
            ed = self._editor(d)
            tip = tooltip(d)
            ed.setToolTip(tip)
            label = QtWidgets.QLabel(d["name"])
            label.setToolTip(tip)
            lay.addRow(label, ed)
            self.editors[d["name"]] = ed
            self.labels[d["name"]] = label
        self.error = QtWidgets.QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        lay.addRow(self.error)
        # what the values amount to (the config's summary(), e.g. the betas actually used)
        self.note = QtWidgets.QLabel("")
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        lay.addRow(self.note)
        if values:
            self.set_values(values)
        else:
            self._refresh_applicability()

    # ------------------------------------------------------------ editors
    def _editor(self, d):
        typ, name = d["type"], d["name"]
        if typ is bool:
            ed = QtWidgets.QCheckBox()
            ed.setChecked(bool(d["default"]))
            ed.toggled.connect(lambda *_: self._commit(name))
        elif d.get("choices"):
            ed = combo()
            for c in d["choices"]:
                ed.addItem(str(c), c)
            ed.setCurrentIndex(max(0, ed.findData(d["default"])))
            ed.currentIndexChanged.connect(lambda *_: self._commit(name))
        elif typ is int:
            ed = QtWidgets.QSpinBox()
            lo = d.get("lo")
            hi = d.get("hi")
            ed.setRange(int(max(lo, -INT_MAX)) if lo is not None else -INT_MAX,
                        int(min(hi, INT_MAX)) if hi is not None else INT_MAX)
            ed.setValue(int(d["default"]))
            ed.setKeyboardTracking(False)      # valueChanged on Enter / arrows, not per key
            ed.setAccelerated(True)
            ed.valueChanged.connect(lambda *_: self._commit(name))
        else:
            ed = QtWidgets.QLineEdit(_fmt(d["default"]))
            if typ is float:
                ed.setPlaceholderText("a number, e.g. 1e-3")
            ed.editingFinished.connect(lambda: self._commit(name))
        ed.setObjectName(f"opt_{name}")
        return ed

    def _read(self, name):
        ed = self.editors[name]
        if isinstance(ed, QtWidgets.QCheckBox):
            return ed.isChecked()
        if isinstance(ed, QtWidgets.QComboBox):
            return ed.currentData()
        if isinstance(ed, QtWidgets.QSpinBox):
            return ed.value()
        return ed.text().strip()

    def _write(self, name, value):
        ed = self.editors[name]
        ed.blockSignals(True)
        try:
            if isinstance(ed, QtWidgets.QCheckBox):
                ed.setChecked(bool(value))
            elif isinstance(ed, QtWidgets.QComboBox):
                i = ed.findData(value)
                if i < 0:
                    i = ed.findText(str(value))
                ed.setCurrentIndex(max(i, 0))
            elif isinstance(ed, QtWidgets.QSpinBox):
                ed.setValue(int(value))
            else:
                ed.setText(_fmt(value))
        finally:
            ed.blockSignals(False)

    # ------------------------------------------------------------ values
    def raw_values(self) -> dict:
        return {d["name"]: self._read(d["name"]) for d in self.spec}

    def values(self) -> dict:
        """The last values that validated (typed: int, float, bool, str)."""
        return dict(self._good)

    def set_values(self, values: dict):
        for k, v in (values or {}).items():
            if k in self.editors:
                self._write(k, v)
        self._good = self._typed(self.raw_values())
        self._set_error("")
        self._refresh_applicability()

    def _typed(self, raw: dict) -> dict:
        obj = build(self.cls, raw)
        return {d["name"]: getattr(obj, d["name"]) for d in self.spec}

    def validate(self) -> dict:
        """Typed values of the editors, or ConfigError."""
        return self._typed(self.raw_values())

    def _commit(self, name):
        try:
            vals = self.validate()
        except (ConfigError, ValueError, TypeError) as e:
            self._set_error(str(e), name)
            self.invalid.emit(str(e))
            return
        self._set_error("")
        old = self._good.get(name)
        self._good = vals
        self._refresh_applicability()
        if vals[name] != old:
            self.changed.emit(name, vals[name])

    def _refresh_applicability(self):
        """Grey out the fields the current values ignore (the config's inactive_fields(), e.g.
        beta_start/end under the cosine schedule) and show its summary() line."""
        try:
            obj = build(self.cls, self._good)
        except (ConfigError, ValueError, TypeError):
            return
        inactive = getattr(obj, "inactive_fields", None)
        off = set(inactive()) if callable(inactive) else set()
        for name, ed in self.editors.items():
            ed.setEnabled(name not in off)
            self.labels[name].setEnabled(name not in off)
        summary = getattr(obj, "summary", None)
        text = summary() if callable(summary) else ""
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _set_error(self, msg, name=None):
        self.error.setText(msg)
        self.error.setVisible(bool(msg))
        for k, ed in self.editors.items():
            bad = bool(msg) and k == name
            if ed.property("bad") != bad:
                ed.setProperty("bad", bad)
                ed.style().unpolish(ed)
                ed.style().polish(ed)
