"""Tokens a config adds to the vocabulary and how their embedding rows start (LLaMA-Factory's keys).

`add_tokens` and `add_special_tokens` list tokens; `new_special_tokens_config` names a YAML file mapping each new
special token to a text description (it then replaces `add_special_tokens`). `init_special_tokens` picks the start
of every new token's rows, in the input embeddings and in an untied output layer alike:

- `noise_init`: the mean row of the existing vocabulary plus Gaussian noise of standard deviation 1/sqrt(width);
- `desc_init`: the mean of the rows of the description's tokens in that same matrix;
- `desc_init_w_noise`: that mean plus the same noise.

Only tokens the tokenizer did not know get new rows, and they are set wherever their ids fall: also inside the
rows a model pads its vocabulary with (Qwen2.5: 151,665 words, 151,936 rows), which a resize never touches.
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.lists import split_list
from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from tuneforge.config.model import ModelSection

logger = logging.getLogger(__name__)

DESCRIBED = ("desc_init", "desc_init_w_noise")


@dataclass(frozen=True)
class NewTokens:
    """What one `add_configured_tokens` call added: each new token's id, the vocabulary size before, descriptions."""

    ids: dict[str, int]
    before: int
    descriptions: dict[str, str] | None


_ADDED: weakref.WeakKeyDictionary[Any, NewTokens] = weakref.WeakKeyDictionary()
_GREWN: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # model -> new token rows it was given


def token_descriptions(path: str) -> dict[str, str]:
    """The `new_special_tokens_config` file: a YAML mapping of token -> description (ConfigError naming the file)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"new_special_tokens_config: cannot read {path}: {error}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"new_special_tokens_config: {path} must map each new special token to its description, e.g. "
            "`<|tool_start|>: Marks the start of a tool call`."
        )
    bad = [str(key) for key, text in data.items() if not isinstance(key, str) or not isinstance(text, str)]
    if bad:
        raise ConfigError(f"new_special_tokens_config: {path}: give a text description for {', '.join(bad)}.")
    return dict(data)


def special_tokens(m: ModelSection) -> tuple[list[str], dict[str, str] | None]:
    """The special tokens to add and their descriptions: from `new_special_tokens_config` when set (it replaces
    `add_special_tokens`, as in LLaMA-Factory), else `add_special_tokens` without descriptions."""
    if m.new_special_tokens_config is None:
        return split_list(m.add_special_tokens), None
    descriptions = token_descriptions(m.new_special_tokens_config)
    if m.add_special_tokens:
        logger.warning("`new_special_tokens_config` is set: its tokens replace `add_special_tokens`.")
    return list(descriptions), descriptions


def add_configured_tokens(tokenizer: Any, m: ModelSection) -> None:
    """Add the config's tokens to `tokenizer` and remember which ids are new (for `init_new_rows`)."""
    specials, descriptions = special_tokens(m)
    plain, before = split_list(m.add_tokens), len(tokenizer)
    if plain:
        tokenizer.add_tokens(plain)
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": specials})
    wanted = [*plain, *specials]
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in wanted}
    _ADDED[tokenizer] = NewTokens({t: i for t, i in ids.items() if i >= before}, before, descriptions)
    if m.init_special_tokens in DESCRIBED and descriptions is None:
        logger.warning(
            "`init_special_tokens: %s` needs `new_special_tokens_config`; using noise_init.", m.init_special_tokens
        )


def init_new_rows(model: Any, tokenizer: Any, method: str) -> None:
    """Set the embedding rows of the tokens `add_configured_tokens` added to `tokenizer` (module docstring)."""
    added = _ADDED.get(tokenizer)
    if added is None or not added.ids:
        return
    import torch

    if added.descriptions is None:
        method = "noise_init"
    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not matrices[0]:  # an untied output layer has rows of its own
        matrices.append(output.weight)
    with torch.no_grad(), _gathered(matrices):
        for weight in matrices:
            _set_rows(weight, tokenizer, added, method)
    _GREWN[model] = len(added.ids)
    logger.info("Initialised %d new token row(s) with %s.", len(added.ids), method)


def embedding_modules(model: Any, resize_vocab: bool) -> list[str] | None:
    """The names of the embedding layers (input and output) an adapter must train in full because the vocabulary
    grew (`init_new_rows` gave the model new rows, or `resize_vocab`), as LLaMA-Factory adds them; else None."""
    if not (resize_vocab or _GREWN.get(model)):
        return None
    layers = [model.get_input_embeddings(), model.get_output_embeddings()]
    names = sorted(
        {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if any(module is layer for layer in layers)}
    )
    logger.warning(
        "The vocabulary grew: the adapter also trains %s in full (set `additional_target` to choose).", ", ".join(names)
    )
    return names


def _set_rows(weight: torch.Tensor, tokenizer: Any, added: NewTokens, method: str) -> None:
    import torch

    known = weight[: added.before].float()
    for token, row in added.ids.items():
        start = _description_mean(known, tokenizer, added, token) if method in DESCRIBED else known.mean(dim=0)
        if method != "desc_init":
            start = start + torch.randn_like(start) / math.sqrt(weight.shape[1])
        weight[row] = start.to(weight.dtype)


def _description_mean(known: torch.Tensor, tokenizer: Any, added: NewTokens, token: str) -> torch.Tensor:
    """The mean of `known`'s rows for the description of `token` (words the tokenizer knew before only); the mean
    row for a token without one (an `add_tokens` token)."""
    description = (added.descriptions or {}).get(token)
    if description is None:
        return known.mean(dim=0)
    ids = tokenizer(description, add_special_tokens=False)["input_ids"]
    old = [i for i in ids if i < added.before]
    if not old:
        logger.warning("The description of %s has no word the model knew; it starts at the mean row.", token)
        return known.mean(dim=0)
    return known[old].mean(dim=0)


def _gathered(params: list[Any]) -> Any:
    """DeepSpeed ZeRO-3 gathers the sharded matrices for rank 0 to edit; elsewhere nothing is needed."""
    from contextlib import nullcontext

    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)
