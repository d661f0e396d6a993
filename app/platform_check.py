"""Before the QApplication exists: can Qt's platform plugin load on this desktop?

On Linux with an X server, Qt loads plugins/platforms/libqxcb.so, which needs system libraries
that a fresh Debian/Ubuntu lacks (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, ...). When one
is missing, Qt prints a paragraph and aborts the interpreter (exit 134). This module finds the
missing libraries first (`ldd` on the plugin, which lists every unresolved dependency at once;
a ctypes load when ldd is absent) so that the window can say so in one line and exit 2.

No Qt import here: importing PySide6 does not load a platform plugin, but nothing here needs it.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys

XCB_PLUGIN = "libqxcb.so"


def will_use_xcb(env=None) -> bool:
    """Whether QApplication would load the xcb plugin: on Linux, QT_QPA_PLATFORM is xcb, or unset
    in an X session (DISPLAY set and no Wayland display, where Qt would pick wayland)."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return False
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if platform:
        return platform == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def no_display_message(env=None) -> str | None:
    """A one-line reason when Qt would try xcb with no X display at all (it would abort too)."""
    env = os.environ if env is None else env
    if (sys.platform.startswith("linux") and not env.get("QT_QPA_PLATFORM") and not env.get("DISPLAY")
            and not env.get("WAYLAND_DISPLAY")):
        return ("error: no display (DISPLAY and WAYLAND_DISPLAY are unset); start this from a desktop "
                "session, or run headless with QT_QPA_PLATFORM=offscreen")
    return None


def plugin_path(env=None) -> str | None:
    """PySide6's xcb platform plugin (QT_QPA_PLATFORM_PLUGIN_PATH moves it), found without import."""
    env = os.environ if env is None else env
    folders = [env["QT_QPA_PLATFORM_PLUGIN_PATH"]] if env.get("QT_QPA_PLATFORM_PLUGIN_PATH") else []
    spec = importlib.util.find_spec("PySide6")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folders.append(os.path.join(root, "Qt", "plugins", "platforms"))
    for folder in folders:
        path = os.path.join(folder, XCB_PLUGIN)
        if os.path.isfile(path):
            return path
    return None


def parse_ldd(text: str) -> list[str]:
    """The unresolved libraries in `ldd` output ("libfoo.so.1 => not found"), each once, in order."""
    out = []
    for name in re.findall(r"^\s*(\S+)\s+=>\s+not found", text, flags=re.M):
        if name not in out:
            out.append(name)
    return out


def missing_libraries(path: str) -> list[str]:
    """Sonames the plugin needs that the dynamic loader cannot find ([] when it loads)."""
    ldd = shutil.which("ldd")
    if ldd:
        try:
            p = subprocess.run([ldd, path], capture_output=True, text=True, timeout=20)
            return parse_ldd(p.stdout + p.stderr)
        except (OSError, subprocess.SubprocessError):
            pass
    try:  # no ldd: the loader's error names the first missing library only
        ctypes.CDLL(path)
        return []
    except OSError as e:
        m = re.match(r"([^:\s]+\.so[.\d]*)", str(e))
        return [m.group(1) if m else str(e)]


def debian_package(soname: str) -> str:
    """Debian's package name for a shared library (policy 8.1: soname stem + major version,
    a '-' between when the stem ends in a digit): libxcb-icccm.so.4 -> libxcb-icccm4,
    libxkbcommon-x11.so.0 -> libxkbcommon-x11-0, libX11-xcb.so.1 -> libx11-xcb1."""
    m = re.match(r"(lib.+?)\.so\.(\d+)", soname)
    if not m:
        return soname
    stem, major = m.group(1).lower(), m.group(2)
    return f"{stem}-{major}" if stem[-1].isdigit() else f"{stem}{major}"


def install_hint(sonames: list[str]) -> str:
    if os.path.exists("/etc/debian_version"):
        return "install them with: sudo apt-get install " + " ".join(debian_package(s) for s in sonames)
    return ("install the packages that provide them (e.g. dnf provides '*/" + sonames[0] + "', "
            "pacman -F " + sonames[0] + ")")


def display_reachable(display: str) -> bool:
    """Whether an X server answers at `display` (libxcb's xcb_connect; Qt aborts when none does).
    True when libxcb itself cannot be loaded here: then the library check has already spoken."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return True
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)   # never NULL: an error object on failure
    try:
        return xcb.xcb_connection_has_error(conn) == 0
    finally:
        xcb.xcb_disconnect(conn)


def check(env=None) -> str | None:
    """None when the window can open here, else the one line to print before exiting with 2."""
    env = os.environ if env is None else env
    msg = no_display_message(env)
    if msg or not will_use_xcb(env):
        return msg
    path = plugin_path(env)
    if path is None:
        return None  # a Qt without the plugin file: Qt's own message is the best we have
    missing = missing_libraries(path)
    if not missing:
        display = env.get("DISPLAY", "")
        if display and not display_reachable(display):
            return (f"error: no X server answers at DISPLAY={display} (is it running, and may this user "
                    "connect: xhost, XAUTHORITY?); or run headless with QT_QPA_PLATFORM=offscreen")
        return None
    return (f"error: Qt's xcb platform plugin cannot load: missing {', '.join(missing)}; "
            f"{install_hint(missing)} (README, 'System libraries'); or run headless with QT_QPA_PLATFORM=offscreen")
