"""The tokenizer class `AutoTokenizer` would pick for a local folder, found without importing torch.

`AutoTokenizer.from_pretrained` builds the model config first (`AutoConfig` imports transformers'
`configuration_utils`, which imports torch: about 2 s here), only to read `model_type` from it. A data-only run
(`tuneforge data stats|preview`) needs no torch, so `tokenizer_class_for` replays the part of AutoTokenizer's
dispatch that applies to an ordinary local folder from the JSON files alone, and answers None whenever the
answer is not certain (remote code, hub ids, GGUF, Llama/Mistral special cases, configs without `model_type`,
dispatch code other than the one replayed here, a dispatch table it cannot read); the caller then uses
AutoTokenizer.

The model-type table is read from transformers' own `tokenization_auto.py` source (it cannot be imported without
importing torch), so it always matches the installed transformers. `tests/test_tokenizer_class.py` checks the
result against AutoTokenizer, attribute by attribute, for every tokenizer folder that can be built offline.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

_BACKENDS = ("TokenizersBackend", "PythonBackend", "PreTrainedTokenizerFast")
# digests (`_dispatch_digest`) of the AutoTokenizer dispatch code this module replays, checked against it by
# tests/test_tokenizer_class.py; another transformers whose dispatch code differs gets AutoTokenizer itself
_REPLAYED_DISPATCH = {"1996c831d540a73c": "transformers 5.24.0"}


class _Uncertain(Exception):
    """AutoTokenizer's choice cannot be replayed with certainty here."""


def tokenizer_class_for(path: str | Path) -> type | None:
    """The class `AutoTokenizer.from_pretrained(path)` instantiates, or None when that is not certain."""
    folder = Path(path)
    tables = _auto_tables()
    if tables is None or not (folder / "tokenizer.json").is_file():
        return None
    tok_config, model_config = _read(folder / "tokenizer_config.json"), _read(folder / "config.json")
    if tok_config is None or model_config is None or "auto_map" in tok_config or "auto_map" in model_config:
        return None
    hub = tok_config.get("tokenizer_class")
    names, incorrect, backend_ids = tables
    if not isinstance(hub, str) or any(fnmatch.fnmatch(str(path).lower(), p) for p in backend_ids):
        return None
    if "MistralCommonBackend" in (hub.removesuffix("Fast"), (names.get(model_config.get("model_type", "")) or "")):
        return None
    if hub.removesuffix("Fast") == "LlamaTokenizer":  # AutoTokenizer then inspects tokenizer.json's pre-tokenizer
        return None
    if model_config and not isinstance(model_config.get("model_type"), str):
        return None  # AutoConfig would guess the model type from the folder name
    try:
        return _dispatch(hub, model_config.get("model_type", ""), names, incorrect)
    except _Uncertain:
        return None


def _dispatch(hub: str, model_type: str, names: dict[str, str | None], incorrect: set[str]) -> type | None:
    """AutoTokenizer's choice for a local folder without remote code, whose tokenizer_config names `hub`."""
    from transformers import TokenizersBackend

    registered = (names.get(model_type) or "").removesuffix("Fast") if model_type else ""
    if registered and registered != hub.removesuffix("Fast"):
        if registered not in (*_BACKENDS, "MistralCommonBackend"):
            chosen = _class_from_name(registered if model_type in incorrect else hub, names)
            if chosen is not None and chosen.__name__ not in _BACKENDS:
                return chosen
        return TokenizersBackend
    name = hub.removesuffix("Fast")
    chosen = _class_from_name(name, names) or _class_from_name(name + "Fast", names)
    if chosen is None or chosen.__name__ == "PythonBackend":
        return TokenizersBackend
    return chosen


def _class_from_name(name: str, names: dict[str, str | None]) -> type | None:
    """transformers' `tokenizer_class_from_name` for a fresh process (nothing registered at run time)."""
    import transformers

    if name in ("BloomTokenizer", "BloomTokenizerFast", "TokenizersBackend"):
        return transformers.TokenizersBackend
    if name in names.values() or hasattr(transformers, name):
        found = getattr(transformers, name, None)
        if found is None:  # AutoTokenizer would import it from its model folder; not replayed here
            raise _Uncertain(name)
        return found
    return _class_from_name(name[:-4], names) if name.endswith("Fast") else None


def _read(path: Path) -> dict[str, Any] | None:
    """A JSON object file ({} when absent), None when it cannot be read as one."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@cache
def _auto_tables() -> tuple[dict[str, str | None], set[str], list[str]] | None:
    """AutoTokenizer's model-type -> class table, its "incorrect hub class" set and its backend-only hub ids, read
    from the installed transformers 5 source; None when that source does not have the expected shape."""
    import transformers

    spec = find_spec("transformers.models.auto.tokenization_auto")
    if not transformers.__version__.startswith("5.") or spec is None or spec.origin is None:
        return None
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        if _dispatch_digest(tree) not in _REPLAYED_DISPATCH:
            return None  # AutoTokenizer's dispatch code differs from the one replayed here
        found = _assignments(tree)
        names = {_literal(k): _literal(v) for k, v in (e.elts for e in found["TOKENIZER_MAPPING_NAMES"].args[0].elts)}
        incorrect = set(ast.literal_eval(found["MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS"]))
        backend_ids = list(ast.literal_eval(found["MODEL_IDS_TO_TOKENIZERS_BACKEND"]))
    except (OSError, SyntaxError, KeyError, AttributeError, IndexError, TypeError, ValueError):
        return None
    for model_type in incorrect:
        names.setdefault(model_type, "TokenizersBackend")
    return names, incorrect, backend_ids


def _dispatch_digest(tree: ast.Module) -> str:
    """A digest of `AutoTokenizer.from_pretrained` and `tokenizer_class_from_name` (code only, no docstrings)."""
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "AutoTokenizer":
            functions += [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "from_pretrained"]
    chosen = [f for f in functions if f.name in ("from_pretrained", "tokenizer_class_from_name")]
    if len(chosen) != 2:
        return ""
    for function in chosen:
        first = function.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            function.body = function.body[1:]
    return hashlib.sha256("".join(ast.dump(f) for f in chosen).encode()).hexdigest()[:16]


def _assignments(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level `NAME = value` / `NAME: type = value` statements of a parsed module."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found[node.target.id] = node.value
    return found


def _literal(node: ast.expr) -> Any:
    """A constant, or the first branch of `"Name" if is_tokenizers_available() else None` (tokenizers is installed)."""
    if isinstance(node, ast.IfExp):
        node = node.body
    return ast.literal_eval(node)
