"""The layer rule: engines/ never imports Qt (PySide6, PyQt, pyqtgraph, superqt), neither in its
source text nor transitively when every engines module is imported."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINES = os.path.join(ROOT, "engines")
GUI = ("PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph", "superqt", "qtpy")
# `import X`, `import a, X`, `from X import`, `from X.sub import`, and importlib/__import__("X...")
IMPORT_RE = re.compile(
    r"^\s*(?:import\s+(?:[\w.]+\s*(?:as\s+\w+\s*)?,\s*)*|from\s+)(?P<mod>" + "|".join(GUI) + r")\b"
    r"|(?:import_module|__import__)\(\s*['\"](?P<dyn>" + "|".join(GUI) + r")\b",
    re.MULTILINE)


def engine_files():
    for d, _, files in os.walk(ENGINES):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(d, f)


def test_the_pattern_catches_qt_imports():
    for line in ("import PySide6", "from PySide6.QtCore import QObject", "import numpy, pyqtgraph as pg",
                 "    from superqt import QLabeledSlider", "importlib.import_module('PyQt6.QtWidgets')"):
        assert IMPORT_RE.search(line), line
    for line in ("import numpy", "# the app draws this with pyqtgraph", "from .pyside_helpers import x"):
        assert not IMPORT_RE.search(line), line


def test_no_engines_source_imports_qt():
    files = list(engine_files())
    assert len(files) > 10
    bad = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for m in IMPORT_RE.finditer(f.read()):
                bad.append(f"{os.path.relpath(path, ROOT)}: {m.group(0).strip()}")
    assert not bad, "engines/ must not import Qt:\n" + "\n".join(bad)


SCRIPT = r"""
import importlib, json, pkgutil, sys
import engines
failed = {}
names = ["engines"]
for m in pkgutil.walk_packages(engines.__path__, "engines."):
    names.append(m.name)
for name in names:
    try:
        importlib.import_module(name)
    except Exception as e:  # reported, not hidden
        failed[name] = f"{type(e).__name__}: {e}"
gui = sorted(m for m in sys.modules if m.split(".")[0] in GUI)
print(json.dumps(dict(names=names, failed=failed, gui=gui)))
"""


def test_importing_every_engines_module_loads_no_qt():
    code = f"GUI = {GUI!r}\n" + SCRIPT
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "engines.families.dsm" in res["names"] and "engines.run" in res["names"]
    assert not res["failed"], f"engines modules that do not import: {res['failed']}"
    assert not res["gui"], f"importing engines pulled in Qt modules: {res['gui']}"
