"""The README's quickstart, run as written (slow): the commands are read from README.md and scripts/demo.sh, so the
front page cannot drift from what works. The only change is a `max_steps` override that shortens training; the
README names no step count, so what it says stays true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tuneforge

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from tuneforge.cli import main; main(sys.argv[1:])"]


def _commands(text: str) -> list[str]:
    """Every `tuneforge ...` command in `text` (up to a comment, `;`, `&&` or `||`)."""
    return [m.strip() for m in re.findall(r"(?:^|\|\||&&|\s)(tuneforge [^#;&|\n]+)", text, flags=re.M)]


def _run(command: str, cwd: Path, stdin: str | None = None, extra: tuple[str, ...] = ()) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(tuneforge.__file__).parents[1]), "TUNEFORGE_CACHE": str(cwd / "c")}
    argv = [*CLI, *command.split()[1:], *extra]
    done = subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, f"{command}\n{output[-3000:]}"
    return output


def _quickstart() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("### The quickstart")
    return readme[start : start + 20] + re.split(r"\n##+ ", readme[start + 20 :], maxsplit=1)[0]


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    demo = _commands((REPO / "scripts" / "demo.sh").read_text(encoding="utf-8"))
    assert demo == ["tuneforge make-tiny --arch qwen2 --out .tiny/qwen2", "tuneforge train examples/quickstart.yaml"]
    (tmp_path / "examples").symlink_to(REPO / "examples")
    _run(demo[0], tmp_path)
    trained = _run(demo[1], tmp_path, extra=("max_steps=20",))

    section = _quickstart()
    out = tmp_path / "saves" / "quickstart"
    claimed = re.findall(r"`([\w.]+\.(?:safetensors|jsonl|png|json|yaml))`", section)
    assert len(claimed) == 5 and all((out / name).is_file() for name in claimed), claimed
    named = [line for line in trained.splitlines() if "saves/quickstart/" in line]
    assert all(any(line.endswith(name) for line in named) for name in claimed), named  # "it names its outputs"

    chat = [c for c in _commands(section) if c.startswith("tuneforge chat")]
    assert chat == ["tuneforge chat model_name_or_path=.tiny/qwen2 adapter_name_or_path=saves/quickstart template=qwen"]
    answer = _run(chat[0], tmp_path, stdin="Who are you?\nexit\n")
    assert re.search(r"Assistant: \s*\S", answer), answer[-2000:]  # the trained adapter answered something

    _run("tuneforge config validate examples/quickstart.yaml", tmp_path)  # exit 0, no traceback
