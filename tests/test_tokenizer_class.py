"""The torch-free tokenizer path (`models/tokenizer_class.py`) picks and builds exactly what AutoTokenizer does,
and `tuneforge data stats` on a text dataset runs without importing torch."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from tuneforge.models.loader import open_tokenizer
from tuneforge.models.tokenizer import tokenizer_dir
from tuneforge.models.tokenizer_class import tokenizer_class_for

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "models"

# case -> (tokenizer family whose tokenizer.json is used, config.json, tokenizer_config.json changes, replayed?)
# A str config / tokenizer config names a file of the shared model fixtures; a dict is written as given.
CASES = {
    "qwen2 tokenizer only": ("qwen2", None, None, True),
    "qwen3 tokenizer only": ("qwen3", None, None, True),
    "llama tokenizer only (PreTrainedTokenizerFast)": ("llama", None, None, True),
    "qwen2 model": ("qwen2", {"model_type": "qwen2"}, None, True),
    "qwen2-vl model": ("qwen2", {"model_type": "qwen2_vl"}, None, True),
    "Fast suffix": ("qwen2", {"model_type": "qwen2"}, {"tokenizer_class": "Qwen2TokenizerFast"}, True),
    "Llama-3.2 config": ("llama", "llama-3.2-3b-instruct/config.json", None, True),
    "Qwen3 release files": (
        "qwen3",
        "qwen3-14b-mlx-4bit/config.json",
        "qwen3-14b-mlx-4bit/tokenizer_config.json",
        True,
    ),
    "hub class known wrong for the model type": (
        "qwen2",
        {"model_type": "qwen2"},
        {"tokenizer_class": "PreTrainedTokenizerFast"},
        True,
    ),
    "hub class trusted over the model type's": ("qwen2", {"model_type": "gpt2"}, None, True),
    "unknown model type": ("qwen2", {"model_type": "no-such-model"}, None, True),
    # not replayed (AutoTokenizer is used): special cases of its dispatch
    "DeepSeek-R1 LlamaTokenizerFast": ("qwen2", None, "deepseek-r1-distill-qwen-32b/tokenizer_config.json", False),
    "Mistral": ("llama", "mistral-7b-instruct-v0.3/config.json", None, False),
    "remote code": ("qwen2", {"model_type": "qwen2", "auto_map": {"AutoConfig": "x.Y"}}, None, False),
    "config without model_type": ("qwen2", {"architectures": ["Qwen2ForCausalLM"]}, None, False),
    "no tokenizer_class": ("qwen2", {"model_type": "qwen2"}, {"tokenizer_class": None}, False),
}
FULL_LOAD = (
    "qwen2 tokenizer only",
    "Llama-3.2 config",
    "Qwen3 release files",
    "hub class known wrong for the model type",
)


def _fixture_json(name: str) -> dict:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared model fixtures)")
    return json.loads(path.read_text(encoding="utf-8"))


def _folder(root: Path, case: str) -> Path:
    family, config, tok_config, _ = CASES[case]
    folder = root / case.replace(" ", "_").replace("(", "").replace(")", "")
    if folder.is_dir():
        return folder
    shutil.copytree(tokenizer_dir(family), folder)
    if config is not None:
        config = _fixture_json(config) if isinstance(config, str) else config
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if tok_config is not None:
        current = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        changes = _fixture_json(tok_config) if isinstance(tok_config, str) else tok_config
        merged = {k: v for k, v in {**current, **changes}.items() if v is not None}
        (folder / "tokenizer_config.json").write_text(json.dumps(merged), encoding="utf-8")
    return folder


def _auto_choice(folder: Path) -> type:
    """The class AutoTokenizer dispatches to for `folder` (its `from_pretrained` stopped before loading)."""
    from transformers import AutoTokenizer
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    with mock.patch.object(PreTrainedTokenizerBase, "from_pretrained", classmethod(lambda cls, *a, **k: cls)):
        return AutoTokenizer.from_pretrained(str(folder))


def test_installed_dispatch_is_the_replayed_one():
    from tuneforge.models.tokenizer_class import _auto_tables

    assert _auto_tables() is not None, (
        "transformers' AutoTokenizer dispatch code is not the one models/tokenizer_class.py replays (every load "
        "now goes through AutoTokenizer and imports torch): compare the two, then add the new digest to "
        "_REPLAYED_DISPATCH"
    )


@pytest.mark.parametrize("case", list(CASES))
def test_replayed_class_is_autotokenizers_choice(tmp_path_factory, case):
    folder = _folder(tmp_path_factory.getbasetemp() / "tokenizer-cases", case)
    replayed = tokenizer_class_for(folder)
    assert (replayed is not None) == CASES[case][3]
    if replayed is not None:
        assert replayed is _auto_choice(folder)


def _described(tok) -> dict:
    """Everything of a tokenizer that tokenization and chat templates read."""
    texts = ["Hello world", "<|im_start|>user\n你好，世界<|im_end|>\n", "  spaces\n\n\tand tabs", "", "émoji 🎉 x"]
    texts += ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<think>\nhm</think>"]
    return {
        "class": type(tok),
        "backend": tok.backend_tokenizer.to_str(),
        "ids": [tok.encode(t) for t in texts] + [tok(texts, add_special_tokens=False)["input_ids"]],
        "decoded": [tok.decode(tok.encode(t)) for t in texts],
        "special": (tok.special_tokens_map, tok.all_special_ids, tok.pad_token_id, tok.eos_token_id, tok.bos_token_id),
        "added": {i: repr(t) for i, t in tok.added_tokens_decoder.items()},
        "template": tok.chat_template,
        "sizes": (len(tok), tok.vocab_size, tok.model_max_length),
        "flags": (tok.padding_side, tok.truncation_side, tok.clean_up_tokenization_spaces, tok.split_special_tokens),
        "bos/eos added": (getattr(tok, "add_bos_token", None), getattr(tok, "add_eos_token", None)),
        "init": {k: repr(v) for k, v in tok.init_kwargs.items()},
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL_LOAD)
def test_replayed_load_equals_autotokenizer(tmp_path_factory, case):
    folder = str(_folder(tmp_path_factory.getbasetemp() / "tokenizer-cases", case))
    options = {"revision": "main", "split_special_tokens": False, "use_fast": True, "trust_remote_code": False}
    direct = open_tokenizer(folder, tokenizer_class_for(folder), **options)
    auto = open_tokenizer(folder, None, **options)
    assert _described(direct) == _described(auto)
    rendered = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert direct.apply_chat_template(rendered, tokenize=False) == auto.apply_chat_template(rendered, tokenize=False)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "pt"])
def test_data_stats_does_not_import_torch(tmp_path, stage):
    model = _folder(tmp_path, "qwen2 model")
    rows = [{"instruction": f"Say {i}", "input": "", "output": f"{i} it is."} for i in range(20)]
    if stage == "pt":
        rows = [{"text": f"Document {i}: some plain text."} for i in range(20)]
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    info = {"d": {"file_name": "d.json", **({"columns": {"prompt": "text"}} if stage == "pt" else {})}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model_name_or_path: {model}\nstage: {stage}\ndo_train: true\ndataset: d\ndataset_dir: {tmp_path}\n"
        f"template: qwen\noutput_dir: {tmp_path / 'out'}\n",
        encoding="utf-8",
    )
    script = (
        "import sys\nfrom tuneforge.cli import main\nsys.argv = ['tuneforge', 'data', 'stats', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('IMPORTED', sorted(m for m in ('torch', 'datasets', 'pandas') if m in sys.modules))\n"
    )
    env = {**os.environ, "TUNEFORGE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", script, str(config)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"│ d +│ +20 │ +20 │ +0 │", done.stdout), done.stdout  # 20 rows read, 20 kept
    assert "IMPORTED []" in done.stdout
