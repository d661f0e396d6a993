"""Compare mode: 2-4 runs side by side in one window (issue 10).

    runs.py        a run's session and worker, taking turns on the CPU with the others
    controller.py  several sessions under one controller: lifecycle, commands to all, the table
    views.py       a column of panels per run, the losses overlay, the shared scrubber, the table
    window.py      the window: layout, toolbar, frame loop, stats line

`comparison_from_args` (no Qt) turns the window's command line into a Comparison, or None
when no comparison was asked for.
"""
from __future__ import annotations


def comparison_from_args(args):
    """--compare ITEMS (with --dataset, --family), or a --preset that has a [compare] table.
    ConfigError / ValueError for a bad item; None for a single-run window."""
    from engines.compare import spec
    from engines.config import RunConfig
    preset = None
    if getattr(args, "preset", None):
        from .. import presets
        p = presets.load(args.preset)
        if p.get("compare"):
            preset = p
    if not args.compare and preset is None:
        return None
    if preset is not None and not args.compare:
        comp = spec.from_preset(preset)
        base, items, labels = comp.base, [r.item.text for r in comp.runs], comp.labels
        fair, target, title, lesson = comp.fair, comp.target_quality, comp.title, comp.lesson
    else:
        first = spec.parse_item(spec.split_items(args.compare)[0])
        base = preset["cfg"] if preset else RunConfig(family=first.family or "ddpm")
        items, labels, fair, target, title, lesson = args.compare, None, "steps", 1.5, "", ""
    if args.dataset or args.family:
        import dataclasses
        changes = {}
        if args.dataset:
            changes["dataset"] = args.dataset
        if args.family and args.family != base.family:
            changes.update(family=args.family, options={}, sampler="", sampler_options={})
            train = base.train
            changes["train"] = dict(seed=getattr(train, "seed", 0)) if train is not None else None
        base = dataclasses.replace(base, **changes)
    return spec.make(base, items, fair=fair, target_quality=target, title=title, lesson=lesson, labels=labels)


def preset_view(args) -> dict:
    """The preset's [view] table (particles, samples: counts per run), or {}."""
    if not getattr(args, "preset", None):
        return {}
    from .. import presets
    return dict(presets.load(args.preset).get("view") or {})
