"""Mixture-of-experts training: the router auxiliary loss as LLaMA-Factory switches it on, and LoRA on experts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from train_helpers import read_log, tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from tuneforge.errors import TuneforgeError  # noqa: E402
from tuneforge.models.moe import configure_router_loss  # noqa: E402

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
SMALL_MOE = {
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "head_dim": 8},
    "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
    "gpt_oss": {"num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 8},
    "deepseek_v3": {
        **{"n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "n_shared_experts": 1},
        **{"first_k_dense_replace": 1, "n_group": 1, "topk_group": 1, "kv_lora_rank": 8, "q_lora_rank": 8},
        **{"qk_rope_head_dim": 4, "qk_nope_head_dim": 4, "v_head_dim": 8, "head_dim": 4},
    },
}


def small_config(model_type: str):
    """A 64-token, hidden-32 config of `model_type` (builds in milliseconds, no tokenizer)."""
    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "num_key_value_heads": 2, "vocab_size": 64}
    return AutoConfig.for_model(model_type, **SMALL, **ids, **SMALL_MOE[model_type])


def small_model(model_type: str, coef: float | None = None, trainable: bool = True):
    config = small_config(model_type)
    configure_router_loss(config, coef, trainable=trainable)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


# ---- router auxiliary loss: which config keys, when ----------------------------------------------------------


@pytest.mark.parametrize("model_type", ["qwen2_moe", "qwen3_moe"])
def test_coefficient_turns_router_logits_on_for_training(model_type: str) -> None:
    config = small_config(model_type)
    assert configure_router_loss(config, 0.25, trainable=True)
    assert config.output_router_logits is True and config.router_aux_loss_coef == 0.25


@pytest.mark.parametrize(("coef", "trainable"), [(0.25, False), (None, True), (0.0, True)])
def test_inference_unset_or_zero_leaves_the_config(coef: float | None, trainable: bool) -> None:
    config = small_config("qwen3_moe")
    before = (config.output_router_logits, config.router_aux_loss_coef)
    assert not configure_router_loss(config, coef, trainable=trainable)
    assert (config.output_router_logits, config.router_aux_loss_coef) == before


def test_model_type_without_lf_support_warns_and_is_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    config = small_config("gpt_oss")  # LLaMA-Factory 0.9.5 leaves gpt-oss's router loss off
    with caplog.at_level(logging.WARNING, logger="tuneforge.models.moe"):
        assert not configure_router_loss(config, 0.25, trainable=True)
    assert "`moe_aux_loss_coef: 0.25` has no effect on model type 'gpt_oss'" in caplog.text
    assert config.output_router_logits is False and config.router_aux_loss_coef != 0.25


def test_custom_deepseek_and_jetmoe_keys() -> None:
    from transformers import PretrainedConfig

    deepseek, jetmoe = PretrainedConfig(), PretrainedConfig()
    deepseek.model_type, jetmoe.model_type = "deepseek", "jetmoe"
    configure_router_loss(deepseek, 0.1, trainable=True)
    configure_router_loss(jetmoe, 0.2, trainable=True)
    assert deepseek.aux_loss_alpha == 0.1 and not getattr(deepseek, "output_router_logits", False)
    assert jetmoe.aux_loss_coef == 0.2 and jetmoe.output_router_logits is True


def _loss_and_router_grad(coef: float | None) -> tuple[float, float, torch.Tensor]:
    model = small_model("qwen3_moe", coef).train()
    ids = torch.arange(3, 35).reshape(2, 16) % 64
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    aux = out.aux_loss.item() if out.get("aux_loss") is not None else 0.0
    return out.loss.item(), aux, model.model.layers[0].mlp.gate.weight.grad.clone()


def test_aux_loss_adds_coefficient_times_router_loss_and_changes_gradients() -> None:
    plain_loss, plain_aux, plain_grad = _loss_and_router_grad(None)
    small_loss, small_aux, small_grad = _loss_and_router_grad(0.01)
    big_loss, big_aux, big_grad = _loss_and_router_grad(1.0)
    assert plain_aux == 0.0 and small_aux > 0 and small_aux == pytest.approx(big_aux)
    assert small_loss == pytest.approx(plain_loss + 0.01 * small_aux, rel=1e-5)
    assert big_loss == pytest.approx(plain_loss + 1.0 * big_aux, rel=1e-5)
    assert not torch.allclose(small_grad, big_grad) and not torch.allclose(plain_grad, big_grad)


def test_loader_wires_the_coefficient_only_for_training(tiny_moe: Path, tmp_path: Path) -> None:
    from tuneforge.models.loader import load_model

    cfg = tiny_config(tiny_moe, tmp_path, moe_aux_loss_coef=0.3)
    trained = load_model(cfg, tokenizer_of(tiny_moe), trainable=True)
    assert trained.config.output_router_logits is True and trained.config.router_aux_loss_coef == 0.3
    served = load_model(cfg, tokenizer_of(tiny_moe), trainable=False)
    assert served.config.output_router_logits is False and served.config.router_aux_loss_coef == 0.001


# ---- LoRA on experts ------------------------------------------------------------------------------------------


def _peft(model_type: str, target: str, kind: str = "lora"):
    from tuneforge.models.adapters import peft_config

    cfg = tiny_config(Path("unused"), Path("unused"), lora_target=target, oft_target=target, finetuning_type=kind)
    return peft_config(small_model(model_type), cfg, kind)


def test_all_adapts_linear_layers_only_as_llamafactory() -> None:
    lora = _peft("qwen2_moe", "all")
    assert set(lora.target_modules) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "shared_expert_gate"
    }  # fmt: skip
    assert not lora.target_parameters


@pytest.mark.parametrize(
    ("target", "modules", "parameters"),
    [
        ("q_proj,experts", {"q_proj"}, ["experts.down_proj", "experts.gate_up_proj"]),
        ("experts.gate_up_proj", set(), ["experts.gate_up_proj"]),
        ("all,experts.down_proj", {"q_proj", "k_proj", "v_proj", "o_proj"}, ["experts.down_proj"]),
    ],
)
def test_expert_weights_are_lora_target_parameters(target: str, modules: set[str], parameters: list[str]) -> None:
    lora = _peft("qwen3_moe", target)
    assert set(lora.target_modules or ()) == modules and sorted(lora.target_parameters) == parameters


def test_bare_expert_weight_name_says_how_to_name_it() -> None:
    with pytest.raises(TuneforgeError, match=r"gate_up_proj.*name them as `experts.gate_up_proj`, or `experts`"):
        _peft("qwen3_moe", "q_proj,gate_up_proj")


def test_mlp_names_peft_maps_onto_experts_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    from tuneforge.models.adapters import apply_finetuning

    cfg = tiny_config(Path("unused"), Path("unused"), lora_target="all")
    with caplog.at_level(logging.WARNING, logger="tuneforge.models.expert_targets"):
        model = apply_finetuning(small_model("deepseek_v3"), cfg)
    assert "PEFT adapted no layer named down_proj, gate_proj, up_proj" in caplog.text
    assert "experts.down_proj, experts.gate_up_proj" in caplog.text
    assert not any("shared_experts" in n and "lora" in n for n, _ in model.named_parameters())


def test_half_of_a_fused_expert_pair_is_a_user_error() -> None:
    from tuneforge.models.adapters import apply_finetuning

    cfg = tiny_config(Path("unused"), Path("unused"), lora_target="q_a_proj,gate_proj")
    with pytest.raises(TuneforgeError, match=r"`lora_target`: Cannot convert PEFT.*name gate_proj and up_proj"):
        apply_finetuning(small_model("deepseek_v3"), cfg)


def test_oft_refuses_expert_weights() -> None:
    with pytest.raises(TuneforgeError, match="OFT cannot adapt fused expert weights"):
        _peft("qwen3_moe", "experts", kind="oft")


# ---- end to end -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneforge.models.tiny import make_tiny

    return make_tiny("qwen3_moe", tmp_path_factory.mktemp("tiny_qwen3_moe"), hidden=32)


@pytest.mark.slow
def test_training_logs_aux_loss_and_trains_expert_lora(tiny_moe: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    from tuneforge.train.sft import run_sft

    tok = tokenizer_of(tiny_moe)
    overrides = {"max_steps": 2, "per_device_train_batch_size": 2, "lora_target": "q_proj,experts"}
    run_sft(tiny_config(tiny_moe, tmp_path, moe_aux_loss_coef=0.01, **overrides), train_data(tok, 4), tok)
    records = [r for r in read_log(tmp_path) if "loss" in r]
    assert len(records) == 2 and all(r["aux_loss"] > 0 for r in records)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert sorted(saved["target_parameters"]) == ["experts.down_proj", "experts.gate_up_proj"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_moe), tmp_path)
    expert_lora = [n for n, p in model.named_parameters() if "mlp.experts" in n and "lora_B" in n]
    assert expert_lora and all(model.get_parameter(n).abs().sum() > 0 for n in expert_lora)  # trained, not zero-init
    ids = torch.tensor([[9707, 1879, 11, 1879]])
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits  # what `tuneforge export` writes
    assert torch.allclose(adapted, merged, atol=1e-4)
