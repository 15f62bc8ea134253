"""A CNN and a GRU trained together: the SUM of a sequence of handwritten digits.

Each example is a sequence of ``--steps`` (default 4) images drawn at random from scikit-learn's
8x8 digits; the label is the sum of the four digits (37 classes, 0..36), so no single image
determines it. Training sequences are drawn from the training images (fresh ones every epoch),
test sequences from the held-out test images only.

    images (T, N, 1, 8, 8) -> reshape (T*N, 1, 8, 8)      one CNN batch for all steps
      -> CNN: Conv2d(1,16,3,p=1) ReLU MaxPool2d(2) Conv2d(16,32,3,p=1) ReLU MaxPool2d(2)
              Flatten Linear(128, F) ReLU                   -> (T*N, F)
      -> reshape (T, N, F) -> GRU(F, Hd) -> outputs (T, N, Hd) -> Linear(Hd, 37)

The prediction for the sequence is the last step's (from ``h_n``). By default
(``--supervise all``) every step is trained on the running sum so far (step t: the sum of the
first t+1 digits; at step 0 that is the first digit itself), which gives the CNN a direct
signal; ``--supervise last`` trains on the final sum only, so the CNN learns to read digits
only because the GRU needs them (it learns more slowly: about 66% after the default 20
epochs, against about 81%).

Backward runs the same way in reverse: the head's gradient ``(T, N, Hd)`` enters the GRU as
``d_output``, BPTT returns ``dx`` of shape ``(T, N, F)``, which is reshaped to ``(T*N, F)`` and
backpropagated through the CNN in one batch.

Baselines (printed next to the model's accuracy):

* majority class: always predict the most frequent sum of the training sequences;
* best single image (an upper bound for ANY classifier that sees one image): told the true
  digit d of the last image, predict the most frequent sum among training sequences whose last
  digit is d. With uniform digits that is right about 7.5% of the time (P(sum of 3 digits = 13)).

Default settings reach about 80-85% test accuracy on the sum (about 96% per digit, to the
fourth power), against about 7.5% for the best single-image classifier, in about a minute on
two cores::

    python examples/cnn_rnn.py
    python examples/cnn_rnn.py --cell lstm --epochs 30

``main(argv)`` returns ``{"test_accuracy", "digit_baseline_accuracy" (best single image),
"majority_accuracy", "losses" (mean train loss per epoch, over the supervised steps),
"seconds", ...}``.
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


class DigitSum(L.Module):
    """Per-image CNN features, a recurrent layer over the sequence, a Linear head on its
    outputs."""

    def __init__(self, cell: str, features: int, hidden: int, n_classes: int, backend: str,
                 seed: int):
        super().__init__(backend)
        rng = np.random.default_rng(seed)
        b = backend
        self.cnn = L.Sequential(
            L.Conv2d(1, 16, 3, padding=1, seed=rng, backend=b), L.ReLU(backend=b),
            L.MaxPool2d(2, backend=b),
            L.Conv2d(16, 32, 3, padding=1, seed=rng, backend=b), L.ReLU(backend=b),
            L.MaxPool2d(2, backend=b),
            L.Flatten(backend=b), L.Linear(32 * 2 * 2, features, seed=rng, backend=b),
            L.ReLU(backend=b))
        if cell == "lstm":
            self.rnn = L.LSTM(features, hidden, seed=rng, backend=b, forget_bias=1.0)
        else:
            self.rnn = L.GRU(features, hidden, seed=rng, backend=b)
        self.head = L.Linear(hidden, n_classes, seed=rng, backend=b)
        self.cell = cell
        self._tn = None

    def forward(self, images):
        """``images`` (T, N, 1, 8, 8) -> logits (T, N, n_classes): one prediction after every
        step (the last one, from ``h_n``, is the sequence's prediction)."""
        T, N = images.shape[:2]
        self._tn = (T, N)
        feats = self.cnn.forward(images.reshape(T * N, *images.shape[2:]))   # (T*N, F)
        out, _ = self.rnn.forward(feats.reshape(T, N, -1))                    # (T, N, Hd)
        return self.head.forward(out)

    def backward(self, dlogits):
        """``dlogits`` (T, N, n_classes); zeros where a step is not supervised."""
        T, N = self._tn
        dout = self.head.backward(dlogits)                 # (T, N, Hd)
        dfeats = self.rnn.backward(dout)                   # (T, N, F): BPTT over the sequence
        self.cnn.backward(dfeats.reshape(T * N, -1))       # back into the CNN, all steps at once


def make_sequences(labels: np.ndarray, n: int, steps: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of ``steps`` random image indices, time-major ``(steps, n)``, and the
    running sums of their digits ``(steps, n)`` (the last row is the label)."""
    idx = rng.integers(0, len(labels), size=(steps, n))
    return idx, np.cumsum(labels[idx], axis=0)


def single_image_baselines(y_tr_img, y_te_img, steps, rng, n_ref=200_000):
    """Majority class and the best classifier given the (true) digit of the last image, both
    fitted on training sequences; returns two functions test_idx -> accuracy."""
    idx, sums = make_sequences(y_tr_img, n_ref, steps, rng)
    sums = sums[-1]
    n_classes = 9 * steps + 1
    majority = int(np.bincount(sums, minlength=n_classes).argmax())
    last = y_tr_img[idx[-1]]
    table = np.zeros((10, n_classes), np.int64)
    np.add.at(table, (last, sums), 1)
    best_given_digit = table.argmax(axis=1)            # digit -> most frequent sum

    def majority_acc(test_idx, test_sums):
        return float(np.mean(test_sums == majority))

    def digit_acc(test_idx, test_sums):
        return float(np.mean(best_given_digit[y_te_img[test_idx[-1]]] == test_sums))
    return majority_acc, digit_acc


def evaluate(model, images, idx, sums, xp, batch_size=256) -> float:
    model.eval()
    correct = 0
    for b in C.minibatches(idx.shape[1], batch_size):
        pred = C.host(model.forward(images[xp.asarray(idx[:, b])])[-1]).argmax(axis=1)
        correct += int((pred == sums[b]).sum())
    model.train()
    return correct / idx.shape[1]


def main(argv=None) -> dict:
    p = C.make_parser(__doc__.splitlines()[0], epochs=20, batch_size=32, lr=3e-3)
    p.add_argument("--cell", choices=("gru", "lstm"), default="gru")
    p.add_argument("--steps", type=int, default=4, help="images per sequence (T)")
    p.add_argument("--train-seqs", type=int, default=4000,
                   help="training sequences per epoch (drawn afresh every epoch)")
    p.add_argument("--test-seqs", type=int, default=2000, help="test sequences (fixed)")
    p.add_argument("--features", type=int, default=128, help="CNN feature size F per image")
    p.add_argument("--hidden", type=int, default=128, help="recurrent hidden size Hd")
    p.add_argument("--supervise", choices=("all", "last"), default="all",
                   help="'all': train on the running sum after every step (more signal); "
                        "'last': on the final sum only. Accuracy is always the final sum's.")
    return C.parse_and_run(p, argv, run)


def run(args) -> dict:
    timer = C.Timer()
    xp = C.array_module(args.backend)
    x_tr, y_tr, x_te, y_te = C.load_digits_split(args.seed)
    if args.quick:
        args.train_seqs, args.test_seqs = min(args.train_seqs, 640), min(args.test_seqs, 400)
    rng = np.random.default_rng(args.seed)
    test_idx, test_sums = make_sequences(y_te, args.test_seqs, args.steps, rng)
    test_sums = test_sums[-1]
    majority_acc, digit_acc = single_image_baselines(y_tr, y_te, args.steps, rng)
    img_tr, img_te = xp.asarray(x_tr[:, None]), xp.asarray(x_te[:, None])   # (n, 1, 8, 8)

    n_classes = 9 * args.steps + 1
    model = C.to_device(DigitSum(args.cell, args.features, args.hidden, n_classes, args.backend,
                                 args.seed), args.backend)
    loss_fn = L.SoftmaxCrossEntropy(backend=args.backend)
    opt = Adam(model.parameters(), lr=args.lr)
    sched = StepLR(opt, step_size=max(1, args.epochs // 3), gamma=0.5)

    losses = []
    per_epoch = C.n_batches(args.train_seqs, args.batch_size)
    name = f"CNN+{args.cell.upper()}"
    with C.progress_bar(args.epochs * per_epoch, name, args.no_progress) as advance:
        for epoch in range(args.epochs):
            idx, sums = make_sequences(y_tr, args.train_seqs, args.steps, rng)
            total = 0.0
            for b in C.minibatches(args.train_seqs, args.batch_size):
                opt.zero_grad()
                logits = model.forward(img_tr[xp.asarray(idx[:, b])])  # (T, n, 1, 8, 8) in
                if args.supervise == "all":     # the running sum after every step
                    loss = float(loss_fn.forward(logits.reshape(-1, n_classes),
                                                 xp.asarray(sums[:, b].reshape(-1))))
                    dlogits = loss_fn.backward().reshape(logits.shape)
                else:                           # the final sum only
                    loss = float(loss_fn.forward(logits[-1], xp.asarray(sums[-1, b])))
                    dlogits = xp.zeros_like(logits)
                    dlogits[-1] = loss_fn.backward()
                model.backward(dlogits)
                L.clip_grad_norm_(model, 5.0)
                opt.step()
                total += loss * len(b)
                advance(loss, f"{name} epoch {epoch + 1}/{args.epochs}")
            losses.append(total / args.train_seqs)
            sched.step()

    result = {
        "backend": args.backend, "cell": args.cell, "epochs": args.epochs, "losses": losses,
        "test_accuracy": evaluate(model, img_te, test_idx, test_sums, xp),
        "digit_baseline_accuracy": digit_acc(test_idx, test_sums),
        "majority_accuracy": majority_acc(test_idx, test_sums),
        "n_test": int(args.test_seqs), "steps": args.steps,
    }
    result["seconds"] = timer.seconds
    C.console().print(
        f"sum of {args.steps} digits, CNN+{args.cell.upper()} ({args.backend}): loss "
        f"{losses[0]:.3f} -> {losses[-1]:.3f}; test accuracy on {args.test_seqs} sequences: "
        f"[bold]model {result['test_accuracy']:.2%}[/], best single image (true digit of the "
        f"last image) {result['digit_baseline_accuracy']:.2%}, majority class "
        f"{result['majority_accuracy']:.2%}; {result['seconds']:.1f} s")
    return result


if __name__ == "__main__":
    C.run_cli(main)
