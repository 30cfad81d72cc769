"""GGUF exports run by llama.cpp: same tokens, same greedy continuation, q8_0 close to transformers.

llama.cpp runs through node-llama-cpp (prebuilt llama.cpp binaries from npm; `scripts/llamacpp_eval.mjs`).
Skipped unless TUNEFORGE_NODE_LLAMA_CPP names a folder where `npm i -E node-llama-cpp@3.21.1` was run and
`node` is on PATH; `python scripts/check_gguf_llamacpp.py --install` sets that up and prints a verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llamacpp_eval.mjs"
NODE_DIR = os.environ.get("TUNEFORGE_NODE_LLAMA_CPP", "")
ENTRY = Path(NODE_DIR) / "node_modules" / "node-llama-cpp" / "dist" / "index.js"
pytestmark = [pytest.mark.slow]
pytestmark.append(
    pytest.mark.skipif(
        not (NODE_DIR and ENTRY.is_file() and shutil.which("node")),
        reason="llama.cpp runtime absent: set TUNEFORGE_NODE_LLAMA_CPP to a folder with node-llama-cpp installed "
        "(python scripts/check_gguf_llamacpp.py --install does it)",
    )
)

from export_helpers import CHATS, base_with_adapters, export_cfg, shrink_vocab, train_lora  # noqa: E402
from tuneforge.data.templates import get_template  # noqa: E402
from tuneforge.export.runner import export_command  # noqa: E402

TEMPLATES = {"qwen2": "qwen", "qwen3": "qwen3", "llama": "llama3"}
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
    for kind in ("f16", "q8_0", "q4_0", "bf16"):
        cfg = export_cfg(
            base, root / kind, [adapter], template=TEMPLATES[arch], export_format="gguf", export_gguf_type=kind
        )
        paths[kind] = next(export_command(cfg).glob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(base)
    return base_with_adapters(base, [adapter]), tokenizer, get_template(TEMPLATES[arch], tokenizer), paths


def llamacpp(model: Path, **request) -> dict:
    """Run scripts/llamacpp_eval.mjs on `model` with the request fields (tokenize, greedy, argmax)."""
    result = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps({"model": str(model), **request}),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NODE_LLAMA_CPP_ENTRY": str(ENTRY)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _greedy_hf(model, ids: list[int], steps: int) -> list[int]:
    """Plain argmax decoding (no eos stop, no logits processors), as the llama.cpp loop does."""
    ids = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[-steps:]


def test_f16_same_tokens_and_greedy_text(case) -> None:
    model, tokenizer, template, paths = case
    texts = [template.render(m, add_generation_prompt=True) for m in CHATS]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    reply = llamacpp(paths["f16"], tokenize=texts, greedy=[{"ids": i, "steps": 8} for i in ids])
    assert reply["tokenize"] == ids
    assert reply["greedy"] == [_greedy_hf(model, i, 8) for i in ids]


def test_q8_0_top1_agreement(case) -> None:
    model, tokenizer, _, paths = case
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    (quantized,) = llamacpp(paths["q8_0"], argmax=[ids])["argmax"]
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
    agreement = float(np.mean([a == b for a, b in zip(quantized, reference, strict=True)]))
    print(f"q8_0 top-1 agreement with transformers: {agreement:.1%}")
    assert agreement >= 0.9, f"q8_0 top-1 agreement {agreement:.2%}"


@pytest.mark.parametrize("kind", ["q4_0", "bf16"])
def test_every_gguf_type_loads_and_generates(case, kind: str) -> None:
    _, tokenizer, template, paths = case
    ids = tokenizer(template.render(CHATS[0], add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    (tokens,) = llamacpp(paths[kind], greedy=[{"ids": ids, "steps": 4}])["greedy"]
    assert len(tokens) == 4 and all(0 <= t < len(tokenizer) for t in tokens)
