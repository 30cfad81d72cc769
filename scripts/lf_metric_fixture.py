"""Write tests/fixtures/lf_predict_metrics.json: predictions, references and LLaMA-Factory 0.9.5's own figures.

Run once, by hand, with the reference install (not in CI):
    /work/lfvenv/bin/python scripts/lf_metric_fixture.py
It feeds each row (and then all rows together) through LF's `ComputeSimilarity`, the metric its sft workflow uses
for `predict_with_generate`, with a stand-in tokenizer that decodes row index i to the i-th string.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_find_spec = importlib.util.find_spec


def _no_torchvision(name: str, *args: object) -> object:
    """The reference venv's torchvision does not match its torch; the metric code never needs it."""
    return None if name == "torchvision" else _find_spec(name, *args)


importlib.util.find_spec = _no_torchvision

import numpy as np  # noqa: E402
from llamafactory.train.sft.metric import ComputeSimilarity  # noqa: E402
from transformers import EvalPrediction  # noqa: E402

ROWS = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("The cat is on the mat.", "The cat sat on the mat."),
    ("A quick brown fox jumps over the lazy dog", "The quick brown fox jumped over the lazy dog."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("I don't know", "Photosynthesis turns light into chemical energy."),
    ("yes", "yes"),
    ("", "An empty prediction scores zero."),
    ("Hello world hello world", "hello world"),
    ("今天天气很好，我们去公园散步吧。", "今天天气不错，我们去公园散步。"),
    ("我是一个人工智能助手。", "我是人工智能助手，很高兴为你服务。"),
    ("北京是中国的首都。", "中国的首都是北京。"),
    ("机器学习是人工智能的一个分支", "深度学习是机器学习的一个分支。"),
    ("你好", "你好"),
    ("这是 mixed 中英文 text 123", "这是中英文 mixed text，数字是123。"),
]


class IndexTokenizer:
    """Decodes the one-token row [i] to strings[i]; the pad id never occurs."""

    pad_token_id = -1

    def __init__(self, strings: list[str]) -> None:
        self.strings = strings

    def batch_decode(self, ids, skip_special_tokens: bool = True) -> list[str]:
        return [self.strings[int(row[0])] for row in ids]


def lf_scores(rows: list[tuple[str, str]]) -> dict[str, float]:
    preds, labels = [p for p, _ in rows], [r for _, r in rows]
    n = len(rows)
    pred_ids = np.arange(n).reshape(n, 1)
    label_ids = np.arange(n, 2 * n).reshape(n, 1)
    metric = ComputeSimilarity(tokenizer=IndexTokenizer(preds + labels))
    return metric(EvalPrediction(predictions=pred_ids, label_ids=label_ids))


def main() -> None:
    fixture = {
        "source": "LLaMA-Factory 0.9.5 llamafactory.train.sft.metric.ComputeSimilarity",
        "rows": [{"predict": p, "label": r, "scores": lf_scores([(p, r)])} for p, r in ROWS],
        "average": lf_scores(ROWS),
    }
    out = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lf_predict_metrics.json"
    out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
