"""The example scripts in examples/ learn on real data: a short seeded run of each.

Each script is loaded from its file path and its ``main(argv)`` called in-process with
``--quick`` (a small subset of the data) and a couple of epochs; the loss must fall and every
metric must be finite. They run on the NumPy backend, so a fresh checkout does not pay Numba's
first-call compilation here (about 45 s on 2 cores with an empty cache for the digits CNN's
kernels; the kernels' and layers' own tests cover Numba). The examples' code is the same for
every backend: only the ``backend=`` given to the layers changes.
"""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUICK = ["--quick", "--no-progress", "--seed", "0"]


def load(name: str):
    """Import examples/<name>.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"seqgrid_example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def needs_sklearn():
    pytest.importorskip("sklearn", reason="the digits examples need scikit-learn's bundled "
                                          "digits data set (pip install -e '.[test]')")


def assert_learns(losses, name):
    assert len(losses) >= 2, f"{name}: expected a loss per epoch, got {losses}"
    assert all(math.isfinite(v) for v in losses), f"{name}: non-finite loss in {losses}"
    assert losses[-1] < losses[0], f"{name}: loss did not fall: {losses}"


def test_digits_cnn_learns():
    needs_sklearn()
    r = load("digits_cnn").main(QUICK + ["--backend", "numpy", "--epochs", "4"])
    assert_learns(r["losses"], "digits_cnn")
    assert r["backend"] == "numpy"
    # 320 training images, 4 epochs: far above chance (10%) already
    assert 0.3 < r["test_accuracy"] <= 1.0, r
    assert math.isfinite(r["seconds"]) and r["seconds"] > 0


def test_digits_rnn_learns_with_both_cells():
    needs_sklearn()
    r = load("digits_rnn").main(QUICK + ["--backend", "numpy", "--epochs", "3"])
    for cell in ("lstm", "gru"):
        assert_learns(r["losses"][cell], f"digits_rnn {cell}")
        assert 0.2 < r["test_accuracy"][cell] <= 1.0, (cell, r["test_accuracy"])
        assert r[cell]["test_accuracy"] == r["test_accuracy"][cell]


def test_char_rnn_learns_and_samples():
    import numba
    threads = numba.get_num_threads()
    r = load("char_rnn").main(QUICK + ["--backend", "numpy", "--epochs", "3",
                                       "--hidden", "64", "--prime", "The "])
    assert numba.get_num_threads() == threads, "--threads must be restored after main()"
    assert_learns(r["losses"], "char_rnn")
    assert r["step_losses"][-1] < r["step_losses"][0]
    # starts near ln(V) (uniform guess), and ends below it
    assert r["losses"][-1] < math.log(r["vocab_size"])
    assert math.isfinite(r["val_loss"]) and r["val_bpc"] > 0
    assert isinstance(r["sample"], str) and r["sample"].startswith("The ")
    assert len(r["sample"]) > len("The ")


def test_cnn_rnn_learns_and_reports_the_single_image_baseline():
    needs_sklearn()
    r = load("cnn_rnn").main(QUICK + ["--backend", "numpy", "--epochs", "3"])
    assert_learns(r["losses"], "cnn_rnn")
    for key in ("test_accuracy", "digit_baseline_accuracy", "majority_accuracy"):
        assert 0.0 <= r[key] <= 1.0 and math.isfinite(r[key]), (key, r[key])
    # no classifier that sees one image can beat ~7.5% on the sum of 4 digits
    assert r["digit_baseline_accuracy"] < 0.15


def test_cnn_rnn_backward_reaches_the_cnn():
    """The gradient of the sum loss flows through the GRU (BPTT) into the first conv layer."""
    needs_sklearn()
    mod = load("cnn_rnn")
    import layers as L
    model = mod.DigitSum("gru", 16, 16, 37, "numpy", seed=0)
    x = np.random.default_rng(0).random((4, 3, 1, 8, 8)).astype(np.float32)
    loss_fn = L.SoftmaxCrossEntropy()
    logits = model.forward(x)
    assert logits.shape == (4, 3, 37)
    loss_fn.forward(logits.reshape(-1, 37), np.arange(12) % 37)
    model.zero_grad()
    model.backward(loss_fn.backward().reshape(logits.shape))
    conv = model.cnn[0]
    assert np.abs(conv.weight.grad).sum() > 0


def test_cuda_backend_unavailable_is_a_clear_error():
    from kernels import registry
    if registry.backend_status()["cuda"][0]:
        pytest.skip("the cuda backend is available here")
    with pytest.raises(registry.BackendUnavailableError, match="cuda"):
        load("digits_cnn").main(QUICK + ["--backend", "cuda"])


@pytest.mark.parametrize("name", ["digits_cnn", "digits_rnn", "char_rnn", "cnn_rnn"])
def test_examples_reject_an_unknown_backend(name, capsys):
    with pytest.raises(SystemExit) as e:
        load(name).main(["--backend", "no-such-backend"])
    assert e.value.code == 2
    assert "no-such-backend" in capsys.readouterr().err


def test_runs_as_a_script():
    """``python examples/char_rnn.py ...`` (the __main__ path): exit 0, metric and sample."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "char_rnn.py"), "--quick", "--no-progress",
         "--backend", "numpy", "--epochs", "2", "--hidden", "32"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "validation loss" in proc.stdout and "sample" in proc.stdout
