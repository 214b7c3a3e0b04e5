"""Settings: marker kwargs > command line > ini > default, resolved in one place.

Run-wide settings (device, seed, step budget, report path, artifacts dir)
come from the command line or ini file and may be overridden per marker.
Each marker also has its own check options. Everything is validated here so
a bad value is reported once, naming the value and where it came from.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import OptionError

DEFAULT_SEED = 0
DEFAULT_MAX_STEPS = 2000
DEFAULT_EVAL_SAMPLES = 10000
DEFAULT_SETUP_FIXTURE = "train_setup"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def _device(value: Any, source: str) -> str:
    text = str(value).strip().lower()
    if not DEVICE_PATTERN.match(text):
        raise OptionError(
            f"trainsanity device {value!r} (from {source}) is not valid; "
            f"choose one of: {DEVICE_CHOICES}."
        )
    return text


def _int(value: Any, source: str, name: str, minimum: int) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise OptionError(
            f"trainsanity {name} {value!r} (from {source}) must be an integer >= {minimum}."
        )
    return number


def _max_steps(value: Any, source: str) -> int | None:
    """A step budget; ``none`` or ``0`` means no budget (whole epochs always run)."""
    if value is None or str(value).strip().lower() in ("", "none", "0"):
        return None
    return _int(value, source, "max_steps", 1)


@dataclass(frozen=True)
class RunSettings:
    """Settings that apply to every check of a run (overridable per marker)."""

    device: str = "auto"
    seed: int = DEFAULT_SEED
    max_steps: int | None = DEFAULT_MAX_STEPS
    eval_samples: int = DEFAULT_EVAL_SAMPLES
    report: str | None = None
    artifacts: str | None = None
    explain: bool = False

    def override(self, source: str, **values: Any) -> "RunSettings":
        """A copy with ``values`` validated and applied (``source`` names them in errors)."""
        return build_run_settings({**dataclasses.asdict(self), **values}, source)


RUN_KEYS = ("device", "seed", "max_steps", "eval_samples")  # the run settings a marker may override


def build_run_settings(values: Mapping[str, Any], source: str) -> RunSettings:
    return RunSettings(
        device=_device(values.get("device", "auto"), source),
        seed=_int(values.get("seed", DEFAULT_SEED), source, "seed", 0),
        max_steps=_max_steps(values.get("max_steps", DEFAULT_MAX_STEPS), source),
        eval_samples=_int(values.get("eval_samples", DEFAULT_EVAL_SAMPLES), source, "eval_samples", 1),
        report=values.get("report") or None,
        artifacts=values.get("artifacts") or None,
        explain=bool(values.get("explain", False)),
    )


# ----------------------------------------------------------------- check options


def _fraction(name: str, low: float = 0.0, high: float = 1.0) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        return float(value)

    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _positive_int(name: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        return value

    return check


def _boolean(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
        return value

    return check


def _positive(name: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
        return float(value)

    return check


def _overlap(value: Any) -> int | float:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)  # numpy integers too
    elif isinstance(value, numbers.Real):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:  # NaN fails too
        raise ValueError(f"max_overlap must be a count >= 0 or a fraction in [0, 1), got {value!r}")
    if isinstance(value, float) and not value < 1:
        raise ValueError(f"max_overlap as a float is a fraction in [0, 1), got {value!r}")
    return value


def _metric(value: Any) -> str:
    choices = ("val_acc", "train_acc", "val_loss", "train_loss")
    if value not in choices:
        raise ValueError(f"metric must be one of {', '.join(choices)}, got {value!r}")
    return value


def _allow(value: Any) -> tuple[str, ...]:
    causes = ("lr_schedule", "batch_stats", "momentum", "unexplained")
    if not isinstance(value, (str, tuple, list, set, frozenset)):
        raise ValueError(f"allow must be a tuple of causes from {', '.join(causes)} (allow=() allows none), "
                         f"got {value!r}")
    items = (value,) if isinstance(value, str) else tuple(value)
    bad = [v for v in items if v not in causes]
    if bad:
        raise ValueError(f"allow may hold only {', '.join(causes)}; got {bad!r}")
    return items


def _prefixes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list, set, frozenset)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"frozen must be a tuple of parameter-name prefixes (e.g. frozen=('encoder.',)), got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class CheckSpec:
    """One marker: its name, the check it runs and its keyword arguments."""

    marker: str
    check: str
    defaults: Mapping[str, Any]
    validators: Mapping[str, Callable[[Any], Any]] = field(repr=False)
    summary: str = ""

    def signature(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {**self.defaults, "setup": DEFAULT_SETUP_FIXTURE}.items())
        return f"{self.marker}({args})"

    def parse(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], source: str) -> "CheckOptions":
        """Validate marker/function arguments into frozen options (unknown names are errors)."""
        if args:
            raise OptionError(
                f"{source}: {self.marker} takes keyword arguments only, got positional {args!r}. "
                f"Valid: {self.signature()}."
            )
        valid = set(self.defaults) | {"setup", *RUN_KEYS}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise OptionError(
                f"{source}: unknown argument(s) {', '.join(unknown)} for {self.marker}. "
                f"Valid arguments: {', '.join(sorted(valid))}. Signature: {self.signature()}."
            )
        values = dict(self.defaults)
        for key, value in kwargs.items():
            if key in self.validators:
                try:
                    values[key] = self.validators[key](value)
                except ValueError as exc:
                    raise OptionError(f"{source}: {exc}.") from None
        setup = kwargs.get("setup", DEFAULT_SETUP_FIXTURE)
        if not isinstance(setup, str) or not setup.isidentifier():
            raise OptionError(f"{source}: setup must name a fixture, got {setup!r}.")
        run = {k: kwargs[k] for k in RUN_KEYS if k in kwargs}
        return CheckOptions(spec=self, values=values, setup=setup, run_overrides=run)


@dataclass(frozen=True)
class CheckOptions:
    spec: CheckSpec
    values: Mapping[str, Any]
    setup: str
    run_overrides: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


CHECKS: dict[str, CheckSpec] = {
    spec.marker: spec
    for spec in (
        CheckSpec(
            "no_epoch1_overfit",
            "epoch1_overfit",
            {"max_gap": 0.15, "max_train_acc": None, "epochs": 1, "probes": True},
            {
                "max_gap": _fraction("max_gap"),
                "max_train_acc": _optional(_fraction("max_train_acc")),
                "epochs": _positive_int("epochs"),
                "probes": _boolean("probes"),
            },
            "train a short pass and fail on a train/val gap, with ranked, measured causes",
        ),
        CheckSpec(
            "no_leakage",
            "leakage",
            {"near_duplicates": True, "threshold": None, "max_overlap": 0, "within_split": False},
            {
                "near_duplicates": _boolean("near_duplicates"),
                "within_split": _boolean("within_split"),
                "threshold": _optional(_positive("threshold")),
                "max_overlap": _overlap,
            },
            "fail when samples, groups or time ranges are shared between splits",
        ),
        CheckSpec(
            "lr_spike_explained",
            "lr_spikes",
            {"epochs": 20, "metric": "val_acc", "min_jump": None, "allow": ("lr_schedule",)},
            {
                "epochs": _positive_int("epochs"),
                "metric": _metric,
                "min_jump": _optional(_positive("min_jump")),
                "allow": _allow,
            },
            "fail when a metric spike has a cause outside `allow`, or the lr collapses",
        ),
        CheckSpec(
            "inputs_normalized",
            "normalization",
            {"tol": 5.0},
            {"tol": _positive("tol")},
            "fail when inputs are raw-scaled, split-inconsistent, or hold NaN/Inf",
        ),
        CheckSpec("loss_at_init", "loss_at_init", {"tol": 0.5}, {"tol": _positive("tol")},
                  "the untrained loss is the entropy of the labels (ln C), and outputs are not softmaxed twice"),
        CheckSpec("overfits_one_batch", "overfit_one_batch", {"steps": 300}, {"steps": _positive_int("steps")},
                  "the model fits one fixed batch exactly within `steps` steps"),
        CheckSpec("batch_independent", "batch_independence", {}, {},
                  "in eval mode no sample's output depends on another sample's input"),
        CheckSpec("params_update", "params_update", {"frozen": ()}, {"frozen": _prefixes},
                  "one step changes every trainable parameter and no frozen one"),
        CheckSpec("finite_training", "finite_training", {"steps": 100}, {"steps": _positive_int("steps")},
                  "loss, gradients and weights stay finite for `steps` steps"),
        CheckSpec("batches_mixed", "batch_mix", {"max_tv": 0.5}, {"max_tv": _fraction("max_tv")},
                  "the loader's batches mix the classes like the split does"),
        CheckSpec("preflight", "preflight", {}, {}, "all six pre-flight checks"),
    )
}
CHECK_TO_MARKER = {spec.check: spec.marker for spec in CHECKS.values()}
