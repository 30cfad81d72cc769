"""LLaMA Pro: `tuneforge expand-layers` writes a model computing the same function, and `use_llama_pro` trains only
the expanded blocks (freeze and LoRA)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from train_helpers import tiny_config, tokenizer_of, train_data
from tuneforge.cli import main


@pytest.fixture(scope="module")
def expanded(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pro") / "qwen2-pro"
    main(["expand-layers", "--model", str(tiny_qwen2), "--out", str(out), "--num-expand", "2"])
    return out


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2: Path):
    return tokenizer_of(tiny_qwen2)


def _layer(name: str) -> int | None:
    hit = re.search(r"\.layers\.(\d+)\.", name)
    return int(hit[1]) if hit else None


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
def test_expanded_model_loads_in_transformers_and_gives_identical_logits(arch, request, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    source = request.getfixturevalue(arch)
    if arch == "tiny_qwen2":
        out = request.getfixturevalue("expanded")
    else:
        out = tmp_path / "pro"  # LLaMA-Factory's script's argument names work too
        main(["expand-layers", "--model_name_or_path", str(source), "--output_dir", str(out), "--num_expand", "2"])
    before, after = AutoModelForCausalLM.from_pretrained(source), AutoModelForCausalLM.from_pretrained(out)
    layers = AutoConfig.from_pretrained(source).num_hidden_layers
    assert after.config.num_hidden_layers == layers + 2 == len(after.model.layers)
    assert after.config.tie_word_embeddings == before.config.tie_word_embeddings
    if getattr(after.config, "layer_types", None):
        assert len(after.config.layer_types) == layers + 2
    assert not after.model.layers[layers // 2].self_attn.o_proj.weight.any()  # the first inserted block
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        assert torch.equal(before(input_ids=ids).logits, after(input_ids=ids).logits)
        assert torch.equal(
            before.generate(ids[:1], max_new_tokens=4, do_sample=False),
            after.generate(ids[:1], max_new_tokens=4, do_sample=False),
        )
    assert (out / "tokenizer_config.json").is_file()


def test_num_expand_must_divide_the_layers(tiny_qwen2, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["expand-layers", "--model", str(tiny_qwen2), "--out", str(tmp_path / "x"), "--num-expand", "3"])
    assert stop.value.code != 0
    assert "positive divisor" in capsys.readouterr().err


def _prepared(expanded: Path, tokenizer, tmp_path: Path, **overrides):
    """The expanded tiny Qwen2 loaded for training with `use_llama_pro` (its tokenizer is the tiny Qwen2's)."""
    from tuneforge.models.adapters import apply_finetuning
    from tuneforge.models.loader import load_model

    cfg = tiny_config(expanded, tmp_path, **{"use_llama_pro": True, "freeze_trainable_layers": 2, **overrides})
    return apply_finetuning(load_model(cfg, tokenizer, trainable=True), cfg)


def test_freeze_llama_pro_trains_only_the_expanded_blocks(expanded, tokenizer, tmp_path):
    model = _prepared(expanded, tokenizer, tmp_path, finetuning_type="freeze")
    trained = {_layer(n) for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {1, 3}
    model = _prepared(expanded, tokenizer, tmp_path, finetuning_type="freeze", freeze_trainable_modules="mlp")
    assert all(".mlp." in n for n, p in model.named_parameters() if p.requires_grad)


def test_lora_llama_pro_adapts_only_the_expanded_blocks(expanded, tokenizer, tmp_path):
    model = _prepared(expanded, tokenizer, tmp_path, finetuning_type="lora", lora_target="q_proj,down_proj")
    adapted = [n for n, p in model.named_parameters() if p.requires_grad]
    assert adapted and {_layer(n) for n in adapted} == {1, 3}
    assert {n.split(".")[-4] for n in adapted} == {"q_proj", "down_proj"}


def test_llama_pro_needs_a_layer_count_the_expansion_divides(expanded, tokenizer, tmp_path):
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="equal strides"):
        _prepared(expanded, tokenizer, tmp_path, finetuning_type="freeze", freeze_trainable_layers=3)
    with pytest.raises(TuneforgeError, match="equal strides"):  # LLaMA-Factory trains no layer then
        _prepared(expanded, tokenizer, tmp_path, finetuning_type="lora", freeze_trainable_layers=-2)


def test_llama_pro_with_full_tuning_is_refused(tmp_path):
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match="LLaMA Pro"):
        tiny_config(tmp_path, tmp_path, finetuning_type="full", use_llama_pro=True)


@pytest.mark.slow
def test_training_changes_only_the_expanded_blocks(expanded, tokenizer, tmp_path):
    from safetensors.torch import load_file

    from tuneforge.train.sft import run_sft

    cfg = tiny_config(expanded, tmp_path, finetuning_type="freeze", use_llama_pro=True, freeze_trainable_layers=2)
    run_sft(cfg, train_data(tokenizer, 4), tokenizer)
    before, after = load_file(expanded / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    changed = {_layer(k) for k in before if not torch.equal(before[k], after[k])}
    assert changed == {1, 3}
