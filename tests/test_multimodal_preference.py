"""DPO and KTO on image rows: LLaMA-Factory's sharegpt preference format with an `images` column and `<image>`
marks, through the same media plugin and collator as sft (chosen and rejected rows both get the pixels)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from media_helpers import square_image
from train_helpers import read_log, tiny_config

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 220)}
PAD = 151655  # <|image_pad|>


def preference_dataset(folder: Path, n: int = 6) -> Path:
    """Two datasets in `folder`: `prefs` (ranking rows: the square's colour chosen, another one rejected) and
    `kto` (unpaired rows tagged desirable when the answer names the square's colour), with 56-px images."""
    names = list(COLOURS)
    prefs, kto = [], []
    for i in range(n):
        name, wrong = names[i % 3], names[(i + 1) % 3]
        square_image(folder / "img" / f"{i}.png", COLOURS[name])
        prompt = [{"from": "human", "value": "<image>What colour is the square?"}]
        images = [f"img/{i}.png"]
        prefs.append({"conversations": prompt, "chosen": {"from": "gpt", "value": name},
                      "rejected": {"from": "gpt", "value": wrong}, "images": images})  # fmt: skip
        answer = name if i % 2 == 0 else wrong
        kto.append({"conversations": [*prompt, {"from": "gpt", "value": answer}], "tag": answer == name,
                    "images": images})  # fmt: skip
    (folder / "prefs.json").write_text(json.dumps(prefs))
    (folder / "kto.json").write_text(json.dumps(kto))
    columns = {"messages": "conversations", "images": "images"}
    info = {
        "prefs": {"file_name": "prefs.json", "formatting": "sharegpt", "ranking": True,
                  "columns": {**columns, "chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {**columns, "kto_tag": "tag"}},
    }  # fmt: skip
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def config(model: Path, folder: Path, stage: str, dataset: str, **keys: Any) -> Any:
    options = {
        "template": "qwen2_vl",
        "dataset_dir": str(folder),
        "cache_dir": str(folder / "cache"),
        "cutoff_len": 256,
    }
    return tiny_config(model, folder / f"out-{stage}", stage=stage, dataset=dataset, **{**options, **keys})


def collated(model: Path, folder: Path, stage: str, dataset: str) -> tuple[Any, dict[str, Any]]:
    """(tokenized train split, the stage's media batch of its first two rows)."""
    from tuneforge.models.loader import load_tokenizer
    from tuneforge.train.dpo import DPO
    from tuneforge.train.kto import KTO
    from tuneforge.train.recipe import stage_data

    cfg = config(model, folder, stage, dataset)
    data = stage_data(cfg, load_tokenizer(cfg), {"dpo": DPO, "kto": KTO}[stage].collator)
    return data.train, data.collator([data.train[0], data.train[1]])


def test_dpo_batches_give_chosen_and_rejected_rows_their_images(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from tuneforge.train.reference import forward_inputs

    train, batch = collated(tiny_qwen2_vl, preference_dataset(tmp_path), "dpo", "prefs")
    assert [Path(p).name for p in train[0]["images"]] == ["0.png"]
    assert train[0]["chosen_input_ids"].count(PAD) == 4 == train[0]["rejected_input_ids"].count(PAD)
    inputs = forward_inputs(batch)
    assert inputs["input_ids"].shape[0] == 4  # 2 chosen rows, then 2 rejected rows
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]] * 4  # each row's image, in row order, twice
    assert inputs["mm_token_type_ids"].sum(-1).tolist() == [4, 4, 4, 4]
    assert (batch["labels"][inputs["mm_token_type_ids"].bool()] == -100).all()
    assert "labels" not in inputs
    import torch
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl, dtype=torch.float32).eval()
    with torch.no_grad():  # the pixels reach the model: other pixels, other logits
        seen = model(**inputs).logits
        blank = model(**{**inputs, "pixel_values": torch.zeros_like(inputs["pixel_values"])}).logits
    assert (seen - blank).abs().max() > 1e-4


def test_kto_batches_share_the_prompt_images_with_the_kl_rows(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from tuneforge.train.reference import forward_inputs

    train, batch = collated(tiny_qwen2_vl, preference_dataset(tmp_path), "kto", "kto")
    assert train[0]["kl_input_ids"].count(PAD) == 4 and [Path(p).name for p in train[1]["images"]] == ["1.png"]
    main, kl = forward_inputs(batch), forward_inputs(batch, "kl_")
    assert main["image_grid_thw"].shape[0] == 2 and kl["pixel_values"] is main["pixel_values"]
    assert kl["input_ids"] is batch["kl_input_ids"] and kl["mm_token_type_ids"].sum(-1).tolist() == [4, 4]
    assert set(main) == {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"}


def test_reward_model_on_images_is_refused(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.errors import DataError
    from tuneforge.models.loader import load_tokenizer

    cfg = config(tiny_qwen2_vl, preference_dataset(tmp_path), "rm", "prefs")
    with pytest.raises(DataError, match=r"serves stages sft, dpo and kto .* not stage rm"):
        prepare_dataset(cfg, load_tokenizer(cfg))


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "dataset"), [("dpo", "prefs"), ("kto", "kto")])
def test_preference_stages_train_on_images(tiny_qwen2_vl: Path, tmp_path: Path, stage: str, dataset: str) -> None:
    from tuneforge.train.dpo import run_dpo
    from tuneforge.train.kto import run_kto

    folder = preference_dataset(tmp_path)
    cfg = config(tiny_qwen2_vl, folder, stage, dataset, max_steps=3, per_device_train_batch_size=2)
    metrics = {"dpo": run_dpo, "kto": run_kto}[stage](cfg)
    assert math.isfinite(metrics["train_loss"])
    out = Path(str(cfg.training.output_dir))
    margins = [record["rewards/margins"] for record in read_log(out) if "rewards/margins" in record]
    assert margins and all(math.isfinite(m) for m in margins)
    assert (out / "preprocessor_config.json").is_file()


def mllm_demo_preferences(shared: Path, folder: Path, rejected: str) -> Path:
    """mllm_demo's rows as `prefs` (last answer chosen, `rejected` rejected) and `kto` (even rows desirable) in
    `folder`, their images read from the shared data folder (as scripts/lf_fixtures/encode_mllm_preferences.py)."""
    rows = json.loads((shared / "mllm_demo.json").read_text())
    prefs = [
        {"messages": r["messages"][:-1], "chosen": r["messages"][-1], "images": r["images"],
         "rejected": {"role": "assistant", "content": rejected}}
        for r in rows
    ]  # fmt: skip
    kto = [{"messages": r["messages"], "images": r["images"], "tag": i % 2 == 0} for i, r in enumerate(rows)]
    (folder / "prefs.json").write_text(json.dumps(prefs))
    (folder / "kto.json").write_text(json.dumps(kto))
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    columns = {"messages": "messages", "images": "images"}
    info = {
        "prefs": {"file_name": "prefs.json", "formatting": "sharegpt", "ranking": True, "tags": tags,
                  "columns": {**columns, "chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "kto.json", "formatting": "sharegpt", "tags": tags,
                "columns": {**columns, "kto_tag": "tag"}},
    }  # fmt: skip
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def test_mllm_preference_ids_equal_llamafactory(tiny_qwen2_vl: Path, shared_dir: Path, tmp_path: Path) -> None:
    """Preference and KTO rows of mllm_demo encode as LLaMA-Factory 0.9.5 encodes them (fixture made by
    scripts/lf_fixtures/encode_mllm_preferences.py), image tokens included, except for tuneforge's listed
    difference: the newline after the final end-of-turn token is not part of the response."""
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    fixture = json.loads((Path(__file__).parent / "fixtures" / "lf_mllm_preference_ids.json").read_text())
    folder = mllm_demo_preferences(shared_dir / "lf-data", tmp_path, fixture["rejected"])
    media = {"media_dir": str(shared_dir / "lf-data"), "cutoff_len": fixture["cutoff_len"]}
    for stage, dataset, keys in (("dpo", "prefs", ("chosen", "rejected")), ("kto", "kto", ("",))):
        cfg = config(tiny_qwen2_vl, folder, stage, dataset, **media)
        ours = prepare_dataset(cfg, load_tokenizer(cfg)).train
        theirs = fixture["pairwise" if stage == "dpo" else "kto"]
        assert ours.num_rows == len(theirs)
        for mine, lf in zip(ours, theirs, strict=True):
            for key in keys:
                prefix = f"{key}_" if key else ""
                ids, lf_ids = mine[f"{prefix}input_ids"], lf[f"{prefix}input_ids"]
                assert lf_ids == [*ids, 198]  # 198: the newline LLaMA-Factory adds after the last <|im_end|>
                assert lf[f"{prefix}labels"] == [*mine[f"{prefix}labels"], 198]
                assert ids.count(PAD) > 0
            if stage == "kto":
                assert mine["kto_tags"] == lf["kto_tags"]
