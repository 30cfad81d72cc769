"""`tuneforge export`: merge adapters, then write a Hugging Face folder or a GGUF file, plus an Ollama Modelfile.

Read top to bottom: every check that can fail without a model runs first; the model is loaded and merged;
everything is written into a temporary folder beside `export_dir` that is renamed into place at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.require import require
from tuneforge.errors import TuneforgeError
from tuneforge.export import hf, merge, ollama, quantize, vision
from tuneforge.models.quantization import check_quantization

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

OFFLINE_VALUES = ("1", "true", "yes", "on")


def export_command(cfg: TuneforgeConfig) -> Path:
    """Export the model the config names into `export_dir`; returns the folder written."""
    out = hf.check_export_dir(cfg.export.export_dir, cfg.training.overwrite_output_dir)
    require(cfg.model.model_name_or_path, "model_name_or_path", "the base model to export")
    merge.check_mergeable(cfg)
    arch = vision.base_vision_architecture(cfg)
    if arch:
        vision.check_vision_export(cfg, arch)
    check_quantization(cfg)
    quantize.check_export_quantization(cfg)
    check_hub(cfg)
    tokenizer, template = load_tokenizer_and_template(cfg)
    model = merge.load_merged(cfg)
    with hf.staged_dir(out) as stage:
        if cfg.export.export_format == "gguf":
            source = write_gguf_export(model, tokenizer, template, stage, cfg)
        else:
            write_hf_export(model, tokenizer, template, stage, cfg)
            source = "."
        write_modelfile(template, stage, source, vision.ollama_note(arch) if arch else None)
    logger.info("Exported to %s", out)
    if cfg.export.export_hub_model_id:
        push_to_hub(out, cfg.export.export_hub_model_id, cfg.model.hf_hub_token)
    return out


def load_tokenizer_and_template(cfg: TuneforgeConfig) -> tuple[Any, Any]:
    """The base tokenizer and the chat template the model was trained with (None: the tokenizer's own)."""
    from tuneforge.data.templates import checked_template
    from tuneforge.models.loader import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    d = cfg.data
    if d.template is None:
        return tokenizer, None
    template, _ = checked_template(d, tokenizer)
    return tokenizer, template


def chat_template_jinja(template: Any) -> str | None:
    """The training template as Jinja, for the exported tokenizer (None keeps the tokenizer's own)."""
    return template.to_jinja() if template is not None else None


def stop_token_ids(template: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a turn: the template's stop tokens, else the tokenizer's eos."""
    if template is not None:
        return template.stop_token_ids(tokenizer)
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def write_hf_export(model: Any, tokenizer: Any, template: Any, stage: Path, cfg: TuneforgeConfig) -> None:
    """A Hugging Face folder (optionally GPTQ-quantized) with tokenizer, generation config and value head."""
    e = cfg.export
    target = stage
    if e.export_quantization_bit is not None:
        target = stage.parent / f"{stage.name}-merged"
        target.mkdir()
    try:
        hf.write_weights(hf.unique_state_dict(model), target, e.export_size, legacy=e.export_legacy_format)
        hf.write_model_config(model, target, model.dtype)
        hf.write_generation_config(model, target, stop_token_ids(template, tokenizer), tokenizer.pad_token_id)
        write_tokenizer_and_processor(model, tokenizer, template, target, cfg)
        if e.export_quantization_bit is not None:
            quantize.quantize_gptq(target, stage, cfg, tokenizer)
    finally:
        if target != stage:
            shutil.rmtree(target, ignore_errors=True)
    sources = [cfg.model.model_name_or_path or "", *cfg.model.adapters]
    if hf.copy_value_head(sources, stage):
        logger.info("Copied the reward model's value head")


def write_tokenizer_and_processor(model: Any, tokenizer: Any, template: Any, out: Path, cfg: TuneforgeConfig) -> None:
    """The tokenizer with the training template; for a vision-language model the processor files beside it and
    the processor's own chat template (it renders image parts, the training template's Jinja does not)."""
    arch = vision.vision_architecture(model.config)
    if arch is None:
        hf.write_tokenizer(tokenizer, out, chat_template_jinja(template))
        return
    from tuneforge.data.media import copy_processor_files

    hf.write_tokenizer(tokenizer, out, None)
    copy_processor_files(cfg.model.model_name_or_path, out)
    logger.info("Vision-language model %s: wrote its processor files and kept the processor's chat template", arch)


def write_gguf_export(model: Any, tokenizer: Any, template: Any, stage: Path, cfg: TuneforgeConfig) -> str:
    """One GGUF file named after the export folder and weight type; returns its Modelfile source."""
    from tuneforge.export.gguf import write_gguf

    kind = cfg.export.export_gguf_type
    name = f"{Path(cfg.export.export_dir or 'model').name}-{kind}.gguf"
    write_gguf(model, tokenizer, stage / name, kind, chat_template=chat_template_jinja(template))
    return f"./{name}"


def write_modelfile(template: Any, stage: Path, source: str, note: str | None = None) -> None:
    """The Ollama Modelfile; without a named template only FROM is written (Ollama reads the tokenizer's).
    `note` (what Ollama can do with the model) goes to the console and into the Modelfile as a comment."""
    if note:
        logger.warning("Ollama: %s", note)
    if template is None:
        comment = f"# tuneforge: {note}\n\n" if note else ""
        (stage / "Modelfile").write_text(f"{comment}FROM {source}\n", encoding="utf-8")
        return
    ollama.write_modelfile(template, stage, source, note)


def check_hub(cfg: TuneforgeConfig) -> None:
    """Refuse `export_hub_model_id` while the Hub is switched off, before any work is done."""
    if cfg.export.export_hub_model_id and os.environ.get("HF_HUB_OFFLINE", "").lower() in OFFLINE_VALUES:
        raise TuneforgeError(
            f"`export_hub_model_id: {cfg.export.export_hub_model_id}` pushes to the Hugging Face Hub, but "
            "HF_HUB_OFFLINE is set. Unset HF_HUB_OFFLINE (and log in with `hf auth login`), or remove "
            "`export_hub_model_id` to export locally only."
        )


def push_to_hub(folder: Path, repo_id: str, token: str | None) -> None:
    """Upload the exported folder to the Hub repository `repo_id` (created when missing)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload model exported by tuneforge")
    except Exception as exc:  # network, auth and permission errors all end here
        raise TuneforgeError(
            f"`export_hub_model_id: {repo_id}`: pushing {folder} to the Hub failed ({exc}). The export itself is "
            "complete; check your login (`hf auth login`) and network, then upload the folder again."
        ) from exc
