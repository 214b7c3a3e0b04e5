"""What every check's run shares: a prepared check, the adapter it trains through, the
splits it reads, and the extra causes other plugins add.

Each check lives in its own room (``checks/<name>/``: ``measure.py`` holds the
numpy measurements and verdict, ``run.py`` prepares, runs and words the
message); ``api.py`` only maps public names to those rooms. A check is
prepared first (splits opened, model built and validated: misuse surfaces
here, so pytest reports it as a setup error) and run second. Both phases read
the user's data under a seeded RNG and put every RNG state back afterwards,
so a verdict depends neither on test order nor leaves a trace on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..adapters.base import Adapter
from ..adapters.splits import Split, open_splits
from ..errors import SetupError
from ..frameworks import framework_of
from ..progress import Progress
from ..report import CheckReport
from ..rng import seeded
from ..settings import CheckOptions, RunSettings
from ..spec import TrainSetup
from ..threads import numpy_blas_single
from . import finite
from .causes import Cause


@dataclass
class Prepared:
    """A validated check, ready to run."""

    marker: str
    options: CheckOptions
    settings: RunSettings
    hook: Any
    nodeid: str | None
    runner: Callable[["Prepared"], CheckReport]
    setup: TrainSetup
    splits: dict[str, Split] = field(default_factory=dict)
    adapter: Adapter | None = None
    engine: Any = None  # no_leakage on Dask / Spark DataFrames: (engine name, the splits as it holds them)

    def run(self) -> CheckReport:
        blas = numpy_blas_single() if self.adapter is not None else contextlib.nullcontext()
        with self.reading(), blas:  # a training check: numpy's BLAS stays off the framework's cores
            report = self.runner(self)
        report.nodeid = self.nodeid
        self.hook.pytest_trainsanity_check_finished(report=report, nodeid=self.nodeid)
        return report

    def reading(self) -> Any:
        return Reading(self.settings.seed, self.splits, gpu=self.settings.device not in ("cpu", "mps"))

    def pass_label(self, label: str) -> None:
        """Name the next training pass in the progress log."""
        if self.adapter is not None:
            self.adapter.progress_label = label  # type: ignore[attr-defined]


class Reading:
    """Seeded global RNGs while a check reads and trains; every RNG state (python, numpy, torch
    CPU and CUDA, the loaders' own generators) is put back when it ends, whatever happened."""

    def __init__(self, seed: int, splits: dict[str, Split], gpu: bool = False) -> None:
        self.seed, self.splits, self.gpu = seed, splits, gpu

    def __enter__(self) -> None:
        self._ctx = seeded(self.seed, self.gpu)
        self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            for split in self.splits.values():
                split.rewind()
        finally:
            self._ctx.__exit__(*exc)


def resolve_hook(hook: Any) -> Any:
    if hook is not None:
        return hook
    from ..hooks import standalone_hook

    return standalone_hook()


def require_setup(marker: str, setup: Any, options: CheckOptions) -> TrainSetup:
    if not isinstance(setup, TrainSetup):
        raise SetupError(
            f"{marker} needs a TrainSetup, but the setup fixture {options.setup!r} returned "
            f"{type(setup).__name__}. Return pytest_trainsanity.TrainSetup(model=..., train=..., val=..., ...)."
        )
    return setup


def prepare_model_free(marker: str, setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any,
                       nodeid: str | None, runner: Callable[[Prepared], CheckReport]) -> Prepared:
    """Open every given split (a datamodule's too); nothing is read until the check runs."""
    p = Prepared(marker, options, settings, hook, nodeid, runner, setup)
    with p.reading():
        p.splits = open_splits(setup)
    return p


def prepare_training(marker: str, setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any,
                     nodeid: str | None, runner: Callable[[Prepared], CheckReport], names: tuple[str, ...]) -> Prepared:
    """Open the splits a training check reads, read their eval samples, build and validate the
    adapter (all under the seeded RNG, restored after)."""
    setup.require(marker, "model")
    p = Prepared(marker, options, settings, hook, nodeid, runner, setup)
    with p.reading():
        p.splits = {k: s.as_arrays() if s.kind.startswith("table") else s  # type: ignore[attr-defined]
                    for k, s in open_splits(setup, names).items()}  # tables: numeric columns, as float32
        for name in names:
            if name not in p.splits:
                raise SetupError(f"{marker} needs TrainSetup({name}=...) but it was left None"
                                 + (" and the datamodule has no such loader." if setup.datamodule is not None else "."))
        if marker in PER_EPOCH and hasattr(p.splits["train"], "refuse_endless"):
            p.splits["train"].refuse_endless(  # type: ignore[attr-defined]
                f"{marker} judges training epoch by epoch, and an endless pipeline has no epoch to end: the pass "
                f"would run its whole step budget as one 'epoch'.")
        p.adapter = make_adapter(setup, p.splits, settings, hook)
        p.adapter.progress = Progress(marker)
    return p


PER_EPOCH = ("no_epoch1_overfit", "lr_spike_explained")  # the checks whose unit is the train split's epoch


def make_adapter(setup: TrainSetup, splits: dict[str, Split], settings: RunSettings, hook: Any) -> Adapter:
    """Ask the hook for an adapter; a zero-arg factory is called (seeded) when nothing claims the object."""
    model = setup.model
    adapter = hook.pytest_trainsanity_make_adapter(model=model, setup=setup, data=splits, settings=settings)
    if adapter is None and callable(model) and framework_of(model) is None:
        with seeded(settings.seed):
            try:
                model = model()
            except TypeError as exc:
                raise SetupError(f"TrainSetup(model=...) is callable but not a zero-argument factory: {exc}") from None
        adapter = hook.pytest_trainsanity_make_adapter(model=model, setup=setup, data=splits, settings=settings)
    if adapter is None:
        raise SetupError(
            f"TrainSetup(model=...) is a {type(model).__module__}.{type(model).__name__}, which no adapter "
            f"supports. Supported: a torch.nn.Module, a keras.Model, or a zero-argument factory returning one; "
            f"other frameworks can add an adapter through the "
            f"pytest_trainsanity_make_adapter hook."
        )
    return adapter


def extra_causes(hook: Any, check: str, m: Any) -> list[Cause]:
    evidence = {k: v for k, v in vars(m).items() if isinstance(v, (int, float, str, type(None)))}
    found: list[Cause] = []
    for causes in hook.pytest_trainsanity_diagnose(check=check, evidence=evidence):
        found += list(causes or [])
    return found


def sample_lines(samples: dict[str, Any]) -> Iterator[str]:
    """Where the metrics and data measurements came from, when that was not the whole split."""
    for name, s in samples.items():
        if s.sampled:
            yield (f"{name} metrics and data measurements come from {s.how} (eval_samples; "
                   f"--trainsanity-eval-samples)")


def nonfinite_report(p: Prepared, trace: Any, inputs: Callable[[], dict[str, Any]], info: Any,
                     samples: dict[str, Any] | None = None) -> CheckReport | None:
    """The failing report of a training pass that went NaN/Inf, or of eval samples whose inputs hold
    NaN/Inf although the pass stayed finite (None when everything is finite): a gate never judges
    metrics of a non-finite model or on non-finite inputs. ``inputs`` gives the train eval sample's
    fields; the other splits among ``samples`` are checked too."""
    from ..report import cause_lines

    others = {name: s.numpy()[0] for name, s in (samples or {}).items() if name != "train"}
    nf = finite.find(trace, inputs(), others)
    if nf is None:
        return None
    likely, ruled_out = finite.causes(nf, getattr(info, "eps_underflow", ""))
    lines = [finite.headline(p.marker, nf),
             f"Model: {info.model_name} ({info.framework} on {info.device}), {info.n_params:,} trainable parameters."]
    lines += [f"Sample: {line}." for line in sample_lines(samples or {})]
    lines += cause_lines(likely, ruled_out)
    return CheckReport(p.marker, False, "\n".join(lines), {**nf.metrics(), "steps": nf.steps},
                       [c.to_dict() for c in likely], key=("nonfinite_step", "nonfinite_weights"))
