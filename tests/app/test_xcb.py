"""A real desktop (issue 12, item 10): before the QApplication exists the window checks that Qt's xcb
platform plugin can load and that an X server answers; a missing system library or display is one
line on stderr and exit 2, never Qt's abort (exit 134). Under xvfb-run the window starts on the
real xcb platform, trains, saves a screenshot, closes and exits 0."""
import os
import shutil
import subprocess
import sys

import pytest

from app import platform_check as pc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /x/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007fb9)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007fb9)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
"""


def test_ldd_output_and_debian_package_names():
    assert pc.parse_ldd(LDD) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert pc.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []
    assert [pc.debian_package(s) for s in ("libxcb-icccm.so.4", "libxcb-cursor.so.0", "libxkbcommon-x11.so.0",
                                           "libX11-xcb.so.1", "libxcb-render-util.so.0", "libEGL.so.1")] == \
        ["libxcb-icccm4", "libxcb-cursor0", "libxkbcommon-x11-0", "libx11-xcb1", "libxcb-render-util0", "libegl1"]


def test_which_platform_qt_will_use():
    linux = sys.platform.startswith("linux")
    assert pc.will_use_xcb({"QT_QPA_PLATFORM": "xcb"}) == linux
    assert not pc.will_use_xcb({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"})
    assert pc.will_use_xcb({"DISPLAY": ":0"}) == linux
    assert not pc.will_use_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"})
    assert pc.check({"QT_QPA_PLATFORM": "offscreen"}) is None
    if linux:
        assert "QT_QPA_PLATFORM=offscreen" in pc.check({})       # no display at all: say so, no abort


def _env(**kv):
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM_PLUGIN_PATH")}
    env.update(kv)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("gcc"), reason="needs Linux and gcc")
def test_a_missing_plugin_library_is_one_line_and_exit_2(tmp_path):
    """A stand-in xcb plugin linked against a library that is then removed: ldd reports it missing,
    as it reports libxcb-icccm4 on a fresh Debian; the window must not reach Qt's abort."""
    lib = "libxcb-playgroundmissing.so.7"
    stub = tmp_path / lib
    subprocess.run(["gcc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(stub), f"-Wl,-soname,{lib}"],
                   input="int playground_stub(void) { return 0; }\n", text=True, check=True)
    plugins = tmp_path / "platforms"
    plugins.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(plugins / pc.XCB_PLUGIN),
                    "-x", "none", "-Wl,--no-as-needed", str(stub)],
                   input="int playground_stub(void); int plugin(void) { return playground_stub(); }\n",
                   text=True, check=True)
    stub.unlink()
    env = _env(QT_QPA_PLATFORM="xcb", DISPLAY=":0", QT_QPA_PLATFORM_PLUGIN_PATH=str(plugins))
    assert pc.check(env).startswith("error:") and lib in pc.check(env)
    p = subprocess.run([sys.executable, "main.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr[-2000:]
    assert len(lines) == 1 and lib in lines[0] and "install" in lines[0], p.stderr
    if os.path.exists("/etc/debian_version"):
        assert "apt-get install libxcb-playgroundmissing7" in lines[0]


def _xcb_ready():
    path = pc.plugin_path(_env())
    return path is not None and not pc.missing_libraries(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 check")
def test_no_x_server_is_one_line_and_exit_2():
    if not _xcb_ready():
        pytest.skip("the xcb plugin's libraries are missing here (the test above covers that case)")
    free = next(n for n in range(93, 200) if not os.path.exists(f"/tmp/.X11-unix/X{n}"))
    p = subprocess.run([sys.executable, "main.py"], cwd=ROOT, env=_env(QT_QPA_PLATFORM="xcb", DISPLAY=f":{free}"),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "X server" in p.stderr, p.stderr


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("xvfb-run"), reason="xvfb-run is not installed (.ci/run installs it)")
def test_window_on_a_real_x_server(tmp_path):
    """start, train, screenshot, close, exit 0 on the xcb platform of an Xvfb server."""
    if not _xcb_ready():
        pytest.skip("the xcb plugin's libraries are missing: " + (pc.check(_env(QT_QPA_PLATFORM="xcb")) or ""))
    shot = tmp_path / "xcb.png"
    p = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1366x768x24", sys.executable, "main.py", "--autostart",
                        "--quit-after", "12", "--screenshot", str(shot)],
                       cwd=ROOT, env=_env(QT_QPA_PLATFORM="xcb"), capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    stats = dict(kv.split("=", 1) for kv in next(l for l in p.stdout.splitlines() if l.startswith("steps=")).split())
    assert int(stats["steps"]) > 0, p.stdout
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert "Traceback" not in p.stderr
