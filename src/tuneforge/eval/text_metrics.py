"""Similarity of a prediction to its reference, as LLaMA-Factory 0.9.5 scores `predict_with_generate`.

Per row: ROUGE-1/2/L F1 from `rouge-chinese` on jieba-segmented words joined by spaces (all three 0 when either
side has no word), and NLTK's `sentence_bleu` over characters with `SmoothingFunction().method3`; each is
multiplied by 100 and rounded to 4 decimals, then the rows are averaged. The libraries come with the `metrics`
extra (`pip install 'tuneforge[metrics]'`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Sequence

from tuneforge.errors import TuneforgeError

METRIC_NAMES = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
_PACKAGES = {"jieba": "jieba", "nltk": "nltk", "rouge_chinese": "rouge-chinese"}


def require_metric_packages(what: str = "Prediction metrics") -> None:
    """Stop with the install command when jieba, nltk or rouge-chinese is missing."""
    missing = [pip for module, pip in _PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise TuneforgeError(
            f"{what} (BLEU-4, ROUGE as LLaMA-Factory computes them) need {', '.join(missing)}: "
            "pip install 'tuneforge[metrics]'."
        )


def _quiet_jieba() -> None:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO on first use


def row_scores(predict: str, label: str) -> dict[str, float]:
    """BLEU-4 and ROUGE-1/2/L of one row (0..100, rounded to 4 decimals)."""
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    _quiet_jieba()
    hypothesis, reference = " ".join(jieba.cut(predict)), " ".join(jieba.cut(label))
    if not hypothesis.split() or not reference.split():
        rouge = dict.fromkeys(METRIC_NAMES[1:], 0.0)
    else:
        scores = Rouge().get_scores(hypothesis, reference)[0]
        rouge = {name: scores[name]["f"] for name in METRIC_NAMES[1:]}
    bleu = sentence_bleu([list(label)], list(predict), smoothing_function=SmoothingFunction().method3)
    return {name: round(value * 100, 4) for name, value in {"bleu-4": bleu, **rouge}.items()}


def average_scores(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Each metric of `METRIC_NAMES` averaged over rows (empty input gives 0.0)."""
    rows = [row_scores(p, label) for p, label in zip(predictions, labels, strict=True)]
    return {name: (math.fsum(r[name] for r in rows) / len(rows) if rows else 0.0) for name in METRIC_NAMES}
