"""GGUF exports run by llama.cpp (llama-cpp-python): same tokens, same greedy text, same chat prompt as transformers.

Skipped where llama-cpp-python is not installed (it compiles llama.cpp from source: tens of minutes on 2 cores);
`python scripts/check_gguf_llamacpp.py` runs these checks and prints a verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip(
    "llama_cpp",
    reason="llama-cpp-python is not installed (CMAKE_ARGS=-DGGML_NATIVE=OFF pip install llama-cpp-python); "
    "run scripts/check_gguf_llamacpp.py where it is",
)

from export_helpers import base_with_adapters, export_cfg, shrink_vocab, train_lora  # noqa: E402
from tuneforge.data.templates import get_template  # noqa: E402
from tuneforge.export.runner import export_command  # noqa: E402

TEMPLATES = {"qwen2": "qwen", "qwen3": "qwen3", "llama": "llama3"}
CHATS = [
    [{"role": "user", "content": "Hello there"}],
    [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Sky color?"},
        {"role": "assistant", "content": "Blue"},
        {"role": "user", "content": "Grass?"},
    ],
]
TEXT = (
    "The quick brown fox jumps over the lazy dog. It was a sunny day, and the birds sang in the trees near the river."
)


@pytest.fixture(scope="module", params=["qwen2", "qwen3", "llama"])
def case(request, tiny_qwen2: Path, tiny_qwen3: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory):
    """(reference transformers model with its LoRA, tokenizer, template, {kind: gguf path}) for one architecture."""
    from transformers import AutoTokenizer

    arch = request.param
    root = tmp_path_factory.mktemp(f"llamacpp_{arch}")
    base = shrink_vocab({"qwen2": tiny_qwen2, "qwen3": tiny_qwen3, "llama": tiny_llama}[arch], root / "base")
    adapter = train_lora(base, root / "lora", seed=7)
    paths = {}
    for kind in ("f16", "q8_0"):
        cfg = export_cfg(
            base, root / kind, [adapter], template=TEMPLATES[arch], export_format="gguf", export_gguf_type=kind
        )
        paths[kind] = next(export_command(cfg).glob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(base)
    return base_with_adapters(base, [adapter]), tokenizer, get_template(TEMPLATES[arch], tokenizer), paths


def _llama(path: Path):
    return llama_cpp.Llama(str(path), n_ctx=256, logits_all=True, verbose=False, n_threads=2, seed=0)


def _greedy_llamacpp(llm, ids: list[int], steps: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(steps):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def _greedy_hf(model, ids: list[int], steps: int) -> list[int]:
    """Plain argmax decoding (no eos stop, no logits processors), as the llama.cpp loop does."""
    ids = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[-steps:]


def test_f16_same_tokens_and_greedy_text(case) -> None:
    model, tokenizer, template, paths = case
    llm = _llama(paths["f16"])
    for messages in CHATS:
        text = template.render(messages, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        assert _greedy_llamacpp(llm, ids, 8) == _greedy_hf(model, ids, 8)


def test_chat_template_in_gguf_renders_the_training_prompt(case) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    _, tokenizer, template, paths = case
    llm = _llama(paths["f16"])
    jinja = llm.metadata["tokenizer.chat_template"]
    formatter = Jinja2ChatFormatter(
        template=jinja, eos_token=tokenizer.eos_token or "", bos_token=tokenizer.bos_token or ""
    )
    for messages in CHATS:
        assert formatter(messages=messages).prompt == template.render(messages, add_generation_prompt=True)


def test_q8_0_top1_agreement(case) -> None:
    model, tokenizer, _, paths = case
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    llm = _llama(paths["q8_0"])
    llm.reset()
    llm.eval(ids)
    quantized = np.argmax(llm.scores[: len(ids)], axis=-1)
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].argmax(-1).numpy()
    agreement = float((quantized == reference).mean())
    assert agreement >= 0.9, f"q8_0 top-1 agreement {agreement:.2%}"
