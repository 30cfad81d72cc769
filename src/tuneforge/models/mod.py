"""Mixture of depths (`mixture_of_depths: convert | load`), written for transformers 5.

LLaMA-Factory delegates to the `mixture-of-depth` package, which no longer imports under transformers 5 (it reads
the removed `transformers.TRANSFORMERS_CACHE`, and its layer wrapper relies on the v4 decoder-layer interface).
This is tuneforge's own implementation with the same layout and schedule:

- every second decoder layer (indices 1, 3, 5, ...) is wrapped: a router `Linear(hidden, 1)` (float32) scores each
  token, the top `capacity * seq_len` tokens of each row (at least one) go through the layer, the rest skip it;
- a routed token becomes x + w * (layer(x) - x), w its router score, so the router learns through the update
  (the paper's formula; the package multiplied the whole layer output, residual included, by w);
- capacity starts at 1 and decays as 0.125 + 0.875 / step over training forwards (to 0.125, as in the package);
- weights keep the package's names (`layers.N.block.*`, `layers.N.router.weight_predictor.*`).

With a KV cache (generation) every token goes through the layer, weighted by its score: the top-k choice needs the
whole sequence, which generation does not have.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.errors import TuneforgeError

logger = logging.getLogger(__name__)

MOD_ARCHITECTURES = ("llama", "mistral", "mixtral", "gemma", "phi", "starcoder2")
LF_ONLY = ("bloom", "falcon")  # LLaMA-Factory lists them too; their ALiBi / parallel blocks need their own routing
MIN_CAPACITY = 0.125
CONFIG_KEY = "mod_layers"  # written into config.json: which layers are routed


class TokenRouter(nn.Module):
    """One score per token from a float32 linear layer."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.weight_predictor = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores [B, S] for hidden states [B, S, D], in the hidden states' dtype."""
        weight = self.weight_predictor.weight
        return self.weight_predictor(x.to(weight.dtype)).squeeze(-1).to(x.dtype)


class MoDLayer(nn.Module):
    """A decoder layer that only the router's top-`capacity` tokens of each row go through."""

    def __init__(self, block: nn.Module, hidden: int) -> None:
        super().__init__()
        self.block = block
        self.router = TokenRouter(hidden)
        self.capacity = MIN_CAPACITY
        self.steps = 0

    def _next_capacity(self) -> float:
        if self.training:
            self.steps = min(self.steps + 1, 1000)
            self.capacity = MIN_CAPACITY + (1 - MIN_CAPACITY) / self.steps
        return self.capacity

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Route the top tokens through the wrapped layer; the rest pass unchanged."""
        weights = self.router(hidden_states)
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None or args:
            out = _first(self.block(hidden_states, *args, **kwargs))
            return hidden_states + weights.unsqueeze(-1) * (out - hidden_states)
        seq = hidden_states.shape[1]
        k = max(1, int(self._next_capacity() * seq))
        index = torch.topk(weights, k, dim=1).indices.sort(dim=1).values  # keep the tokens in causal order
        picked = _take(hidden_states, index)
        out = _first(self.block(picked, **_routed_kwargs(kwargs, index, seq)))
        update = _take(weights, index).unsqueeze(-1) * (out - picked)
        return hidden_states.scatter_add(1, index.unsqueeze(-1).expand_as(update), update.to(hidden_states.dtype))


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[b, index[b]] for each row: [B, S, ...] -> [B, k, ...]; a batch-1 tensor is shared by every row."""
    if values.shape[0] == 1 and index.shape[0] > 1:
        values = values.expand(index.shape[0], *values.shape[1:])
    shape = index.shape + values.shape[2:]
    return values.gather(1, index.reshape(*index.shape, *([1] * (values.dim() - 2))).expand(shape))


def _routed_kwargs(kwargs: dict[str, Any], index: torch.Tensor, seq: int) -> dict[str, Any]:
    """The layer's keyword arguments cut down to the routed tokens (positions, rotary tables, attention mask)."""
    routed = dict(kwargs)
    if kwargs.get("position_ids") is not None:
        routed["position_ids"] = _take(kwargs["position_ids"], index)
    if kwargs.get("position_embeddings") is not None:
        routed["position_embeddings"] = tuple(_take(t, index) for t in kwargs["position_embeddings"])
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:  # [B, H, S, S]: keep the routed rows and columns
        grid = mask.expand(index.shape[0], -1, -1, -1).permute(0, 2, 3, 1)
        rows = torch.arange(index.shape[0], device=index.device)[:, None, None]
        routed["attention_mask"] = grid[rows, index[:, :, None], index[:, None, :]].permute(0, 3, 1, 2)
    elif isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[-1] == seq:
        routed["attention_mask"] = _take(mask, index)
    return routed


def _decoder_layers(model: Any) -> nn.ModuleList:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in MOD_ARCHITECTURES:
        extra = f" ({', '.join(LF_ONLY)} are LLaMA-Factory-only)" if model_type in LF_ONLY else ""
        raise TuneforgeError(
            f"`mixture_of_depths` is not available for model type `{model_type}`{extra}; it supports "
            f"{', '.join(MOD_ARCHITECTURES)}. Remove `mixture_of_depths` to train this model."
        )
    return model.get_decoder().layers


def convert_to_mod(model: Any) -> Any:
    """Wrap every second decoder layer of `model` in a routed `MoDLayer`, in place; returns the model."""
    layers = _decoder_layers(model)
    hidden = model.config.get_text_config().hidden_size
    routed = []
    for i in range(1, len(layers), 2):
        if not isinstance(layers[i], MoDLayer):
            layers[i] = MoDLayer(layers[i], hidden).to(next(layers[i].parameters()).device)
        routed.append(i)
    model.config.mod_layers = routed
    logger.info("Mixture of depths: layers %s route their top tokens", routed)
    return model


def load_mod_model(path: str, load: Any) -> Any:
    """A model saved after `convert_to_mod`: `load(key_mapping)` loads the base model with the routed layers' weights
    renamed to plain ones; the routers come from the checkpoint afterwards."""
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")) if Path(path).is_dir() else {}
    if CONFIG_KEY not in config:
        raise TuneforgeError(
            f"`mixture_of_depths: load` needs a model saved after `mixture_of_depths: convert`; {path} has no "
            f"`{CONFIG_KEY}` in its config.json. Use `mixture_of_depths: convert` to convert a plain model."
        )
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the routers are "unexpected" to the plain model: they are loaded below
    try:
        model = load({r"^(.*\.layers\.\d+)\.block\.": r"\1."})
    finally:
        hf_logging.set_verbosity(level)
    model = convert_to_mod(model)
    routers = _router_weights(Path(path))
    missing = [k for k, _ in model.named_parameters() if ".router." in k and k not in routers]
    if missing:
        raise TuneforgeError(f"{path} lacks the router weights {', '.join(missing[:3])}: it is not a MoD checkpoint.")
    model.load_state_dict(routers, strict=False)
    return model


def _router_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        weights.update({k: v for k, v in load_file(str(file)).items() if ".router." in k})
    return weights
