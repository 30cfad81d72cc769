"""Random-initialised models of real architectures (Qwen2, Qwen3, Llama and more), for tests and benchmarks.

`make_tiny("qwen2", out)` writes a ~10M-parameter model (2 layers, hidden 64; most parameters are the tied
151,936-word embedding) with the real Qwen tokenizer, chat template and generation config, loadable by plain
`AutoModelForCausalLM` / `AutoTokenizer`. `shape="qwen2-1.5b"` or `"qwen3-0.6b"` gives the exact shape of
DeepSeek-R1-Distill-Qwen-1.5B or Qwen3-0.6B with random bf16 weights (meaningless, for throughput benchmarks).
The other text architectures (Mistral, Gemma 2/3, Phi-3, GLM-4, Qwen2-MoE, Qwen3-MoE, DeepSeek-V3, gpt-oss) are
listed in `tiny_archs.TEXT_ARCHES`; they ship the same offline Qwen tokenizer and ChatML template.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError
from tuneforge.models.tiny_archs import TEXT_ARCHES, tokenizer_family
from tuneforge.models.tokenizer import FAMILIES, special_token_ids, tokenizer_dir

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

ARCHES = (*FAMILIES, *TEXT_ARCHES)
VLM_ARCHES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "llava_next", "gemma3_vl", "intern_vl")  # tiny_vlm.py
AUDIO_ARCHES = ("qwen2_audio", "qwen2_5_omni")  # audio-language models (Omni: the thinker), built by tiny_audio.py
QWEN_VOCAB_SIZE = 151936  # the real Qwen2/Qwen3 embedding size (tokenizer length padded up)

# Exact shapes of real checkpoints; keys are the config fields that differ from the tiny defaults
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen2-1.5b": (  # DeepSeek-R1-Distill-Qwen-1.5B
        "qwen2",
        {
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "max_position_embeddings": 131072,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "tie_word_embeddings": False,
            "use_sliding_window": False,
        },
    ),
    "qwen3-0.6b": (  # Qwen/Qwen3-0.6B
        "qwen3",
        {
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 40960,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "tie_word_embeddings": True,
        },
    ),
}

# Per-architecture settings of the real models (Qwen2.5, Qwen3, Llama 3.2)
_ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "qwen2": {
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    },
    "qwen3": {
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    },
    "llama": {
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
        },
    },
}


def token_ids(arch: str) -> dict[str, Any]:
    """bos / eos / pad ids for the model and generation configs, as the real chat checkpoints set them.

    Qwen: eos is `<|im_end|>` (generation also stops on `<|endoftext|>`), pad `<|endoftext|>`. Llama: bos
    `<|begin_of_text|>`, generation stops on `<|end_of_text|>`, `<|eom_id|>`, `<|eot_id|>`; Llama 3 has no pad
    token, so `<|end_of_text|>` is used as the generation pad id (ids are this vocabulary's, see tokenizer.py).
    """
    family = tokenizer_family(arch)
    ids = special_token_ids(family)
    if family == "llama":
        stops = [ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]]
        return {"bos": ids["<|begin_of_text|>"], "eos": stops, "pad": ids["<|end_of_text|>"]}
    end, text_end = ids["<|im_end|>"], ids["<|endoftext|>"]
    return {"bos": text_end, "eos": [end, text_end], "pad": text_end}


def vocab_size_for(arch: str) -> int:
    """Embedding rows: 151,936 for Qwen (as the real models); Llama: tokenizer length rounded up to 64."""
    if tokenizer_family(arch) != "llama":
        return QWEN_VOCAB_SIZE
    length = max(special_token_ids("llama").values()) + 1
    return -(-length // 64) * 64


def mrope_section(hidden: int, heads: int = 4) -> list[int]:
    """Multimodal rotary sections (time, height, width) of a head's rotary frequencies, as Qwen2-VL splits them."""
    half = hidden // heads // 2  # rotary frequencies per head
    return [half - 2 * (half // 3), half // 3, half // 3]


def media_text_config(
    layers: int, hidden: int, *, heads: int = 4, kv_heads: int = 2, family: str = "qwen2", **overrides: Any
) -> dict[str, Any]:
    """The text model of the tiny media models (tiny_vlm.py, tiny_vlm_families.py, tiny_audio.py, tiny_omni.py),
    as the `text_config` dict: the Qwen2 stack of `build_config` (Qwen2.5's position, norm and rotary settings,
    the bos/eos ids of tokenizer `family`) at these sizes. `overrides` replace or add keys; an override of None
    leaves the key out, so the config class's own default applies."""
    ids = token_ids(family)
    text = {
        "model_type": "qwen2",
        "vocab_size": QWEN_VOCAB_SIZE,
        "hidden_size": hidden,
        "intermediate_size": 3 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        **copy.deepcopy(_ARCH_DEFAULTS["qwen2"]),
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"][0],
        **overrides,
    }
    return {key: value for key, value in text.items() if value is not None}


def build_config(
    arch: str,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    shape: str | None = None,
) -> PretrainedConfig:
    """Config of a tiny model of `arch`, or of the named benchmark `shape` (which then fixes every size)."""
    arch = _check_arch(arch, shape)
    if shape is not None:
        sizes = SHAPES[shape][1]
    else:
        _check_sizes(hidden, heads, kv_heads)
        sizes = {
            "hidden_size": hidden,
            "intermediate_size": intermediate or 3 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": hidden // heads,
            "tie_word_embeddings": True,
        }
    ids = token_ids(arch)
    if arch in TEXT_ARCHES:
        return _text_arch_config(arch, sizes, ids)
    kwargs = {**_ARCH_DEFAULTS[arch], **sizes, "vocab_size": vocab_size_for(arch)}
    kwargs.update(bos_token_id=ids["bos"], eos_token_id=ids["eos"][0] if arch != "llama" else ids["eos"])
    if arch == "qwen2":
        kwargs.pop("head_dim", None)  # Qwen2 derives it from hidden_size / heads
    return _config_class(arch)(**kwargs)


def _text_arch_config(arch: str, sizes: dict[str, Any], ids: dict[str, Any]) -> PretrainedConfig:
    """Config of one of `TEXT_ARCHES`: the tiny sizes, the record's fixed fields, this tokenizer's ids."""
    from transformers import AutoConfig

    record = TEXT_ARCHES[arch]
    kwargs = {**sizes, **record.fields, "vocab_size": vocab_size_for(arch)}
    if not record.sets_head_dim:
        kwargs.pop("head_dim", None)
    if record.kv_heads_are_heads:
        kwargs["num_key_value_heads"] = kwargs["num_attention_heads"]
    kwargs.update(bos_token_id=ids["bos"], eos_token_id=ids["eos"][0], pad_token_id=ids["pad"])
    return AutoConfig.for_model(record.model_type, **kwargs)


def count_parameters(config: PretrainedConfig) -> int:
    """Number of distinct parameters of the model `config` describes, counted on the meta device (no memory)."""
    import torch

    with torch.device("meta"):
        model = _model_class(config.model_type)(config)
    return sum(p.numel() for p in model.parameters())


def make_tiny(
    arch: str,
    out_dir: str | Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    seed: int = 0,
    shape: str | None = None,
    dtype: str | torch.dtype | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a random model of `arch` with tokenizer, chat template and generation config to `out_dir`.

    The weights depend only on the arguments, `seed` and the device (CPU for tiny models). Tiny models are
    float32 unless `dtype` says otherwise; benchmark `shape`s default to bfloat16 and are built on the GPU when
    there is one. Returns `out_dir`.
    Raises TuneforgeError if `out_dir` exists and is not empty, unless `overwrite` is true.
    """
    if arch in VLM_ARCHES:
        from tuneforge.models.tiny_vlm import make_tiny_vlm

        return make_tiny_vlm(arch, prepare_out_dir(out_dir, overwrite), layers=layers, hidden=hidden, seed=seed)
    if arch in AUDIO_ARCHES:
        from tuneforge.models.tiny_audio import make_tiny_audio

        return make_tiny_audio(arch, prepare_out_dir(out_dir, overwrite), layers=layers, hidden=hidden, seed=seed)
    out = prepare_out_dir(out_dir, overwrite)
    config = build_config(
        arch, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, intermediate=intermediate, shape=shape
    )
    model = _random_model(config, seed, _resolve_dtype(dtype, shape))
    model.generation_config = _generation_config(config.model_type)
    model.save_pretrained(str(out))
    _save_tokenizer(config.model_type, out)
    return out


def make_tiny_command(
    arch: str,
    out: str | Path,
    layers: int = 2,
    hidden: int = 64,
    seed: int = 0,
    shape: str | None = None,
    overwrite: bool = False,
) -> Path:
    """`tuneforge make-tiny`: build the model and print what was written (parameters, path)."""
    path = make_tiny(arch, out, layers=layers, hidden=hidden, seed=seed, shape=shape, overwrite=overwrite)
    if arch in VLM_ARCHES:
        from tuneforge.models.tiny_vlm import describe_vlm

        print(describe_vlm(path))
        return path
    if arch in AUDIO_ARCHES:
        from tuneforge.models.tiny_audio import describe_audio

        print(describe_audio(path))
        return path
    config = _load_config(path)
    what = f"shape {shape}" if shape else f"{config.num_hidden_layers} layers, hidden {config.hidden_size}"
    print(f"wrote {config.model_type} model ({what}, {count_parameters(config):,} parameters) to {path}")
    return path


def _check_arch(arch: str, shape: str | None) -> str:
    if shape is not None:
        if shape not in SHAPES:
            raise TuneforgeError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")
        shape_arch = SHAPES[shape][0]
        if arch not in (None, shape_arch):
            raise TuneforgeError(f"shape {shape!r} is a {shape_arch} model, but arch {arch!r} was asked for")
        return shape_arch
    if arch not in ARCHES:
        raise TuneforgeError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHES + VLM_ARCHES + AUDIO_ARCHES)}")
    return arch


def _check_sizes(hidden: int, heads: int, kv_heads: int) -> None:
    if hidden % heads or heads % kv_heads:
        raise TuneforgeError(
            f"hidden ({hidden}) must be a multiple of heads ({heads}) and heads a multiple of kv_heads ({kv_heads})"
        )


def _config_class(arch: str) -> type:
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    return {"qwen2": Qwen2Config, "qwen3": Qwen3Config, "llama": LlamaConfig}[arch]


def _model_class(model_type: str) -> type:
    """The causal-LM class transformers maps `model_type` to (e.g. `gemma3_text` -> Gemma3ForCausalLM)."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])


def _resolve_dtype(dtype: str | torch.dtype | None, shape: str | None) -> torch.dtype:
    import torch

    if dtype is None:
        return torch.bfloat16 if shape else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise TuneforgeError(f"unknown dtype {dtype!r}: use e.g. float32, bfloat16 or float16")
        return resolved
    return dtype


def _random_model(config: PretrainedConfig, seed: int, dtype: torch.dtype):
    """Initialise with the model's own init under a private RNG state, directly in `dtype` (no float32 copy)."""
    import torch

    device = "cuda" if torch.cuda.is_available() and config.num_hidden_layers > 8 else "cpu"
    devices = [torch.cuda.current_device()] if device == "cuda" else []
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            model = _model_class(config.model_type)(config)
        finally:
            torch.set_default_dtype(previous)
    return model.eval()


def _generation_config(arch: str):
    from transformers import GenerationConfig

    ids = token_ids(arch)
    return GenerationConfig(bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])


def _save_tokenizer(arch: str, out: Path) -> None:
    """Copy the cached, already saved tokenizer folder: the same files as save_pretrained, without loading it."""
    for source in tokenizer_dir(tokenizer_family(arch)).iterdir():
        if source.is_file():
            shutil.copyfile(source, out / source.name)


def _load_config(path: Path) -> PretrainedConfig:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path))


def prepare_out_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """The output folder, created; refuses a non-empty one unless `overwrite`, and drops stale weight shards."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TuneforgeError(f"{out} exists and is not a directory: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise TuneforgeError(f"{out} is not empty: choose another --out or pass overwrite=True (--overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("model*.safetensors"), *out.glob("model.safetensors.index.json")]:
        stale.unlink()  # an older, differently sharded model would otherwise shadow the new weights
    return out
