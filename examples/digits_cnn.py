"""A small CNN on scikit-learn's bundled 8x8 handwritten digits (no download).

    Conv2d(1, 32, 3, padding=1) -> ReLU -> MaxPool2d(2)      8x8 -> 4x4
    Conv2d(32, 64, 3, padding=1) -> ReLU -> MaxPool2d(2)     4x4 -> 2x2
    Flatten -> Linear(256, 10)

trained with Adam and softmax cross-entropy on a stratified 75 / 25 train / test split fixed by
``--seed`` (a StepLR halves the rate every third of the run). Default settings reach about
98% test accuracy in about ten seconds on two cores::

    python examples/digits_cnn.py                       # numba backend
    python examples/digits_cnn.py --backend numpy --epochs 5

``main(argv)`` returns ``{"test_accuracy", "train_accuracy", "losses" (mean train loss per
epoch), "seconds", ...}``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import kernels  # noqa: F401  (first: OPENBLAS_THREAD_TIMEOUT before NumPy loads)
import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:                      # for _common when run as a script or by path
    sys.path.insert(0, _HERE)
import _common as C  # noqa: E402

import layers as L  # noqa: E402
from layers.optim import Adam, StepLR  # noqa: E402


def build_model(backend: str, seed: int, channels=(32, 64)) -> L.Sequential:
    """The CNN for 1x8x8 images, 10 classes."""
    rng = np.random.default_rng(seed)
    c1, c2 = channels
    return L.Sequential(
        L.Conv2d(1, c1, 3, padding=1, seed=rng, backend=backend), L.ReLU(backend=backend),
        L.MaxPool2d(2, backend=backend),
        L.Conv2d(c1, c2, 3, padding=1, seed=rng, backend=backend), L.ReLU(backend=backend),
        L.MaxPool2d(2, backend=backend),
        L.Flatten(backend=backend),
        L.Linear(c2 * 2 * 2, 10, seed=rng, backend=backend),
    )


def evaluate(model, x, y, xp, batch_size=256) -> float:
    """Accuracy of ``model`` on images ``x`` (n, 1, 8, 8) with labels ``y``."""
    model.eval()
    correct = 0
    for idx in C.minibatches(len(y), batch_size):
        pred = C.host(model.forward(x[xp.asarray(idx)])).argmax(axis=1)
        correct += int((pred == C.host(y[idx])).sum())
    model.train()
    return correct / len(y)


def main(argv=None) -> dict:
    p = C.make_parser(__doc__.splitlines()[0], epochs=20, batch_size=32, lr=3e-3)
    return C.parse_and_run(p, argv, run)


def run(args) -> dict:
    timer = C.Timer()
    xp = C.array_module(args.backend)
    x_tr, y_tr, x_te, y_te = C.digits_for(args)
    x_tr, x_te = xp.asarray(x_tr[:, None]), xp.asarray(x_te[:, None])   # (n, 1, 8, 8)

    model = C.to_device(build_model(args.backend, args.seed), args.backend)
    loss_fn = L.SoftmaxCrossEntropy(backend=args.backend)
    opt = Adam(model.parameters(), lr=args.lr)
    sched = StepLR(opt, step_size=max(1, args.epochs // 3), gamma=0.5)
    rng = np.random.default_rng(args.seed)

    losses = []
    per_epoch = C.n_batches(len(y_tr), args.batch_size)
    with C.progress_bar(args.epochs * per_epoch, "digits CNN", args.no_progress) as advance:
        for epoch in range(args.epochs):
            total, count = 0.0, 0
            for idx in C.minibatches(len(y_tr), args.batch_size, rng):
                opt.zero_grad()
                t = xp.asarray(y_tr[idx])
                loss = float(loss_fn.forward(model.forward(x_tr[xp.asarray(idx)]), t))
                model.backward(loss_fn.backward())
                opt.step()
                total += loss * len(idx)
                count += len(idx)
                advance(loss, f"digits CNN epoch {epoch + 1}/{args.epochs}")
            losses.append(total / count)
            sched.step()

    result = {
        "model": "cnn",
        "backend": args.backend,
        "epochs": args.epochs,
        "losses": losses,
        "train_accuracy": evaluate(model, x_tr, y_tr, xp),
        "test_accuracy": evaluate(model, x_te, y_te, xp),
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
    }
    result["seconds"] = timer.seconds
    C.console().print(
        f"digits CNN ({args.backend}): loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"train accuracy {result['train_accuracy']:.2%}, "
        f"[bold]test accuracy {result['test_accuracy']:.2%}[/] "
        f"({result['n_test']} test images), {result['seconds']:.1f} s")
    return result


if __name__ == "__main__":
    C.run_cli(main)
