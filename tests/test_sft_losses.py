"""DFT, EAFT and ASFT against their formulas, recomputed here in plain Python floats, plus token weighting
across gradient-accumulation micro-batches and packed rows, and the config checks of the switches."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")

from tuneforge.train.sft_losses import SftLoss  # noqa: E402

IGNORE = -100
VOCAB = 30


def batch(seed: int, rows: int = 2, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 logits [rows, length, VOCAB] and labels with the first two positions masked."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, length, VOCAB, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, VOCAB, (rows, length), generator=gen)
    labels[:, :2] = IGNORE
    return logits, labels


def softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    return [e / sum(exps) for e in exps]


def label_positions(labels: torch.Tensor) -> list[tuple[int, int, int]]:
    """(row, predicting position, label) for every next-token label that is not masked."""
    return [
        (b, t - 1, int(labels[b, t]))
        for b in range(labels.shape[0])
        for t in range(1, labels.shape[1])
        if labels[b, t] != IGNORE
    ]


def dft_terms(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    out = []
    for b, t, y in label_positions(labels):
        p = softmax(logits[b, t].tolist())[y]
        out.append(-math.log(p) * p)
    return out


def eaft_terms(logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> list[float]:
    out = []
    for b, t, y in label_positions(labels):
        row = logits[b, t].tolist()
        top = softmax(sorted(row, reverse=True)[:20])
        entropy = -sum(q * math.log(q) for q in top)
        out.append(-math.log(softmax(row)[y]) * (entropy / 3.0) ** alpha)
    return out


def kl_terms(logits: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor) -> list[float]:
    out = []
    for b, t, _ in label_positions(labels):
        p, q = softmax(logits[b, t].tolist()), softmax(ref[b, t].tolist())
        out.append(sum(qi * (math.log(qi) - math.log(pi)) for pi, qi in zip(p, q, strict=True)))
    return out


def call(loss: SftLoss, logits: torch.Tensor, labels: torch.Tensor, n: int | None = None) -> float:
    return float(loss({"logits": logits}, labels, num_items_in_batch=n))


def test_dft_is_the_probability_weighted_cross_entropy() -> None:
    logits, labels = batch(0)
    terms = dft_terms(logits, labels)
    assert call(SftLoss("dft"), logits, labels) == pytest.approx(sum(terms) / len(terms), rel=1e-9)
    assert call(SftLoss("dft"), logits, labels, n=17) == pytest.approx(sum(terms) / 17, rel=1e-9)


def test_dft_weight_carries_no_gradient() -> None:
    """d/dz of p * CE with p held constant is p * (softmax(z) - onehot(y)) at each label position."""
    logits, labels = batch(1)
    logits.requires_grad_(True)
    SftLoss("dft")({"logits": logits}, labels).backward()
    positions = label_positions(labels)
    b, t, y = positions[0]
    probs = softmax(logits[b, t].tolist())
    expected = [probs[y] * (probs[v] - (v == y)) / len(positions) for v in range(VOCAB)]
    assert logits.grad[b, t].tolist() == pytest.approx(expected, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_eaft_weights_by_the_top20_entropy(alpha: float) -> None:
    logits, labels = batch(2)
    terms = eaft_terms(logits, labels, alpha)
    assert call(SftLoss("eaft", alpha), logits, labels) == pytest.approx(sum(terms) / len(terms), rel=1e-9)


def test_asft_adds_alpha_times_the_kl_to_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    logits, labels = batch(3)
    ref = batch(4)[0]
    loss = SftLoss("asft", 0.25)
    monkeypatch.setattr(loss, "_reference_logits", lambda: ref)
    dft, kl = dft_terms(logits, labels), kl_terms(logits, ref, labels)
    expected = (sum(dft) + 0.25 * sum(kl)) / len(dft)
    assert call(loss, logits, labels) == pytest.approx(expected, rel=1e-9)
    assert sum(kl_terms(ref, ref, labels)) == pytest.approx(0.0, abs=1e-12)  # the reference itself: KL 0


@pytest.mark.parametrize("kind", ["dft", "eaft", "asft"])
def test_accumulated_micro_batches_are_token_weighted(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two micro-batches divided by the accumulated label count add up to the loss of the whole batch."""
    logits, labels = batch(5, rows=4)
    ref = batch(7, rows=4)[0]
    labels[0, 2:5] = IGNORE  # rows with different label counts: a mean of micro-batch means would differ
    total = int((labels[:, 1:] != IGNORE).sum())
    loss = SftLoss(kind, 1.5)
    references = iter([ref[:2], ref[2:], ref])  # what the reference model would return for each call
    monkeypatch.setattr(loss, "_reference_logits", lambda: next(references))
    halves = call(loss, logits[:2], labels[:2], total) + call(loss, logits[2:], labels[2:], total)
    assert halves == pytest.approx(call(loss, logits, labels), rel=1e-9)


def test_a_packed_row_gives_the_padded_batch_loss() -> None:
    """Packing concatenates rows; the first label of each sample is masked, so nothing crosses a boundary."""
    logits, labels = batch(6, rows=3, length=5)
    packed = SftLoss("eaft", 1.0)({"logits": logits.reshape(1, 15, VOCAB)}, labels.reshape(1, 15))
    assert float(packed) == pytest.approx(call(SftLoss("eaft", 1.0), logits, labels), rel=1e-9)


def test_no_label_token_gives_a_zero_that_still_backpropagates() -> None:
    logits = torch.randn(1, 4, VOCAB, requires_grad=True)
    loss = SftLoss("dft")({"logits": logits}, torch.full((1, 4), IGNORE))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None


def test_eaft_on_a_vocabulary_below_20_uses_every_token() -> None:
    random.seed(0)
    logits = torch.tensor([[[random.gauss(0, 1) for _ in range(5)]] * 2], dtype=torch.float64)
    labels = torch.tensor([[IGNORE, 3]])
    assert call(SftLoss("eaft", 1.0), logits, labels) == pytest.approx(eaft_terms(logits, labels, 1.0)[0])


def test_config_refuses_two_losses_and_other_stages() -> None:
    from tuneforge.config import load_config
    from tuneforge.errors import TuneforgeError

    base = {"model_name_or_path": "org/model", "stage": "sft", "output_dir": "o"}
    with pytest.raises(TuneforgeError, match="replace each other"):
        load_config({**base, "use_dft_loss": True, "use_eaft_loss": True}, paths=False)
    with pytest.raises(TuneforgeError, match="stage: sft"):
        load_config({**base, "stage": "pt", "use_asft_loss": True}, paths=False)
    cfg = load_config({**base, "use_eaft_loss": True, "eaft_alpha": 0.5}, paths=False)
    assert cfg.method.use_eaft_loss and cfg.method.eaft_alpha == 0.5
