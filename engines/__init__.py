"""Headless core of the playground: data, schedules, nets, families, samplers, metrics, runs.

Pure numpy + torch. Never imports Qt (tests/engines/test_layers.py enforces it).
"""
