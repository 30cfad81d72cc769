"""Trainer settings: batch sizes, schedule, precision, logging, evaluation, checkpoints."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section, no_op


class TrainingSection(Section):
    """Trainer settings: batch sizes, schedule, precision, logging, evaluation, checkpoints."""

    compute_accuracy: bool = F(
        False, "During evaluation, also report token-level accuracy of next-token predictions (SFT, PT).", wiring=ACTS
    )
    disable_shuffling: bool = F(
        False, "Feed training examples in dataset order instead of shuffling them.", wiring=ACTS
    )
    early_stopping_steps: int | None = F(
        None, "Stop when the evaluation metric has not improved for this many evaluations; unset disables.", wiring=ACTS
    )
    plot_loss: bool = F(
        False,
        "Save PNG plots of the training and evaluation loss curves to output_dir when training ends.",
        wiring=ACTS,
    )
    include_effective_tokens_per_second: bool = F(
        False, "Report throughput counting only non-padding tokens (effective tokens per second).", wiring=ACTS
    )
    seed: int = F(
        42, "Random seed set at the start of training, for reproducible initialisation and shuffling.", wiring=ACTS
    )
    output_dir: str | None = F(
        None, "Directory where checkpoints, the final model or adapter, logs and metrics are written.", wiring=ACTS
    )
    per_device_train_batch_size: int = F(8, "Training examples per device per forward pass.", wiring=ACTS)
    num_train_epochs: float = F(
        3.0, "Number of passes over the training data (may be fractional); ignored when max_steps > 0.", wiring=ACTS
    )
    max_steps: int = F(
        -1, "Total optimizer steps to run; overrides num_train_epochs when positive, -1 disables it.", wiring=ACTS
    )
    learning_rate: float = F(5e-05, "Peak learning rate of the optimizer, reached after warmup.", wiring=ACTS)
    lr_scheduler_type: str = F(
        "linear",
        "Learning-rate schedule, as in transformers' SchedulerType (e.g. linear, cosine, constant_with_warmup).",
        wiring=ACTS,
    )
    lr_scheduler_kwargs: dict | str | None = F(
        None, "Extra arguments for the learning-rate scheduler, as a dict or a JSON string.", wiring=ACTS
    )
    warmup_steps: float = F(
        0,
        "Linear warmup from 0 to learning_rate: a whole number of steps, or a fraction in [0, 1) of all steps.",
        wiring=ACTS,
    )
    optim: str = F(
        "adamw_torch_fused",
        "Optimizer name, as in transformers' OptimizerNames (e.g. adamw_torch, adamw_8bit, adafactor).",
        wiring=ACTS,
    )
    optim_args: str | None = F(None, "Extra optimizer arguments as comma-separated key=value pairs.", wiring=ACTS)
    weight_decay: float = F(
        0.0, "Weight decay applied by the optimizer to all weights except biases and normalization layers.", wiring=ACTS
    )
    adam_beta1: float = F(0.9, "Adam beta1: decay rate of the first-moment (mean) estimate.", wiring=ACTS)
    adam_beta2: float = F(0.999, "Adam beta2: decay rate of the second-moment (variance) estimate.", wiring=ACTS)
    adam_epsilon: float = F(
        1e-08, "Adam epsilon: small constant added to the denominator for numerical stability.", wiring=ACTS
    )
    optim_target_modules: list[str] | str | None = F(
        None,
        "Module names (list or regex) that GaLore/APOLLO-style optimizers from transformers apply to.",
        wiring=ACTS,
    )
    gradient_accumulation_steps: int = F(
        1, "Forward/backward passes whose gradients are summed before each optimizer step.", wiring=ACTS
    )
    average_tokens_across_devices: bool = F(
        True,
        "Count loss tokens over all devices so the loss is normalised exactly in distributed training.",
        wiring=ACTS,
    )
    max_grad_norm: float = F(1.0, "Clip the global gradient norm to this value; 0 disables clipping.", wiring=ACTS)
    label_smoothing_factor: float = F(
        0.0, "Label smoothing: fraction of target probability spread over all tokens; 0 disables it.", wiring=ACTS
    )
    bf16: bool = F(False, "Train with bfloat16 mixed precision (needs hardware bf16 support).", wiring=ACTS)
    fp16: bool = F(False, "Train with float16 mixed precision and loss scaling (GPU only).", wiring=ACTS)
    bf16_full_eval: bool = F(
        False,
        "Run evaluation fully in bfloat16 instead of mixed precision; faster, slightly less accurate.",
        wiring=ACTS,
    )
    fp16_full_eval: bool = F(
        False,
        "Run evaluation fully in float16 instead of mixed precision; faster, slightly less accurate.",
        wiring=ACTS,
    )
    tf32: bool | None = F(
        None,
        "Allow TensorFloat-32 matrix math on Ampere or newer NVIDIA GPUs; unset keeps PyTorch's default.",
        wiring=ACTS,
    )
    gradient_checkpointing: bool = F(
        False,
        "HF Trainer's gradient checkpointing flag; tuneforge enables checkpointing itself unless "
        "disable_gradient_checkpointing is set.",
        wiring=no_op(
            "tuneforge turns gradient checkpointing on itself; switch it off with "
            "`disable_gradient_checkpointing: true`"
        ),
    )
    gradient_checkpointing_kwargs: dict | str | None = F(
        None, "Extra arguments for gradient checkpointing (e.g. use_reentrant), as a dict or JSON string.", wiring=ACTS
    )
    torch_compile: bool = F(False, "Compile the model with torch.compile before training.", wiring=ACTS)
    torch_compile_backend: str | None = F(
        None, "torch.compile backend (e.g. inductor); setting it enables torch_compile.", wiring=ACTS
    )
    torch_compile_mode: str | None = F(
        None,
        "torch.compile mode (e.g. default, reduce-overhead, max-autotune); setting it enables torch_compile.",
        wiring=ACTS,
    )
    use_liger_kernel: bool = F(
        False,
        "Let HF Trainer apply Liger kernels to the model (GPU and the optional liger-kernel package only).",
        wiring=ACTS,
    )
    liger_kernel_config: dict | None = F(
        None, "Which Liger kernels HF Trainer applies (e.g. rope, rms_norm, fused_linear_cross_entropy).", wiring=ACTS
    )
    max_tokens_per_batch: int | None = F(
        None,
        "Token-budget batching (pt/sft; batches become padding-free): group samples "
        "so each batch holds at most this many real tokens (a longer sample gets a batch of its own); "
        "per_device_train_batch_size is then ignored for training. Unset uses fixed-size batches.",
        lf_default=None,
        wiring=ACTS,
    )
    fuse_micro_batches: Literal["auto", "on", "off"] = F(
        "auto",
        "Run per_device_train_batch_size x gradient_accumulation_steps samples as ONE padding-free batch "
        "(same token-weighted loss and gradients, fewer kernel launches). auto: on for sft/pt on a CUDA GPU "
        "when the fused batch holds at most 32768 tokens (cutoff_len x samples); on: always; off: never.",
        lf_default=None,
        wiring=ACTS,
    )
    speed_kernels: Literal["auto", "liger", "torch", "off"] = F(
        "auto",
        "Fused training kernels. auto: on a CUDA GPU, Liger kernels (fused RMSNorm/RoPE/SwiGLU and linear + "
        "cross-entropy) for qwen2/qwen3/llama when liger-kernel is installed, else tuneforge's chunked "
        "linear + cross-entropy (no full logits) for vocabularies over 65536; off on CPU. liger: require "
        "Liger; torch: the chunked cross-entropy on any device; off: the model's own forward.",
        lf_default=None,
        wiring=ACTS,
    )
    use_cache: bool = F(
        False,
        "Keep the model's KV cache enabled during training; normally off since training does not need it.",
        wiring=ACTS,
    )
    neftune_noise_alpha: float | None = F(
        None,
        "NEFTune: scale of uniform noise added to input embeddings during training (e.g. 5); unset disables.",
        wiring=ACTS,
    )
    torch_empty_cache_steps: int | None = F(
        None, "Empty the accelerator memory cache every this many steps to lower peak memory; unset never.", wiring=ACTS
    )
    auto_find_batch_size: bool = F(
        False, "Halve the batch size and retry when running out of memory (needs the accelerate package).", wiring=ACTS
    )
    logging_strategy: Literal["no", "steps", "epoch"] = F(
        "steps",
        "When to log training metrics: never, every logging_steps steps, or at the end of each epoch.",
        wiring=ACTS,
    )
    logging_steps: float = F(
        500, "Steps between log entries; a value below 1 is a fraction of total steps.", wiring=ACTS
    )
    logging_first_step: bool = F(False, "Also log the metrics of the very first step.", wiring=ACTS)
    log_on_each_node: bool = F(
        True,
        "In multi-node training, log from the main process of every node instead of only the first node.",
        wiring=ACTS,
    )
    logging_nan_inf_filter: bool = F(
        True,
        "Replace NaN or infinite losses in the logs with the recent average; training itself is unaffected.",
        wiring=ACTS,
    )
    include_num_input_tokens_seen: str | bool = F(
        "no", "Track the number of input tokens seen: all, non_padding, or no (true/false map to all/no).", wiring=ACTS
    )
    log_level: str = F(
        "passive",
        "Logging verbosity of the main process (debug, info, warning, error, critical, or passive to leave it).",
        wiring=ACTS,
    )
    log_level_replica: str = F(
        "warning",
        "Logging verbosity of replica processes in distributed training; same values as log_level.",
        wiring=ACTS,
    )
    disable_tqdm: bool | None = F(
        None, "Hide progress bars; unset hides them only when logging is at warning level or quieter.", wiring=ACTS
    )
    report_to: list[str] | str | None = F(
        "none",
        "Experiment trackers to send logs to (e.g. tensorboard, wandb, mlflow, trackio); none or all.",
        wiring=ACTS,
    )
    run_name: str | None = F(None, "Name of the run shown by experiment trackers.", wiring=ACTS)
    project: str = F(
        "huggingface",
        "Project name used by experiment trackers that group runs into projects (currently Trackio).",
        wiring=ACTS,
    )
    trackio_space_id: str | None = F(
        None, "Trackio: Hugging Face Space id for live dashboards; unset logs to a local directory only.", wiring=ACTS
    )
    trackio_bucket_id: str | None = F(
        None, "Trackio: Hugging Face Bucket id that stores the logs; unset lets Trackio derive one.", wiring=ACTS
    )
    trackio_static_space_id: str | Literal[False] | None = F(
        None, "Trackio: Space id of a static dashboard created after training; false creates none.", wiring=ACTS
    )
    eval_strategy: Literal["no", "steps", "epoch"] = F(
        "no", "When to evaluate: never, every eval_steps steps, or at the end of each epoch.", wiring=ACTS
    )
    eval_steps: float | None = F(
        None,
        "Steps between evaluations; a value below 1 is a fraction of total steps. Unset uses logging_steps.",
        wiring=ACTS,
    )
    eval_delay: float = F(0, "Epochs or steps (per eval_strategy) to wait before the first evaluation.", wiring=ACTS)
    per_device_eval_batch_size: int = F(8, "Evaluation examples per device per forward pass.", wiring=ACTS)
    prediction_loss_only: bool = F(
        False, "During evaluation and prediction, return only the loss, not logits or labels.", wiring=ACTS
    )
    eval_on_start: bool = F(False, "Run one evaluation before training starts, as a sanity check.", wiring=ACTS)
    eval_do_concat_batches: bool = F(
        True, "Concatenate evaluation outputs across batches; false keeps them as a list of batches.", wiring=ACTS
    )
    eval_use_gather_object: bool = F(
        False, "Gather non-tensor evaluation outputs from all devices as Python objects (slower).", wiring=ACTS
    )
    eval_accumulation_steps: int | None = F(
        None, "Move accumulated evaluation outputs to the CPU every this many steps to save device memory.", wiring=ACTS
    )
    include_for_metrics: list[str] = F([], "Extra data passed to compute_metrics: inputs and/or loss.", wiring=ACTS)
    batch_eval_metrics: bool = F(
        False, "Compute evaluation metrics batch by batch instead of holding all logits in memory.", wiring=ACTS
    )
    save_only_model: bool = F(
        False,
        "Save only model weights in checkpoints, without optimizer and scheduler state; such checkpoints "
        "cannot be resumed.",
        wiring=ACTS,
    )
    save_strategy: Literal["no", "steps", "epoch", "best"] = F(
        "steps",
        "When to save checkpoints: never, every save_steps steps, each epoch, or whenever the best metric improves.",
        wiring=ACTS,
    )
    save_steps: float = F(500, "Steps between checkpoints; a value below 1 is a fraction of total steps.", wiring=ACTS)
    save_on_each_node: bool = F(
        False,
        "In multi-node training, save on every node instead of only the main one (for unshared storage).",
        wiring=ACTS,
    )
    save_total_limit: int | None = F(
        None, "Keep at most this many checkpoints, deleting the oldest; unset keeps all.", wiring=ACTS
    )
    enable_jit_checkpoint: bool = F(
        False, "Save a checkpoint when the job receives SIGTERM, for preemptible clusters.", wiring=ACTS
    )
    push_to_hub: bool = F(False, "Push the model to the Hugging Face Hub on every save.", wiring=ACTS)
    hub_token: str | None = F(
        None, "Access token for pushing to the Hugging Face Hub; the HF_TOKEN variable also works.", wiring=ACTS
    )
    hub_private_repo: bool | None = F(
        None, "Create the Hub repository as private; unset follows the organisation's default.", wiring=ACTS
    )
    hub_model_id: str | None = F(
        None, "Hub repository to push to (user/name); unset uses the name of output_dir.", wiring=ACTS
    )
    hub_strategy: Literal["end", "every_save", "checkpoint", "all_checkpoints"] = F(
        "every_save",
        "What to push and when: the final model only, every save, the latest checkpoint, or all checkpoints.",
        wiring=ACTS,
    )
    hub_always_push: bool = F(
        False, "Push every save even if the previous push has not finished, instead of skipping it.", wiring=ACTS
    )
    hub_revision: str | None = F(None, "Branch, tag or commit of the Hub repository to push to.", wiring=ACTS)
    load_best_model_at_end: bool = F(
        False,
        "Reload the best checkpoint (by metric_for_best_model) when training ends; needs matching save and "
        "eval strategies.",
        wiring=ACTS,
    )
    metric_for_best_model: str | None = F(
        None,
        "Evaluation metric that decides the best checkpoint (e.g. eval_loss, or loss without the prefix).",
        wiring=ACTS,
    )
    greater_is_better: bool | None = F(
        None, "Whether a higher metric_for_best_model is better; unset means true except for loss metrics.", wiring=ACTS
    )
    ignore_data_skip: bool = F(
        False,
        "When resuming, do not fast-forward the data loader to where it stopped; faster, but data order changes.",
        wiring=ACTS,
    )
    restore_callback_states_from_checkpoint: bool = F(
        False, "When resuming, also restore callback states saved in the checkpoint.", wiring=ACTS
    )
    full_determinism: bool = F(
        False, "Make training fully deterministic with PyTorch's deterministic algorithms; slower.", wiring=ACTS
    )
    data_seed: int | None = F(None, "Seed for data sampling only, independent of seed; unset uses seed.", wiring=ACTS)
    use_cpu: bool = F(False, "Train on the CPU even when an accelerator is available.", wiring=ACTS)
    accelerator_config: dict | str | None = F(
        None, "Extra settings for the accelerate Accelerator, as a dict, JSON string or file path.", wiring=ACTS
    )
    parallelism_config: dict | None = F(
        None, "accelerate ParallelismConfig for combined data, tensor and context parallelism (multi-GPU).", wiring=ACTS
    )
    dataloader_drop_last: bool = F(False, "Drop the last incomplete batch of each epoch.", wiring=ACTS)
    dataloader_num_workers: int = F(0, "Worker processes for data loading; 0 loads in the main process.", wiring=ACTS)
    dataloader_pin_memory: bool = F(
        True, "Use pinned host memory in data loaders for faster transfers to the GPU.", wiring=ACTS
    )
    dataloader_persistent_workers: bool = F(
        False, "Keep data-loader worker processes alive between epochs (needs num_workers > 0).", wiring=ACTS
    )
    dataloader_prefetch_factor: int | None = F(
        None, "Batches each data-loader worker prefetches (needs num_workers > 0).", wiring=ACTS
    )
    remove_unused_columns: bool = F(
        True, "Drop dataset columns the model's forward does not accept before batching.", wiring=ACTS
    )
    label_names: list[str] | None = F(
        None, "Names of the input keys that hold labels; unset uses the model's defaults.", wiring=ACTS
    )
    train_sampling_strategy: str = F(
        "random", "Training sampler: random, sequential, group_by_length or batch_rebalance.", wiring=ACTS
    )
    length_column_name: str = F(
        "length", "Dataset column with precomputed example lengths, used by length-grouped sampling.", wiring=ACTS
    )
    ddp_find_unused_parameters: bool | None = F(
        None,
        "DDP: look for parameters that get no gradient each step (multi-process); unset: false for LoRA (as "
        "LLaMA-Factory), else the Trainer's choice (false with gradient checkpointing).",
        wiring=ACTS,
    )
    ddp_bucket_cap_mb: int | None = F(None, "DDP: gradient bucket size in MB for all-reduce (multi-GPU).", wiring=ACTS)
    ddp_broadcast_buffers: bool | None = F(
        None, "DDP: broadcast model buffers from rank 0 at every forward (multi-GPU).", wiring=ACTS
    )
    ddp_static_graph: bool | None = F(
        None, "DDP: declare that the set of used parameters never changes between steps (multi-GPU).", wiring=ACTS
    )
    ddp_backend: str | None = F(
        None,
        "Distributed backend: nccl (NVIDIA GPUs), gloo (CPU), or another supported by PyTorch; unset: gloo on CPU, "
        "the device's default elsewhere.",
        wiring=ACTS,
    )
    ddp_timeout: int = F(1800, "Timeout in seconds for distributed collective operations.", wiring=ACTS)
    fsdp: list[str] | str | None = F(
        None,
        "Fully Sharded Data Parallel (FSDP2 by default) options, e.g. `full_shard auto_wrap`; needs several "
        "processes (more than one GPU, or FORCE_TORCHRUN=1). FSDP2 shards on CPU processes (gloo) too; FSDP1 on "
        "CPU runs as plain DDP with a warning.",
        wiring=ACTS,
    )
    fsdp_config: dict | str | None = F(
        None,
        "FSDP settings, as a dict, JSON string or path to a JSON file, e.g. `{fsdp_version: 2}` (the default).",
        wiring=ACTS,
    )
    deepspeed: dict | str | None = F(
        None,
        "DeepSpeed config: a stage name (z0, z2, z3, z3_offload: the files in examples/deepspeed/), a JSON file or "
        "a dict; `auto` values come from the training keys. Validated by DeepSpeed before launch; needs "
        "pip install 'tuneforge[deepspeed]' and CUDA GPUs.",
        wiring=ACTS,
    )
    debug: list[str] | str = F(
        "", "HF debug features: underflow_overflow (detect inf/NaN activations) or tpu_metrics_debug.", wiring=ACTS
    )
    skip_memory_metrics: bool = F(True, "Skip memory-usage metrics, which slow training down.", wiring=ACTS)
    do_train: bool = F(False, "Run training.", wiring=ACTS)
    do_eval: bool = F(False, "Run evaluation on the evaluation set.", wiring=ACTS)
    do_predict: bool = F(False, "Run prediction on the evaluation set and save the generated outputs.", wiring=ACTS)
    resume_from_checkpoint: str | None = F(
        None,
        "Checkpoint directory to resume training from, restoring optimizer, scheduler and data position.",
        wiring=ACTS,
    )
    warmup_ratio: float | None = F(
        None,
        "Fraction of total steps used for linear warmup (the transformers 4 key); applied as a fractional "
        "warmup_steps, which takes precedence when both are set.",
        wiring=ACTS,
        ge=0,
        le=1,
    )
    logging_dir: str | None = F(
        None, "Directory for TensorBoard logs; unset uses a folder inside output_dir.", wiring=ACTS
    )
    local_rank: int = F(
        -1, "Rank of this process on its node, set by the distributed launcher; do not set it by hand.", wiring=ACTS
    )
    sortish_sampler: bool = F(
        False,
        "Sample training batches of roughly similar length to reduce padding.",
        wiring=no_op(
            "transformers 5 no longer implements it; use `train_sampling_strategy: group_by_length` for "
            "length-grouped batches"
        ),
    )
    predict_with_generate: bool = F(
        False,
        "During evaluation and prediction, generate text and compute text metrics instead of only the loss.",
        wiring=ACTS,
    )
    generation_max_length: int | None = F(
        None,
        "Maximum length when generating during evaluation; unset uses the model's generation config.",
        wiring=no_op(
            "prediction generates with `num_beams` and `max_new_tokens`, which take precedence over this key "
            "in LLaMA-Factory too"
        ),
    )
    generation_num_beams: int | None = F(
        None,
        "Beams when generating during evaluation; unset uses the model's generation config.",
        wiring=no_op(
            "prediction generates with `num_beams` and `max_new_tokens`, which take precedence over this key "
            "in LLaMA-Factory too"
        ),
    )
    generation_config: str | None = F(
        None, "Path or Hub id of a GenerationConfig to use when generating during evaluation.", wiring=ACTS
    )
    master_addr: str | None = F(
        None,
        "Address of the node with NODE_RANK=0 for the torchrun launch; the MASTER_ADDR variable wins when set. "
        "With USE_RAY=1 Ray Train picks the address itself (a warning says this key has no effect).",
        wiring=ACTS,
    )
    master_port: str | None = F(
        None,
        "Rendezvous port for the torchrun launch (the same on every node); the MASTER_PORT variable wins when set.",
        wiring=ACTS,
    )
    fp8: bool = F(
        False,
        "Train the linear layers with FP8 matmuls through torchao (pip install 'tuneforge[fp8]'); needs an NVIDIA "
        "GPU of compute capability 8.9+ (Ada, Hopper, Blackwell) and stops elsewhere; not with quantization.",
        wiring=ACTS,
    )
    fp8_backend: str = F(
        "auto",
        "FP8 implementation: auto or torchao (the same); te (Transformer Engine) and msamp are refused.",
        wiring=ACTS,
    )
    fp8_enable_fsdp_float8_all_gather: bool = F(
        False,
        "FP8 with FSDP2: all-gather weights in float8 (tensorwise scaling) to save communication; implies fp8.",
        wiring=ACTS,
    )
    overwrite_output_dir: bool = F(
        False, "Allow writing into a non-empty output_dir instead of stopping with an error.", wiring=ACTS
    )
