"""Cost of a training check follows its steps, not the dataset's size.

Run it with ``python benchmarks/scale.py`` (or ``tox -e bench``). It prints
every number and a PASS or MISS per target, and always exits 0.

``check_epoch1_overfit`` (probes on: main pass, random-label pass, lr/10
pass; 200 steps each with ``max_steps=200``; batch 32; default
``eval_samples`` 10,000) on a lazily generated torch ``Dataset``: sample i is
a 3 x 32 x 32 float32 image made on demand from a seed of its own (a class
pattern plus noise), so the data never exists as a whole anywhere. A small
CNN (2 conv layers, 10 classes), Adam 1e-3, cross-entropy, a shuffled
DataLoader with 0 workers (so every ``__getitem__`` is counted in one
process). Each configuration runs in a fresh subprocess that reports:

- wall time of the check call (setup and imports excluded);
- samples read: ``__getitem__`` calls on the train and val datasets;
- peak RSS of the process (``VmHWM`` from ``/proc/self/status``).

Configurations: train 300,000 samples and train 30,000 samples, val 20,000
in both (so each check reads a 10,000-sample eval sample of each split).

Targets (issue 10): peak RSS <= 1.0 GB and samples read <= 3 x (200 x 32) +
2 x eval_samples at 300,000; wall time at 300,000 within 1.5x of the same
check at 30,000. The 300,000-sample dataset would be 3.7 GB as float32 if it
were read whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

THREADS = 2
STEPS = 200
BATCH = 32
VAL = 20_000
SIZES = (300_000, 30_000)
RSS_TARGET_GB = 1.0
TIME_TARGET = 1.5
CHILD_FLAG = "--child"


def child(n_train: int) -> None:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset

    torch.set_num_threads(THREADS)
    from pytest_trainsanity import TrainSetup, check_epoch1_overfit
    from pytest_trainsanity.settings import DEFAULT_EVAL_SAMPLES

    patterns = np.random.default_rng(12345).standard_normal((10, 3, 32, 32)).astype(np.float32)

    class LazyImages(Dataset):
        """Sample i is generated when asked for; nothing is stored but a read counter."""

        def __init__(self, n: int, offset: int) -> None:
            self.n, self.offset, self.reads = n, offset, 0

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> tuple[Any, int]:
            self.reads += 1
            rng = np.random.default_rng(self.offset + i)
            label = int(rng.integers(10))
            image = 0.5 * patterns[label] + rng.standard_normal((3, 32, 32), dtype=np.float32)
            return torch.from_numpy(image), label

    train, val = LazyImages(n_train, 0), LazyImages(VAL, 10**9)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10),
    )
    setup = TrainSetup(
        model=model, train=DataLoader(train, batch_size=BATCH, shuffle=True),
        val=DataLoader(val, batch_size=256), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        loss=torch.nn.CrossEntropyLoss(),
    )
    start = time.perf_counter()
    report = check_epoch1_overfit(setup, max_steps=STEPS)
    seconds = time.perf_counter() - start
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({
        "n_train": n_train, "seconds": seconds, "reads_train": train.reads, "reads_val": val.reads,
        "peak_rss_gb": hwm_kb / 2**20, "eval_samples": DEFAULT_EVAL_SAMPLES, "passed": report.passed,
        "steps": report.metrics["steps"], "train_metric": report.metrics["train_metric"],
        "val_metric": report.metrics["val_metric"], "train_seconds": report.metrics["seconds"],
        "sampled_line": next((line for line in report.message.splitlines() if line.startswith("Sample: train")), ""),
    }))


def run_child(n: int) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), CHILD_FLAG, str(n)], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"child for {n} samples failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    if CHILD_FLAG in sys.argv[1:]:
        child(int(sys.argv[sys.argv.index(CHILD_FLAG) + 1]))
        return 0
    print(f"pytest-trainsanity scale benchmark: check_epoch1_overfit with probes, max_steps={STEPS}, batch {BATCH}, "
          f"lazily generated 3x32x32 images, val {VAL:,}, {THREADS} threads, one fresh process per size")
    results = {n: run_child(n) for n in SIZES}
    big, small = results[SIZES[0]], results[SIZES[1]]
    budget = 3 * STEPS * BATCH + 2 * big["eval_samples"]
    for n, r in results.items():
        print(f"  train {n:>7,}: {r['seconds']:6.2f} s (training passes {r['train_seconds']:.2f} s), samples read "
              f"{r['reads_train'] + r['reads_val']:,} (train {r['reads_train']:,}, val {r['reads_val']:,}), peak RSS "
              f"{r['peak_rss_gb']:.3f} GB, {r['steps']} steps, train/val acc {r['train_metric']:.3f}/{r['val_metric']:.3f}")
        print(f"      {r['sampled_line']}")
    reads = big["reads_train"] + big["reads_val"]
    ratio = big["seconds"] / small["seconds"]
    whole_gb = SIZES[0] * 3 * 32 * 32 * 4 / 2**30
    print("targets")
    print(f"  peak RSS at {SIZES[0]:,}: {big['peak_rss_gb']:.3f} GB (the data whole would be {whole_gb:.1f} GB)   "
          f"target <= {RSS_TARGET_GB:.1f} GB   {verdict(big['peak_rss_gb'] <= RSS_TARGET_GB)}")
    print(f"  samples read at {SIZES[0]:,}: {reads:,}   target <= 3 x ({STEPS} x {BATCH}) + 2 x {big['eval_samples']:,} "
          f"= {budget:,}   {verdict(reads <= budget)}")
    print(f"  wall time {SIZES[0]:,} / {SIZES[1]:,}: {ratio:.3f}x   target <= {TIME_TARGET:.1f}x   {verdict(ratio <= TIME_TARGET)}")
    print("(this script reports and always exits 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
