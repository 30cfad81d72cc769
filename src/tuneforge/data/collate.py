"""Collators: padding (sft/pt/unsupervised), pairwise (rm/dpo), KTO, packed and padding-free batches.

`PaddingFreeCollator` puts the whole batch in one row (`input_ids` of shape [1, total])
with `position_ids` that restart at 0 for each sample, `cu_seq_lens_q/k` and `max_length_q/k` (the keyword
names transformers' flash-attention path reads), and labels of -100 at each sample's first token, so
neither attention nor loss crosses a sample boundary when the model uses varlen attention.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

IGNORE = -100


def _pad(rows: list[list[int]], value: int, multiple: int | None, left: bool = False) -> Any:
    import torch

    longest = max((len(r) for r in rows), default=0)
    if multiple:
        longest = -(-longest // multiple) * multiple
    out = torch.full((len(rows), longest), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            values = torch.as_tensor(row, dtype=torch.long)
            if left:
                out[i, longest - len(row) :] = values
            else:
                out[i, : len(row)] = values
    return out


def _mask(rows: list[list[int]], multiple: int | None, left: bool = False) -> Any:
    return _pad([[1] * len(r) for r in rows], 0, multiple, left)


@dataclass
class PaddingCollator:
    """Pads `input_ids` (pad id), `labels` (-100) and optional `position_ids`; builds `attention_mask`.

    `padding_side="left"` is for generation (unsupervised prompts).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        left = self.padding_side == "left"
        ids = [list(f["input_ids"]) for f in features]
        batch = {
            "input_ids": _pad(ids, self.pad_token_id, self.pad_to_multiple_of, left),
            "attention_mask": _mask(ids, self.pad_to_multiple_of, left),
        }
        if "labels" in features[0]:
            labels = [list(f["labels"]) for f in features]
            if all(len(lab) == len(i) for lab, i in zip(labels, ids, strict=False)):
                batch["labels"] = _pad(labels, IGNORE, self.pad_to_multiple_of, left)
            else:  # unsupervised: labels are the reference answer, not aligned with the prompt
                batch["labels"] = _pad(labels, self.pad_token_id, None, left)
        if "position_ids" in features[0]:
            batch["position_ids"] = _pad([list(f["position_ids"]) for f in features], 0, self.pad_to_multiple_of, left)
        return batch


@dataclass
class PairwiseCollator:
    """A batch of 2B rows: the B chosen sequences first, then the B rejected ones (as rm/dpo expect)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [
            {"input_ids": f[f"{k}_input_ids"], "labels": f[f"{k}_labels"]}
            for k in ("chosen", "rejected")
            for f in features
        ]
        return PaddingCollator(self.pad_token_id, self.pad_to_multiple_of)(rows)


@dataclass
class KTOCollator:
    """Pads the completions and their mismatched KL completions; `kto_tags` becomes a bool tensor."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        pad = PaddingCollator(self.pad_token_id, self.pad_to_multiple_of)
        batch = pad([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
        kl = pad([{"input_ids": f["kl_input_ids"], "labels": f["kl_labels"]} for f in features])
        batch.update({f"kl_{key}": value for key, value in kl.items()})
        batch["kto_tags"] = torch.tensor([bool(f["kto_tags"]) for f in features])
        return batch


def _positions(feature: dict[str, Any]) -> list[int]:
    if "position_ids" in feature:
        return list(feature["position_ids"])
    return list(range(len(feature["input_ids"])))


@dataclass
class PaddingFreeCollator:
    """Concatenates the batch into one row of shape [1, total] with per-sample positions and boundaries.

    Works for plain samples and for neat-packed rows (whose `position_ids` already restart per sample).
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for feature in features:
            pos = _positions(feature)
            lab = list(feature.get("labels", feature["input_ids"]))
            for i, p in enumerate(pos):
                if p == 0:
                    lab[i] = IGNORE
            ids += list(feature["input_ids"])
            labels += lab
            positions += pos
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        lengths = [b - a for a, b in itertools.pairwise(starts)]
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
        longest = max(lengths, default=0)
        return {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": longest,
            "max_length_k": longest,
        }
