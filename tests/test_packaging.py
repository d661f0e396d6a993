"""The wheel installs anywhere (issue 12, item 7): build it from a copy of the checkout, install it
into a fresh venv outside the checkout, and run the installed `genplayground` command there.

The venv sees this interpreter's site-packages (--system-site-packages) so torch and PySide6 are
not installed again; the wheel itself goes in with --no-deps, and everything the command imports
must come from the venv's copy (checked), never from this checkout.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("main.py", "setup.py", "pyproject.toml", "README.md", "app", "engines", "resources")


def _run(cmd, cwd, timeout=240, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    e.update(QT_QPA_PLATFORM="offscreen", PIP_DISABLE_PIP_VERSION_CHECK="1", **env)
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv folder, its bin folder): the wheel built from a copy of the checkout, installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"        # a copy: the build must not leave build/ or egg-info in the checkout
    src.mkdir()
    for name in SHIPPED:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", src],
         cwd=tmp)
    wheels = list((tmp / "dist").glob("genplayground-*.whl"))
    assert len(wheels) == 1
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=tmp)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheels[0]],
         cwd=tmp)
    return venv, bin_dir, python, tmp


def _shipped_presets(tmp) -> list[str]:
    """The presets of the copy the wheel was built from (the checkout may change meanwhile)."""
    return sorted(p.stem for p in (tmp / "src" / "resources" / "presets").glob("*.toml"))


@pytest.mark.slow
def test_wheel_has_one_top_level_name_and_the_resources(installed):
    venv, _, python, tmp = installed
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=venv).stdout.strip())
    ours = sorted(p.name for p in site.iterdir() if not p.name.startswith(("_", "pip", "distutils")))
    assert ours == ["genplayground", "genplayground-" + ours[1].split("-", 1)[1]], ours  # nothing else
    assert not (site / "app").exists() and not (site / "engines").exists() and not (site / "main.py").exists()
    assert sorted(p.stem for p in (site / "genplayground" / "resources" / "presets").glob("*.toml")) \
        == _shipped_presets(tmp)
    for f in (tmp / "src" / "resources").glob("*.*"):
        assert (site / "genplayground" / "resources" / f.name).is_file(), f.name


@pytest.mark.slow
def test_installed_command_lists_presets_from_its_own_copy(installed):
    venv, bin_dir, python, tmp = installed
    exe = bin_dir / ("genplayground.exe" if os.name == "nt" else "genplayground")
    text = _run([exe, "list"], cwd=tmp).stdout                 # `genplayground list`, as a user types it
    presets = _shipped_presets(tmp)
    line = next(l for l in text.splitlines() if l.startswith("presets:"))
    assert presets and sorted(p.strip() for p in line.split(":", 1)[1].split(",")) == presets
    assert "moons_ddpm" in presets and "ddpm" in text
    assert _run([exe, "--version"], cwd=tmp).stdout.split()[-1][0].isdigit()
    # what the command imports is the venv's copy, and it finds its style sheets and weights there
    probe = ("import os, sys, genplayground.main as m; sys.path.insert(0, os.path.dirname(m.__file__)); "
             "import engines, app.presets as p, app.theme as t, engines.digit_classifier as dc; "
             "print(engines.__file__); print(t.RESOURCES); print(len(p.names())); "
             "print(os.path.isfile(os.path.join(t.RESOURCES, 'style.qss')), dc.WEIGHTS.is_file())")
    engines_file, resources, n_presets, found = _run([python, "-c", probe], cwd=tmp).stdout.split("\n")[:4]
    assert Path(engines_file).resolve().is_relative_to(venv.resolve()), engines_file
    assert Path(resources).resolve().is_relative_to(venv.resolve()), resources
    assert int(n_presets) == len(presets) and found == "True True"


@pytest.mark.slow
def test_installed_command_opens_the_window(installed):
    """`genplayground` with no command is the window, as `python main.py` is."""
    _, bin_dir, _, tmp = installed
    exe = bin_dir / ("genplayground.exe" if os.name == "nt" else "genplayground")
    shot = tmp / "window.png"
    p = _run([exe, "--autostart", "--quit-after", "2", "--screenshot", shot], cwd=tmp, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert any(line.startswith("steps=") for line in p.stdout.splitlines())
    assert "Traceback" not in p.stderr
