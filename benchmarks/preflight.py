"""Pre-flight checks: wall time, cost on a 25M-parameter model, and verdicts next to two peers.

Run it with ``python benchmarks/preflight.py`` (or ``tox -e bench``). It takes
a few minutes on a 2-core CPU machine (most of it neural-net-checklist's
overfit assert, which trains up to 2**16 steps when a batch cannot be fit),
prints each measurement with its target and PASS or MISS, and always exits
0: it reports, it does not gate. The header says how busy the CPUs were just
before it started. torch runs with ``torch.set_num_threads(2)``.

The numbers:

1. ``check_preflight(setup, device="cpu")`` wall time (target <= 3 s on 2
   cores): all six pre-flight checks through the public function, on the
   clean digits setup of ``examples/test_preflight.py`` (1437/360 stratified
   digits split, inputs / 16, MLP 64-64-10, Adam 1e-3, cross-entropy, batch
   32). One warm-up call, then the median of 3 calls, each on a freshly built
   setup (the build is not timed). Printed with the report's verdict.

2. A 25M-parameter MLP, 1024-4096-4096-1024-10 (the count is printed), on
   512 synthetic standard-normal float32 rows with 10 random labels, batch 32,
   Adam 1e-4, cross-entropy. Three sides alternate, the order rotating each
   round (1 warm-up and 7 timed rounds, medians compared):
   - one training step a user writes: zero_grad, forward, loss, backward,
     step on a fixed batch of 32;
   - ``check_batch_independence(setup, device="cpu")``;
   - ``check_params_update(setup, device="cpu")``.
   Each check's median / the step's median is printed (target <= 2x each).
   Then where a check's time goes, one more call each, split with the
   plugin's own pieces, each timed inside that one call: ``prepare`` (open
   the splits, build the adapter), entering the adapter (the check enters
   with ``lazy_snapshot``: a probe that trains takes the snapshot first, one
   that only reads copies nothing), the snapshot + probe (``mixing()`` /
   ``param_step(())``), the restore on exit, and the rest (verdict,
   message) = that call's ``run()`` minus those.

2b. Section 2 again in a child process with glibc's dynamic mmap threshold
   pinned (``MALLOC_MMAP_THRESHOLD_=131072``, its initial value; Linux
   only). Why: in section 2 both sides share one process, and glibc raises
   its mmap threshold whenever a large buffer is freed, after which large
   buffers come from a heap whose pages are already mapped. So one side's
   frees can make the other side's allocations free of page faults. Measured
   here (faults from ``getrusage``): after eight of the old snapshot's
   checks, the user's step took 0 page faults and 84-92 ms; in a fresh
   process, 67,000 faults and 150-185 ms. A pinned threshold maps every
   large buffer afresh on both sides, so neither side's frees change the
   other's cost.

3. Verdict table. Rows: the clean model and the six planted bugs, built as
   ``examples/test_preflight.py`` builds them (double softmax before
   CrossEntropyLoss; lr 1e-9; a transpose-reshape that mixes the batch; layer
   0 left out of the optimizer; SGD lr 1e4 on raw 0-255 pixels with a
   3-hidden-layer MLP; a class-sorted DataLoader with shuffle=False).
   "trainsanity": the check of the marker the example uses on that row (the
   clean row: ``check_preflight``): FAIL with ``report.causes[0]["name"]``, or
   pass; "check_preflight": the sub-checks it fails on that row (a sub-check
   failing beside the planted one shows here). The peer columns show the
   peer's assert aimed at that bug ("n/a": the peer has none), raised or
   passed; for the clean row, whether every peer assert passed. Then the full
   matrix of every peer assert on every row with the row's total peer wall
   time (mostly the checklist's overfit assert: up to 2**16 steps, about
   0.5 ms each here, when the loss never gets below 1e-4), and the start of
   each message raised. What each peer assert does, and how it is called, is
   in ``preflight_peers.py``.
"""

from __future__ import annotations

import itertools
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import preflight_peers as peers
from overhead import alternate, cpu_busy, ms, no_prep, verdict

THREADS = 2
PREFLIGHT_TARGET_S = 3.0
BIG_TARGET = 2.0
BIG_WIDTHS = (1024, 4096, 4096, 1024, 10)
BIG_ROWS = 512
BATCH = 32
Digits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def import_torch() -> Any:
    import torch

    torch.set_num_threads(THREADS)
    return torch


def digits() -> Digits:
    """The examples' split: raw pixels in [0, 16], 1437/360 stratified; (Xtr, ytr, Xv, yv)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(d.data.astype(np.float32), d.target, test_size=360, random_state=0,
                                        stratify=d.target)
    return Xtr, ytr, Xv, yv


# ---------------------------------------------------------------- the example's setups


def _example() -> Any:
    """``examples/test_preflight.py``: its models and setup builder are the benchmark's (one definition)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import test_preflight

    return test_preflight


def mlp(torch: Any, softmax: bool = False, hidden_layers: int = 1) -> Any:
    return _example()._mlp(softmax=softmax, hidden_layers=hidden_layers)


def batch_mixer(torch: Any) -> Any:
    return _example().BatchMixer()


def make_setup(torch: Any, d: Digits, model: Any = None, lr: float = 1e-3, optimizer: Any = None, train: Any = None,
               scaled: bool = True) -> Any:
    return _example()._setup(d, model=model, lr=lr, optimizer=optimizer, train=train, scaled=scaled)


def cases(torch: Any, d: Digits) -> dict[str, tuple[str, str, str, Callable[[], Any]]]:
    """name -> (planted bug, our check, peer assert aimed at it per peer as 'tt|nnc', fresh-setup builder)."""
    Xtr, ytr, Xv, yv = d

    def head_only() -> Any:
        model = mlp(torch)
        return make_setup(torch, d, model=model, optimizer=torch.optim.Adam(model[2].parameters(), lr=1e-3))

    def raw_pixels() -> Any:
        model = mlp(torch, hidden_layers=3)
        return make_setup(torch, (Xtr * 255 / 16, ytr, Xv * 255 / 16, yv), model=model, scaled=False,
                          optimizer=torch.optim.SGD(model.parameters(), lr=1e4))

    def sorted_loader() -> Any:
        order = np.argsort(ytr, kind="stable")
        data = torch.utils.data.TensorDataset(torch.from_numpy(Xtr[order] / 16.0), torch.from_numpy(ytr[order]))
        return make_setup(torch, d, train=torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=False))

    return {
        "clean": ("none", "check_preflight", "all|all", lambda: make_setup(torch, d)),
        "double_softmax": ("softmax before CrossEntropyLoss", "check_loss_at_init", "|loss@init,calib",
                           lambda: make_setup(torch, d, model=mlp(torch, softmax=True))),
        "tiny_lr": ("Adam lr 1e-9", "check_overfit_one_batch", "|overfit", lambda: make_setup(torch, d, lr=1e-9)),
        "mixes_batch": ("transpose-reshape mixes samples", "check_batch_independence", "|fwd,bwd",
                        lambda: make_setup(torch, d, model=batch_mixer(torch))),
        "head_only_optimizer": ("layer 0 not in the optimizer", "check_params_update", "vars|", head_only),
        "huge_lr_raw_pixels": ("SGD lr 1e4 on raw 0-255 pixels", "check_finite_training", "nan/inf|", raw_pixels),
        "sorted_loader": ("class-sorted loader, shuffle=False", "check_batch_mix", "|", sorted_loader),
    }


# ---------------------------------------------------------------- 1. check_preflight wall time


def bench_preflight(torch: Any, d: Digits) -> float:
    import pytest_trainsanity as ts

    times, report = [], None
    for i in range(4):
        setup = make_setup(torch, d)
        start = time.perf_counter()
        report = ts.check_preflight(setup, device="cpu")
        if i:
            times.append(time.perf_counter() - start)
    assert report is not None
    med = statistics.median(times)
    print("1. check_preflight(setup) on the clean digits MLP 64-64-10 (six checks; median of 3 after 1 warm-up)")
    print(f"   wall time {med:6.3f} s   (min {min(times):.3f} s)   target <= {PREFLIGHT_TARGET_S:.0f} s   "
          f"{verdict(med, PREFLIGHT_TARGET_S)}")
    print(f"   report: {report.message.splitlines()[0]}")
    print()
    return med


# ---------------------------------------------------------------- 2. a 25M-parameter model


def bench_big(torch: Any) -> tuple[float, float]:
    import pytest_trainsanity as ts
    from pytest_trainsanity import TrainSetup, api
    from pytest_trainsanity.settings import CHECKS, build_run_settings

    torch.manual_seed(0)
    layers: list[Any] = []
    for i, (a, b) in enumerate(itertools.pairwise(BIG_WIDTHS)):
        layers += [torch.nn.ReLU()] if i else []
        layers.append(torch.nn.Linear(a, b))
    model = torch.nn.Sequential(*layers)
    n_params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BIG_ROWS, BIG_WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, BIG_WIDTHS[-1], BIG_ROWS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    setup = TrainSetup(model=model, train=(X, y), optimizer=opt, loss=loss_fn, batch_size=BATCH)
    xb, yb = torch.from_numpy(X[:BATCH]), torch.from_numpy(y[:BATCH])
    reports: dict[str, Any] = {}

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()

    def check(name: str, fn: Callable[..., Any]) -> Callable[[], None]:
        return lambda: reports.__setitem__(name, fn(setup, device="cpu"))

    times = alternate({"step": (no_prep, step),
                       "batch_independent": (no_prep, check("batch_independent", ts.check_batch_independence)),
                       "params_update": (no_prep, check("params_update", ts.check_params_update))}, 1, 7)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"2. MLP {'-'.join(map(str, BIG_WIDTHS))}, {n_params:,} parameters, batch {BATCH}, Adam "
          "(median of 7 alternating rounds after 1 warm-up)")
    print(f"   one training step            {ms(med['step'])}   (min {ms(min(times['step']))})")
    ratios = []
    for name, label in (("batch_independent", "check_batch_independence"), ("params_update", "check_params_update")):
        ratio = med[name] / med["step"]
        ratios.append(ratio)
        print(f"   {label:28s} {ms(med[name])}   ratio {ratio:5.2f}x   target <= {BIG_TARGET:.0f}x   "
              f"{verdict(ratio, BIG_TARGET)}   (passed={reports[name].passed})")
    print("   where a check's time goes (one more call each, its pieces timed inside that call):")
    settings = build_run_settings({"device": "cpu"}, "benchmark")
    for marker, probe in (("batch_independent", "mixing"), ("params_update", "param_step")):
        t0 = time.perf_counter()
        p = api.prepare(marker, setup, CHECKS[marker].parse((), {}, marker), settings)
        t1 = time.perf_counter()
        pieces = timed_pieces(p.adapter, probe)
        p.run()  # enters with lazy_snapshot: a probe that trains takes the snapshot first
        t2 = time.perf_counter()
        rest = (t2 - t1) - sum(pieces.values())
        print(f"     {marker:18s} prepare {ms(t1 - t0).strip()}, enter {ms(pieces['enter']).strip()}, snapshot + probe "
              f"{ms(pieces['probe']).strip()}, restore on exit {ms(pieces['exit']).strip()}, rest {ms(rest).strip()}; "
              f"full run() {ms(t2 - t1).strip()}")
    print()
    return ratios[0], ratios[1]


def timed_pieces(adapter: Any, probe: str) -> dict[str, float]:
    """Times of ``adapter``'s enter, ``probe`` and exit during the next ``run()``, filled in as they
    happen (the adapter's class swapped for a timing subclass, the probe wrapped on the instance), so
    the breakdown's pieces and the full call come from one call and the rest is what is left of it."""
    pieces: dict[str, float] = {}
    base, method = type(adapter), getattr(adapter, probe)

    def timing(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                pieces[name] = time.perf_counter() - start
        return call

    class Timed(base):  # type: ignore[misc, valid-type]
        def __enter__(self) -> Any:
            return timing("enter", super().__enter__)()

        def __exit__(self, *exc: Any) -> None:
            timing("exit", super().__exit__)(*exc)

    adapter.__class__ = Timed
    setattr(adapter, probe, timing("probe", method))
    return pieces


PINNED = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc's initial threshold, fixed: every large buffer is its own mmap


def pinned_big() -> None:
    """Section 2 again in a child process whose glibc mmap threshold is pinned (see the docstring)."""
    if not sys.platform.startswith("linux"):
        return
    print(f"2b. the same in a child process with glibc's allocator pinned ({' '.join(f'{k}={v}' for k, v in PINNED.items())})")
    out = subprocess.run([sys.executable, __file__, "--big-only"], env={**os.environ, **PINNED}, capture_output=True,
                         text=True, timeout=900)
    lines = [line for line in out.stdout.splitlines() if line.strip() and not line.startswith("2.")]
    print("\n".join(lines) if out.returncode == 0 else f"   the child failed: {out.stderr.strip()[-300:]}")
    print()


# ---------------------------------------------------------------- 3. verdicts next to the peers


def verdict_table(torch: Any, d: Digits) -> None:
    import pytest_trainsanity as ts

    rows: list[list[str]] = []
    matrix: list[tuple[str, dict[str, tuple[str, str]], float]] = []
    for name, (bug, check, aimed, build) in cases(torch, d).items():
        report = getattr(ts, check)(build(), device="cpu")
        ours = "pass" if report.passed else f"FAIL: {report.causes[0]['name'] if report.causes else '(no cause)'}"
        umbrella = ts.check_preflight(build(), device="cpu")
        failed = re.search(r"\(([^)]*) failed\)", umbrella.message.splitlines()[0])
        pre = "pass" if umbrella.passed else "FAIL " + (failed.group(1).replace(" ", "") if failed else "?")
        start = time.perf_counter()
        results = peers.run_peers(build)
        matrix.append((name, results, time.perf_counter() - start))
        cells = []
        for group, wanted in zip(("torchtest", "nnc"), aimed.split("|")):
            cols = [c for g, c in peers.COLUMNS if g == group]
            picked = cols if wanted == "all" else [c for c in wanted.split(",") if c]
            if not picked:
                cells.append("n/a")
            elif wanted == "all":
                raised = [c for c in picked if results[c][0] == "raised"]
                state = {results[c][0] for c in picked}
                cells.append("not installed" if state == {"not installed"} else
                             "all passed" if not raised else "raised: " + ",".join(raised))
            else:
                cells.append(", ".join(f"{c} {results[c][0]}" for c in picked))
        rows.append([name, bug, f"{check.removeprefix('check_')}: {ours}", pre, *cells])
    print("3. verdicts: our check for the planted bug, check_preflight, and the peers' asserts aimed at it")
    print_table(["setup", "planted bug", "trainsanity", "check_preflight", "torchtest", "neural-net-checklist"], rows)
    print("\n   every peer assert on every row (fresh model each; see preflight_peers.py)")
    print_table(["setup"] + [f"{'tt' if g == 'torchtest' else 'nnc'}.{c}" for g, c in peers.COLUMNS] + ["peer time"],
                [[name] + [res[c][0] for _, c in peers.COLUMNS] + [f"{sec:.1f} s"] for name, res, sec in matrix])
    print("\n   what the peers raised (first 110 characters)")
    for name, res, _ in matrix:
        for col, (state, text) in res.items():
            if state == "raised":
                print(f"   {name:20s} {col:10s} {text[:110]}")
    print()


def print_table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("   " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


# ---------------------------------------------------------------- main


def header(torch: Any) -> None:
    import sklearn

    print("pytest-trainsanity pre-flight benchmark")
    have = ", ".join(f"{k} {v or 'not installed'}" for k, v in peers.versions().items())
    print(f"python {platform.python_version()} | torch {torch.__version__} | numpy {np.__version__} | scikit-learn "
          f"{sklearn.__version__} | {have} | {os.cpu_count()} CPU(s) | torch threads {torch.get_num_threads()} | "
          f"{platform.platform()}")
    busy = cpu_busy()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU busy before start: {'unknown' if busy is None else f'{100 * busy:.0f}% over the last second'}; "
          f"load average (1 min) {load:.2f}"
          + ("  WARNING: other work is running; timings will be noisy" if busy is not None and busy > 0.25 else ""))
    print()


def main() -> int:
    started = time.perf_counter()
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows in logs: section 3 runs for minutes
    torch = import_torch()
    header(torch)
    d = digits()
    wall = bench_preflight(torch, d)
    bi, pu = bench_big(torch)
    pinned_big()
    verdict_table(torch, d)
    print("summary")
    for name, value, target, unit in (("check_preflight wall time, digits", wall, PREFLIGHT_TARGET_S, "s"),
                                      ("batch_independence / one step, 25M", bi, BIG_TARGET, "x"),
                                      ("params_update / one step, 25M", pu, BIG_TARGET, "x")):
        print(f"   {name:38s} {value:6.3f}{unit}  target <= {target:.0f}{unit}  {verdict(value, target)}")
    print(f"   (benchmark wall time {time.perf_counter() - started:.1f} s; this script reports and always exits 0)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--big-only"]:  # section 2b's child
        bench_big(import_torch())
        sys.exit(0)
    sys.exit(main())
