"""Every `make-tiny` architecture trains (LoRA `all`; full fine-tuning for some), saves, reloads in plain
transformers / PEFT and generates: mistral, gemma 2/3, phi-3, glm-4, the MoE ones and the Qwen/Llama shapes."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from train_helpers import read_log, tiny_config, train_data

torch = pytest.importorskip("torch")

from tuneforge.models.tiny import ARCHES  # noqa: E402
from tuneforge.models.tiny_archs import TEXT_ARCHES, tokenizer_family  # noqa: E402

# Full fine-tuning for a dense model, each MoE family and multi-head latent attention (the rest: LoRA only)
FULL = ("gemma3", "qwen2_moe", "deepseek_v3", "gpt_oss")
# The MoE models whose router loss LLaMA-Factory turns on with moe_aux_loss_coef
ROUTER_LOSS = ("qwen2_moe", "qwen3_moe")
STEPS = {"max_steps": 2, "per_device_train_batch_size": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """`tiny(arch)`: the folder of a 2-layer, hidden-32 model of `arch`, built once per module."""
    from tuneforge.models.tiny import make_tiny

    @cache
    def build(arch: str) -> Path:
        return make_tiny(arch, tmp_path_factory.mktemp(f"arch_{arch}"), hidden=32)

    return build


@cache
def _tokenizer(family: str):
    """The tokenizer as training loads it (a pad token for Llama), once per tokenizer family."""
    from tuneforge.models.loader import load_tokenizer
    from tuneforge.models.tokenizer import tokenizer_dir

    return load_tokenizer(tiny_config(tokenizer_dir(family), Path("unused")))


def _prompt(tokenizer) -> dict[str, torch.Tensor]:
    messages = [{"role": "user", "content": "Who are you?"}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)


def _generates(model, tokenizer) -> None:
    inputs = _prompt(tokenizer)
    out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def _linear_leaves(model) -> set[str]:
    return {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)} - {"lm_head"}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHES)
def test_lora_all_trains_saves_reloads_and_generates(arch: str, tiny, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.train.sft import run_sft

    tok = _tokenizer(tokenizer_family(arch))
    run_sft(tiny_config(tiny(arch), tmp_path, lora_target="all", **STEPS), train_data(tok, 4), tok)
    base = AutoModelForCausalLM.from_pretrained(tiny(arch)).eval()
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    expected = _linear_leaves(base)
    if saved.get("target_parameters"):  # PEFT maps these names onto the fused routed experts (see expert_targets)
        expected -= {"gate_proj", "up_proj", "down_proj"}
    assert set(saved["target_modules"]) == expected
    inputs = _prompt(tok)
    with torch.no_grad():
        before = base(**inputs).logits
        model = PeftModel.from_pretrained(base, tmp_path).eval()
        after = model(**inputs).logits
    assert not torch.allclose(before, after)  # the trained adapter was saved and is applied
    _generates(model, tok)


@pytest.mark.slow
@pytest.mark.parametrize("arch", FULL)
def test_full_finetuning_trains_saves_reloads_and_generates(arch: str, tiny, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tuneforge.train.sft import run_sft

    tok = _tokenizer(tokenizer_family(arch))
    coef = {"moe_aux_loss_coef": 0.01} if TEXT_ARCHES[arch].moe else {}
    run_sft(tiny_config(tiny(arch), tmp_path, finetuning_type="full", **coef, **STEPS), train_data(tok, 4), tok)
    before = AutoModelForCausalLM.from_pretrained(tiny(arch)).state_dict()
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert model.config.model_type == TEXT_ARCHES[arch].model_type
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("layers.1." in k for k in changed)
    logged = [r for r in read_log(tmp_path) if "loss" in r]
    assert all(("aux_loss" in r) == (arch in ROUTER_LOSS) for r in logged) and logged
    _generates(model, tok)
