"""Which model to load and how: paths, tokenizer, attention, kernels, RoPE, multimodal limits."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class ModelSection(Section):
    """Which model to load and how: paths, tokenizer, attention, kernels, RoPE, multimodal limits."""

    model_name_or_path: str | None = F(None, "")
    adapter_name_or_path: str | None = F(None, "")
    adapter_folder: str | None = F(None, "")
    cache_dir: str | None = F(None, "")
    use_fast_tokenizer: bool = F(True, "")
    resize_vocab: bool = F(False, "")
    split_special_tokens: bool = F(False, "")
    add_tokens: str | None = F(None, "")
    add_special_tokens: str | None = F(None, "")
    new_special_tokens_config: str | None = F(None, "")
    init_special_tokens: Literal['noise_init', 'desc_init', 'desc_init_w_noise'] = F('noise_init', "")
    model_revision: str = F('main', "")
    low_cpu_mem_usage: bool = F(True, "")
    rope_scaling: Literal['linear', 'dynamic', 'yarn', 'llama3'] | None = F(None, "")
    flash_attn: Literal['auto', 'disabled', 'sdpa', 'fa2', 'fa3'] = F('auto', "")
    shift_attn: bool = F(False, "")
    mixture_of_depths: Literal['convert', 'load'] | None = F(None, "")
    use_unsloth: bool = F(False, "")
    use_unsloth_gc: bool = F(False, "")
    enable_liger_kernel: bool = F(False, "")
    moe_aux_loss_coef: float | None = F(None, "")
    disable_gradient_checkpointing: bool = F(False, "")
    use_reentrant_gc: bool = F(True, "")
    upcast_layernorm: bool = F(False, "")
    upcast_lmhead_output: bool = F(False, "")
    train_from_scratch: bool = F(False, "")
    offload_folder: str = F('offload', "")
    use_v1_kernels: bool | None = F(False, "")
    hf_hub_token: str | None = F(None, "")
    ms_hub_token: str | None = F(None, "")
    om_hub_token: str | None = F(None, "")
    print_param_status: bool = F(False, "")
    trust_remote_code: bool = F(False, "")
    image_max_pixels: int = F(589824, "")
    image_min_pixels: int = F(1024, "")
    image_do_pan_and_scan: bool = F(False, "")
    crop_to_patches: bool = F(False, "")
    video_max_pixels: int = F(65536, "")
    video_min_pixels: int = F(256, "")
    video_fps: float = F(2.0, "")
    video_maxlen: int = F(128, "")
    use_audio_in_video: bool = F(False, "")
    audio_sampling_rate: int = F(16000, "")
    use_kt: bool = F(False, "")
    kt_weight_path: str | None = F(None, "")
    kt_expert_checkpoint_path: str | None = F(None, "")
    kt_use_lora_experts: bool | None = F(None, "")
    kt_lora_expert_num: int | None = F(None, "")
    kt_lora_expert_intermediate_size: int | None = F(None, "")
