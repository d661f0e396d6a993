"""`compare`: train 2-4 runs side by side on one dataset (the same training seed and the same
initial sampler noise), then print the comparison table: text on stderr, one JSON object on stdout.

    python main.py compare --dataset moons --families ddpm,ncsn --seconds 30 --json out.json
    python main.py compare --families ddpm:schedule=linear,ddpm:schedule=cosine --steps 2000
    python main.py compare --preset compare_linear_vs_cosine --seconds 20 --csv table.csv

Runs train in turn in this process (the most-behind run trains next: equal steps, or equal
training time with --fair time), or with --parallel in one process each, the cores split among them.
"""
from __future__ import annotations

import argparse
import json

from ..cli import emit_json, parse_key_values, progress
from ..config import ConfigError, RunConfig
from . import spec as S
from .fair import MODES
from .runner import Budget, Settings, train_in_turn, train_parallel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--families", "--compare", dest="items", default=None, metavar="ITEMS",
                        help="2-4 comma-separated runs: family names (ddpm,ncsn) or family:key=value items "
                             "(ddpm:schedule=linear,ddpm:schedule=cosine; more changes with more ':key=value'); "
                             "required unless --preset gives them")
    parser.add_argument("--preset", default=None, metavar="NAME|PATH",
                        help="a comparison preset (resources/presets/compare_*.toml); --families replaces its runs "
                             "(default: none)")
    parser.add_argument("--dataset", default=None, metavar="NAME|PATH",
                        help="the dataset every run trains on (default: the preset's, else moons)")
    parser.add_argument("--family", default=None,
                        help="the base run's family, which items without a family change (default: the first item's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a base-run option: a family option or train.NAME=VALUE (repeatable)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="training wall time of the whole comparison (default: none; give it or --steps)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: no step cap)")
    parser.add_argument("--seed", type=int, default=None, help="the shared training seed (default: the base's, 0)")
    parser.add_argument("--fair", choices=MODES, default=None,
                        help="equal training steps or equal training time per run (default: the preset's, else steps)")
    parser.add_argument("--target", type=float, default=None,
                        help="the x-iid quality whose first crossing the table times (default: the preset's, else 1.5)")
    parser.add_argument("--parallel", action="store_true",
                        help="one process per run, started at once, the cores split among them")
    parser.add_argument("--n-eval", type=int, default=2000, help="samples scored per run for the final table")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON to FILE")
    parser.add_argument("--csv", default=None, metavar="FILE", help="also write the table as CSV to FILE")


def comparison(args) -> S.Comparison:
    """The Comparison the arguments describe (a preset, items, or a preset with its runs replaced)."""
    sets = parse_key_values(args.set)
    train = {k[6:]: v for k, v in sets.items() if k.startswith("train.")}
    options = {k: v for k, v in sets.items() if not k.startswith("train.")}
    if args.seed is not None:
        train["seed"] = args.seed
    if args.preset:
        comp = S.load_preset(args.preset)
        base = comp.base
        items = args.items or [r.item.text for r in comp.runs]
        fair, target, labels = comp.fair, comp.target_quality, None if args.items else comp.labels
    else:
        if not args.items:
            raise ConfigError("compare needs --families ITEMS (e.g. ddpm,ncsn) or --preset NAME")
        first = S.parse_item(S.split_items(args.items)[0])
        base = RunConfig(dataset="moons", family=args.family or first.family or "ddpm")
        items, fair, target, labels = args.items, "steps", 1.5, None
    changes = {}
    if args.dataset:
        changes["dataset"] = args.dataset
    if args.family and args.preset:
        changes["family"] = args.family
    if changes or options or train:
        tr = S.train_dict(base.train)
        tr.update(train)
        base = RunConfig(dataset=changes.get("dataset", base.dataset), family=changes.get("family", base.family),
                         train=tr, options={**(base.options if "family" not in changes else {}), **options},
                         sampler=base.sampler if "family" not in changes else "",
                         sampler_options=dict(base.sampler_options) if "family" not in changes else {})
    return S.make(base, items, fair=args.fair or fair, target_quality=args.target or target, labels=labels)


def run(args) -> int:
    comp = comparison(args)
    budget = Budget(seconds=args.seconds, steps=args.steps)
    settings = Settings(n_final=args.n_eval)
    progress(f"comparing {', '.join(comp.labels)} on {comp.base.dataset}: fair share by {comp.fair}, "
             f"{'parallel processes' if args.parallel else 'in turn'}")
    if args.parallel:
        table = train_parallel(comp, budget, settings, report=progress)
    else:
        table, _ = train_in_turn(comp, budget, settings, report=progress)
    progress(table.to_text())
    out = table.to_json()
    out.update(dataset=str(comp.base.dataset), fair=comp.fair, parallel=bool(args.parallel),
               seconds=args.seconds, steps=args.steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    if args.csv:
        with open(args.csv, "w") as f:
            f.write(table.to_csv())
    emit_json(out)
    return 0
