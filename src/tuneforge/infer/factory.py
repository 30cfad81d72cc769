"""Build an `Engine` from a config: pick the backend, load model + adapters + template, find a value head."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.require import require
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.infer.engine import Engine
from tuneforge.infer.params import GenerationDefaults
from tuneforge.timing import Breakdown

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

_GPU_BACKENDS = {"vllm": "vllm", "sglang": "sglang", "ktransformers": "ktransformers"}


def load_engine(cfg: TuneforgeConfig, timing: Breakdown | None = None) -> Engine:
    """The inference engine the config describes (model, adapters, template, backend, sampling defaults).

    With `timing`, the Hugging Face path records imports, tokenizer (with the template check), weights and engine
    start (the CPU thread-count measurement) as separate parts.
    """
    timing = timing if timing is not None else Breakdown()
    require(cfg.model.model_name_or_path, "model_name_or_path", "the model to chat with")
    backend_name = cfg.inference.infer_backend
    if backend_name in ("vllm", "sglang"):
        return _load_async_engine(cfg, backend_name)
    if backend_name != "huggingface":
        raise _gpu_backend_error(backend_name)
    with timing.part("imports"):
        from transformers import AutoModelForCausalLM  # noqa: F401  (torch and transformers, timed on their own)

        from tuneforge.infer.hf_backend import HFBackend
        from tuneforge.infer.loading import find_value_head, load_for_inference
        from tuneforge.infer.media import engine_plugin
        from tuneforge.models.loader import load_tokenizer
    with timing.part("tokenizer"):
        tokenizer = load_tokenizer(cfg)
        template = load_inference_template(cfg, tokenizer)  # refuses a mismatched template before any weight
        plugin = engine_plugin(cfg, template, tokenizer)  # None for a text model
    with timing.part("weights"):
        model, tokenizer = load_for_inference(cfg, tokenizer)
    with timing.part("engine"):
        backend = HFBackend(
            model,
            tokenizer,
            max_batch_size=cfg.server.max_batch_size,
            max_queue_size=cfg.server.max_queue_size,
            use_cache=cfg.inference.use_kv_cache,
            plugin=plugin,
        )
    head_path = find_value_head(cfg)
    scorer = ValueHeadScorer(backend, head_path) if head_path else None
    return Engine(
        backend,
        tokenizer,
        template,
        GenerationDefaults.from_config(cfg.generation).params,
        model_name=served_name(cfg),
        scorer=scorer,
        plugin=plugin,
    )


def _load_async_engine(cfg: TuneforgeConfig, name: str) -> Engine:
    """An Engine over the vLLM or SGLang backend (their own batching; no value-head scoring)."""
    from tuneforge.infer.loading import find_value_head
    from tuneforge.models.loader import load_tokenizer

    if cfg.quantization.quantization_bit is not None:
        raise TuneforgeError(
            f"`quantization_bit` is applied by the huggingface backend only; with `infer_backend: {name}` serve a "
            f"pre-quantized model or pass the engine's own quantization in `{name}_config`."
        )
    module = importlib.import_module(f"tuneforge.infer.{name}_backend")
    module.check(cfg)  # package, GPU and adapters, before anything is loaded
    tokenizer = load_tokenizer(cfg)
    template = load_inference_template(cfg, tokenizer)
    defaults = GenerationDefaults.from_config(cfg.generation).params
    if find_value_head(cfg):
        logger.warning("Found a value head, but scoring needs `infer_backend: huggingface`; %s only generates.", name)
    return Engine(module.build_backend(cfg), tokenizer, template, defaults, model_name=served_name(cfg))


def load_inference_template(cfg: TuneforgeConfig, tokenizer: Any) -> Any:
    """The training template (`template`), or the tokenizer's own chat template when unset."""
    from tuneforge.data.templates import checked_template

    d = cfg.data
    return checked_template(d, tokenizer)[0]


def served_name(cfg: TuneforgeConfig) -> str:
    """`served_model_name`, else the model folder's name (or the Hub id)."""
    if cfg.server.served_model_name:
        return cfg.server.served_model_name
    path = str(cfg.model.model_name_or_path).rstrip("/")
    return Path(path).name if Path(path).exists() else path


def _gpu_backend_error(name: str) -> TuneforgeError:
    package = _GPU_BACKENDS.get(name, name)
    if importlib.util.find_spec(package) is None:
        return ConfigError(
            f"`infer_backend: {name}` needs the `{package}` package and a CUDA GPU (pip install {package}); "
            "or set `infer_backend: huggingface`, which works everywhere."
        )
    return ConfigError(
        f"`infer_backend: {name}` is installed but tuneforge does not drive it yet; "
        "use `infer_backend: huggingface` (batched, streaming) for now."
    )


class ValueHeadScorer:
    """Scores texts with the model's last hidden state at the final token through a value head."""

    def __init__(self, backend: Any, head_path: Path) -> None:
        from tuneforge.infer.loading import load_value_head

        self.backend = backend
        hidden = backend.model.config.get_text_config().hidden_size
        self.head = load_value_head(head_path, hidden).to(backend.model.device)
        logger.info("Loaded value head %s: the model scores texts (reward model)", head_path)

    def __call__(self, texts: list[str], max_length: int | None) -> list[float]:
        import torch

        tokenizer, model = self.backend.tokenizer, self.backend.model
        limit = min(max_length or self.backend.context_len, self.backend.context_len)
        scores = []
        with torch.inference_mode():
            for text in texts:
                ids = tokenizer.encode(text, add_special_tokens=False)[-limit:] or [self.backend.pad_id]
                tensor = torch.tensor([ids], device=model.device)
                with self.backend.model_lock:
                    out = model(input_ids=tensor, output_hidden_states=True)
                last = out.hidden_states[-1][0, -1].float()
                scores.append(float(self.head(last)))
        return scores
