"""Datasets, chat template, tokenization, packing and the preprocessing cache."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section, no_op, refused


class DataSection(Section):
    """Datasets, chat template, tokenization, packing and the preprocessing cache."""

    template: str | None = F(
        None,
        "Chat template that turns conversations into token ids; must match the model (e.g. qwen, llama3). "
        "`auto` picks it from the model's files and the model registry (`tuneforge models`) and logs the pick.",
        wiring=ACTS,
    )
    dataset: str | list | None = F(
        None,
        "Datasets to train on: comma-separated names from dataset_info.json in dataset_dir, file paths, "
        "or a list of inline entries (the dataset_info.json attributes plus `path`).",
        wiring=ACTS,
    )
    eval_dataset: str | list | None = F(
        None,
        "Datasets to evaluate on, in the same forms as `dataset` (names, file paths or inline entries).",
        wiring=ACTS,
    )
    dataset_dir: str = F(
        "data", "Folder containing dataset_info.json and the local dataset files it names.", wiring=ACTS
    )
    media_dir: str | None = F(
        None,
        "Folder that relative image, video and audio paths in the data resolve against; defaults to dataset_dir.",
        wiring=ACTS,
    )
    cutoff_len: int = F(
        2048,
        "Maximum length in tokens of a tokenized example (prompt plus response); longer ones are truncated.",
        wiring=ACTS,
    )
    train_on_prompt: bool = F(
        False, "Also compute the loss on prompt tokens instead of only on the responses.", wiring=ACTS
    )
    mask_history: bool = F(
        False,
        "Train only on the last assistant turn of each conversation; earlier turns are masked from the loss.",
        wiring=ACTS,
    )
    streaming: bool = F(
        False, "Read datasets lazily as a stream instead of loading them fully; needs max_steps to be set.", wiring=ACTS
    )
    buffer_size: int = F(16384, "Shuffle buffer size, in examples, used when streaming.", wiring=ACTS)
    mix_strategy: Literal["concat", "interleave_under", "interleave_over", "interleave_once"] = F(
        "concat",
        "How several datasets are combined: concatenated, or interleaved with under/over-sampling or once each.",
        wiring=ACTS,
    )
    interleave_probs: str | None = F(
        None, "Comma-separated sampling probabilities, one per dataset, for the interleave strategies.", wiring=ACTS
    )
    overwrite_cache: bool = F(
        False, "Redo preprocessing instead of reusing the cached tokenized datasets.", wiring=ACTS
    )
    preprocessing_batch_size: int = F(
        1000,
        "Number of examples tokenized per batch during preprocessing.",
        wiring=no_op(
            "tuneforge tokenizes each dataset as one table (streams in chunks of 256 rows); the result does "
            "not depend on a batch size"
        ),
    )
    preprocessing_num_workers: int | None = F(
        None,
        "Number of processes used for preprocessing; unset uses one. Workers start only where they pay (4+ cores, "
        "8,000+ distinct rows, sft/pairwise/unsupervised data; the log says why not), at most one per core, each "
        "with its share of the cores' threads.",
        wiring=ACTS,
    )
    max_samples: int | None = F(
        None, "Use at most this many examples from each dataset, for quick runs and debugging.", wiring=ACTS
    )
    eval_num_beams: int | None = F(
        None,
        "Beams for beam search when generating during evaluation; unset keeps generation_num_beams.",
        wiring=no_op(
            "prediction generates with `num_beams` and `max_new_tokens`, which take precedence over this key "
            "in LLaMA-Factory too"
        ),
    )
    ignore_pad_token_for_loss: bool = F(
        True,
        "Leave padding tokens out of the loss and out of generated-text metrics.",
        wiring=refused(
            "tuneforge always leaves padding out of the loss and metrics; remove `ignore_pad_token_for_loss: false`"
        ),
    )
    val_size: float = F(
        0.0,
        "Held-out validation split: a fraction in [0, 1) of the training data, or a whole number of examples.",
        wiring=ACTS,
    )
    eval_on_each_dataset: bool = F(
        False, "Report evaluation metrics separately for every evaluation dataset.", wiring=ACTS
    )
    packing: bool | None = F(
        None,
        "Pack several examples into each cutoff_len sequence to avoid padding; unset enables it for pre-training only.",
        wiring=ACTS,
    )
    neat_packing: bool = F(
        False,
        "Pack examples without attention across example boundaries (needs a supported attention kernel).",
        wiring=ACTS,
    )
    tool_format: str | None = F(
        None,
        "Format used to render tool (function) calls and results in prompts; unset uses the template's own.",
        wiring=ACTS,
    )
    default_system: str | None = F(
        None, "System prompt used for examples that do not carry one; unset uses the template's default.", wiring=ACTS
    )
    enable_thinking: bool | None = F(
        True,
        "Reasoning templates: let the model think before answering; false makes the template skip the thinking part.",
        wiring=ACTS,
    )
    preserve_thinking: bool = F(
        False,
        "Reasoning templates: keep the thinking of every earlier assistant turn (in training data, chat, the API "
        "and Ollama export) instead of only the turns the template keeps (qwen3: those after the last user turn). "
        "Needs a named template.",
        wiring=ACTS,
    )
    tokenized_path: str | None = F(
        None, "Folder to save the tokenized dataset to, or to load it from when it already exists.", wiring=ACTS
    )
    data_shared_file_system: bool = F(
        False,
        "Multi-node runs: the nodes share a file system, so global rank 0 alone builds the data cache and every "
        "other rank reads it; off, the local rank 0 of each node builds that node's cache.",
        wiring=ACTS,
    )
    strict_data: bool = F(
        False,
        "Stop at the first invalid dataset row instead of reporting, counting and skipping it.",
        lf_default=None,
        wiring=ACTS,
    )
    allow_template_mismatch: bool = F(
        False,
        "Train even when the chat template's special tokens are missing from the tokenizer's vocabulary.",
        lf_default=None,
        wiring=ACTS,
    )
