"""Spike attribution benchmark for ``lr_spike_explained``: planted causes, smooth runs, replay cost.

Run it with ``python benchmarks/attribution.py`` (or ``tox -e bench``); about
two minutes on a 2-core CPU. It prints one line per scenario and then:

- detection recall: planted spikes found within their planted window of epochs
  (every plant is a rise of the metric);
- attribution accuracy: of those, the share whose largest rise in the window
  got the planted cause;
- false spikes: spikes reported on the smooth runs (target 0), and spikes
  outside the planted window on the planted runs (reported, not targeted);
- replay cost: the seconds spent replaying, over the seconds of the plain
  run (training plus its per-epoch evaluation), summed over scenarios
  (target <= 2x).

Every scenario is seeded; the check runs exactly as a user runs it
(``check_lr_spikes(setup, epochs=..., allow=every cause)``). The planted
causes, each built so that the spike exists only through that cause:

- ``lr_schedule`` (step): linear regression with 200 weights, plain SGD at a
  rate near its noise limit (the val R^2 sits steadily below its optimum:
  the "noise ball"), cut by 20x at epoch k by a ``MultiStepLR``: R^2 jumps in
  epoch k. (Small classifiers on digits or blobs were tried first: there
  an lr cut changes val accuracy by less than the run's own noise, so no
  spike is planted; the detector rightly finds none.)
- ``lr_schedule`` (warm-up end): ``LambdaLR`` holds the rate at 1e-3 of its
  value for k epochs, then releases it.
- ``batch_stats``: a trained batch-norm MLP whose running statistics were
  left from another domain (shifted and rescaled), fine-tuned at lr 1e-6
  (the weights barely move) with a BN momentum of 0.005-0.01: the val metric
  stays at chance until the running statistics have moved back, then jumps.
- ``momentum``: SGD with momentum 0.99 at lr <= 0.02 from a tiny
  initialisation (a saddle at zero), 5 large batches per epoch: the escape
  from the plateau is carried by the velocity accumulated over earlier
  epochs (up to 100x one gradient step).

Smooth runs: Adam and SGD+momentum at constant rates, cosine annealing, a
linear per-step warm-up, batch-norm models; no planted cause.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from pytest_trainsanity import TrainSetup, check_lr_spikes

ALL_CAUSES = ("lr_schedule", "batch_stats", "momentum", "unexplained")


@dataclass
class Scenario:
    name: str
    build: Callable[[], TrainSetup]
    epochs: int
    cause: str | None  # None: a smooth run
    window: tuple[int, int] = (0, 0)  # 1-based epochs where the planted spike may show


def digits() -> tuple[np.ndarray, ...]:
    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(d.data.astype(np.float32), d.target, test_size=360, random_state=0, stratify=d.target)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr).astype(np.float32), ytr, sc.transform(Xv).astype(np.float32), yv


def blobs(seed: int, n: int = 1600, d: int = 20, k: int = 5, spread: float = 2.5) -> tuple[np.ndarray, ...]:
    """Gaussian classes with overlapping centres: an easy-to-hard synthetic task."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * spread / np.sqrt(d) * 3
    y = rng.integers(0, k, n)
    X = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    cut = n * 4 // 5
    return X[:cut], y[:cut], X[cut:], y[cut:]


def mlp(d: int, k: int, hidden: int, seed: int, bn: bool = False, scale: float = 1.0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(d, hidden)]
    if bn:
        layers.append(torch.nn.BatchNorm1d(hidden))
    layers += [torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, k)]
    model = torch.nn.Sequential(*layers)
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    return model


def data_for(kind: str, seed: int) -> tuple[np.ndarray, ...]:
    return digits() if kind == "digits" else blobs(seed)


def setup(data: tuple[np.ndarray, ...], model: torch.nn.Module, opt: torch.optim.Optimizer, sched=None, step="epoch", bs=32) -> TrainSetup:
    Xtr, ytr, Xv, yv = data
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss=torch.nn.CrossEntropyLoss(),
                      scheduler=sched, scheduler_step=step, batch_size=bs)


def linreg(seed: int, n: int = 4000, d: int = 200, noise: float = 0.3) -> tuple[np.ndarray, ...]:
    """Linear regression with many weights: SGD's noise costs a steady share of R^2 at a high lr."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X @ (rng.standard_normal(d) / np.sqrt(d)) + noise * rng.standard_normal(n)).astype(np.float32)[:, None]
    cut = n * 4 // 5
    return X[:cut], y[:cut], X[cut:], y[cut:]


def lr_step(seed: int, lr: float, at: int) -> Callable[[], TrainSetup]:
    def build() -> TrainSetup:
        Xtr, ytr, Xv, yv = linreg(seed)
        torch.manual_seed(seed)
        model = torch.nn.Linear(Xtr.shape[1], 1)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss=torch.nn.MSELoss(),
                          task="regression", scheduler=torch.optim.lr_scheduler.MultiStepLR(opt, [at - 1], gamma=0.05))
    return build


def warmup_end(kind: str, seed: int, at: int) -> Callable[[], TrainSetup]:
    def build() -> TrainSetup:
        data = data_for(kind, seed)
        model = mlp(data[0].shape[1], 10 if kind == "digits" else 5, 128, seed)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return setup(data, model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1e-3 if e < at - 1 else 1.0))
    return build


def stale_bn(kind: str, seed: int, momentum: float, shift: float) -> Callable[[], TrainSetup]:
    def build() -> TrainSetup:
        data = digits() if kind == "digits" else blobs(seed, n=3000, d=30, k=10, spread=1.5)
        Xtr, ytr = torch.as_tensor(data[0]), torch.as_tensor(data[1])
        model = mlp(data[0].shape[1], 10, 128, seed, bn=True)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(3):  # pre-train: good weights and statistics
            for i in range(0, len(Xtr), 64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(Xtr[i : i + 64]), ytr[i : i + 64]).backward()
                opt.step()
        bn = model[1]
        with torch.no_grad():  # statistics left from another domain
            bn.running_mean.add_(shift * bn.running_var.sqrt())
            bn.running_var.mul_(shift ** 2)
        bn.momentum = momentum
        return setup(data, model, torch.optim.Adam(model.parameters(), lr=1e-6))
    return build


def momentum_escape(seed: int, lr: float, scale: float) -> Callable[[], TrainSetup]:
    def build() -> TrainSetup:
        data = blobs(seed)
        model = mlp(data[0].shape[1], 5, 64, seed, scale=scale)
        return setup(data, model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.99), bs=256)
    return build


def checker(seed: int, n: int = 3000, cells: int = 3) -> tuple[np.ndarray, ...]:
    """A 3x3 checkerboard in 2 of 10 dimensions: a slow, noisy, non-saturating task."""
    rng = np.random.default_rng(seed)
    Z = rng.uniform(0, cells, (n, 2))
    y = ((np.floor(Z[:, 0]) + np.floor(Z[:, 1])) % 2).astype(np.int64)
    X = np.c_[(Z - cells / 2) / (cells / 2) * 1.7, rng.standard_normal((n, 8))].astype(np.float32)
    cut = n * 4 // 5
    return X[:cut], y[:cut], X[cut:], y[cut:]


def smooth(kind: str, seed: int, variant: str) -> Callable[[], TrainSetup]:
    def build() -> TrainSetup:
        if kind == "linreg":
            Xtr, ytr, Xv, yv = linreg(seed)
            torch.manual_seed(seed)
            model = torch.nn.Linear(Xtr.shape[1], 1)
            return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), loss=torch.nn.MSELoss(), task="regression",
                              optimizer=torch.optim.SGD(model.parameters(), lr=0.08))
        data = checker(seed) if kind == "checker" else data_for(kind, seed)
        k = 2 if kind == "checker" else 10 if kind == "digits" else 5
        model = mlp(data[0].shape[1], k, 128, seed, bn=variant == "bn")
        if variant == "sgd":
            return setup(data, model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2 if kind == "checker" else 1e-3)
        if variant == "cosine":
            return setup(data, model, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, 15))
        if variant == "linear_warmup":
            return setup(data, model, opt, torch.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, total_iters=5 * 45), "batch")
        return setup(data, model, opt)
    return build


def scenarios() -> list[Scenario]:
    out = []
    for seed, lr, at in [(0, 0.1, 6), (1, 0.1, 8), (2, 0.09, 10), (3, 0.1, 7), (4, 0.09, 9), (5, 0.1, 11)]:
        out.append(Scenario(f"lr step x0.05 at {at} (linreg, lr {lr}, seed {seed})", lr_step(seed, lr, at), 14, "lr_schedule", (at, at)))
    for kind, seed, at in [("digits", 0, 5), ("digits", 1, 7), ("blobs", 2, 5), ("blobs", 3, 7), ("digits", 4, 9)]:
        out.append(Scenario(f"warm-up ends at {at} ({kind}, seed {seed})", warmup_end(kind, seed, at), 12, "lr_schedule", (at, at)))
    for kind, seed, mom, shift in [("digits", 0, 0.005, 10.0), ("digits", 1, 0.01, 10.0), ("digits", 2, 0.005, 12.0),
                                   ("blobs", 7, 0.005, 10.0), ("blobs", 8, 0.005, 12.0)]:
        out.append(Scenario(f"stale BN stats x{shift:g}, momentum {mom:g} ({kind}, seed {seed})", stale_bn(kind, seed, mom, shift),
                            15, "batch_stats", (4, 15)))
    for seed, lr, scale in [(1, 0.01, 0.1), (2, 0.02, 0.05), (3, 0.02, 0.1), (4, 0.01, 0.1), (5, 0.02, 0.05), (6, 0.02, 0.1)]:
        out.append(Scenario(f"momentum 0.99 escape (blobs, lr {lr}, init x{scale:g}, seed {seed})", momentum_escape(seed, lr, scale),
                            25, "momentum", (4, 25)))
    for i, (kind, variant) in enumerate([("digits", "adam"), ("blobs", "adam"), ("digits", "sgd"), ("blobs", "sgd"),
                                          ("digits", "cosine"), ("digits", "linear_warmup"), ("digits", "bn"),
                                          ("blobs", "bn"), ("checker", "adam"), ("checker", "sgd"), ("checker", "bn"),
                                          ("linreg", "sgd"), ("digits", "adam")]):
        out.append(Scenario(f"smooth {variant} ({kind}, seed {10 + i})", smooth(kind, 10 + i, variant), 15, None))
    return out


def main() -> int:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(f"pytest-trainsanity attribution benchmark | torch {torch.__version__} | {os.cpu_count()} CPU(s) | "
          f"load average {os.getloadavg()[0]:.2f}")
    found = correct = planted = false_smooth = extra = all_rises = all_right = 0
    train_s = replay_s = 0.0
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    for sc in scenarios():
        if only and only not in sc.name:
            continue
        start = time.perf_counter()
        report = check_lr_spikes(sc.build(), epochs=sc.epochs, allow=ALL_CAUSES, device="cpu")
        wall = time.perf_counter() - start
        spikes = [c for c in report.causes if c["cause"] != "lr_collapse"]
        train_s += report.metrics["train_seconds"]
        replay_s += report.metrics["replay_seconds"]
        desc = ", ".join(f"e{s['epoch']} {s['jump']:+.2f} {s['cause']}" for s in spikes) or "none"
        if sc.cause is None:
            false_smooth += len(spikes)
            verdict = "ok" if not spikes else "FALSE SPIKE"
        else:
            planted += 1
            lo, hi = sc.window
            inside = [s for s in spikes if lo <= s["epoch"] <= hi and s["jump"] > 0]  # every plant is a rise
            extra += len(spikes) - len(inside)
            all_rises += len(inside)
            all_right += sum(s["cause"] == sc.cause for s in inside)
            if inside:
                found += 1
                top = max(inside, key=lambda s: s["jump"])
                correct += top["cause"] == sc.cause
                verdict = "ok" if top["cause"] == sc.cause else f"WRONG ({top['cause']})"
            else:
                verdict = "MISSED"
        series = report.message.split("Per epoch: ")[1].split("\n")[0] if "Per epoch: " in report.message else ""
        print(f"{sc.name:<46} {sc.cause or 'smooth':<12} {verdict:<20} {wall:5.1f}s  margin {report.metrics['margin']:4.2f}  spikes: {desc}")
        if os.environ.get("VERBOSE"):
            print("    " + series)
    print()
    recall = found / planted if planted else float("nan")
    accuracy = correct / found if found else float("nan")
    print(f"detection recall      {found}/{planted} = {recall:.2f}")
    print(f"attribution accuracy  {correct}/{found} = {accuracy:.2f}   target >= 0.90   {'PASS' if accuracy >= 0.9 else 'MISS'}")
    print(f"  every rise in a planted window: {all_right}/{all_rises} got the planted cause (reported, not a target)")
    print(f"false spikes (smooth) {false_smooth}   target 0   {'PASS' if false_smooth == 0 else 'MISS'}   "
          f"(spikes outside the planted window on planted runs: {extra})")
    cost = replay_s / train_s if train_s else float("nan")
    print(f"replay cost           {replay_s:.1f} s replaying / {train_s:.1f} s of plain runs = {cost:.2f}x   "
          f"target <= 2x   {'PASS' if cost <= 2 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
