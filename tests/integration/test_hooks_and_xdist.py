"""The extension hooks, each implemented by a conftest as a third party would, and
pytest-xdist runs whose JSON report and summary merge every worker's checks."""

from __future__ import annotations

import json

import pytest

from .conftest import run

NUMPY_LOGREG = '''
"""A complete third-party "framework": multinomial logistic regression in numpy, and its
pytest-trainsanity adapter (minibatch SGD, every number the checks need)."""
import time
import numpy as np
from pytest_trainsanity import Adapter, ModelInfo, TrainingTrace


class LogReg:
    def __init__(self, d, k, lr=0.5, seed=0):
        self.W = np.random.default_rng(seed).normal(0, 0.01, (d, k))
        self.b = np.zeros(k)
        self.lr = lr

    def logits(self, X):
        return X @ self.W + self.b


def softmax_loss(z, y):
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
    p[np.arange(len(y)), y] -= 1
    return loss, p / len(y)


class LogRegAdapter(Adapter):
    framework = "numpy-logreg"

    def __init__(self, model, setup, data, settings):
        self.model, self.data, self.settings, self.bs = model, data, settings, setup.batch_size

    def info(self):
        return ModelInfo("numpy-logreg", self.model.W.size + self.model.b.size, self.model.W.shape[1], "cpu", "LogReg")

    def __enter__(self):
        self._saved = (self.model.W.copy(), self.model.b.copy())
        return self

    def __exit__(self, *exc):
        self.model.W[...], self.model.b[...] = self._saved

    def _measure(self, name):
        split = self.data[name]
        y = self.labels if name == "train" else split.y
        z = self.model.logits(split.X)
        return float((z.argmax(1) == y).mean()), softmax_loss(z, y)[0], z.argmax(1)

    def train(self, *, epochs, lr_scale=1.0, noise=None, max_steps=None, detail=False):
        start = time.perf_counter()
        self.__exit__()  # every pass starts from the snapshot
        m, X = self.model, self.data["train"].X
        self.labels = self.data["train"].y if noise is None else noise.targets([X])
        rng = np.random.default_rng(self.settings.seed)
        rec = {k: [] for k in ("loss", "lr", "grad", "ratio", "epoch")}
        per_epoch = {k: [] for k in ("tm", "vm", "tl", "vl")}
        preds = {}
        for epoch in range(epochs):
            order = rng.permutation(len(X))
            for s in range(0, len(X), self.bs):
                idx = order[s : s + self.bs]
                loss, g = softmax_loss(m.logits(X[idx]), self.labels[idx])
                gW, gb = X[idx].T @ g, g.sum(0)
                lr = m.lr * lr_scale
                m.W -= lr * gW
                m.b -= lr * gb
                rec["loss"].append(loss); rec["lr"].append([lr]); rec["epoch"].append(epoch)
                rec["grad"].append(float(np.sqrt((gW ** 2).sum() + (gb ** 2).sum())))
                rec["ratio"].append(lr * rec["grad"][-1] / max(float(np.linalg.norm(m.W)), 1e-12))
            for name, metric, lossk in (("train", "tm", "tl"), ("val", "vm", "vl")):
                if name in self.data:
                    acc, loss, preds[name] = self._measure(name)
                    per_epoch[metric].append(acc); per_epoch[lossk].append(loss)
        a = lambda v: np.asarray(v, dtype=np.float64)
        return TrainingTrace(
            loss=a(rec["loss"]), lr=a(rec["lr"]), grad_norm=a(rec["grad"]), update_ratio=a(rec["ratio"]),
            epoch=np.asarray(rec["epoch"]), train_metric=a(per_epoch["tm"]), val_metric=a(per_epoch["vm"]),
            train_loss=a(per_epoch["tl"]), val_loss=a(per_epoch["vl"]), train_pred=preds.get("train", np.zeros(0)),
            val_pred=preds.get("val", np.zeros(0)), steps=len(rec["loss"]), seconds=time.perf_counter() - start,
        )
'''

CONFTEST = '''
import json
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from pytest_trainsanity import Cause, TrainSetup
from numpy_logreg import LogReg, LogRegAdapter


@pytest.hookimpl
def pytest_trainsanity_make_adapter(model, setup, data, settings):
    return LogRegAdapter(model, setup, data, settings) if isinstance(model, LogReg) else None


@pytest.hookimpl
def pytest_trainsanity_diagnose(check, evidence):
    if check == "no_epoch1_overfit" and evidence["n_train"] < 2000 and evidence["train"] - evidence["val"] > 0.15:
        return [Cause("small train set (house rule)", 0.99, f"only {evidence['n_train']} train samples",
                      "collect at least 2000 samples before judging over-fitting")]
    return None


@pytest.hookimpl
def pytest_trainsanity_check_finished(report, nodeid):
    with open("tracker.jsonl", "a") as f:
        f.write(json.dumps({"nodeid": nodeid, "check": report.name, "passed": report.passed,
                            "metrics": report.to_dict()["metrics"]}) + "\\n")


def digits():
    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(d.data.astype(np.float64), d.target, test_size=360, random_state=0, stratify=d.target)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), ytr, sc.transform(Xv), yv


@pytest.fixture
def train_setup():
    Xtr, ytr, Xv, yv = digits()
    return TrainSetup(model=LogReg(64, 10), train=(Xtr, ytr), val=(Xv, yv))


@pytest.fixture
def memorise():
    """64 train samples with random labels, each repeated 30 times: a certain over-fit."""
    Xtr, ytr, Xv, yv = digits()
    rng = np.random.RandomState(0)
    idx = rng.choice(len(Xtr), 64, replace=False)
    return TrainSetup(model=LogReg(64, 10, lr=2.0), train=(np.repeat(Xtr[idx], 30, axis=0), np.repeat(rng.randint(0, 10, 64), 30)),
                      val=(Xv, yv))
'''

TESTS = '''
import pytest

@pytest.mark.no_epoch1_overfit
@pytest.mark.no_leakage
@pytest.mark.inputs_normalized
def test_logreg_is_sane(train_setup, trainsanity_report):
    assert [r.name for r in trainsanity_report] == ["no_epoch1_overfit", "no_leakage", "inputs_normalized"]
    assert "LogReg (numpy-logreg on cpu), 650 trainable parameters" in trainsanity_report["no_epoch1_overfit"].message

@pytest.mark.no_epoch1_overfit(setup="memorise")
def test_memorise():
    pass

@pytest.mark.lr_spike_explained(epochs=6, allow=())
def test_spikes_without_replay(trainsanity_report):
    assert trainsanity_report["lr_spike_explained"].passed
'''


@pytest.fixture
def third_party(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(numpy_logreg=NUMPY_LOGREG, test_logreg=TESTS)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_a_third_party_adapter_and_hooks_in_a_conftest(third_party: pytest.Pytester) -> None:
    res = run(third_party, "-rA")
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit FAILED: after 1 epoch (60 steps) train accuracy * vs val *",
        "*Model: LogReg (numpy-logreg on cpu), 650 trainable parameters; 1,920 train / 360 val samples; batch 32.",
        "*Likely causes, strongest evidence first:",
        "*1. small train set (house rule) (evidence score 0.99): only 1920 train samples",
        "*fix: collect at least 2000 samples before judging over-fitting",
        "*2. train duplication (evidence score *): 64 unique inputs among 1920 train samples*",
        "*3. memorisation (model capacity) (evidence score *): 650 trainable parameters*labels shuffled*",
    ])
    res.stdout.fnmatch_lines(["*test_memorise no_epoch1_overfit FAILED: *[[]top cause: small train set (house rule)]"])
    tracked = [json.loads(line) for line in (third_party.path / "tracker.jsonl").read_text().splitlines()]
    assert [(t["nodeid"].split("::")[1], t["check"], t["passed"]) for t in tracked] == [
        ("test_logreg_is_sane", "no_epoch1_overfit", True), ("test_logreg_is_sane", "no_leakage", True),
        ("test_logreg_is_sane", "inputs_normalized", True), ("test_memorise", "no_epoch1_overfit", False),
        ("test_spikes_without_replay", "lr_spike_explained", True),
    ]
    assert tracked[0]["metrics"]["val_metric"] > 0.9  # a real logistic regression on digits


XDIST_TESTS = '''
import pytest

@pytest.mark.no_epoch1_overfit(probes=False)
@pytest.mark.inputs_normalized
def test_clean():
    pass

@pytest.mark.no_leakage(setup="copied")
def test_copied():
    pass

@pytest.mark.inputs_normalized(setup="raw255")
def test_raw():
    pass

@pytest.mark.no_leakage
def test_clean_leakage():
    pass
'''


def test_xdist_workers_merge_into_one_report_and_summary(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(test_x=XDIST_TESTS)
    res = run(project, "-n", "2", "--trainsanity-report=r.json", "--trainsanity-device=auto")
    res.assert_outcomes(passed=2, failed=2)
    checks = json.loads((project.path / "r.json").read_text())["checks"]
    assert sorted((c["nodeid"].split("::")[1], c["name"], c["passed"]) for c in checks) == [
        ("test_clean", "inputs_normalized", True), ("test_clean", "no_epoch1_overfit", True),
        ("test_clean_leakage", "no_leakage", True), ("test_copied", "no_leakage", False),
        ("test_raw", "inputs_normalized", False),
    ]
    res.stdout.fnmatch_lines(["*trainsanity*", "*test_copied*no_leakage*FAILED*"])
    res.stdout.fnmatch_lines(["*test_raw*inputs_normalized*FAILED*"])
