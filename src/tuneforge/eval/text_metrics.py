"""Text similarity of a prediction to its reference: BLEU-4 and ROUGE-1/2/L, on characters, pure Python.

Scores are reported as LLaMA-Factory reports its `predict_*` metrics: per row, multiplied by 100, then
averaged over rows. BLEU-4 follows the sentence BLEU of Papineni et al. on characters (uniform weights over 1-4
grams, brevity penalty, and the NIST "geometric sequence" smoothing for orders without a match). ROUGE-N is the
F1 of clipped n-gram overlap and ROUGE-L the F1 of the longest common subsequence, on non-space characters.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

METRIC_NAMES = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Counts of every n-gram of `tokens`."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu4(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """BLEU-4 of one hypothesis against one reference (0..1).

    0 when no unigram matches; an order with no match counts as 1 / (2**k * n_hyp_ngrams), k = 1, 2, ...
    for each such order in turn (n_hyp_ngrams at least 1).
    """
    if not hypothesis:
        return 0.0
    precisions, zeros = [], 0
    for n in range(1, 5):
        hyp, ref = ngrams(hypothesis, n), ngrams(reference, n)
        matched = sum(min(count, ref[gram]) for gram, count in hyp.items())
        total = max(1, sum(hyp.values()))
        if n == 1 and matched == 0:
            return 0.0
        if matched == 0:
            zeros += 1
            precisions.append(1 / (2**zeros * total))
        else:
            precisions.append(matched / total)
    c, r = len(hypothesis), len(reference)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(math.fsum(0.25 * math.log(p) for p in precisions))


def _f1(overlap: int, hyp_total: int, ref_total: int) -> float:
    if overlap == 0 or hyp_total == 0 or ref_total == 0:
        return 0.0
    precision, recall = overlap / hyp_total, overlap / ref_total
    return 2 * precision * recall / (precision + recall)


def rouge_n(hypothesis: Sequence[str], reference: Sequence[str], n: int) -> float:
    """ROUGE-N F1: clipped n-gram overlap over the n-gram counts of each side (0..1)."""
    hyp, ref = ngrams(hypothesis, n), ngrams(reference, n)
    overlap = sum(min(count, ref[gram]) for gram, count in hyp.items())
    return _f1(overlap, sum(hyp.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of `a` and `b`."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1: longest common subsequence over each side's length (0..1)."""
    return _f1(lcs_length(hypothesis, reference), len(hypothesis), len(reference))


def row_scores(predict: str, label: str) -> dict[str, float]:
    """BLEU-4 (on all characters) and ROUGE-1/2/L (on non-space characters) of one row, times 100."""
    hyp = [ch for ch in predict if not ch.isspace()]
    ref = [ch for ch in label if not ch.isspace()]
    scores = {
        "bleu-4": sentence_bleu4(list(predict), list(label)),
        "rouge-1": rouge_n(hyp, ref, 1),
        "rouge-2": rouge_n(hyp, ref, 2),
        "rouge-l": rouge_l(hyp, ref),
    }
    return {name: round(value * 100, 4) for name, value in scores.items()}


def average_scores(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Each metric of `METRIC_NAMES` averaged over rows (empty input gives 0.0)."""
    rows = [row_scores(p, label) for p, label in zip(predictions, labels, strict=True)]
    return {name: (math.fsum(r[name] for r in rows) / len(rows) if rows else 0.0) for name in METRIC_NAMES}
