"""Which model to load and how: paths, tokenizer, attention, kernels, RoPE, multimodal limits."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section
from tuneforge.config.lists import CommaList, split_list


class ModelSection(Section):
    """Which model to load and how: paths, tokenizer, attention, kernels, RoPE, multimodal limits."""

    model_name_or_path: str | None = F(
        None,
        "Local directory or Hugging Face Hub id of the base model and its tokenizer.",
    )
    adapter_name_or_path: CommaList = F(
        None,
        "Comma-separated paths or Hub ids of trained LoRA/OFT adapters to apply to the base model, in order.",
    )
    adapter_folder: str | None = F(
        None,
        "Folder holding adapter weights to load with the model, as an alternative to adapter_name_or_path.",
    )
    cache_dir: str | None = F(
        None,
        "Where downloaded models and Hub files are cached; unset uses the Hugging Face default cache.",
    )
    use_fast_tokenizer: bool = F(True, "Load the Rust-backed fast tokenizer when the model ships one.")
    resize_vocab: bool = F(
        False,
        "Resize the input embeddings and output layer to the tokenizer's vocabulary size (needed after adding tokens).",
    )
    split_special_tokens: bool = F(
        False,
        "Tokenize special-token strings that appear in the text as plain text instead of single special tokens.",
    )
    add_tokens: str | None = F(
        None,
        "Comma-separated ordinary tokens to add to the tokenizer; the embeddings grow to fit.",
    )
    add_special_tokens: str | None = F(
        None,
        "Comma-separated special tokens to add to the tokenizer; the embeddings grow to fit.",
    )
    new_special_tokens_config: str | None = F(
        None,
        "YAML file listing new special tokens with a text description each, used by the desc_init methods; "
        "takes precedence over add_special_tokens.",
    )
    init_special_tokens: Literal["noise_init", "desc_init", "desc_init_w_noise"] = F(
        "noise_init",
        "How the embeddings of added special tokens start. noise_init: mean embedding plus noise; "
        "desc_init: mean of the description's token embeddings; desc_init_w_noise: both.",
    )
    model_revision: str = F("main", "Model version to fetch from the Hub: a branch name, tag or commit id.")
    low_cpu_mem_usage: bool = F(
        True,
        "Load weights straight into the model without a temporary full copy, lowering peak CPU memory.",
    )
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = F(
        None,
        "RoPE scaling method used to stretch the context window beyond the model's trained length.",
    )
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2", "fa3"] = F(
        "auto",
        "Attention implementation: auto picks the best available, disabled means eager, sdpa is PyTorch's "
        "fused kernel, fa2/fa3 need flash-attn on a GPU.",
    )
    shift_attn: bool = F(
        False,
        "Use LongLoRA's shifted sparse attention (S2-Attn) while training long contexts; LLaMA-style models only.",
    )
    mixture_of_depths: Literal["convert", "load"] | None = F(
        None,
        "Mixture of depths: convert routes only the router's top tokens through every second decoder layer "
        "(capacity falling from 1 to 1/8 over training); load loads a model saved after convert. llama, mistral, "
        "mixtral, gemma, phi and starcoder2 models; padded batches only (no neat_packing / max_tokens_per_batch).",
    )
    use_unsloth: bool = F(
        False,
        "Train LoRA with Unsloth's optimised kernels (GPU and the optional unsloth package only).",
    )
    use_unsloth_gc: bool = F(
        False,
        "Use Unsloth's offloaded gradient checkpointing to save GPU memory (needs the optional unsloth package).",
    )
    enable_liger_kernel: bool = F(
        False,
        "Patch the model with Liger Triton kernels (RMSNorm, RoPE, SwiGLU, fused cross-entropy); GPU and "
        "the optional liger-kernel package only.",
    )
    moe_aux_loss_coef: float | None = F(
        None,
        "Weight of the mixture-of-experts router load-balancing loss; unset keeps the model config's value.",
    )
    disable_gradient_checkpointing: bool = F(
        False,
        "Turn off gradient checkpointing, which is on by default to trade recomputation for activation memory.",
    )
    use_reentrant_gc: bool = F(
        True,
        "Use PyTorch's reentrant gradient checkpointing; false selects the non-reentrant implementation.",
    )
    upcast_layernorm: bool = F(
        False,
        "Keep normalization-layer weights in float32 when training in half precision, for stability.",
    )
    upcast_lmhead_output: bool = F(
        False,
        "Cast the language-model head's output logits to float32 before the loss.",
    )
    train_from_scratch: bool = F(
        False,
        "Build the model from its config with random weights instead of loading the pretrained ones.",
    )
    offload_folder: str = F(
        "offload",
        "Folder for weights offloaded to disk when the model does not fit in device and CPU memory.",
    )
    use_v1_kernels: bool | None = F(
        False,
        "Swap in LLaMA-Factory v1's high-performance training kernels where the model supports them (GPU-oriented).",
    )
    hf_hub_token: str | None = F(
        None,
        "Access token for the Hugging Face Hub (private or gated models); the HF_TOKEN variable also works.",
    )
    ms_hub_token: str | None = F(None, "Access token for the ModelScope Hub.")
    om_hub_token: str | None = F(None, "Access token for the Modelers (openMind) Hub.")
    print_param_status: bool = F(
        False,
        "After the model is prepared, print every parameter's name, dtype, device and trainable flag.",
    )
    trust_remote_code: bool = F(
        False,
        "Allow running Python code shipped in a model or dataset repository (custom architectures); enable "
        "only for sources you trust.",
    )
    image_max_pixels: int = F(
        589824,
        "Images with more pixels (width x height) than this are downscaled before encoding.",
    )
    image_min_pixels: int = F(
        1024,
        "Images with fewer pixels (width x height) than this are upscaled before encoding.",
    )
    image_do_pan_and_scan: bool = F(
        False,
        "Gemma 3 pan-and-scan: also encode crops of large images besides the resized whole image.",
    )
    crop_to_patches: bool = F(
        False,
        "Split each image into tiles before encoding, for processors that support it (e.g. InternVL).",
    )
    video_max_pixels: int = F(
        65536,
        "Video frames with more pixels (width x height) than this are downscaled.",
    )
    video_min_pixels: int = F(256, "Video frames with fewer pixels (width x height) than this are upscaled.")
    video_fps: float = F(2.0, "Frames sampled per second of video.")
    video_maxlen: int = F(128, "Maximum number of frames sampled from one video.")
    use_audio_in_video: bool = F(
        False,
        "Also feed each video's audio track to the model (omni models such as Qwen2.5-Omni).",
    )
    audio_sampling_rate: int = F(16000, "Sample rate in Hz that audio inputs are resampled to.")
    use_kt: bool = F(
        False,
        "Run MoE expert layers through KTransformers' CPU kernels (GPU and the optional ktransformers package only).",
    )
    kt_weight_path: str | None = F(
        None,
        "KTransformers: folder of preprocessed (e.g. INT8) expert weights to load instead of converting online.",
    )
    kt_expert_checkpoint_path: str | None = F(
        None,
        "KTransformers: safetensors expert checkpoint converted online when kt_weight_path is unset.",
    )
    kt_use_lora_experts: bool | None = F(
        None,
        "KTransformers: add extra GPU-side LoRA experts to each MoE layer (legacy option).",
    )
    kt_lora_expert_num: int | None = F(None, "KTransformers: number of GPU-side LoRA experts per MoE layer.")
    kt_lora_expert_intermediate_size: int | None = F(
        None,
        "KTransformers: intermediate (feed-forward) size of each GPU-side LoRA expert.",
    )

    @property
    def adapters(self) -> list[str]:
        """`adapter_name_or_path` as a list, in the order they are applied."""
        return split_list(self.adapter_name_or_path)
