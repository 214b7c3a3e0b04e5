"""The pre-flight markers: prepare (the adapter, validated), run the probes in one entered
adapter (the model, optimizer and RNGs restored bit for bit after), word the verdict.

``preflight`` runs all six on the same adapter and fails when any fails; a
sub-check that does not apply (regression for ``loss_at_init``) is named as
skipped inside it.
"""

from __future__ import annotations

from typing import Any, Callable

from ...adapters.preflight import Preflight
from ...errors import SetupError
from ...report import CheckReport, cause_lines
from ...settings import CheckOptions, RunSettings
from ...spec import TrainSetup
from ..runner import Prepared, prepare_training
from . import measure

SIX = ("loss_at_init", "overfits_one_batch", "batch_independent", "params_update", "finite_training", "batches_mixed")
KEYS = {
    "loss_at_init": ("init_loss", "expected_loss"),
    "overfits_one_batch": ("one_batch_score", "last_loss"),
    "batch_independent": ("leak",),
    "params_update": ("trainable", "offenders"),
    "finite_training": ("steps", "bad_step"),
    "batches_mixed": ("batch_sorting", "batch_label_tv"),
}
DEFAULTS = {"tol": 0.5, "steps_one_batch": 300, "steps_finite": 100, "max_tv": 0.5, "frozen": ()}


def prepare(setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any, nodeid: str | None) -> Prepared:
    marker = options.spec.marker
    p = prepare_training(marker, setup, options, settings, hook, nodeid, run, ("train",))
    if not isinstance(p.adapter, Preflight):
        raise SetupError(f"{marker}: the {type(p.adapter).__name__} adapter has no pre-flight probes (torch and Keras "
                         f"models have them; a third-party adapter adds them by subclassing "
                         f"pytest_trainsanity.adapters.preflight.Preflight).")
    return p


def _option(p: Prepared, name: str, default_key: str | None = None) -> Any:
    try:
        return getattr(p.options, name)
    except AttributeError:
        return DEFAULTS[default_key or name]


def _loss_at_init(p: Prepared, a: Any) -> measure.Verdict:
    return measure.judge_loss_at_init(a.init_probe(), _option(p, "tol"), p.setup.task, a.framework)


def _one_batch(p: Prepared, a: Any) -> measure.Verdict:
    steps = _option(p, "steps", "steps_one_batch")
    p.pass_label("one batch")
    run_ = a.one_batch(steps)
    higher = lower = init = None
    if not measure.one_batch_passed(run_, p.setup.task):  # the causes are measured only on failure
        higher, lower = a.one_batch(steps, 10.0), a.one_batch(steps, 0.1)
        init = a.init_probe() if p.setup.task == "classification" else None
    return measure.judge_one_batch(run_, steps, p.setup.task, higher, lower, init, a.framework)


def _mixing(p: Prepared, a: Any) -> measure.Verdict:
    return measure.judge_mixing(a.mixing())


def _params(p: Prepared, a: Any) -> measure.Verdict:
    frozen = tuple(_option(p, "frozen"))
    records = a.param_step(frozen)
    unmatched = [f for f in frozen if not any(r.name.startswith(f) for r in records)]
    if unmatched:  # a typo would check nothing and pass ("0 of 0 frozen stayed bit-identical")
        tops = sorted({r.name.split(".")[0].split("/")[0] for r in records})
        raise SetupError(
            f"params_update(frozen={frozen!r}): {', '.join(map(repr, unmatched))} starts no parameter name, so nothing "
            f"would be checked as frozen. Parameter names start with: {', '.join(tops[:12])}{', ...' if len(tops) > 12 else ''} "
            f"(torch: model.named_parameters(); Keras: variable paths).")
    return measure.judge_params(records, frozen, a.framework)


def _finite(p: Prepared, a: Any) -> measure.Verdict:
    asked = _option(p, "steps", "steps_finite")
    steps = asked if p.settings.max_steps is None else min(asked, p.settings.max_steps)
    capped = f"finite_training(steps={asked}) was capped at max_steps {steps}" if steps < asked else None
    return measure.judge_finite(a.finite_run(steps), steps, a.framework, capped)


def _mix(p: Prepared, a: Any) -> measure.Verdict:
    return measure.judge_batch_mix(a.batch_mix(p.settings.max_steps), _option(p, "max_tv"))


JUDGES: dict[str, Callable[[Prepared, Any], measure.Verdict]] = {
    "loss_at_init": _loss_at_init, "overfits_one_batch": _one_batch, "batch_independent": _mixing,
    "params_update": _params, "finite_training": _finite, "batches_mixed": _mix,
}


def run(p: Prepared) -> CheckReport:
    adapter = p.adapter
    assert adapter is not None
    names = SIX if p.marker == "preflight" else (p.marker,)
    adapter.lazy_snapshot = True  # type: ignore[attr-defined]  # probes that train snapshot first; readers copy nothing
    with adapter:
        verdicts = [JUDGES[name](p, adapter) for name in names]
    info = adapter.info()
    model = (f"Model: {info.model_name} ({info.framework} on {info.device}), {info.n_params:,} trainable parameters; "
             f"{p.setup.task}.")
    if p.marker != "preflight":
        return _report(p.marker, verdicts[0], model)
    return _umbrella(verdicts, model)


def message(v: measure.Verdict, model: str | None) -> str:
    lines = [v.headline] + ([model] if model else []) + v.lines
    lines += cause_lines(v.likely, v.ruled_out)
    lines += [f"Note: {n}" for n in v.notes]
    return "\n".join(lines)


def _report(marker: str, v: measure.Verdict, model: str) -> CheckReport:
    if v.skipped:
        return CheckReport(marker, True, v.skipped, v.metrics, skipped=v.skipped)
    return CheckReport(marker, v.passed, message(v, model), v.metrics, [c.to_dict() for c in v.likely],
                       key=KEYS[marker])


def _umbrella(verdicts: list[measure.Verdict], model: str) -> CheckReport:
    failed = [v for v in verdicts if not v.passed and not v.skipped]
    ran = [v for v in verdicts if not v.skipped]
    head = (f"preflight {'passed' if not failed else 'FAILED'}: {len(ran) - len(failed)} of {len(ran)} pre-flight checks "
            f"passed" + (f" ({', '.join(v.name for v in failed)} failed)" if failed else "")
            + (f"; {len(verdicts) - len(ran)} did not apply" if len(ran) < len(verdicts) else ""))
    blocks = [head, model]
    for v in failed:  # failures first, in full
        blocks.append("\n" + message(v, None))
    for v in verdicts:
        if v.skipped:
            blocks.append(f"- {v.name} skipped: {v.skipped}")
        elif v.passed:
            blocks.append(f"- {v.headline}")
            blocks += [f"  Note: {n}" for n in v.notes]
    metrics = {f"{v.name}.{k}": val for v in verdicts for k, val in v.metrics.items()}
    metrics["failed"] = len(failed)
    causes = [c.to_dict() for c in sorted((c for v in failed for c in v.likely), key=lambda c: -c.score)]
    return CheckReport("preflight", not failed, "\n".join(blocks), metrics, causes, key=("failed",))
