"""Convert a merged Llama / Qwen2 / Qwen3 model to one GGUF file with the `gguf` package (tuneforge's own converter).

Weights are renamed to GGUF's tensor names; Llama's q/k projections are re-ordered from the Hugging Face
rotate-half layout to the interleaved layout llama.cpp's `llama` architecture expects (Qwen uses NeoX RoPE and
keeps its layout); Llama-3 RoPE scaling becomes a `rope_freqs` tensor. 2-D weights take the requested type
(f16, bf16, f32, q8_0, q4_0); norms and biases stay f32. The vocabulary is the byte-level BPE of tokenizer.json.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

ARCHES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
# Hugging Face parameter name suffix -> GGUF tensor kind (names come from gguf.TENSOR_NAMES)
LAYER_TENSORS = {
    "input_layernorm": "ATTN_NORM",
    "self_attn.q_proj": "ATTN_Q",
    "self_attn.k_proj": "ATTN_K",
    "self_attn.v_proj": "ATTN_V",
    "self_attn.o_proj": "ATTN_OUT",
    "self_attn.q_norm": "ATTN_Q_NORM",
    "self_attn.k_norm": "ATTN_K_NORM",
    "post_attention_layernorm": "FFN_NORM",
    "mlp.gate_proj": "FFN_GATE",
    "mlp.up_proj": "FFN_UP",
    "mlp.down_proj": "FFN_DOWN",
}
GLOBAL_TENSORS = {"model.embed_tokens": "TOKEN_EMBD", "model.norm": "OUTPUT_NORM", "lm_head": "OUTPUT"}
FILE_TYPES = {
    "f32": "ALL_F32",
    "f16": "MOSTLY_F16",
    "bf16": "MOSTLY_BF16",
    "q8_0": "MOSTLY_Q8_0",
    "q4_0": "MOSTLY_Q4_0",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")


# ---- names and layouts ---------------------------------------------------------------------------------------


def gguf_name(hf_name: str) -> str | None:
    """The GGUF tensor name for a Hugging Face parameter name (None: not part of a llama-style model)."""
    import gguf

    match = _LAYER.match(hf_name)
    if match:
        kind = LAYER_TENSORS.get(match.group(2))
        if kind is None:
            return None
        base = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[kind]].format(bid=int(match.group(1)))
        return f"{base}.{match.group(3)}"
    stem, _, suffix = hf_name.rpartition(".")
    kind = GLOBAL_TENSORS.get(stem)
    return f"{gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[kind]]}.{suffix}" if kind else None


def interleave_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Re-order q/k rows from rotate-half (Hugging Face) to interleaved pairs (llama.cpp `llama` RoPE)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def llama3_rope_factors(rope: dict[str, Any], head_dim: int) -> np.ndarray:
    """Per-frequency divisors implementing Llama-3 RoPE scaling (the `rope_freqs` tensor)."""
    import numpy as np

    theta, factor = float(rope["rope_theta"]), float(rope["factor"])
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    context = float(rope["original_max_position_embeddings"])
    out = []
    for i in range(0, head_dim, 2):
        wavelength = 2 * math.pi * theta ** (i / head_dim)
        if wavelength < context / high:
            out.append(1.0)
        elif wavelength > context / low:
            out.append(factor)
        else:
            smooth = (context / wavelength - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


# ---- metadata ------------------------------------------------------------------------------------------------


def rope_parameters(config: Any) -> dict[str, Any]:
    """RoPE settings from a transformers 5 (`rope_parameters`) or 4 (`rope_theta`, `rope_scaling`) config."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    params.update(getattr(config, "rope_scaling", None) or {})
    return params


def head_dim(config: Any) -> int:
    """Per-head width (explicit in Qwen3 configs, else hidden size / heads)."""
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def add_hyperparameters(writer: Any, config: Any) -> None:
    """Context length, widths, depth, head counts, RoPE base and RMS-norm epsilon."""
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(config.num_key_value_heads or config.num_attention_heads))
    writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_key_length(head_dim(config))
    writer.add_value_length(head_dim(config))
    writer.add_rope_dimension_count(head_dim(config))


def pre_tokenizer(tokenizer_json: dict) -> str:
    """llama.cpp's pre-tokenizer name for the split regex of tokenizer.json (qwen2 or llama-bpe)."""
    text = json.dumps(tokenizer_json.get("pre_tokenizer"))
    if "\\\\p{N}{1,3}" in text:
        return "llama-bpe"
    if "\\\\p{N}|" in text:
        return "qwen2"
    raise TuneforgeError(
        "GGUF export: the tokenizer's pre-tokenizer regex is neither Qwen2's nor Llama-3's; llama.cpp would "
        "split text differently. Export with `export_format: hf` and convert with llama.cpp's own tools."
    )


def vocabulary(data: dict, size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) from parsed tokenizer.json, padded with unused tokens up to `size` rows."""
    import gguf

    model = data["model"]
    if model.get("type") != "BPE":
        raise TuneforgeError("GGUF export supports byte-level BPE tokenizers (Qwen, Llama 3) only.")
    tokens = {i: t for t, i in model["vocab"].items()}
    types = dict.fromkeys(tokens, int(gguf.TokenType.NORMAL))
    for added in data.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        types[added["id"]] = int(gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED)
    if max(tokens) >= size:
        raise TuneforgeError(f"GGUF export: token id {max(tokens)} is beyond the {size} embedding rows.")
    names = [tokens.get(i, f"[PAD{i}]") for i in range(size)]
    kinds = [types.get(i, int(gguf.TokenType.UNUSED)) for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return names, kinds, merges


def add_tokenizer(writer: Any, tokenizer: Any, size: int, chat_template: str | None) -> None:
    """BPE vocabulary, merges, special ids, whether to add bos, and the chat template."""
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens, types, merges = vocabulary(data, size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(data))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    if tokenizer.eos_token_id is not None:
        writer.add_eos_token_id(tokenizer.eos_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    ids = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id)
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(template)


# ---- tensors -------------------------------------------------------------------------------------------------


def encode_tensor(data: np.ndarray, kind: str) -> tuple[np.ndarray, Any]:
    """(bytes or array, GGML type) for one tensor: 1-D tensors and odd shapes fall back to f32 / f16."""
    import gguf
    import numpy as np

    data = data.astype(np.float32)
    if data.ndim < 2 or kind == "f32":
        return data, gguf.GGMLQuantizationType.F32
    qtype = gguf.GGMLQuantizationType[kind.upper()]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if kind in ("q8_0", "q4_0") and data.shape[-1] % block:
        logger.warning(
            "GGUF: a tensor of shape %s cannot be %s (row not a multiple of %d); f16 instead", data.shape, kind, block
        )
        qtype = gguf.GGMLQuantizationType.F16
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16), qtype
    return gguf.quants.quantize(data, qtype), qtype


def model_tensors(model: Any) -> dict[str, np.ndarray]:
    """GGUF-named float32 numpy arrays of the merged model (tied output head left to token_embd)."""
    import torch

    config = model.config
    arch = config.model_type
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = {}
    for name, tensor in model.state_dict().items():
        target = gguf_name(name)
        if target is None:
            if name.endswith("rotary_emb.inv_freq"):
                continue
            raise TuneforgeError(f"GGUF export: no GGUF name for parameter {name} of a {arch} model.")
        if tied and target.startswith("output."):
            continue
        array = tensor.detach().to("cpu", torch.float32).numpy()
        if arch == "llama" and ".attn_q." in target:
            array = interleave_rope(array, config.num_attention_heads)
        elif arch == "llama" and ".attn_k." in target:
            array = interleave_rope(array, config.num_key_value_heads or config.num_attention_heads)
        out[target] = array
    rope = rope_parameters(config)
    if rope.get("rope_type") == "llama3":
        out["rope_freqs.weight"] = llama3_rope_factors(rope, head_dim(config))
    return out


def write_gguf(model: Any, tokenizer: Any, path: Path, kind: str = "f16", chat_template: str | None = None) -> Path:
    """Write `model` (merged, any dtype) with its tokenizer as one GGUF file of weight type `kind`."""
    import gguf

    arch = ARCHES.get(model.config.model_type)
    if arch is None:
        raise TuneforgeError(
            f"GGUF export supports {', '.join(ARCHES)} models; this one is {model.config.model_type}. "
            "Use `export_format: hf` and convert with llama.cpp's tools."
        )
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(Path(path).stem)
    add_hyperparameters(writer, model.config)
    writer.add_file_type(int(gguf.LlamaFileType[FILE_TYPES[kind]]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tensors = model_tensors(model)
    add_tokenizer(writer, tokenizer, tensors["token_embd.weight"].shape[0], chat_template)
    for name, array in tensors.items():
        data, qtype = encode_tensor(array, "f32" if name == "rope_freqs.weight" else kind)
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()
    return path
