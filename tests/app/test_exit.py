"""A real `python main.py --autostart --quit-after 5` run: it trains, saves the screenshot,
prints the stats line and exits with code 0 (no abort at interpreter exit: threads are
stopped before the QApplication quits; PySide6 6.9.2 is pinned)."""
import os
import re
import subprocess
import sys

from PySide6 import QtGui

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_main_autostart_quit_after_exits_cleanly(tmp_path, themed_app):
    shot = tmp_path / "window.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONFAULTHANDLER="1")
    p = subprocess.run([sys.executable, "main.py", "--autostart", "--quit-after", "5", "--screenshot", str(shot)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [l for l in p.stdout.splitlines() if l.startswith("steps=")]
    assert len(lines) == 1, p.stdout
    stats = dict(kv.split("=", 1) for kv in lines[0].split())
    for key in ("steps", "steps_per_s", "fps", "ui_lateness_p99_ms", "peak_rss_mb"):
        assert key in stats
    assert int(stats["steps"]) > 0 and float(stats["steps_per_s"]) > 0 and float(stats["peak_rss_mb"]) > 50
    img = QtGui.QImage(str(shot))
    assert (img.width(), img.height()) == (1600, 1000)
    assert "Traceback" not in p.stderr


def test_unknown_preset_is_a_clear_error():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, "main.py", "--preset", "no_such_lesson"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no_such_lesson" in p.stderr and "moons_ddpm" in p.stderr
