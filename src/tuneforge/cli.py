"""The `tuneforge` command line: a thin layer that parses arguments and calls the verbs' modules.

Nothing heavy is imported here: each verb imports what it needs when it runs, so `--help` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from tuneforge.console import shown
from tuneforge.errors import TuneforgeError
from tuneforge.models.tiny_archs import TEXT_ARCHES
from tuneforge.version import __version__

CONFIG_VERB = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": ["-h", "--help"],
}
OVERRIDES_HELP = (
    "CONFIG is a YAML file (LLaMA-Factory format accepted). OVERRIDES are `key=value` or `--key value` pairs "
    "applied after the file; the last one wins. Without a file, the overrides alone form the config. "
    "Keys: `tuneforge help KEY`, `tuneforge config schema`, docs/config.md."
)


def _config_verb(name: str, summary: str) -> Callable[[Callable[..., Any]], click.Command]:
    """Declare a verb taking `CONFIG [OVERRIDES...]`."""

    def wrap(func: Callable[..., Any]) -> click.Command:
        func = click.argument("overrides", nargs=-1, type=click.UNPROCESSED)(func)
        func = click.argument("config", required=False)(func)
        return main_group.command(name, help=f"{summary}\n\n{OVERRIDES_HELP}", context_settings=CONFIG_VERB)(func)

    return wrap


def _load(config: str | None, overrides: tuple[str, ...]) -> Any:
    from tuneforge.config import config_from_file_or_flags

    return config_from_file_or_flags(config, list(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tuneforge")
def main_group() -> None:
    """tuneforge: fine-tune LLMs from data to deployment with one YAML file.

    Reads LLaMA-Factory YAML configs and dataset_info.json registries unchanged.
    """


@_config_verb("train", "Train a model (pt, sft, rm, dpo, kto, ppo, grpo) as the config says.")
def train_cmd(config: str | None, overrides: tuple[str, ...]) -> None:
    cfg = _load(config, overrides)
    from tuneforge.train import run_training
    from tuneforge.train.launch import launch_if_wanted

    if launch_if_wanted(["train", *([config] if config else []), *overrides], cfg, run_training):
        return  # torchrun or Ray Train ran the job on every rank
    run_training(cfg)


@_config_verb("chat", "Chat with a model (and its adapters) in the terminal, streaming.")
@click.option(
    "--image", "images", multiple=True, metavar="PATH", help="Attach an image file to the first message (repeatable)."
)
@click.option(
    "--video", "videos", multiple=True, metavar="PATH", help="Attach a video file to the first message (repeatable)."
)
@click.option(
    "--audio", "audios", multiple=True, metavar="PATH", help="Attach an audio file to the first message (repeatable)."
)
def chat_cmd(config: str | None, overrides: tuple[str, ...], **media: tuple[str, ...]) -> None:
    cfg = _load(config, overrides)
    from tuneforge.infer.chat_cli import chat_command

    chat_command(cfg, {kind: list(paths) for kind, paths in media.items()})


@_config_verb("api", "Serve the model behind an OpenAI-compatible HTTP API.")
def api_cmd(config: str | None, overrides: tuple[str, ...]) -> None:
    cfg = _load(config, overrides)
    from tuneforge.serve.server import api_command

    api_command(cfg)


@_config_verb("export", "Merge adapters and export the model (Hugging Face, Ollama Modelfile, GGUF).")
def export_cmd(config: str | None, overrides: tuple[str, ...]) -> None:
    cfg = _load(config, overrides)
    from tuneforge.export.runner import export_command

    export_command(cfg)


@_config_verb("webchat", "Open a browser chat page on the model.")
def webchat_cmd(config: str | None, overrides: tuple[str, ...]) -> None:
    cfg = _load(config, overrides)
    from tuneforge.webui.webchat import webchat_command

    webchat_command(cfg)


@_config_verb("eval", "Evaluate the model (and its adapters) on lm-evaluation-harness benchmarks (MMLU, C-Eval...).")
def eval_cmd(config: str | None, overrides: tuple[str, ...]) -> None:
    cfg = _load(config, overrides)
    from tuneforge.eval.runner import eval_command

    eval_command(cfg)


@main_group.command("webui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (exposing it needs --auth).")
@click.option("--port", default=7860, show_default=True, type=int, help="Port to bind.")
@click.option("--auth", default=None, help="Require a login, as user:password.")
@click.option("--root", "roots", multiple=True, help="Folder the UI may read and write (repeatable; default: cwd).")
def webui_cmd(host: str, port: int, auth: str | None, roots: tuple[str, ...]) -> None:
    """Open the browser UI to configure, run and watch training, build datasets, chat and export."""
    from tuneforge.webui.app import webui_command

    webui_command(host, port, auth, list(roots))


@main_group.command("debug-config")
@click.argument("config")
def debug_config_cmd(config: str) -> None:
    """Write a .vscode/launch.json entry that debugs `tuneforge train CONFIG`."""
    from tuneforge.webui.vscode import debug_config_command

    click.echo(f"wrote {debug_config_command(config)}")


@main_group.command("env")
def env_cmd() -> None:
    """Print platform, Python, torch (CUDA, GPUs) and library versions for bug reports."""
    from tuneforge.envinfo import environment_report

    click.echo(environment_report())


@main_group.command("version")
def version_cmd() -> None:
    """Print the tuneforge version."""
    click.echo(f"tuneforge {__version__}")


@main_group.command("make-tiny")
@click.option(
    "--arch",
    type=click.Choice(
        ["qwen2", "qwen3", "llama", *TEXT_ARCHES, "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen2_audio", "qwen2_5_omni"]
    ),
    default="qwen2",
    show_default=True,
    help="Architecture (the MoE ones: qwen2_moe, qwen3_moe, deepseek_v3, gpt_oss; vision-language: qwen2_vl, "
    "qwen2_5_vl, qwen3_vl; audio-language: qwen2_audio, qwen2_5_omni (the thinker; also images and video)).",
)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--layers", type=int, default=2, show_default=True, help="Decoder layers.")
@click.option("--hidden", type=int, default=64, show_default=True, help="Hidden size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the weights.")
@click.option("--shape", type=click.Choice(["qwen2-1.5b", "qwen3-0.6b"]), default=None, help="Exact real shape.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def make_tiny_cmd(**kwargs: Any) -> None:
    """Write a random-initialised model of a real architecture with the real Qwen2 tokenizer (offline)."""
    from tuneforge.models.tiny import make_tiny_command

    make_tiny_command(**kwargs)


@main_group.command("expand-layers")
@click.option("--model", "--model_name_or_path", "model_path", required=True, help="Model folder or hub id to expand.")
@click.option(
    "--out", "--output_dir", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write."
)
@click.option(
    "--num-expand", "--num_expand", type=int, required=True, help="Blocks to add; must divide the number of layers."
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def expand_layers_cmd(model_path: str, out_dir: str, num_expand: int, overwrite: bool) -> None:
    """LLaMA Pro block expansion: write the model with NUM_EXPAND identity blocks (zeroed o_proj/down_proj) added."""
    from tuneforge.models.expand import expand_layers

    expand_layers(model_path, out_dir, num_expand, overwrite)


@main_group.group("config", context_settings={"help_option_names": ["-h", "--help"]})
def config_group() -> None:
    """Validate, show and describe configs."""


@config_group.command("validate", context_settings=CONFIG_VERB)
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def config_validate(config: str | None, overrides: tuple[str, ...]) -> None:
    """Check a config: unknown keys, wrong values, contradictions and paths. Exit 2 when invalid."""
    cfg = _load(config, overrides)
    click.echo(f"{cfg.source or 'config'}: valid (stage {cfg.method.stage}, {cfg.method.finetuning_type}).")


@config_group.command("show", context_settings=CONFIG_VERB)
@click.option("--all", "show_all", is_flag=True, help="Also list keys left at their defaults.")
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def config_show(config: str | None, overrides: tuple[str, ...], show_all: bool) -> None:
    """Print the resolved config grouped by section; keys at their default are marked."""
    from tuneforge.config.schema import show_text

    click.echo(show_text(_load(config, overrides), show_all=show_all))


@config_group.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of config files (for yaml-language-server and other editors)."""
    from tuneforge.config.schema import schema_text

    click.echo(schema_text())


@config_group.command("docs")
def config_docs() -> None:
    """Print the Markdown config reference (docs/config.md is generated with this)."""
    from tuneforge.config.schema import markdown_reference

    click.echo(markdown_reference())


@main_group.group("data", context_settings={"help_option_names": ["-h", "--help"]})
def data_group() -> None:
    """Look at what the model will see: processed samples and dataset statistics."""


@data_group.command("preview", context_settings=CONFIG_VERB)
@click.option("-n", "num", type=int, default=3, show_default=True, help="Samples to print.")
@click.option("--jsonl", type=click.Path(dir_okay=False), default=None, help="Also write samples as JSON lines.")
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def data_preview(config: str | None, overrides: tuple[str, ...], num: int, jsonl: str | None) -> None:
    """Print tokenized samples with trained and masked tokens marked."""
    from tuneforge.data.preview import preview_command

    preview_command(_load(config, overrides), num, jsonl)


@data_group.command("stats", context_settings=CONFIG_VERB)
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def data_stats(config: str | None, overrides: tuple[str, ...]) -> None:
    """Print rows kept and dropped (and why), length percentiles and packing fill."""
    from tuneforge.data.preview import stats_command

    stats_command(_load(config, overrides))


@data_group.command("templates")
def data_templates() -> None:
    """List the chat templates tuneforge knows (`template:` in the config)."""
    from tuneforge.data.templates import get_spec, list_templates

    for name in list_templates():
        click.echo(f"{name:<18}{getattr(get_spec(name), 'description', '') or ''}")


@main_group.command("models")
@click.argument("query", required=False)
@click.option("--family", default=None, help="Part of the family name (e.g. qwen3, llama-3).")
@click.option("--size", default=None, help="Size (7B) or inclusive range (1B-8B).")
@click.option("--template", default=None, help="Chat template name (e.g. qwen3).")
@click.option("--arch", "architecture", default=None, help="Architecture, config.json model_type (e.g. llama).")
def models_cmd(query: str | None, **filters: str | None) -> None:
    """List the model registry (hub ids, template, architecture, size); QUERY is part of a name or hub id."""
    from tuneforge.models.registry import models_table, select_models

    found = select_models(query, **filters)
    if not found:
        given = ", ".join(f"{k}={v}" for k, v in {"query": query, **filters}.items() if v)
        raise click.ClickException(f"no model in the registry matches {given}; `tuneforge models` lists them all")
    click.echo(models_table(found))


@main_group.command("help")
@click.argument("topic", required=False)
@click.pass_context
def help_cmd(ctx: click.Context, topic: str | None) -> None:
    """Help on a verb (`tuneforge help train`) or a config key (`tuneforge help lora_rank`)."""
    from tuneforge.helptext import help_for

    click.echo(help_for(ctx, main_group, topic))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into a clear message and exit code 2."""
    try:
        main_group.main(args=argv, prog_name="tuneforge", standalone_mode=False)
    except TuneforgeError as err:
        if os.environ.get("TUNEFORGE_DEBUG") == "1":
            raise
        click.secho(f"error: {shown(err)}", fg="red", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
