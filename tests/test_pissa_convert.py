"""`pissa_convert`: the converted adapter on the original base model gives the trained PiSSA model's logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import tiny_config

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("pissa_iter", [-1, 4], ids=["exact-svd", "fast-svd"])
def test_converted_adapter_on_the_original_base_matches_the_pissa_model(
    pissa_iter: int, tiny_llama: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.models.adapters import apply_finetuning, save_pissa_converted, save_pissa_initial

    cfg = tiny_config(
        tiny_llama, tmp_path, lora_target="all", pissa_init=True, pissa_iter=pissa_iter, pissa_convert=True
    )
    torch.manual_seed(0)
    model = apply_finetuning(AutoModelForCausalLM.from_pretrained(tiny_llama), cfg, trainable=True).eval()
    original = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    residual = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.allclose(residual, original.model.layers[0].self_attn.q_proj.weight)  # PiSSA moved the base

    save_pissa_initial(model, tmp_path / "pissa_init")
    with torch.no_grad():  # stands in for training: move every adapter matrix away from its PiSSA start
        for param_name, param in model.named_parameters():
            if "lora_" in param_name:
                param.add_(torch.randn_like(param) * 0.05)
    ids = torch.tensor([[1, 5, 9, 42, 7, 300, 11, 2]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    save_pissa_converted(model, tmp_path / "pissa_converted", tmp_path / "pissa_init")

    converted = PeftModel.from_pretrained(original, tmp_path / "pissa_converted").eval()
    with torch.no_grad():
        got = converted(input_ids=ids).logits
    assert converted.peft_config["default"].r == 2 * cfg.method.lora_rank
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    with torch.no_grad():
        untouched = AutoModelForCausalLM.from_pretrained(tiny_llama)(input_ids=ids).logits
    assert not torch.allclose(untouched, expected, atol=1e-3)  # the comparison is not trivially equal


def test_pissa_convert_needs_a_pissa_lora(tiny_llama: Path, tmp_path: Path) -> None:
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="pissa_init: true"):
        tiny_config(tiny_llama, tmp_path, pissa_convert=True)
    with pytest.raises(TuneforgeError, match="stages pt and sft"):
        tiny_config(tiny_llama, tmp_path, pissa_init=True, pissa_convert=True, stage="dpo")


def test_a_resumed_run_keeps_the_first_initial_adapter(tmp_path: Path) -> None:
    """On resume the model already holds trained weights: the initial adapter must come from the first run."""
    from types import SimpleNamespace

    from tuneforge.errors import TuneforgeError
    from tuneforge.models.adapters import PissaConversion

    args = SimpleNamespace(output_dir=str(tmp_path), should_save=True)
    resumed = SimpleNamespace(global_step=5)
    with pytest.raises(TuneforgeError, match="resume_from_checkpoint"):
        PissaConversion().on_train_begin(args, resumed, None, model=None)
    (tmp_path / "pissa_init").mkdir()
    (tmp_path / "pissa_init" / "adapter_config.json").write_text("{}")
    PissaConversion().on_train_begin(args, resumed, None, model=None)  # kept as it is: nothing saved over it
    assert (tmp_path / "pissa_init" / "adapter_config.json").read_text() == "{}"
