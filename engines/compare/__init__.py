"""Compare 2-4 runs side by side: one dataset, one training seed, one initial sampler noise.

spec     the Comparison (base config + variations), `--compare` item parsing, shared data/noise
fair     thread budgets and the equal-steps / equal-time share policy (Qt-free, fake-clock tested)
align    one scrubber over several sampler trajectories, aligned by noise level
measure  NFE counting, sampling time, quality, NLL with its unit, time to a target quality
table    the comparison table with each column's leader, CSV / text / JSON
runner   headless training in turn or in parallel processes (`python main.py compare`)
"""
from .align import Scrubber, axis_of
from .fair import FairShare, concurrent_slots, run_in_turn, thread_budgets
from .spec import (MAX_RUNS, MIN_RUNS, Comparison, Item, RunSpec, from_preset, initial_noise, make,
                   parse_item, run_configs, shared_data, split_items)
from .table import COLUMNS, Column, ComparisonTable, Row

__all__ = ["Scrubber", "axis_of", "FairShare", "concurrent_slots", "run_in_turn", "thread_budgets",
           "MAX_RUNS", "MIN_RUNS", "Comparison", "Item", "RunSpec", "from_preset", "initial_noise", "make",
           "parse_item", "run_configs", "shared_data", "split_items", "COLUMNS", "Column", "ComparisonTable", "Row"]
