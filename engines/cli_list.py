"""`list`: the datasets, families (with their samplers and options), lesson presets and training
options, as text, or as one JSON object with --json."""
from __future__ import annotations

import argparse

from . import data as D
from . import families
from .cli import emit_json
from .config import TrainConfig, describe
from .resources import resource_path


def preset_names() -> list[str]:
    return sorted(p.stem for p in resource_path("presets").glob("*.toml"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def listing() -> dict:
    fams = {}
    for name in families.names():
        try:
            cls = families.get(name)
        except (ImportError, AttributeError) as e:
            fams[name] = dict(error=f"unavailable: {e}")
            continue
        fams[name] = dict(title=cls.title or name, samplers=list(cls.samplers),
                          options=[d["name"] for d in describe(cls.Config)])
    return dict(datasets=D.names(), families=fams, presets=preset_names(),
                train_options=[d["name"] for d in describe(TrainConfig)])


def run(args) -> int:
    info = listing()
    if args.json:
        emit_json(info)
        return 0
    print("datasets:  " + ", ".join(info["datasets"]) + "  (or the path of a CSV/TSV/NPY/NPZ file or image folder)")
    print("families:")
    for name, f in info["families"].items():
        if "error" in f:
            print(f"  {name:<20} ({f['error']})")
            continue
        print(f"  {name:<20} {f['title']}; samplers: {', '.join(f['samplers']) or '-'}; "
              f"options: {', '.join(f['options']) or '-'}")
    print("presets:   " + (", ".join(info["presets"]) or "-"))
    print("train options (--set train.NAME=V or flags): " + ", ".join(info["train_options"]))
    return 0
