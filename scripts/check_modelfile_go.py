#!/usr/bin/env python
"""Check that tuneforge's Ollama Modelfile TEMPLATEs, executed by Go's text/template, render what tuneforge's
chat templates render (every registered template on plain conversations; tools and thinking for the families
that have them). Needs the Go toolchain (Debian: apt-get install golang-go). Prints a verdict.
    python scripts/check_modelfile_go.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    if shutil.which("go") is None:
        print("VERDICT: NOT RUN - the Go toolchain is not installed (apt-get install golang-go)")
        return 2
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/test_export_ollama.py"], cwd=ROOT
    )
    print("VERDICT:", "PASS - Go renders the Modelfile templates like tuneforge" if result.returncode == 0 else "FAIL")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
