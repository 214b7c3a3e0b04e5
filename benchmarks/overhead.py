"""Overhead of pytest-trainsanity, as ratios against baselines measured in the same run.

Run it with ``python benchmarks/overhead.py`` (or ``tox -e bench``). It takes
about a minute on a 2-core CPU machine, prints each measurement with its
target and PASS or MISS, and always exits 0: it reports, it does not gate.
Run it on an otherwise idle machine: the header says how busy the CPUs
were just before it started, and warns when other work was running.

The numbers:

1. adapter epoch / bare epoch (target <= 1.15x). One instrumented epoch,
   ``TorchAdapter.train(epochs=1)`` inside an entered adapter (per-step
   loss, lr, grad norm and update ratio, then train and val accuracy in
   eval mode), against the hand-written loop a user would write for the
   same accuracies: tensors built once, a seeded ``torch.randperm`` per
   epoch, zero_grad / forward / loss / backward / step per batch of 32, then
   ``model.eval()`` and train and val accuracy under ``torch.no_grad()``.
   Data: sklearn digits, 1437 train / 360 val, standardised on train;
   model 64-256-256-10 MLP, Adam 1e-3, cross-entropy. The adapter restores
   its snapshot at the start of each ``train()`` (timed, it is its cost);
   the bare model and optimizer are reset before each epoch (untimed), so
   both sides run the very same epoch, and the script checks that they end
   with identical accuracies. The sides alternate, the order rotating each
   round, over 3 warm-up and 25 timed rounds; medians are compared.
   A second ratio times the training steps alone: the bare loop without its
   evaluation, against the adapter with its end-of-epoch evaluation
   replaced by a no-op on that one instance (the adapter source is not
   touched). What remains on the adapter side is the snapshot restore, the
   per-step measurements and the conversion of the trace to numpy.

1b. the same with the train split as a DataLoader (TensorDataset, batch 32,
   shuffle=True; target <= 1.15x): the bare loop seeds the global RNG and
   iterates the loader (``for x, y in loader``), the adapter iterates the same
   loader object through its split reader; both end with the same accuracies.

2. collect with plugin / collect without (target <= 1.05x).
   ``python -m pytest --collect-only -q -p no:cacheprovider`` on a generated
   file of 200 plain tests (and an empty conftest), in subprocesses, with
   the plugin loaded from its ``trainsanity`` entry point against the same
   command with ``-p no:trainsanity`` (checked first: both collect 200
   tests, only the first knows ``--trainsanity-seed``); 21 alternating runs
   each after 2 warm-up, medians. Interpreter and pytest start-up dominate
   both sides, so the absolute difference in ms, the run-to-run spread and
   the plugin's own import time (``python -X importtime``) are printed too.
   Subprocesses write bytecode to a private temporary PYTHONPYCACHEPREFIX,
   so the timed runs load compiled modules, as a user's repeated runs do,
   even where PYTHONDONTWRITEBYTECODE is set.

3. no_epoch1_overfit wall time / 10 s (target <= 1.0, i.e. <= 10 s on 2
   cores). ``check_epoch1_overfit(setup)`` with the default probes (main
   pass, shuffled-label pass, lr/10 pass, plus the statistics) on the
   digits split with a 64-128-10 MLP. The first call is timed in a fresh
   subprocess (cold: the plugin's lazy imports, torch's first-use costs;
   torch, sklearn and the setup are built before the clock starts), then
   the median of three further calls in this process, each on a freshly
   built setup. The verdict uses the cold call.

4. Keras epoch / model.fit epoch (target <= 1.2x): ``KerasAdapter.train(epochs=1)``
   against ``model.fit`` for one epoch with ``validation_data`` plus
   ``model.evaluate`` on train, the same numbers a user gets from Keras (see
   ``bench_keras``). Skipped when tensorflow is not installed.

torch runs with ``torch.set_num_threads(2)`` in every process here (the
header says so), so the numbers are comparable across machines with two
or more cores.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

THREADS = 2
ADAPTER_TARGET = 1.15
KERAS_TARGET = 1.2
COLLECT_TARGET = 1.05
OVERFIT_TARGET_S = 10.0
WARMUP_ROUNDS = 3
TIMED_ROUNDS = 25
COLLECT_WARMUP = 2
COLLECT_RUNS = 21
OVERFIT_WARM_CALLS = 3
N_TESTS = 200
BATCH = 32
COLD_FLAG = "--cold-overfit"  # internal: the subprocess that times the first check call


# ---------------------------------------------------------------- shared helpers


def import_torch() -> Any:
    import torch

    torch.set_num_threads(THREADS)
    return torch


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1437/360 stratified digits split, standardised with train statistics, float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xtr, Xv, ytr, yv = train_test_split(X.astype(np.float32), y, test_size=360, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return (scaler.transform(Xtr).astype(np.float32), scaler.transform(Xv).astype(np.float32), ytr, yv)


def mlp(torch: Any, *widths: int, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    layers: list[Any] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        if i:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(a, b))
    return torch.nn.Sequential(*layers)


Side = Callable[[], Any]


def no_prep() -> None:
    return None


def alternate(sides: dict[str, tuple[Side, Side]], warmup: int, rounds: int) -> dict[str, list[float]]:
    """Run every side once per round, rotating the order each round; keep the timed rounds' seconds.

    Each side is ``(prepare, run)``: ``prepare`` is not timed. The heap is collected and frozen
    once up front, so a collection inside a timed call only walks what that call allocated.
    """
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.freeze()
    try:
        for r in range(warmup + rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                prepare, run = sides[name]
                prepare()
                start = time.perf_counter()
                run()
                if r >= warmup:
                    times[name].append(time.perf_counter() - start)
    finally:
        gc.unfreeze()
    return times


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.1f} ms"


def header(torch: Any) -> None:
    import sklearn

    print("pytest-trainsanity overhead benchmark")
    print(
        f"python {platform.python_version()} | torch {torch.__version__} | numpy {np.__version__} | "
        f"scikit-learn {sklearn.__version__} | {os.cpu_count()} CPU(s) | "
        f"torch.set_num_threads({THREADS}) -> {torch.get_num_threads()} thread(s) | {platform.platform()}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    busy = cpu_busy()
    text = f"{100 * busy:.0f}% over the last second" if busy is not None else "unknown"
    print(f"CPU busy before start: {text}; load average (1 min) {load:.2f}"
          + ("  WARNING: other work is running; timings will be noisy" if busy is not None and busy > 0.25 else ""))
    print()


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` while this script sleeps (Linux /proc/stat; else None)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


# ---------------------------------------------------------------- 1. adapter epoch vs bare loop


def bare_accuracies(torch: Any, model: Any, tensors: tuple[Any, ...]) -> tuple[float, float]:
    """What a user computes after an epoch: train and val accuracy in eval mode."""
    Xtr, ytr, Xv, yv = tensors
    model.eval()
    with torch.no_grad():
        return ((model(Xtr).argmax(dim=1) == ytr).float().mean().item(),
                (model(Xv).argmax(dim=1) == yv).float().mean().item())


def bare_epoch(torch: Any, model: Any, opt: Any, tensors: tuple[Any, ...], evaluate: bool) -> Callable[[], Any]:
    """The hand-written loop: seeded permutation, 32-sample steps, then eval-mode accuracies."""
    Xtr, ytr, Xv, yv = tensors
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(Xtr)

    def epoch() -> tuple[float, float] | None:
        generator = torch.Generator().manual_seed(0)
        model.train()
        order = torch.randperm(n, generator=generator)
        for s in range(0, n, BATCH):
            idx = order[s : s + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(Xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        return bare_accuracies(torch, model, tensors) if evaluate else None

    return epoch


def make_adapter(torch: Any, split: tuple[np.ndarray, ...]) -> Any:
    from pytest_trainsanity import TrainSetup
    from pytest_trainsanity.adapters.torch import TorchAdapter
    from pytest_trainsanity.adapters.splits import open_splits as load_splits
    from pytest_trainsanity.settings import RunSettings

    Xtr, Xv, ytr, yv = split
    model = mlp(torch, 64, 256, 256, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt,
                       loss=torch.nn.CrossEntropyLoss(), batch_size=BATCH)
    return TorchAdapter(model, setup, load_splits(setup), RunSettings(device="cpu"))


def restorer(model: Any, opt: Any) -> Side:
    """Puts a bare model and its optimizer back to their state now (untimed, before each bare epoch).

    The adapter restores its snapshot at the start of every ``train()`` (inside its timing), so
    with this both sides run the same epoch from the same weights on the same permutation.
    """
    model_state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())

    def restore() -> None:
        model.load_state_dict(model_state)
        opt.load_state_dict(copy.deepcopy(opt_state))

    return restore


def compare_epochs(adapters: tuple[Any, Any], bare: tuple[Side, Side], bare_steps: tuple[Side, Side]) -> dict[str, Any]:
    """Alternate the four sides of sections 1 and 1b: bare loop and adapter, each with and without
    its end-of-epoch evaluation (the second adapter's evaluation is a no-op on that instance)."""
    adapter, steps_adapter = adapters
    steps_adapter._measure = lambda name, noise=None: (0.0, 0.0, np.zeros(0))
    with adapter, steps_adapter:
        trace = adapter.train(epochs=1)
        bare[0]()
        bare_acc = bare[1]()
        times = alternate(
            {
                "bare": bare,
                "adapter": (no_prep, lambda: adapter.train(epochs=1)),
                "bare_steps": bare_steps,
                "adapter_steps": (no_prep, lambda: steps_adapter.train(epochs=1)),
            },
            WARMUP_ROUNDS,
            TIMED_ROUNDS,
        )
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"trace": trace, "bare_acc": bare_acc, "times": times, "med": med,
            "ratio": med["adapter"] / med["bare"], "steps_ratio": med["adapter_steps"] / med["bare_steps"],
            "same": bool(np.allclose(bare_acc, (trace.final_train, trace.final_val)))}


def report_epochs(r: dict[str, Any], bare_label: str, adapter_label: str) -> None:
    med, times, trace, bare_acc = r["med"], r["times"], r["trace"], r["bare_acc"]
    print(f"   {bare_label:33s}{ms(med['bare'])}   (min {ms(min(times['bare']))})")
    print(f"   {adapter_label:33s}{ms(med['adapter'])}   (min {ms(min(times['adapter']))})")
    print(f"   ratio {r['ratio']:.3f}x   target <= {ADAPTER_TARGET:.2f}x   {verdict(r['ratio'], ADAPTER_TARGET)}")
    print(f"   steps only: bare {ms(med['bare_steps']).strip()}, adapter (eval stubbed) "
          f"{ms(med['adapter_steps']).strip()}, ratio {r['steps_ratio']:.3f}x")
    print(f"   per step: {1e6 * (med['adapter_steps'] - med['bare_steps']) / trace.steps:+.0f} us on top of the "
          f"bare step's {1e6 * med['bare_steps'] / trace.steps:.0f} us")
    print(f"   same numbers: bare train/val acc {bare_acc[0]:.4f}/{bare_acc[1]:.4f}, adapter "
          f"{trace.final_train:.4f}/{trace.final_val:.4f} -> {'identical' if r['same'] else 'DIFFERENT'}")
    print()


def bare_models(torch: Any) -> tuple[Any, Any]:
    """The bare side's model and optimizer, the same as the adapter side's."""
    model = mlp(torch, 64, 256, 256, 10)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def bench_sides(torch: Any, make: Callable[[], Any], epoch: Callable[..., Callable[[], Any]]) -> dict[str, Any]:
    """Two adapters from ``make`` and the bare loop ``epoch(model, opt, evaluate)``, with and without
    evaluation, timed against each other (``compare_epochs``)."""
    (bare_model, bare_opt), (steps_model, steps_opt) = bare_models(torch), bare_models(torch)
    return compare_epochs(
        (make(), make()),
        (restorer(bare_model, bare_opt), epoch(bare_model, bare_opt, True)),
        (restorer(steps_model, steps_opt), epoch(steps_model, steps_opt, False)),
    )


def bench_adapter(torch: Any, split: tuple[np.ndarray, ...]) -> float:
    Xtr, Xv, ytr, yv = split
    tensors = tuple(torch.as_tensor(a) for a in (Xtr, ytr, Xv, yv))
    r = bench_sides(torch, lambda: make_adapter(torch, split),
                    lambda model, opt, evaluate: bare_epoch(torch, model, opt, tensors, evaluate=evaluate))
    print(f"1. instrumented epoch vs bare loop ({r['trace'].steps} steps of {BATCH}, 1437 train / 360 val; "
          f"median of {TIMED_ROUNDS} alternating rounds after {WARMUP_ROUNDS} warm-up)")
    report_epochs(r, "bare loop + eval", "adapter.train(1)")
    return r["ratio"]


# ---------------------------------------------------------------- 1b. the same on a DataLoader


def bare_loader_epoch(torch: Any, model: Any, opt: Any, loader: Any, tensors: tuple[Any, ...], evaluate: bool) -> Callable[[], Any]:
    """The hand-written loop over a DataLoader: the global RNG seeded, the loader iterated as it
    is (its RandomSampler draws its order from that RNG), then eval-mode accuracies."""
    Xtr, ytr, Xv, yv = tensors
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch() -> tuple[float, float] | None:
        torch.manual_seed(0)
        model.train()
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return bare_accuracies(torch, model, tensors) if evaluate else None

    return epoch


def make_loader_adapter(torch: Any, loader: Any, val: tuple[np.ndarray, np.ndarray]) -> Any:
    from pytest_trainsanity import TrainSetup
    from pytest_trainsanity.adapters.splits import open_splits
    from pytest_trainsanity.adapters.torch import TorchAdapter
    from pytest_trainsanity.settings import RunSettings

    model = mlp(torch, 64, 256, 256, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    setup = TrainSetup(model=model, train=loader, val=val, optimizer=opt, loss=torch.nn.CrossEntropyLoss())
    return TorchAdapter(model, setup, open_splits(setup), RunSettings(device="cpu"))


def bench_loader(torch: Any, split: tuple[np.ndarray, ...]) -> float:
    """Section 1 with the train split as a DataLoader (TensorDataset, batch 32, shuffle=True): the
    adapter iterates the user's loader (its sampler and collate) and records every step."""
    from torch.utils.data import DataLoader, TensorDataset

    Xtr, Xv, ytr, yv = split
    tensors = tuple(torch.as_tensor(a) for a in (Xtr, ytr, Xv, yv))
    loader = DataLoader(TensorDataset(tensors[0], tensors[1]), batch_size=BATCH, shuffle=True)
    r = bench_sides(torch, lambda: make_loader_adapter(torch, loader, (Xv, yv)),
                    lambda model, opt, evaluate: bare_loader_epoch(torch, model, opt, loader, tensors, evaluate=evaluate))
    print(f"1b. the same on a DataLoader (TensorDataset, batch {BATCH}, shuffle=True; {r['trace'].steps} steps; "
          f"median of {TIMED_ROUNDS} alternating rounds after {WARMUP_ROUNDS} warm-up)")
    report_epochs(r, "bare loop over the loader + eval", "adapter.train(1) over the loader")
    return r["ratio"]


# ---------------------------------------------------------------- 2. collection with vs without the plugin


def write_suite(root: Path) -> None:
    body = "".join(f"def test_{i:03d}():\n    assert {i} == {i}\n\n\n" for i in range(N_TESTS))
    (root / "test_many.py").write_text(body)
    (root / "conftest.py").write_text("")


def child_env(pycache: Path) -> dict[str, str]:
    """Environment of every subprocess here: no pytest overrides, 2 threads, a private bytecode cache.

    Byte-compiled files go to ``pycache`` (PYTHONPYCACHEPREFIX), so the warm-up runs compile
    pytest and the plugin once and the timed runs load them as a user's repeated runs would,
    even where PYTHONDONTWRITEBYTECODE is set; nothing is written next to the sources.
    """
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["OMP_NUM_THREADS"] = str(THREADS)
    return env


def collect(root: Path, extra: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *extra]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)


def sanity_check_collect(root: Path, env: dict[str, str]) -> None:
    """Both sides collect 200 tests; only the plugin side knows the plugin's options."""
    for extra, plugin_loaded in (([], True), (["-p", "no:trainsanity"], False)):
        done = collect(root, extra, env)
        if done.returncode != 0 or f"{N_TESTS} tests collected" not in done.stdout:
            raise SystemExit(f"collection failed ({extra}): rc {done.returncode}\n{done.stdout}{done.stderr}")
        probe = collect(root, [*extra, "--trainsanity-seed=0"], env)
        if (probe.returncode == 0) != plugin_loaded:
            raise SystemExit(f"plugin {'not ' if plugin_loaded else ''}loaded with {extra or 'defaults'}:\n{probe.stderr}")


def plugin_import_ms(root: Path, env: dict[str, str]) -> float:
    """Self time of every pytest_trainsanity module imported by one collect run (python -X importtime)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    total_us = 0
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[2].strip().startswith("pytest_trainsanity"):
            total_us += int(parts[0].split(":")[1])
    return total_us / 1e3


def bench_collect(env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="trainsanity-bench-") as tmp:
        root = Path(tmp)
        write_suite(root)
        sanity_check_collect(root, env)
        times = alternate(
            {"without": (no_prep, lambda: collect(root, ["-p", "no:trainsanity"], env)),
             "with": (no_prep, lambda: collect(root, [], env))},
            COLLECT_WARMUP,
            COLLECT_RUNS,
        )
        import_ms = plugin_import_ms(root, env)
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["with"] / med["without"]
    spread = statistics.stdev(times["without"]) / med["without"]
    print(f"2. pytest --collect-only -q of {N_TESTS} plain tests, subprocess wall time "
          f"(median of {COLLECT_RUNS} alternating runs after {COLLECT_WARMUP} warm-up)")
    print(f"   -p no:trainsanity     {ms(med['without'])}   (min {ms(min(times['without']))})")
    print(f"   with the plugin       {ms(med['with'])}   (min {ms(min(times['with']))})")
    print(f"   ratio {ratio:.3f}x   target <= {COLLECT_TARGET:.2f}x   {verdict(ratio, COLLECT_TARGET)}")
    print(f"   difference {1e3 * (med['with'] - med['without']):+.1f} ms; interpreter and pytest start-up "
          f"dominate both sides; one run varies by {100 * spread:.0f}% (sd) here, so the ratio's standard "
          f"error is about {100 * 1.25 * 2 ** 0.5 * spread / COLLECT_RUNS ** 0.5:.1f}%")
    print(f"   the plugin's own module imports (python -X importtime, self time): {import_ms:.1f} ms")
    print()
    return ratio


# ---------------------------------------------------------------- 3. no_epoch1_overfit wall time


def overfit_setup(torch: Any, split: tuple[np.ndarray, ...]) -> Any:
    from pytest_trainsanity import TrainSetup

    Xtr, Xv, ytr, yv = split
    model = mlp(torch, 64, 128, 10)
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv),
                      optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                      loss=torch.nn.CrossEntropyLoss())


def run_overfit(torch: Any, split: tuple[np.ndarray, ...]) -> tuple[float, Any]:
    from pytest_trainsanity import check_epoch1_overfit

    setup = overfit_setup(torch, split)
    gc.collect()
    start = time.perf_counter()
    report = check_epoch1_overfit(setup)
    return time.perf_counter() - start, report


def cold_overfit_child() -> None:
    """Subprocess body: build the setup, then time the first check call; one JSON line out."""
    torch = import_torch()
    split = digits_split()
    start = time.perf_counter()
    import pytest_trainsanity  # noqa: F401 - the package import (no torch, no pytest) is reported apart

    package_import = time.perf_counter() - start
    seconds, report = run_overfit(torch, split)
    print(json.dumps({"seconds": seconds, "import": package_import, "passed": report.passed,
                      "gap": report.metrics.get("gap"), "train_seconds": report.metrics.get("seconds")}))


def cold_overfit(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, os.path.abspath(__file__), COLD_FLAG], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"cold no_epoch1_overfit subprocess failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_overfit(torch: Any, split: tuple[np.ndarray, ...], env: dict[str, str]) -> float:
    cold = cold_overfit(env)
    warm = [run_overfit(torch, split) for _ in range(OVERFIT_WARM_CALLS)]
    warm_s = statistics.median(s for s, _ in warm)
    report = warm[-1][1]
    train_s = statistics.median(r.metrics["seconds"] for _, r in warm)
    cold_ratio, warm_ratio = cold["seconds"] / OVERFIT_TARGET_S, warm_s / OVERFIT_TARGET_S
    print("3. check_epoch1_overfit(setup) with probes, digits 1437/360, MLP 64-128-10 (target <= "
          f"{OVERFIT_TARGET_S:.0f} s on {THREADS} threads)")
    print(f"   cold (first call, fresh process) {cold['seconds']:6.3f} s   ratio {cold_ratio:.3f}   "
          f"{verdict(cold_ratio, 1.0)}   (package import before it: {1e3 * cold['import']:.0f} ms)")
    print(f"   warm (median of {OVERFIT_WARM_CALLS})             {warm_s:6.3f} s   ratio {warm_ratio:.3f}   "
          f"{verdict(warm_ratio, 1.0)}   (of which training passes: {train_s:.3f} s)")
    print(f"   report.passed={report.passed}  metrics['gap']={report.metrics.get('gap'):.4f}   "
          f"(cold call: passed={cold['passed']}, gap={cold['gap']:.4f})")
    print()
    return cold_ratio


# ---------------------------------------------------------------- 4. Keras: instrumented epoch vs model.fit


def bench_keras(split: tuple[np.ndarray, ...]) -> float | None:
    """One instrumented Keras epoch (``KerasAdapter.train(epochs=1)``: per-step loss, lr, grad norm,
    sampled update ratio and momentum norm, then train and val accuracy in inference mode) against
    what a user runs for the same numbers: ``model.fit(epochs=1, batch_size=32, shuffle=True,
    validation_data=(Xv, yv), verbose=0)`` plus ``model.evaluate`` on train (fit's own train
    accuracy is a running average in training mode). Same model (64-256-256-10 MLP), Adam 1e-3,
    sparse cross-entropy from logits. The fit side's weights and optimizer are reset (untimed)
    before each round; the adapter restores its snapshot inside its timing."""
    try:
        import keras
        import tensorflow as tf
    except ModuleNotFoundError:
        print("4. Keras: tensorflow is not installed here; skipped\n")
        return None
    from pytest_trainsanity import TrainSetup
    from pytest_trainsanity.adapters.keras import KerasAdapter
    from pytest_trainsanity.adapters.splits import open_splits as load_splits
    from pytest_trainsanity.settings import RunSettings

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    Xtr, Xv, ytr, yv = split

    def net() -> Any:
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"),
                                 keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)])

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fit_model = net()
    fit_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    fit_model.optimizer.build(fit_model.trainable_variables)
    weights = [v.numpy().copy() for v in fit_model.variables]
    opt_state = [v.numpy().copy() for v in fit_model.optimizer.variables]

    def reset_fit() -> None:
        for v, w in zip(fit_model.variables, weights):
            v.assign(w)
        for v, w in zip(fit_model.optimizer.variables, opt_state):
            v.assign(w)

    def fit() -> Any:
        fit_model.fit(Xtr, ytr, epochs=1, batch_size=BATCH, shuffle=True, validation_data=(Xv, yv), verbose=0)
        return fit_model.evaluate(Xtr, ytr, batch_size=2048, verbose=0)

    model = net()
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=keras.optimizers.Adam(1e-3), loss=loss,
                       batch_size=BATCH)
    adapter = KerasAdapter(model, setup, load_splits(setup), RunSettings(device="cpu"))
    with adapter:
        trace = adapter.train(epochs=1)
        times = alternate({"fit": (reset_fit, fit), "adapter": (no_prep, lambda: adapter.train(epochs=1))},
                          WARMUP_ROUNDS, TIMED_ROUNDS)
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["adapter"] / med["fit"]
    print(f"4. Keras {keras.__version__} (tensorflow {tf.__version__}): instrumented epoch vs model.fit "
          f"({trace.steps} steps of {BATCH}; median of {TIMED_ROUNDS} alternating rounds after {WARMUP_ROUNDS} warm-up)")
    print(f"   model.fit(1 epoch, validation_data) + evaluate(train)  {ms(med['fit'])}   (min {ms(min(times['fit']))})")
    print(f"   KerasAdapter.train(1)                                  {ms(med['adapter'])}   (min {ms(min(times['adapter']))})")
    print(f"   ratio {ratio:.3f}x   target <= {KERAS_TARGET:.2f}x   {verdict(ratio, KERAS_TARGET)}   "
          f"(adapter train/val acc {trace.final_train:.4f}/{trace.final_val:.4f})")
    print()
    return ratio


# ---------------------------------------------------------------- 5. the public check vs a bare epoch


PUBLIC_DIGITS_TARGET = 1.15
PUBLIC_IMAGES_TARGET = 1.10
IMAGES = 50_000
IMAGES_VAL = 10_000
EVAL_SAMPLES = 10_000  # the check's default eval sample per split


def image_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """50,000 + 10,000 synthetic 3x32x32 float32 images, 10 classes, a class-dependent pattern
    under unit noise (learnable in one epoch, no two images alike), standardised."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((10, 3, 32, 32)).astype(np.float32)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        X = rng.standard_normal((n, 3, 32, 32), dtype=np.float32)
        X += 0.5 * patterns[y]
        return X, y

    Xtr, ytr = make(IMAGES)
    Xv, yv = make(IMAGES_VAL)
    return Xtr, Xv, ytr, yv


def small_cnn(torch: Any, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def bench_public(torch: Any, name: str, split: tuple[np.ndarray, ...], model: Any, rounds: int, warmup: int,
                 target: float) -> float:
    """``check_epoch1_overfit(setup, probes=False)`` as a user calls it (prepare, the pass, its
    metrics and every data statistic on the eval samples) against the epoch a user would write
    for the same verdict: one seeded epoch of batch-32 steps, then train accuracy on the first
    ``EVAL_SAMPLES`` train rows (the check's sample size) and val accuracy, in eval mode. The
    bare model and optimizer are reset before each round (untimed); the check restores its own
    snapshot inside its timing."""
    from pytest_trainsanity import TrainSetup, check_epoch1_overfit

    Xtr, Xv, ytr, yv = split
    bare_model = copy.deepcopy(model)
    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=1e-3)
    first = min(len(Xtr), EVAL_SAMPLES)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (Xtr, ytr, Xv, yv))
    train_eval = (tensors[0][:first], tensors[1][:first], tensors[2], tensors[3])
    epoch = bare_epoch(torch, bare_model, bare_opt, tensors, evaluate=False)

    def bare() -> Any:
        epoch()
        with torch.no_grad():
            bare_model.eval()
            return [sum((bare_model(x[i : i + 2048]).argmax(1) == t[i : i + 2048]).sum().item()
                        for i in range(0, len(x), 2048)) / len(x)
                    for x, t in ((train_eval[0], train_eval[1]), (train_eval[2], train_eval[3]))]

    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                       loss=torch.nn.CrossEntropyLoss(), batch_size=BATCH)
    reports: list[Any] = []

    def public() -> None:
        reports.append(check_epoch1_overfit(setup, probes=False, device="cpu"))

    times = alternate({"bare": (restorer(bare_model, bare_opt), bare), "public": (no_prep, public)}, warmup, rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["public"] / med["bare"]
    r = reports[-1]
    passes = statistics.median(x.metrics["seconds"] for x in reports[-rounds:])  # the timed calls' own passes
    print(f"5. check_epoch1_overfit(setup, probes=False) vs a bare epoch, {name} "
          f"(median of {rounds} alternating rounds after {warmup} warm-up)")
    print(f"   bare epoch + train/val accuracy   {ms(med['bare'])}   (min {ms(min(times['bare']))})")
    print(f"   public check                      {ms(med['public'])}   (min {ms(min(times['public']))}; "
          f"of which the training pass: median {ms(passes).strip()})")
    print(f"   ratio {ratio:.3f}x   target <= {target:.2f}x   {verdict(ratio, target)}   "
          f"(check: passed={r.passed}, train {r.metrics['train_metric']:.3f} / val {r.metrics['val_metric']:.3f})")
    print()
    return ratio


# ---------------------------------------------------------------- main


def main() -> int:
    if COLD_FLAG in sys.argv[1:]:
        cold_overfit_child()
        return 0
    started = time.perf_counter()
    torch = import_torch()
    header(torch)
    split = digits_split()
    with tempfile.TemporaryDirectory(prefix="trainsanity-pycache-") as pycache:
        env = child_env(Path(pycache))
        results = [
            ("adapter epoch / bare epoch", bench_adapter(torch, split), ADAPTER_TARGET),
            ("loader epoch / bare loader epoch", bench_loader(torch, split), ADAPTER_TARGET),
            ("collect with / without plugin", bench_collect(env), COLLECT_TARGET),
            ("no_epoch1_overfit cold / 10 s", bench_overfit(torch, split, env), 1.0),
        ]
        results.append(("public overfit / bare, digits", bench_public(
            torch, "digits 1437/360, MLP 64-256-256-10", split, mlp(torch, 64, 256, 256, 10), 15, 3,
            PUBLIC_DIGITS_TARGET), PUBLIC_DIGITS_TARGET))
        images = image_split()
        results.append(("public overfit / bare, 50k images", bench_public(
            torch, f"{IMAGES:,} x (3, 32, 32) / {IMAGES_VAL:,}, small CNN", images, small_cnn(torch), 5, 1,
            PUBLIC_IMAGES_TARGET), PUBLIC_IMAGES_TARGET))
        del images
        keras_ratio = bench_keras(split)
        if keras_ratio is not None:
            results.append(("keras epoch / model.fit epoch", keras_ratio, KERAS_TARGET))
    print("summary")
    for name, value, target in results:
        print(f"   {name:32s} {value:6.3f}   target <= {target:.2f}   {verdict(value, target)}")
    print(f"   (benchmark wall time {time.perf_counter() - started:.1f} s; this script reports and always exits 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
