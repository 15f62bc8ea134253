"""A character-level LSTM language model on text that ships with Python itself.

Corpus: the Python Language Reference pages that ``help()`` shows (``help("assert")``,
``help("for")``, ...). CPython stores them as plain text in the standard library module
``pydoc_data.topics`` (a dict topic -> text). The topics are joined in sorted order
(``assert``, ``assignment``, ``async``, ...) until ``--corpus-kb`` kilobytes (default 48: the
19 topics ``assert`` .. ``calls``, the last one cut); the last 10% is held out for validation. The exact text depends on the
Python version (3.11 here). No download, no extra package.

Model: ``Embedding(V, 32) -> LSTM(32, Hd) -> Linear(Hd, V)``, softmax cross-entropy on the next
character, Adam with gradient-norm clipping.

Truncated BPTT: the training text is cut into ``--batch-size`` parallel streams, read in chunks
of ``--seq-len`` steps; the LSTM's ``(h_n, c_n)`` after one chunk is the ``(h0, c0)`` of the next,
but ``backward`` gets no gradient for it, so BPTT stops at the chunk boundary (the state is
"detached"). ``--bptt-steps k`` cuts the recurrent gradient every k steps inside a chunk as well
(the layer's ``bptt_steps``).

It prints the training loss per epoch (it falls, from ln V ~ 4.5 nats), the validation loss in
bits per character, and a text sampled from the model with temperature ``--temperature``::

    python examples/char_rnn.py
    python examples/char_rnn.py --epochs 20 --hidden 256 --corpus-kb 128 --temperature 0.6

``main(argv)`` returns ``{"losses" (mean train loss per epoch, nats), "step_losses",
"val_loss", "val_bpc", "sample", "vocab_size", "corpus_chars", "seconds", ...}``.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import kernels  # noqa: F401  (first: OPENBLAS_THREAD_TIMEOUT before NumPy loads)
import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:                      # for _common when run as a script or by path
    sys.path.insert(0, _HERE)
import _common as C  # noqa: E402

import layers as L  # noqa: E402
from layers.optim import Adam, ExponentialLR  # noqa: E402


def load_corpus(kilobytes: int) -> str:
    """The first ``kilobytes`` KB of the help-topic texts in ``pydoc_data.topics``."""
    try:
        from pydoc_data.topics import topics
    except ImportError:                      # a stripped-down Python: fall back to docstrings
        import argparse as a, collections as c, functools as f, json as j, textwrap as t
        topics = {m.__name__: m.__doc__ or "" for m in (a, c, f, j, t)}
    out, size = [], 0
    for name in sorted(topics):
        out.append(topics[name].strip() + "\n\n")
        size += len(out[-1])
        if size >= kilobytes * 1000:
            break
    return "".join(out)[:kilobytes * 1000]


class CharLM(L.Module):
    """Embedding -> LSTM -> Linear over time-major ids ``(T, N)`` -> logits ``(T, N, V)``."""

    def __init__(self, vocab: int, embed: int, hidden: int, backend: str, seed: int,
                 bptt_steps=None):
        super().__init__(backend)
        rng = np.random.default_rng(seed)
        self.embed = L.Embedding(vocab, embed, seed=rng, backend=backend)
        self.lstm = L.LSTM(embed, hidden, seed=rng, backend=backend, forget_bias=1.0,
                           bptt_steps=bptt_steps)
        self.head = L.Linear(hidden, vocab, seed=rng, backend=backend)

    def forward(self, ids, state=None):
        """Returns ``(logits (T, N, V), (h_n, c_n))``; ``state`` is the previous ``(h, c)``."""
        out, state = self.lstm.forward(self.embed.forward(ids), state)
        return self.head.forward(out), state

    def backward(self, dlogits):
        # no d_h_n / d_c_n: the carried state is a constant for the next chunk (truncated BPTT)
        self.embed.backward(self.lstm.backward(self.head.backward(dlogits)))


def sample(model, stoi, itos, prime: str, length: int, temperature: float,
           rng: np.random.Generator, xp) -> str:
    """Generate ``length`` characters after ``prime``, one step at a time, sampling from
    ``softmax(logits / temperature)``."""
    model.eval()
    ids = xp.asarray(np.array([[stoi.get(ch, 0)] for ch in prime], dtype=np.int64))  # (T, 1)
    logits, state = model.forward(ids)
    out = []
    for _ in range(length):
        z = C.host(logits[-1, 0]).astype(np.float64) / max(temperature, 1e-6)
        p = np.exp(z - z.max())
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(itos[nxt])
        logits, state = model.forward(xp.asarray(np.array([[nxt]], dtype=np.int64)), state)
    model.train()
    return prime + "".join(out)


def streams(ids: np.ndarray, n: int) -> np.ndarray:
    """Cut ``ids`` into ``n`` equal contiguous streams, time-major ``(L, n)``."""
    length = len(ids) // n
    return np.ascontiguousarray(ids[:n * length].reshape(n, length).T)


def evaluate(model, loss_fn, data, seq_len, xp) -> float:
    """Mean next-character loss (nats) over ``data`` (L, n), state carried across chunks."""
    model.eval()
    state, total, count = None, 0.0, 0
    for t0 in range(0, data.shape[0] - 1, seq_len):
        x = data[t0:t0 + seq_len]
        y = data[t0 + 1:t0 + seq_len + 1]
        x = x[:len(y)]
        logits, state = model.forward(xp.asarray(x), state)
        v = logits.shape[-1]
        total += float(loss_fn.forward(logits.reshape(-1, v), xp.asarray(y.reshape(-1)))) * y.size
        count += y.size
    model.train()
    return total / count


def main(argv=None) -> dict:
    p = C.make_parser(__doc__.splitlines()[0], epochs=15, batch_size=32, lr=1e-2)
    p.add_argument("--hidden", type=int, default=128, help="LSTM hidden size Hd")
    p.add_argument("--seq-len", type=int, default=64, help="steps per chunk (truncation length)")
    p.add_argument("--bptt-steps", type=int, default=None,
                   help="also cut the recurrent gradient every k steps inside a chunk")
    p.add_argument("--corpus-kb", type=int, default=48, help="corpus size in kilobytes")
    p.add_argument("--sample-length", type=int, default=300, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.7,
                   help="sampling temperature (lower: more conservative text)")
    p.add_argument("--prime", default="The ", help="text the sample starts from")
    return C.parse_and_run(p, argv, run)


def run(args) -> dict:
    timer = C.Timer()
    xp = C.array_module(args.backend)
    text = load_corpus(8 if args.quick else args.corpus_kb)
    vocab = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([stoi[ch] for ch in text], dtype=np.int64)
    split = int(len(ids) * 0.9)
    train = streams(ids[:split], args.batch_size)
    val = streams(ids[split:], 4)

    model = C.to_device(CharLM(len(vocab), 32, args.hidden, args.backend, args.seed,
                               args.bptt_steps), args.backend)
    loss_fn = L.SoftmaxCrossEntropy(backend=args.backend)
    opt = Adam(model.parameters(), lr=args.lr)
    sched = ExponentialLR(opt, gamma=0.85)
    V = len(vocab)

    starts = list(range(0, train.shape[0] - 1, args.seq_len))
    losses, step_losses = [], []
    with C.progress_bar(args.epochs * len(starts), "char LSTM", args.no_progress) as advance:
        for epoch in range(args.epochs):
            state, total, count = None, 0.0, 0
            for t0 in starts:
                y = train[t0 + 1:t0 + args.seq_len + 1]
                x = train[t0:t0 + len(y)]
                opt.zero_grad()
                logits, state = model.forward(xp.asarray(x), state)
                loss = float(loss_fn.forward(logits.reshape(-1, V), xp.asarray(y.reshape(-1))))
                model.backward(loss_fn.backward().reshape(logits.shape))
                L.clip_grad_norm_(model, 1.0)
                opt.step()
                step_losses.append(loss)
                total += loss * y.size
                count += y.size
                advance(loss, f"char LSTM epoch {epoch + 1}/{args.epochs}")
            losses.append(total / count)
            sched.step()

    val_loss = evaluate(model, loss_fn, val, args.seq_len, xp)
    text_out = sample(model, stoi, vocab, args.prime, 40 if args.quick else args.sample_length,
                      args.temperature, np.random.default_rng(args.seed), xp)
    result = {
        "backend": args.backend, "epochs": args.epochs, "losses": losses,
        "step_losses": step_losses, "val_loss": val_loss, "val_bpc": val_loss / math.log(2),
        "sample": text_out, "vocab_size": V, "corpus_chars": len(text),
    }
    result["seconds"] = timer.seconds
    out = C.console()
    out.print(f"char LSTM ({args.backend}) on {len(text)} characters of pydoc_data.topics, "
              f"vocabulary {V}: train loss per epoch (nats) "
              + " ".join(f"{v:.3f}" for v in losses))
    out.print(f"[bold]validation loss {val_loss:.3f} nats = {result['val_bpc']:.2f} bits/char[/]"
              f" (uniform guess: {math.log2(V):.2f}), {result['seconds']:.1f} s")
    out.rule(f"sample, temperature {args.temperature}")
    out.print(text_out, markup=False, highlight=False)
    out.rule()
    return result


if __name__ == "__main__":
    C.run_cli(main)
