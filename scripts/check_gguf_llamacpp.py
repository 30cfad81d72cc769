#!/usr/bin/env python
"""Check tuneforge's GGUF exports with llama.cpp (llama-cpp-python) and print a verdict.

Run where llama-cpp-python is installed (`CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python`):
    python scripts/check_gguf_llamacpp.py
It runs tests/test_export_llamacpp.py: f16 GGUFs of tiny Qwen2 / Qwen3 / Llama models with a merged LoRA give
the same tokens and greedy continuations as transformers, their embedded chat template renders the training
prompt, and q8_0 agrees with transformers on >= 90 % of next-token predictions.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    if importlib.util.find_spec("llama_cpp") is None:
        print("VERDICT: NOT RUN - llama-cpp-python is not installed")
        return 2
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_export_llamacpp.py"], cwd=ROOT
    )
    print("VERDICT:", "PASS - llama.cpp agrees with transformers" if result.returncode == 0 else "FAIL (see above)")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
