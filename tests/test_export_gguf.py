"""GGUF export: metadata, tensor shapes and values read back with gguf.GGUFReader; llama.cpp runs it when installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="the `gguf` extra is not installed (pip install 'tuneforge[gguf]')")

from export_helpers import CHATS, shrink_vocab  # noqa: E402
from tuneforge.data.templates import get_template  # noqa: E402
from tuneforge.export.gguf import interleave_rope, llama3_rope_factors, write_gguf  # noqa: E402

TEMPLATES = {"qwen2": "qwen", "qwen3": "qwen3", "llama": "llama3"}


def _load(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def exported(tiny_qwen2: Path, tiny_qwen3: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory):
    """(model, tokenizer, template, {kind: gguf path}) per architecture (small-vocabulary copies of the tiny
    models: reading a 151k-token GGUF takes GGUFReader ~10 s)."""
    out = tmp_path_factory.mktemp("gguf")
    result = {}
    for arch, folder in {"qwen2": tiny_qwen2, "qwen3": tiny_qwen3, "llama": tiny_llama}.items():
        model, tokenizer = _load(shrink_vocab(folder, out / f"small_{arch}"))
        template = get_template(TEMPLATES[arch], tokenizer)
        kinds = ("f16", "q8_0", "q4_0") if arch == "qwen3" else ("f16", "q8_0")
        paths = {k: write_gguf(model, tokenizer, out / f"{arch}-{k}.gguf", k, template.to_jinja()) for k in kinds}
        result[arch] = (model, tokenizer, template, paths)
    return result


def _field(reader, key: str):
    return reader.fields[key].contents()


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_metadata(exported, arch: str) -> None:
    model, tokenizer, template, paths = exported[arch]
    reader = gguf.GGUFReader(paths["f16"])
    c = model.config
    assert _field(reader, "general.architecture") == arch
    assert _field(reader, f"{arch}.context_length") == c.max_position_embeddings
    assert _field(reader, f"{arch}.embedding_length") == c.hidden_size
    assert _field(reader, f"{arch}.block_count") == c.num_hidden_layers
    assert _field(reader, f"{arch}.feed_forward_length") == c.intermediate_size
    assert _field(reader, f"{arch}.attention.head_count") == c.num_attention_heads
    assert _field(reader, f"{arch}.attention.head_count_kv") == c.num_key_value_heads
    assert _field(reader, f"{arch}.rope.freq_base") == pytest.approx(c.rope_parameters["rope_theta"])
    assert _field(reader, f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(c.rms_norm_eps)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "qwen2"
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == model.get_input_embeddings().weight.shape[0]
    ids = [0, 100, len(tokens) // 2, tokenizer.eos_token_id]
    assert [tokens[i] for i in ids] == tokenizer.convert_ids_to_tokens(ids)
    assert _field(reader, "tokenizer.ggml.merges")[0].count(" ") == 1
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert _field(reader, "tokenizer.chat_template") == template.to_jinja()


def test_qwen3_norms_and_tensor_shapes(exported) -> None:
    model, _, _, paths = exported["qwen3"]
    tensors = {t.name: t for t in gguf.GGUFReader(paths["f16"]).tensors}
    assert "output.weight" not in tensors, "tied output head is left to token_embd"
    assert {"blk.1.attn_q_norm.weight", "blk.1.attn_k_norm.weight"} <= set(tensors)
    state = model.state_dict()
    assert list(tensors["blk.0.attn_k.weight"].shape) == list(
        state["model.layers.0.self_attn.k_proj.weight"].shape[::-1]
    )
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F16


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_f16_weights_equal_originals(exported, arch: str) -> None:
    model, _, _, paths = exported[arch]
    tensors = {t.name: t for t in gguf.GGUFReader(paths["f16"]).tensors}
    c = model.config
    for name, tensor in model.state_dict().items():
        if not name.startswith("model.layers.0.") and name != "model.embed_tokens.weight":
            continue
        gguf_name = {"model.embed_tokens.weight": "token_embd.weight"}.get(name) or _layer0_name(name)
        want = tensor.numpy()
        if arch == "llama" and "q_proj" in name:
            want = interleave_rope(want, c.num_attention_heads)
        if arch == "llama" and "k_proj" in name:
            want = interleave_rope(want, c.num_key_value_heads)
        stored = tensors[gguf_name]
        got = gguf.quants.dequantize(stored.data, stored.tensor_type).reshape(want.shape)
        expected = want.astype(np.float16).astype(np.float32) if want.ndim == 2 else want
        np.testing.assert_array_equal(got, expected, err_msg=name)


def _layer0_name(name: str) -> str:
    from tuneforge.export.gguf import gguf_name

    return gguf_name(name)


@pytest.mark.parametrize(("kind", "tolerance"), [("q8_0", 0.01), ("q4_0", 0.15)])
def test_quantized_weights_close_to_originals(exported, kind: str, tolerance: float) -> None:
    model, _, _, paths = exported["qwen3"]
    reader = gguf.GGUFReader(paths[kind])
    stored = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    assert stored.tensor_type == gguf.GGMLQuantizationType[kind.upper()]
    want = model.state_dict()["model.layers.0.mlp.down_proj.weight"].numpy()
    got = gguf.quants.dequantize(stored.data, stored.tensor_type).reshape(want.shape)
    assert np.abs(got - want).max() <= tolerance * np.abs(want).max()
    assert Path(paths[kind]).stat().st_size < Path(paths["f16"]).stat().st_size


def test_bf16_encoding_round_trips() -> None:
    from tuneforge.export.gguf import encode_tensor

    data = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    encoded, qtype = encode_tensor(data, "bf16")
    assert qtype == gguf.GGMLQuantizationType.BF16
    want = torch.from_numpy(data).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(gguf.quants.dequantize(encoded, qtype).reshape(data.shape), want)


def test_interleave_rope_pairs_halves() -> None:
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)  # one head of width 8: halves [0..3] and [4..7]
    assert interleave_rope(rows, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_llama3_rope_factors_match_transformers(exported) -> None:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    model, _, _, paths = exported["llama"]
    c = model.config
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](c, "cpu")
    head = c.hidden_size // c.num_attention_heads
    base = 1.0 / (c.rope_parameters["rope_theta"] ** (torch.arange(0, head, 2, dtype=torch.float32) / head))
    np.testing.assert_allclose(llama3_rope_factors(c.rope_parameters, head), (base / scaled).numpy(), rtol=1e-5)
    assert any(t.name == "rope_freqs.weight" for t in gguf.GGUFReader(paths["f16"]).tensors)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_embedded_chat_template_renders_the_training_prompt(exported, arch: str) -> None:
    """The GGUF's chat template, rendered as llama-cpp-python and transformers render Jinja, gives tuneforge's text."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    _, tokenizer, template, paths = exported[arch]
    jinja = _field(gguf.GGUFReader(paths["f16"]), "tokenizer.chat_template")
    compiled = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(jinja)
    specials = {"bos_token": tokenizer.bos_token or "", "eos_token": tokenizer.eos_token or ""}
    for messages in CHATS:
        got = compiled.render(messages=messages, add_generation_prompt=True, **specials)
        assert got == template.render(messages, add_generation_prompt=True)
