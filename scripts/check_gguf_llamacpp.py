#!/usr/bin/env python
"""Check tuneforge's GGUF exports with llama.cpp and print a verdict.

llama.cpp runs through node-llama-cpp, whose npm package ships prebuilt llama.cpp binaries (no compile):
    python scripts/check_gguf_llamacpp.py --install   # npm i node-llama-cpp into ~/.cache/tuneforge, then check
    python scripts/check_gguf_llamacpp.py --install-only   # only the npm install (what CI does before the tests)
    TUNEFORGE_NODE_LLAMA_CPP=/dir python scripts/check_gguf_llamacpp.py   # reuse an install in /dir
It runs tests/test_export_llamacpp.py: f16 GGUFs of tiny Qwen2 / Qwen3 / Llama models with a merged LoRA are
tokenized like transformers and continue prompts with the same greedy tokens, and q8_0 agrees with transformers
on >= 90 % of next-token predictions. Needs `node` (>= 20) and `npm`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "3.21.1"
CACHE = Path.home() / ".cache" / "tuneforge" / "node-llama-cpp"


def install(folder: Path) -> None:
    """npm-install node-llama-cpp (pinned) into `folder`, skipping its download/build step."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").exists():
        (folder / "package.json").write_text('{"name": "tuneforge-llamacpp", "private": true, "type": "module"}\n')
    env = {**os.environ, "NODE_LLAMA_CPP_SKIP_DOWNLOAD": "true"}
    subprocess.run(["npm", "i", "-E", f"node-llama-cpp@{VERSION}"], cwd=folder, env=env, check=True)


def main() -> int:
    if shutil.which("node") is None:
        print("VERDICT: NOT RUN - node is not installed")
        return 2
    folder = Path(os.environ.get("TUNEFORGE_NODE_LLAMA_CPP") or CACHE)
    if "--install" in sys.argv or "--install-only" in sys.argv:
        install(folder)
    if "--install-only" in sys.argv:
        return 0
    env = {**os.environ, "TUNEFORGE_NODE_LLAMA_CPP": str(folder)}
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_export_llamacpp.py"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    print(result.stdout[-3000:])
    if "skipped" in result.stdout and "passed" not in result.stdout:
        print("VERDICT: NOT RUN - node-llama-cpp not found (use --install)")
        return 2
    print("VERDICT:", "PASS - llama.cpp agrees with transformers" if result.returncode == 0 else "FAIL (see above)")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
