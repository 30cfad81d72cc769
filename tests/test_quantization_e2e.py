"""QLoRA and quantized export end to end on CPU (slow), through bitsandbytes' CPU backend.

- QLoRA 4-bit (nf4 + double quantization, fp4) and 8-bit train, save an adapter that plain PEFT loads on the
  unquantized base, and merge (dequantize -> merge -> save) into a model computing what the run trained.
- `quantization_bit` export of a briefly trained tiny model reloads in plain transformers with a held-out
  perplexity close to the unquantized model's; that bitsandbytes-saved checkpoint then trains a LoRA adapter,
  serves it and merges it (the pre-quantized path).
- A compressed-tensors int8 checkpoint (decompressed on CPU at load) trains a LoRA adapter and serves it.
- EETQ and CUDA bitsandbytes runs are `gpu`-marked for benchmarks/gpu_run.sh.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import pytest

from train_helpers import read_log, tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")
CPU_BNB = importlib.util.find_spec("bitsandbytes") is not None and (
    torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes.backends.cpu") is not None
)
needs_bnb = pytest.mark.skipif(not CPU_BNB, reason="needs bitsandbytes with a CPU backend (or a CUDA GPU)")
PROMPT = [[151644, 872, 198, 15191, 525, 498, 220, 18, 30, 151645, 198, 40, 1079]]

# keys, max |logit difference| allowed between the merged model and the quantized base + adapter (logits are of
# order 1). Measured on nf4: 2.9e-3, where merging into the full-precision base instead is 8e-2 off; 4-bit
# merges must also beat that by 4x. bitsandbytes' 8-bit matmul rounds the activations to int8 too (LLM.int8),
# which no float model reproduces: measured 7.5e-3, the same as the full-precision merge.
QLORA = [
    pytest.param({"quantization_bit": 4, "quantization_type": "nf4", "double_quantization": True}, 1e-2, id="nf4-dq"),
    pytest.param({"quantization_bit": 4, "quantization_type": "fp4", "double_quantization": False}, 1e-2, id="fp4"),
    pytest.param({"quantization_bit": 8}, 3e-2, id="int8"),
]


def _logits(model, ids=PROMPT):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.float()


def _plain(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _quantized_reference(base: Path, keys: dict):
    """The quantized base as training saw it, computing in float32 so the comparison measures the merge only."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if keys["quantization_bit"] == 8:
        quant = BitsAndBytesConfig(load_in_8bit=True)
    else:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=keys["quantization_type"],
            bnb_4bit_use_double_quant=keys["double_quantization"],
            bnb_4bit_compute_dtype=torch.float32,
        )
    return AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, device_map={"": "cpu"}).eval()


def _export(model: Path, out: Path, **keys):
    from tuneforge.config import load_config
    from tuneforge.export.runner import export_command

    return export_command(load_config({"model_name_or_path": str(model), "export_dir": str(out), **keys}))


@pytest.mark.slow
@needs_bnb
@pytest.mark.parametrize(("keys", "tolerance"), QLORA)
def test_qlora_trains_saves_and_merges(keys: dict, tolerance: float, tiny_qwen2: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    from tuneforge.config import load_config
    from tuneforge.infer.loading import load_for_inference
    from tuneforge.train.sft import run_sft

    tokenizer, out = tokenizer_of(tiny_qwen2), tmp_path / "qlora"
    run_sft(tiny_config(tiny_qwen2, out, max_steps=3, learning_rate=5e-3, **keys), train_data(tokenizer), tokenizer)
    losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert losses[-1] < losses[0], losses
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"

    base_logits = _logits(_plain(tiny_qwen2))
    on_plain_base = _logits(PeftModel.from_pretrained(_plain(tiny_qwen2), out))  # plain PEFT, unquantized base
    assert (on_plain_base - base_logits).abs().max() > 0.05, "the trained adapter changes the model"

    merged_dir = _export(tiny_qwen2, tmp_path / "merged", adapter_name_or_path=str(out), **keys)
    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text())
    merged = _logits(_plain(merged_dir))
    trained = _logits(PeftModel.from_pretrained(_quantized_reference(tiny_qwen2, keys), out))
    gap, plain_gap = _gap(merged, trained), _gap(on_plain_base, trained)
    print(f"{keys}: merged vs quantized base + adapter {gap:.2e}; full-precision base + adapter {plain_gap:.2e}")
    assert gap < tolerance
    if keys["quantization_bit"] == 4:
        assert gap < plain_gap / 4, "the merge keeps the quantized weights the adapter was trained on"

    served, _ = load_for_inference(
        load_config({"model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(out), **keys})
    )
    assert isinstance(served, PeftModel) and served.base_model.model.is_quantized  # the adapter stays unmerged
    assert _gap(_logits(served), merged) < 0.05  # chat/api serve what was trained (computing in bfloat16)
    assert torch.equal(merged.argmax(-1), trained.argmax(-1))


def _gap(a, b) -> float:
    return (a - b).abs().max().item()


WORDS = (["cat", "dog", "bird", "fox", "cow"], ["sat on", "ran to", "looked at", "slept by"], ["mat", "roof", "barn"])


def _sentences(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(f"The {rng.choice(WORDS[0])} {rng.choice(WORDS[1])} the {rng.choice(WORDS[2])}." for _ in range(n))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    """The tiny model after 30 full fine-tuning steps on simple sentences: perplexity means something."""
    from transformers import AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_qwen2), _plain(tiny_qwen2).train()
    ids, rng = tokenizer(_sentences(300, seed=0))["input_ids"], random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        batch = torch.tensor([ids[s : s + 32] for s in (rng.randrange(len(ids) - 32) for _ in range(4))])
        model(batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("trained")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def perplexity(model, tokenizer) -> float:
    """Perplexity on 256 held-out tokens of sentences the training never saw."""
    ids = torch.tensor([tokenizer(_sentences(60, seed=1))["input_ids"][:256]])
    with torch.no_grad():
        return math.exp(model(ids, labels=ids).loss.item())


# bits, type, bitsandbytes layer, relative perplexity tolerance (measured: +0.0% int8, +0.5% nf4, -0.1% fp4)
EXPORTS = [(8, "nf4", "Linear8bitLt", 0.02), (4, "nf4", "Linear4bit", 0.05), (4, "fp4", "Linear4bit", 0.05)]


@pytest.mark.slow
@needs_bnb
@pytest.mark.parametrize(("bits", "kind", "layer", "tolerance"), EXPORTS)
def test_bnb_export_reloads_in_plain_transformers_with_close_perplexity(
    bits: int, kind: str, layer: str, tolerance: float, trained: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = _export(trained, tmp_path / "q", quantization_bit=bits, quantization_type=kind)
    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "bitsandbytes" and quant[f"load_in_{bits}bit"]
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers, no tuneforge
    assert type(reloaded.model.layers[0].mlp.up_proj).__name__ == layer
    tokenizer = AutoTokenizer.from_pretrained(out)
    reference, quantized = perplexity(_plain(trained), tokenizer), perplexity(reloaded, tokenizer)
    print(f"{bits}-bit {kind}: perplexity {quantized:.3f} vs unquantized {reference:.3f}")
    assert reference < 100, "the briefly trained model predicts the held-out text (a random one: ~150k)"
    assert abs(quantized - reference) / reference < tolerance


@pytest.mark.slow
@needs_bnb
def test_bnb_saved_checkpoint_trains_serves_and_merges(trained: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    """The pre-quantized path: a bitsandbytes-saved checkpoint is recognised from its config.json and loaded."""
    from peft import PeftModel

    from tuneforge.config import load_config
    from tuneforge.infer.loading import load_for_inference
    from tuneforge.train.sft import run_sft

    saved = _export(trained, tmp_path / "nf4", quantization_bit=4)
    tokenizer, out = tokenizer_of(tiny_qwen2), tmp_path / "lora"
    run_sft(tiny_config(saved, out, max_steps=2, learning_rate=5e-3), train_data(tokenizer), tokenizer)
    assert (out / "adapter_model.safetensors").is_file()

    served, _ = load_for_inference(load_config({"model_name_or_path": str(saved), "adapter_name_or_path": str(out)}))
    assert isinstance(served, PeftModel) and served.base_model.model.is_quantized  # the adapter stays unmerged
    merged_dir = _export(saved, tmp_path / "merged", adapter_name_or_path=str(out))
    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text())
    assert _gap(_logits(_plain(merged_dir)), _logits(served)) < 0.05  # the served model computes in bfloat16


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(
    "keys",
    [
        pytest.param({"quantization_bit": 8, "quantization_method": "eetq"}, id="eetq"),
        pytest.param({"quantization_bit": 4}, id="bnb-nf4-cuda"),
    ],
)
def test_qlora_on_cuda_trains_and_merges(keys: dict, tiny_qwen2: Path, tmp_path: Path) -> None:
    package = "eetq" if keys.get("quantization_method") == "eetq" else "bitsandbytes"
    pytest.importorskip(package, reason=f"needs the {package} package")
    from tuneforge.train.sft import run_sft

    tokenizer, out = tokenizer_of(tiny_qwen2), tmp_path / "qlora"
    run_sft(tiny_config(tiny_qwen2, out, max_steps=3, learning_rate=5e-3, **keys), train_data(tokenizer), tokenizer)
    losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert losses[-1] < losses[0], losses
    if package == "bitsandbytes":
        merged = _export(tiny_qwen2, tmp_path / "merged", adapter_name_or_path=str(out), **keys)
        assert (merged / "model.safetensors").is_file()


def compressed_tensors_checkpoint(model_dir: Path, out: Path) -> Path:
    """An int8 per-channel weight-only compressed-tensors checkpoint of `model_dir`, written with the library's
    own compressor (the format llm-compressor saves), scales from each row's absolute maximum."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        QuantizationStatus,
        apply_quantization_config,
    )

    model = _plain(model_dir)
    weights = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel")
    scheme = QuantizationScheme(targets=["Linear"], weights=weights)
    config = QuantizationConfig(
        config_groups={"group_0": scheme}, ignore=["lm_head"], quantization_status=QuantizationStatus.FROZEN
    )
    apply_quantization_config(model, config)
    for module in model.modules():
        if hasattr(module, "weight_scale"):
            module.weight_scale.data = (module.weight.abs().amax(dim=1, keepdim=True) / 127).to(module.weight_scale)
            module.weight_zero_point.data.zero_()
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="int-quantized")
    compressor.compress_model(model)
    model.save_pretrained(out)
    compressor.update_config(out)
    tokenizer_of(model_dir).save_pretrained(out)
    return out


@pytest.mark.slow
def test_compressed_tensors_checkpoint_trains_and_serves(tiny_qwen2: Path, tmp_path: Path) -> None:
    """compressed-tensors runs on CPU (decompressed at load): a LoRA adapter trains on it and serves."""
    pytest.importorskip("compressed_tensors")
    from tuneforge.config import load_config
    from tuneforge.infer.loading import load_for_inference
    from tuneforge.train.sft import run_sft

    saved = compressed_tensors_checkpoint(tiny_qwen2, tmp_path / "ct")
    assert json.loads((saved / "config.json").read_text())["quantization_config"]["format"] == "int-quantized"
    assert _gap(_logits(_plain(saved)), _logits(_plain(tiny_qwen2))) < 0.05  # int8 weights, logits of order 1
    tokenizer, out = tokenizer_of(tiny_qwen2), tmp_path / "lora"
    run_sft(tiny_config(saved, out, max_steps=2, learning_rate=5e-3), train_data(tokenizer), tokenizer)
    served, _ = load_for_inference(load_config({"model_name_or_path": str(saved), "adapter_name_or_path": str(out)}))
    assert _gap(_logits(served), _logits(_plain(saved))) > 1e-3, "the adapter is applied"


@pytest.mark.slow
@needs_bnb
def test_chat_with_the_users_bnb_4bit_config(shared_dir: Path, tiny_qwen2: Path) -> None:
    """The user's `llamafactory-cli chat` config with `quantization_bit: 4` chats on CPU (model path replaced)."""
    import subprocess
    import sys

    config = shared_dir / "compat/user-configs/llama3_bnb_4bit_infer.yaml"
    cmd = [sys.executable, "-m", "tuneforge.cli", "chat", str(config), f"model_name_or_path={tiny_qwen2}"]
    result = subprocess.run(
        [*cmd, "template=qwen", "max_new_tokens=8"], input="Hello\nexit\n", capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Assistant: " in result.stdout
