"""`python main.py bench --gui` runs end to end (tiny rounds) and reports figures a user can act on:
rates from back-to-back app/headless pairs, a pooled lateness p99 and the panel frame rate."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench(tmp_path, *args) -> tuple[dict, str]:
    """Run `python main.py bench --gui ARGS --json F` offscreen: its JSON and stdout (exit code 0)."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, "main.py", "bench", "--gui", *args, "--json", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(out.read_text()), p.stdout


def test_gui_benchmark_reports_paired_rates_and_pooled_lateness(tmp_path):
    r, stdout = bench(tmp_path, "--seconds", "0.4", "--rounds", "2")
    assert len(r["rounds_ratio"]) == 2 and len(r["rounds_app"]) == 2 and len(r["rounds_headless"]) == 2
    assert all(x > 0 for x in r["rounds_app"] + r["rounds_headless"])
    # the ratio is the median of the per-pair ratios (two pairs: their mean)
    assert abs(r["app_over_headless"] - sum(r["rounds_ratio"]) / 2) < 2e-3
    for a, h, q in zip(r["rounds_app"], r["rounds_headless"], r["rounds_ratio"]):
        assert abs(a / h - q) < 0.01 * q + 1e-3
    # lateness pooled over every heartbeat tick of both rounds (a 10 ms probe: ~40 a round)
    assert r["heartbeat_ticks"] >= 10 and r["ui_lateness_p99_ms"] >= 0
    # the app configures the process as the window does: the GUI keeps a core
    assert r["machine"]["torch_threads"] == max(1, (os.cpu_count() or 2) - 1)
    assert r["panel_fps"] > 0 and r["panel_load"]["particles"] == 20000
    assert "app / headless (median of 2 back-to-back pairs)" in stdout
    # the frame rate is the frame loop's cadence; frames that redrew a panel are reported beside it
    assert 0 < r["app_drawn_frames_per_s"] <= r["app_frames_per_s_while_training"] + 1


def test_soak_reports_memory_and_frame_rates_at_start_and_end(tmp_path):
    r, _ = bench(tmp_path, "--soak", "12")
    assert r["steps"] > 0 and r["rss_end_mb"] > 0 and len(r["samples"]) >= 2
    assert r["loop_fps_start"] > 0 and r["loop_fps_end"] > 0 and "rss_growth_mb" in r


def test_compare_benchmark_reports_cadence_and_redrawn_frames(tmp_path):
    r, _ = bench(tmp_path, "--compare", "2", "--seconds", "1.5")
    assert len(r["steps"]) == 2 and sum(r["steps"]) > 0
    assert r["frames_per_s"] > 0 and 0 <= r["drawn_frames_per_s"] <= r["frames_per_s"] + 1
