"""Session-wide fixtures: the offline Qwen tokenizer, tiny random models of each architecture, ../shared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def one_thread():
    """One intra-op thread, as the engine runs the LM head (MKL's bits for a few rows change with its threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only `shared` folder beside the repository checkout (LF data, fixtures, compat configs)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent: these tests need the shared fixtures beside the repository checkout")
    return SHARED_DIR


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The real Qwen2 BPE tokenizer with Qwen2.5-Instruct special tokens and chat template (built offline)."""
    from tuneforge.models.tokenizer import build_qwen_tokenizer

    return build_qwen_tokenizer("qwen2")


def _tiny(tmp_path_factory: pytest.TempPathFactory, arch: str) -> Path:
    from tuneforge.models.tiny import make_tiny

    return make_tiny(arch, tmp_path_factory.mktemp(f"tiny_{arch}"), layers=2, hidden=64, seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a 2-layer, hidden-64 random Qwen2 model with the Qwen2.5-Instruct tokenizer and template."""
    return _tiny(tmp_path_factory, "qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a 2-layer, hidden-64 random Qwen3 model with the Qwen3 tokenizer and template."""
    return _tiny(tmp_path_factory, "qwen3")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a 2-layer, hidden-64 random Llama model with Llama-3-style special tokens and template."""
    return _tiny(tmp_path_factory, "llama")


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Qwen2-VL (2 text layers, hidden 64, one vision block) with its image processor."""
    from tuneforge.models.tiny import make_tiny

    return make_tiny("qwen2_vl", tmp_path_factory.mktemp("tiny_qwen2_vl"), seed=0)


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`tiny_vlm(arch)`: folder of a tiny random vision-language model of `arch` (llava, llava_next, gemma3,
    intern_vl, ...), built once per session."""
    from tuneforge.models.tiny import make_tiny

    built: dict[str, Path] = {}

    def folder(arch: str) -> Path:
        if arch not in built:
            built[arch] = make_tiny(arch, tmp_path_factory.mktemp(f"tiny_{arch}"), seed=0)
        return built[arch]

    return folder


@pytest.fixture(scope="session")
def tiny_qwen2_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Qwen2-Audio (2 text layers, hidden 64, one audio-encoder layer) with its processor,
    built through `tuneforge make-tiny` as a user would."""
    from click.testing import CliRunner

    from tuneforge.cli import main_group

    out = tmp_path_factory.mktemp("tiny_qwen2_audio")
    result = CliRunner().invoke(main_group, ["make-tiny", "--arch", "qwen2_audio", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "wrote qwen2_audio model (2 layers, hidden 64, audio encoder layers 1" in result.output
    return out


@pytest.fixture(scope="session")
def tiny_qwen2_5_omni(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Qwen2.5-Omni thinker (2 text layers, hidden 64, one vision block, one audio layer)."""
    from tuneforge.models.tiny import make_tiny

    return make_tiny("qwen2_5_omni", tmp_path_factory.mktemp("tiny_qwen2_5_omni"), seed=0)


@pytest.fixture(scope="session")
def tiny_vlm_engine(tiny_qwen2_vl: Path):
    """An inference engine over the tiny Qwen2-VL with large random weights (answers depend on every input token,
    image and position); shared, so tests must not change it."""
    from media_helpers import random_vlm_engine

    engine = random_vlm_engine(tiny_qwen2_vl, "qwen2_vl")
    yield engine
    engine.close()
