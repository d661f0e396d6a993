"""The comparison table: one row per run, one column per measure, the leader of each column marked.

Each column declares whether lower or higher is better (or neither: a column that only informs,
like the number of steps trained). A missing value (no likelihood, target never reached) never
leads. NLLs lead only among rows that state them in the same unit. Ties share the lead.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    better: str | None          # "lower", "higher", or None (informative only)
    unit: str = ""
    integer: bool = False       # shown as a whole number (counts)


COLUMNS = (
    Column("quality_x_iid", "quality", "lower", "x iid"),
    Column("nll", "NLL", "lower"),                            # unit per row (nats, bits/dim)
    Column("nfe", "network evals/sample", "lower"),
    Column("sample_seconds", "sampling time", "lower", "s"),
    Column("steps_per_s", "training speed", "higher", "steps/s"),
    Column("steps", "steps trained", None, "", integer=True),
    Column("train_seconds", "training time", None, "s"),
    Column("parameters", "parameters", "lower", "", integer=True),
    Column("seconds_to_target", "time to target", "lower", "s"),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)


@dataclass(frozen=True)
class Row:
    """One run's measures: values[key] is a float/int, or None where it is not defined."""
    label: str
    family: str
    values: tuple                # ((key, value), ...) in COLUMNS order
    nll_unit: str = ""

    @classmethod
    def of(cls, label: str, family: str, nll_unit: str = "", **values) -> "Row":
        bad = sorted(set(values) - set(COLUMN_KEYS))
        if bad:
            raise KeyError(f"no table column {bad[0]!r}; columns: {', '.join(COLUMN_KEYS)}")
        return cls(label, family, tuple((k, _clean(values.get(k))) for k in COLUMN_KEYS), nll_unit)

    def get(self, key: str):
        return dict(self.values).get(key)


def _clean(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class ComparisonTable:
    rows: tuple
    target_quality: float = 1.5
    columns: tuple = COLUMNS

    def leaders(self) -> dict:
        """column key -> tuple of leading row indices (empty when nothing is comparable)."""
        out = {}
        for c in self.columns:
            if c.better is None:
                continue
            idx = [i for i, r in enumerate(self.rows) if r.get(c.key) is not None]
            if c.key == "nll" and len({self.rows[i].nll_unit for i in idx}) > 1:
                idx = []                     # nats and bits/dim are not one scale
            if len(idx) < 1 or len(self.rows) < 2:
                out[c.key] = ()
                continue
            vals = [self.rows[i].get(c.key) for i in idx]
            best = min(vals) if c.better == "lower" else max(vals)
            tol = 1e-12 * max(1.0, abs(best))
            out[c.key] = tuple(i for i, v in zip(idx, vals) if abs(v - best) <= tol)
        return out

    def leads(self, row: int) -> list[str]:
        return [k for k, rows in self.leaders().items() if row in rows]

    def header(self, c: Column) -> str:
        if c.key == "nll":
            units = {r.nll_unit for r in self.rows if r.get("nll") is not None}
            unit = units.pop().split(" (")[0] if len(units) == 1 else ""     # "nats per point", "bits/dim"
        elif c.key == "seconds_to_target":
            return f"time to {self.target_quality:g}x iid (s)"
        else:
            unit = c.unit
        return f"{c.title} ({unit})" if unit else c.title

    def cell(self, row: int, c: Column) -> str:
        v = self.rows[row].get(c.key)
        if v is None:
            return "-"
        text = f"{v:,.0f}" if c.integer or abs(v) >= 100 else f"{v:.3g}"
        if c.key == "nll" and len({r.nll_unit for r in self.rows if r.get("nll") is not None}) > 1:
            text += f" {self.rows[row].nll_unit}"
        return text

    def to_text(self, mark: str = "*") -> str:
        """A fixed-width table; `mark` after a value that leads its column."""
        lead = self.leaders()
        head = ["run"] + [self.header(c) for c in self.columns]
        body = []
        for i, r in enumerate(self.rows):
            cells = [r.label]
            for c in self.columns:
                cells.append(self.cell(i, c) + (mark if i in lead.get(c.key, ()) else ""))
            body.append(cells)
        widths = [max(len(x[j]) for x in [head] + body) for j in range(len(head))]
        lines = ["  ".join(s.ljust(w) for s, w in zip(x, widths)) for x in [head] + body]
        return "\n".join(lines) + f"\n({mark} leads its column; lower is better except training speed)"

    def to_csv(self) -> str:
        """One row per run: label, family, each column's raw value (empty: undefined), the NLL
        unit, and `leads`: the columns this run leads, ';'-separated."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["run", "family"] + [c.key for c in self.columns] + ["nll_unit", "leads"])
        for i, r in enumerate(self.rows):
            vals = ["" if r.get(c.key) is None else repr(r.get(c.key)) for c in self.columns]
            w.writerow([r.label, r.family] + vals + [r.nll_unit, ";".join(self.leads(i))])
        return buf.getvalue()

    def to_json(self) -> dict:
        lead = self.leaders()
        return dict(target_quality=self.target_quality,
                    columns=[dict(key=c.key, title=self.header(c), better=c.better) for c in self.columns],
                    runs=[dict(label=r.label, family=r.family, nll_unit=r.nll_unit, **dict(r.values),
                               leads=[k for k, rows in lead.items() if i in rows]) for i, r in enumerate(self.rows)])
