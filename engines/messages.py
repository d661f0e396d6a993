"""What crosses the boundary of a Session: typed, frozen messages out and validated commands in.

Out (Session -> window): RunInfo once a run is built, Snapshot (losses since the last one and,
when wanted, field / views / samples), Trajectory (a recorded particle run), Progress (a long
sampling job), State (playing or paused, and why), Notice (one status-bar line), Error (title +
text, shown once), Finished (the session has ended, its thread may be joined); beside training
engines.inspector.InspectorExtras and engines.checkpoints.CheckpointPictures, Branched, and the
sampler lab's LabProgress and LabResult.

In (window -> Session): Play, Step, Speed, SetTrain, Want, Sampler, Particles, SamplesNow,
StopAt, Stop, SaveRun, ExportLosses, Rewind, Branch, RunLab, StopLab. Every command checks its values when it is made, with the same range checks as
engines.config.build (SetTrain builds a TrainConfig), so no command reaches a Run unchecked.

The arrays inside the messages are numpy copies owned by the message: a receiver on another
thread may keep them. "Frozen" means no field is reassigned; receivers also never write into
the arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field, replace

import numpy as np

from .config import ConfigError, TrainConfig, build

LIVE_TRAIN_SETTINGS = ("lr", "batch", "grad_clip")    # changed in the running Run; the rest rebuild it
MAX_PARTICLES = 200_000                                # points; image runs are capped by bytes (engines.session)
MAX_SAMPLES = 100_000


# ====================================================================== out
@dataclass(frozen=True)
class Posted:
    """What every message out of a Session shares: `run_id`, the session that posted it, stamped
    by Session.post (0 until then). Keyword-only, so each message's own fields keep their places."""
    run_id: int = dc_field(default=0, kw_only=True)


@dataclass(frozen=True)
class RunInfo:
    """What the window needs to know about a freshly built run (once, before any Snapshot)."""
    run_id: int
    family: str
    title: str
    summary: str
    dataset: str
    capabilities: frozenset
    level: dict | None                     # the family's noise-level slider: min, max, default, label...
    samplers: tuple                        # sampler names
    default_sampler: str
    parameters: int
    device: str
    is_image: bool
    data_shape: tuple                      # (2,) or (C, H, W)
    n_data: int
    trainable: bool
    analytic: bool                         # an exact score is known (a Gaussian-mixture dataset)
    threads: int
    init_seconds: float
    schedule: dict                         # name -> (x (K,), y (K,)), plus "x_label"
    preview: np.ndarray                    # (<=3000, 2) points or (<=64, C, H, W) images, data coordinates
    bounds: tuple | None                   # (xmin, xmax, ymin, ymax) for points, None for images
    sampler_levels: np.ndarray | None      # the sampler's noise levels (for the schedule marker)
    has_views: bool                        # the family draws pictures of its own (Family.views)
    reference: dict = dc_field(default_factory=dict)   # real-data quality figures (FID/IS of real images)


@dataclass(frozen=True)
class Snapshot(Posted):
    """Plain values and numpy arrays only: safe to hand to another thread."""
    step: int
    wall_time: float
    loss_steps: np.ndarray                 # (k,) steps of the loss records since the last snapshot
    losses: dict                           # term -> (k,) float64
    lr: float
    steps_per_s: float
    field: dict | None = None              # xs (R,), ys (R,), score (R, R, 2), maps (R, R), level, alpha_sigma
    samples: np.ndarray | None = None      # (n, 2) or (n, C, H, W), data coordinates
    views: dict | None = None              # family-specific pictures (Family.views)
    metrics: dict = dc_field(default_factory=dict)
    message: str = ""                      # e.g. why the run paused
    diverged: bool = False


@dataclass(frozen=True)
class Trajectory(Posted):
    """A recorded sampling run: F frames of n particles (F capped by bytes, evenly decimated)."""
    frames: np.ndarray                     # (F, n, 2) or (F, n, C, H, W) float32, data coordinates
    i: np.ndarray                          # (F,) sampler step of each frame
    t: np.ndarray                          # (F,) the sampler's time (nan where undefined)
    sigma: np.ndarray                      # (F,) noise level (nan where undefined)
    nfe: int                               # network evaluations
    steps: int                             # sampler steps
    seconds: float
    step: int                              # training step of the model that sampled
    sampler: str
    diverged: int = 0                      # particles that ended non-finite (drawn as "diverged")
    mode_shares: np.ndarray | None = None  # (K,) share of the final particles per mixture component
    mode_weights: np.ndarray | None = None # (K,) the mixture's weights (analytic datasets only)


@dataclass(frozen=True)
class Progress(Posted):
    """A long sampling job is under way (job 'samples' or 'particles'); done=True ends it."""
    job: str
    i: int = 0
    total: int | None = None
    elapsed: float = 0.0
    x: np.ndarray | None = None            # (n, 2) latest particles (particle jobs only)
    t: float = math.nan
    sigma: float = math.nan
    done: bool = False


@dataclass(frozen=True)
class State(Posted):
    """The session paused or resumed itself (divergence, a target reached, an error)."""
    playing: bool
    seq: int                               # the window's Play/Pause count this answers
    step: int


@dataclass(frozen=True)
class Notice(Posted):
    text: str


@dataclass(frozen=True)
class Error(Posted):
    title: str
    text: str
    fatal: bool = False                    # the run could not be built: the session has ended


@dataclass(frozen=True)
class SamplerLevels(Posted):
    levels: np.ndarray | None


@dataclass(frozen=True)
class ViewsAvailable(Posted):
    """After the first training steps a family may start drawing views (EBM chains...)."""
    available: bool


@dataclass(frozen=True)
class Finished(Posted):
    """The session has ended: its thread may be joined."""


@dataclass(frozen=True)
class Branched(Posted):
    """Branch(step) was done: `run` (an engines.run.Run, owned by the receiver from now on)
    starts from the checkpoint at `step` with its weights, optimizer and generator state
    (engines.checkpoints.branch), for the window to open as a run of its own. `original`: a copy
    of the branched-from run as it was then (checkpoints.capture + branch, taken on the session's
    own thread while it is paused), for opening the branch beside it; the session keeps its run."""
    step: int
    run: object
    original: object = None


@dataclass(frozen=True)
class LabProgress(Posted):
    """The sampler lab (RunLab) finished one row of `total`."""
    done: int
    total: int
    sampler: str = ""
    nfe: int = 0
    x_iid: float = math.nan
    source: str = "model"                  # "model", or "oracle" (the exact score: the ceiling)


@dataclass(frozen=True)
class LabResult(Posted):
    """The sampler lab's outcome (engines.lab.run_lab on the session's model, plus the exact-score
    oracle of the same dataset when it is analytic). curves: (engines.lab.LabCurve, ...) one per
    (source, sampler), sorted by NFE; rows: (engines.lab.LabRow, ...) as measured."""
    curves: tuple
    rows: tuple
    step: int                              # the training step of the model the lab measured
    n_samples: int
    dataset: str
    cancelled: bool = False                # stopped early: the rows are those finished
    message: str = ""                      # why there is nothing (or why it stopped)


def stamped(msg, run_id: int):
    return replace(msg, run_id=run_id)


# ====================================================================== in
def _finite(name, v, lo=None, hi=None):
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {v!r} is not a number") from None
    if not math.isfinite(v):
        raise ConfigError(f"{name}: must be a finite number, got {v!r}")
    if lo is not None and v < lo:
        raise ConfigError(f"{name}: {v:g} is below the smallest sensible value {lo:g}")
    if hi is not None and v > hi:
        raise ConfigError(f"{name}: {v:g} is above the largest sensible value {hi:g}")
    return v


def _count(name, v, lo, hi):
    return int(_finite(name, v, lo, hi))


@dataclass(frozen=True)
class Play:
    on: bool = True
    seq: int = 0


@dataclass(frozen=True)
class Step:
    n: int = 1

    def __post_init__(self):
        object.__setattr__(self, "n", _count("step count", self.n, 1, 1_000_000))


@dataclass(frozen=True)
class Speed:
    """steps_per_frame None = full speed; otherwise slow motion at the window's ~30 frames/s."""
    steps_per_frame: float | None = None

    def __post_init__(self):
        if self.steps_per_frame is not None:
            object.__setattr__(self, "steps_per_frame", _finite("speed", self.steps_per_frame, 1e-3, 1e5))


@dataclass(frozen=True)
class SetTrain:
    """A live training setting (lr, batch, grad_clip), range-checked by building a TrainConfig."""
    name: str
    value: float

    def __post_init__(self):
        if self.name not in LIVE_TRAIN_SETTINGS:
            raise ConfigError(f"{self.name} cannot change in a running run (live: {', '.join(LIVE_TRAIN_SETTINGS)})")
        tc = build(TrainConfig, {self.name: self.value})
        object.__setattr__(self, "value", getattr(tc, self.name))


@dataclass(frozen=True)
class Want:
    """What the visible panels need computed. field: dict(resolution, level, ...); views: dict
    (n, level, t...); samples: dict(n, every). None = not wanted."""
    field: dict | None = None
    views: dict | None = None
    samples: dict | None = None

    def __post_init__(self):
        if self.field is not None:
            f = dict(self.field)
            if "resolution" in f:
                f["resolution"] = _count("field resolution", f["resolution"], 2, 256)
            object.__setattr__(self, "field", f)
        if self.samples is not None:
            s = dict(self.samples)
            s["n"] = _count("samples", s.get("n", 1000), 1, MAX_SAMPLES)
            s["every"] = _finite("samples every", s.get("every", 3.0), 0.05, 3600)
            object.__setattr__(self, "samples", s)
        if self.views is not None:
            object.__setattr__(self, "views", dict(self.views))

    @classmethod
    def from_dict(cls, d: dict | None) -> "Want":
        d = dict(d or {})
        return cls(field=d.get("field"), views=d.get("views"), samples=d.get("samples"))

    def as_dict(self) -> dict:
        return {k: v for k, v in (("field", self.field), ("views", self.views), ("samples", self.samples))
                if v is not None}


@dataclass(frozen=True)
class Sampler:
    """The sampler for samples and particles; its options are checked against the family's
    sampler Config by the session (which knows the family)."""
    name: str = ""
    options: dict = dc_field(default_factory=dict)


@dataclass(frozen=True)
class Particles:
    n: int = 1000
    seed: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "n", _count("particles", self.n, 1, MAX_PARTICLES))


@dataclass(frozen=True)
class SamplesNow:
    pass


@dataclass(frozen=True)
class StopAt:
    """Pause when the loss (mean of the last 50 steps) or the sample quality (energy distance
    in multiples of the iid level) reaches value. kind None: never."""
    kind: str | None = None
    value: float = 0.0

    def __post_init__(self):
        if self.kind not in (None, "loss", "metric"):
            raise ConfigError(f"stop at: unknown target {self.kind!r} (loss or metric)")
        if self.kind is not None:
            object.__setattr__(self, "value", _finite("stop at", self.value))


@dataclass(frozen=True)
class Stop:
    pass


def _out_path(what: str, path, suffixes: tuple) -> str:
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{what}: name a file")
    if not path.lower().endswith(suffixes) and not (what == "save run" and "." not in path.rsplit("/", 1)[-1]):
        raise ConfigError(f"{what}: {path!r} should end in {' or '.join(suffixes)}")
    return path


@dataclass(frozen=True)
class SaveRun:
    """Write the run as a bundle (engines.bundle): a .zip, or a RUN_DIR folder for a path with no
    extension; view_state is the window's plain-JSON view. Written by the session's own thread,
    between jobs, so the weights are never read while a step changes them."""
    path: str
    view_state: dict = dc_field(default_factory=dict)

    def __post_init__(self):
        _out_path("save run", self.path, (".zip",))
        object.__setattr__(self, "view_state", dict(self.view_state))


@dataclass(frozen=True)
class ExportLosses:
    """Write the loss history (engines.export.write_losses) to .csv or .npy."""
    path: str

    def __post_init__(self):
        _out_path("export losses", self.path, (".csv", ".npy"))


@dataclass(frozen=True)
class Rewind:
    """Show the field, samples and particles as they were at the kept checkpoint nearest `step`
    (answered with an engines.checkpoints.CheckpointPictures)."""
    step: int

    def __post_init__(self):
        object.__setattr__(self, "step", _count("checkpoint step", self.step, 0, 10**12))


@dataclass(frozen=True)
class Branch:
    """Start a new run from the kept checkpoint nearest `step` (answered with Branched)."""
    step: int

    def __post_init__(self):
        object.__setattr__(self, "step", _count("checkpoint step", self.step, 0, 10**12))


MAX_LAB_BUDGETS = 12
MAX_LAB_NFE = 1000


def parse_nfe_list(text) -> tuple:
    """'5, 10, 20' -> (5, 10, 20): sorted, unique, each in 1..MAX_LAB_NFE; ConfigError with the reason."""
    items = text.replace(";", ",").split(",") if isinstance(text, str) else list(text)
    out = set()
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        out.add(_count("NFE", item.strip() if isinstance(item, str) else item, 1, MAX_LAB_NFE))
    if not out:
        raise ConfigError("NFE: give at least one budget, e.g. 5, 10, 20, 50")
    if len(out) > MAX_LAB_BUDGETS:
        raise ConfigError(f"NFE: at most {MAX_LAB_BUDGETS} budgets, got {len(out)}")
    return tuple(sorted(out))


@dataclass(frozen=True)
class RunLab:
    """Run the sampler lab on the session's model at these NFE budgets (engines.lab.run_lab),
    n_samples per row; a cancellable job answered with LabProgress and one LabResult."""
    nfe: tuple = (5, 10, 20, 50)
    n_samples: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "nfe", parse_nfe_list(self.nfe))
        object.__setattr__(self, "n_samples", _count("lab samples", self.n_samples, 100, 20_000))


@dataclass(frozen=True)
class StopLab:
    """Stop a running lab (its finished rows are sent as a cancelled LabResult)."""


COMMANDS = (Play, Step, Speed, SetTrain, Want, Sampler, Particles, SamplesNow, StopAt, Stop, SaveRun, ExportLosses,
            Rewind, Branch, RunLab, StopLab)
