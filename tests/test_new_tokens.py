"""New tokens' embedding rows (`add_special_tokens`, `new_special_tokens_config`, `init_special_tokens`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tuneforge.config import load_config
from tuneforge.errors import ConfigError

DESCRIBED = {"<|svg_start|>": "the beginning of a picture", "<|svg_end|>": "the end of a picture"}


def _loaded(model: Path, tmp_path: Path, **keys: Any) -> tuple[Any, Any, Any]:
    """(tokenizer, model with the config's new tokens, the same model as saved, without them)."""
    from transformers import AutoModelForCausalLM

    from tuneforge.models.loader import load_model, load_tokenizer

    cfg = load_config({"model_name_or_path": str(model), "output_dir": str(tmp_path / "out"), **keys})
    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg)
    return tokenizer, load_model(cfg, tokenizer, trainable=True), AutoModelForCausalLM.from_pretrained(model)


def _descriptions(tmp_path: Path, data: Any = None) -> str:
    import yaml

    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump(DESCRIBED if data is None else data))
    return str(path)


def _rows(model: Any) -> list[torch.Tensor]:
    """The input embedding matrix, and the output layer's when it is not tied to it."""
    weights = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    return weights + ([out.weight] if out is not None and out.weight is not weights[0] else [])


@pytest.fixture(scope="module")
def untied_qwen2(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_qwen2 with an output layer of its own (the tiny models tie it to the input embeddings)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.02)
    out = tmp_path_factory.mktemp("untied_qwen2")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(out)
    return out


def test_rows_inside_the_padded_vocabulary_start_at_the_mean_plus_noise(untied_qwen2: Path, tmp_path: Path) -> None:
    """Qwen pads 151,665 words to 151,936 rows: a new token fits without a resize, and still gets its start, in the
    input embeddings and in the untied output layer."""
    tokenizer, model, base = _loaded(untied_qwen2, tmp_path, add_special_tokens="<|svg_start|>")
    row, before = tokenizer.convert_tokens_to_ids("<|svg_start|>"), len(tokenizer) - 1
    assert row == before and model.get_input_embeddings().weight.shape[0] == 151936  # no resize happened
    assert len(_rows(model)) == 2
    for new, old in zip(_rows(model), _rows(base), strict=True):
        _assert_mean_plus_noise(new[row], old[:before].mean(dim=0), new.shape[1])
        assert not torch.equal(new[row], old[row])
        assert torch.equal(new[:before], old[:before])  # every known word keeps its row


def test_tokens_past_the_last_row_grow_the_matrix_and_start_there(tiny_llama: Path, tmp_path: Path) -> None:
    words = ",".join(f"<w{i}>" for i in range(80))  # more than the up to 63 spare rows of a multiple of 64
    tokenizer, model, base = _loaded(tiny_llama, tmp_path, add_tokens=words)
    weight, old = model.get_input_embeddings().weight, base.get_input_embeddings().weight
    assert weight.shape[0] > old.shape[0] and weight.shape[0] % 64 == 0
    before = len(tokenizer) - 80
    for index in (0, 79):
        _assert_mean_plus_noise(weight[tokenizer.convert_tokens_to_ids(f"<w{index}>")], old[:before].mean(0), 64)


def _assert_mean_plus_noise(row: torch.Tensor, mean: torch.Tensor, width: int) -> None:
    spread = float((row - mean).std())
    assert 0.5 / math.sqrt(width) < spread < 2 / math.sqrt(width)  # noise of std 1/sqrt(width) around the mean


def test_desc_init_starts_from_the_descriptions_words(untied_qwen2: Path, tmp_path: Path) -> None:
    keys = {"new_special_tokens_config": _descriptions(tmp_path), "init_special_tokens": "desc_init"}
    tokenizer, model, base = _loaded(untied_qwen2, tmp_path, **keys)
    assert len(_rows(model)) == 2
    for token, text in DESCRIBED.items():
        row, words = tokenizer.convert_tokens_to_ids(token), tokenizer(text, add_special_tokens=False)["input_ids"]
        for new, old in zip(_rows(model), _rows(base), strict=True):  # each matrix from its own rows
            assert torch.allclose(new[row], old[words].mean(dim=0), atol=1e-6)


def test_desc_init_with_noise_and_existing_tokens(tiny_qwen2: Path, tmp_path: Path) -> None:
    keys = {"new_special_tokens_config": _descriptions(tmp_path), "init_special_tokens": "desc_init_w_noise"}
    tokenizer, model, base = _loaded(tiny_qwen2, tmp_path, **keys, add_tokens="<|im_end|>")
    row = tokenizer.convert_tokens_to_ids("<|svg_end|>")
    words = tokenizer(DESCRIBED["<|svg_end|>"], add_special_tokens=False)["input_ids"]
    weight, old = model.get_input_embeddings().weight, base.get_input_embeddings().weight
    assert 0 < float((weight[row] - old[words].mean(dim=0)).norm()) < 3.0  # 1/sqrt(64) per value, 64 values
    known = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert torch.equal(weight[known], old[known])  # a token the tokenizer had is not new


def test_config_file_replaces_add_special_tokens(tiny_qwen2: Path, tmp_path: Path, caplog) -> None:
    from tuneforge.models.loader import load_tokenizer

    path = _descriptions(tmp_path)
    cfg = load_config(
        {"model_name_or_path": str(tiny_qwen2), "new_special_tokens_config": path, "add_special_tokens": "<x>"}
    )
    with caplog.at_level(logging.WARNING):
        tokenizer = load_tokenizer(cfg)
    assert "its tokens replace `add_special_tokens`" in caplog.text
    assert "<x>" not in tokenizer.get_vocab()
    assert all(token in tokenizer.get_vocab() for token in DESCRIBED)


def test_desc_init_without_descriptions_warns_and_uses_noise_init(tiny_qwen2: Path, tmp_path: Path, caplog) -> None:
    from tuneforge.models.loader import load_tokenizer

    cfg = load_config(
        {"model_name_or_path": str(tiny_qwen2), "add_special_tokens": "<x>", "init_special_tokens": "desc_init"}
    )
    with caplog.at_level(logging.WARNING):
        load_tokenizer(cfg)
    assert "`init_special_tokens: desc_init` needs `new_special_tokens_config`; using noise_init" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), (["<a>", "<b>"], "must map each new special token"), ({"<a>": 3}, "description for <a>")],
)
def test_a_bad_descriptions_file_is_refused_naming_it(tmp_path: Path, content: Any, message: str) -> None:
    path = str(tmp_path / "missing.yaml") if content is None else _descriptions(tmp_path, content)
    with pytest.raises(ConfigError, match=f"new_special_tokens_config.*{message}"):
        load_config({"model_name_or_path": str(tmp_path), "new_special_tokens_config": path})


@pytest.mark.parametrize("keys", [{"add_special_tokens": "<|svg_start|>"}, {"resize_vocab": True}, {}])
def test_lora_trains_the_embeddings_when_the_vocabulary_grew(tiny_qwen2: Path, tmp_path: Path, keys, caplog) -> None:
    """As LLaMA-Factory: new tokens (or `resize_vocab`) put the embedding layers in `modules_to_save`, or the new
    rows would never move from their start."""
    from tuneforge.models.adapters import apply_finetuning

    _, model, _ = _loaded(tiny_qwen2, tmp_path, finetuning_type="lora", **keys)
    with caplog.at_level(logging.WARNING):
        model = apply_finetuning(model, load_config({"model_name_or_path": str(tiny_qwen2), **keys}))
    trained = {name for name, p in model.named_parameters() if p.requires_grad and "lora_" not in name}
    if keys:
        assert any("embed_tokens" in name for name in trained), trained
        assert "also trains embed_tokens, lm_head in full" in caplog.text
    else:
        assert not trained
