"""A real `python main.py --autostart --quit-after 20` run (20 s: the first optimizer of a process imports torch._dynamo, ~8 s on a loaded 2-core machine): it trains, saves the screenshot,
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
    p = subprocess.run([sys.executable, "main.py", "--autostart", "--quit-after", "20", "--screenshot", str(shot)],
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


def test_ctrl_c_closes_the_window_with_exit_code_0(tmp_path):
    """SIGINT (Ctrl+C in the terminal) mid-training: the window closes cleanly, threads joined."""
    import signal
    import time
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONFAULTHANDLER="1")
    p = subprocess.Popen([sys.executable, "main.py", "--autostart", "--stats"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3.0)                      # into main(): its handler is installed first thing
        p.send_signal(signal.SIGINT)         # once, as a user would (a second one, during the
        out, err = p.communicate(timeout=180)  # interpreter's own exit, is the default action)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err
