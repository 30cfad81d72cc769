"""Packing (fill, position ids, sample boundaries) and the collators."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from data_helpers import data_config
from tuneforge.data.packing import best_fit_bins, pack_table

IGNORE = -100


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))


def test_best_fit_bins_respect_capacity_and_place_every_item() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(20, 400) for _ in range(2000)]
    bins = best_fit_bins(lengths, 2048)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 2048 for b in bins)
    assert sum(lengths) / (len(bins) * 2048) >= 0.95


def _table(rows: list[list[int]]):
    import pyarrow as pa

    return pa.table({"input_ids": pa.array(rows, pa.list_(pa.int32())), "labels": pa.array(rows, pa.list_(pa.int32()))})


def test_pack_table_resets_positions_and_masks_boundaries() -> None:
    rows = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
    packed = pack_table(_table(rows), capacity=6, neat=True)
    out = packed.table.to_pylist()
    assert sum(len(r["input_ids"]) for r in out) == 10 and packed.rows_out == 2
    for row in out:
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        assert all(row["labels"][i] == IGNORE for i in starts)
        assert all(
            label == token
            for i, (token, label) in enumerate(zip(row["input_ids"], row["labels"], strict=True))
            if i not in starts
        )
        assert row["position_ids"][starts[-1] :] == list(range(len(row["position_ids"]) - starts[-1]))


def test_sft_packing_on_alpaca_fills_rows(shared_dir, qwen_tokenizer, tmp_path) -> None:
    from tuneforge.data.pipeline import prepare_dataset

    cfg = data_config(tmp_path, dataset="alpaca_en_demo", neat_packing=True, cutoff_len=1024, max_samples=400)
    splits = prepare_dataset(cfg, qwen_tokenizer)
    assert splits.stats.packing_fill >= 0.95
    row = splits.train[0]
    assert len(row["input_ids"]) <= 1024
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
    assert len(starts) > 1 and all(row["labels"][i] == IGNORE for i in starts)
    tokens = sum(len(r) for r in splits.train["input_ids"])
    unpacked = prepare_dataset(data_config(tmp_path, dataset="alpaca_en_demo", max_samples=400), qwen_tokenizer)
    assert tokens == sum(len(r) for r in unpacked.train["input_ids"])


def test_padding_free_collator_keeps_samples_apart() -> None:
    pytest.importorskip("torch")
    from tuneforge.data.collate import PaddingFreeCollator

    batch = PaddingFreeCollator()(
        [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]}]
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3, IGNORE, 5]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5] and batch["max_length_q"] == 3


def test_padding_collator_pads_to_multiple() -> None:
    pytest.importorskip("torch")
    from tuneforge.data.collate import PaddingCollator

    batch = PaddingCollator(pad_token_id=0, pad_to_multiple_of=8)(
        [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [5], "labels": [5]}]
    )
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].tolist()[1] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert batch["labels"].tolist()[0] == [IGNORE, 6, 7] + [IGNORE] * 5


def test_pairwise_and_kto_collators() -> None:
    pytest.importorskip("torch")
    from tuneforge.data.collate import KTOCollator, PairwiseCollator

    rows = [
        {
            "chosen_input_ids": [1, 2],
            "chosen_labels": [IGNORE, 2],
            "rejected_input_ids": [1, 3, 4],
            "rejected_labels": [IGNORE, 3, 4],
        }
    ]
    batch = PairwiseCollator(pad_token_id=0)(rows * 2)
    assert batch["input_ids"].tolist() == [[1, 2, 0], [1, 2, 0], [1, 3, 4], [1, 3, 4]]
    kto = KTOCollator(pad_token_id=0)(
        [{"input_ids": [1], "labels": [1], "kl_input_ids": [1, 2], "kl_labels": [IGNORE, 2], "kto_tags": True}]
    )
    assert kto["kl_input_ids"].tolist() == [[1, 2]] and kto["kto_tags"].tolist() == [True]


def test_plain_packing_packs_without_position_ids(shared_dir, qwen_tokenizer, tmp_path) -> None:
    from tuneforge.data.pipeline import prepare_dataset

    cfg = data_config(tmp_path, dataset="identity", packing=True, cutoff_len=512)
    splits = prepare_dataset(cfg, qwen_tokenizer)
    assert splits.stats.packed_rows == len(splits.train) < 91
    assert "position_ids" not in splits.train.column_names
