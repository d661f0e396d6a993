"""The Qt application: windows, panels, controls and the training worker thread.

engines/ computes everything; app/ only draws and forwards commands (see DESIGN.md).
Entry points: app.main.main(argv) (the window) and app.bench.main(argv) (`bench --gui`).
"""
