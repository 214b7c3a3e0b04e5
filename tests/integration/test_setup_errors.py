"""Unusable setups are test errors with one clear paragraph naming the numbers."""

from __future__ import annotations

import pytest

from .conftest import run

CASES = {
    "length_mismatch": (
        "setup(Xtr, ytr[:-5], Xv, yv)",
        "*TrainSetup(train=...) has 1437 inputs but 1432 labels; X and y must have the same number of samples.*",
    ),
    "empty_val": (
        "setup(Xtr, ytr, Xv[:0], yv[:0])",
        "*TrainSetup(val=...) is empty (0 samples); every given split needs samples.*",
    ),
    "labels_out_of_range": (
        "setup(Xtr, ytr + 5, Xv, yv)",
        "*TrainSetup(train=...) has labels in [[]5, 14] but the model outputs 10 value(s) per sample, so labels must lie in [[]0, 9]*",
    ),
    "unsupported_model": (
        "TrainSetup(model=object(), train=(Xtr, ytr), val=(Xv, yv), optimizer='adam', loss='mse')",
        "*TrainSetup(model=...) is a builtins.object, which no adapter supports. Supported: a torch.nn.Module*",
    ),
    "foreign_optimizer": (
        "TrainSetup(model=mlp(), train=(Xtr, ytr), val=(Xv, yv), optimizer=torch.optim.SGD(mlp().parameters(), 0.1), loss=torch.nn.CrossEntropyLoss())",
        "*TrainSetup(optimizer=...) holds 4 parameter tensor(s) that are not this model's*",
    ),
    "wrong_input_width": (
        "setup(Xtr[:, :10], ytr, Xv[:, :10], yv, model=mlp(64))",
        "*The model could not run on the first train samples as the pipeline yields them ((x, y) batches): x: float32 (2, 10) raised RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x10 and 64x128). The model's first layer is Linear(in_features=64, out_features=128, bias=True) (module '0') with float32 weights.*",
    ),
    "split_not_a_pair": (
        "TrainSetup(model=mlp(), train=(Xtr, ytr, ytr), val=(Xv, yv), optimizer=lambda p: torch.optim.SGD(p, 0.1), loss='cross_entropy')",
        "*TrainSetup(train=...) is a tuple of 3 items; a split given as a tuple must be (X, y)*",
    ),
    "missing_val": (
        "TrainSetup(model=mlp(), train=(Xtr, ytr), optimizer=lambda p: torch.optim.SGD(p, 0.1), loss='cross_entropy')",
        "*no_epoch1_overfit needs TrainSetup(val=...) but it was left None*",
    ),
    "bad_task": (
        "TrainSetup(model=mlp(), train=(Xtr, ytr), task='ranking')",
        "*TrainSetup(task='ranking') is not supported; use one of ('classification', 'regression').*",
    ),
    "loss_mismatch": (
        "TrainSetup(model=mlp(), train=(Xtr, ytr), val=(Xv, yv), optimizer=lambda p: torch.optim.SGD(p, 0.1), loss=torch.nn.MSELoss())",
        "*The loss could not compare the model's output with the train labels: loss(output float32 (2, 10), labels int64 (2,)) raised RuntimeError:*",
    ),
    "fractional_labels": (
        "setup(Xtr, ytr + 0.5, Xv, yv)",
        "*TrainSetup(train=...) has classification labels that are not whole numbers (1437 of 1437, e.g. 3.5), but the model outputs 10 class scores per sample*task='regression'*",
    ),
    # a DataLoader's batches reach the loss as they come: its label format is named with the fix
    "labels_as_a_vector_for_one_logit": (
        "TrainSetup(model=torch.nn.Sequential(mlp(), torch.nn.Linear(10, 1)), train=dl(Xtr, (ytr % 2).astype('float32')), "
        "val=dl(Xv, (yv % 2).astype('float32')), optimizer=lambda p: torch.optim.Adam(p, 1e-3), loss=torch.nn.BCEWithLogitsLoss())",
        "*raised ValueError: Target size (torch.Size([[]2])) must be the same as input size (torch.Size([[]2, 1])). The model gives "
        "one value per sample as a column (2, 1) and the labels come as a vector (2,); BCEWithLogitsLoss needs the two in one "
        "shape: yield each label with shape (1,) (y.float().unsqueeze(1) in the dataset or collate_fn)*",
    ),
    "regression_loss_broadcasts": (
        "TrainSetup(model=torch.nn.Sequential(mlp(), torch.nn.Linear(10, 1)), train=dl(Xtr, ytr.astype('float32')), "
        "val=dl(Xv, yv.astype('float32')), optimizer=lambda p: torch.optim.Adam(p, 1e-3), loss=torch.nn.MSELoss(), task='regression')",
        "*MSELoss broadcasts the model's output float32 (2, 1) against the train labels float32 (2,) to (2, 2): it compares "
        "every output with every sample's label*",
    ),
    "float_class_ids": (
        "TrainSetup(model=mlp(), train=dl(Xtr, ytr.astype('float32')), val=dl(Xv, yv.astype('float32')), optimizer=lambda p: torch.optim.Adam(p, 1e-3), "
        "loss=torch.nn.CrossEntropyLoss())",
        "*The labels are float32 but CrossEntropyLoss reads a vector of class ids, which must be int64: yield y.long()*",
    ),
    "string_inputs": (
        "setup(Xtr.astype(str), ytr, Xv, yv)",
        "*TrainSetup(train=...) X has dtype <U* inputs must be numeric*",
    ),
}


def test_unusable_setups_are_clear_errors(project: pytest.Pytester) -> None:
    body = ["import pytest, torch", "from helpers import *", "from pytest_trainsanity import TrainSetup", "",
            "def dl(X, y):",
            "    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=32)",
            ""]
    for name, (expr, _) in CASES.items():
        body += [
            "@pytest.fixture",
            f"def {name}():",
            "    Xtr, ytr, Xv, yv = digits()",
            f"    return {expr}",
            "",
            f"@pytest.mark.no_epoch1_overfit(setup={name!r})",
            f"def test_{name}(): pass",
            "",
        ]
    project.makepyfile("\n".join(body))
    res = run(project)
    res.assert_outcomes(errors=len(CASES))
    for name, (_, expected) in CASES.items():
        res.stdout.fnmatch_lines([f"*ERROR at setup of test_{name} *", expected])
    assert "site-packages/torch" not in res.stdout.str()


def test_misuse_found_while_streaming_is_one_paragraph_not_a_traceback(project: pytest.Pytester) -> None:
    """A generator split is read only when no_leakage runs: its misuse surfaces then, cleanly."""
    project.makepyfile("""
        import numpy as np
        import pytest
        from pytest_trainsanity import TrainSetup

        @pytest.fixture
        def triples():
            X = np.zeros((8, 3))
            return TrainSetup(train=((X[i : i + 4], X[i : i + 4, 0], X[i : i + 4, 1]) for i in range(0, 8, 4)), val=(X, X[:, 0]))

        @pytest.fixture
        def widths():
            return TrainSetup(train=(np.zeros((10, 3)), np.zeros(10)), val=(np.zeros((5, 4)), np.zeros(5)))

        @pytest.mark.no_leakage(setup="triples")
        def test_triples(): pass

        @pytest.mark.no_leakage(setup="widths")
        def test_widths(): pass
    """)
    res = run(project)
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines([
        "*pytest-trainsanity: TrainSetup(train=...) yielded a tuple; each block must be an (X, y) pair*",
        "*pytest-trainsanity: no_leakage cannot compare the splits: the splits' samples have different sizes: [[]3, 4] values.",
    ])
    assert "Traceback" not in res.stdout.str() and "leakage.py:" not in res.stdout.str()
