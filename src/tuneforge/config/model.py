"""Which model to load and how: paths, tokenizer, attention, kernels, RoPE, multimodal limits."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section, no_op, only_with, refused
from tuneforge.config.lists import CommaList, split_list


class ModelSection(Section):
    """Which model to load and how: paths, tokenizer, attention, kernels, RoPE, multimodal limits."""

    model_name_or_path: str | None = F(
        None, "Local directory or Hugging Face Hub id of the base model and its tokenizer.", wiring=ACTS
    )
    adapter_name_or_path: CommaList = F(
        None,
        "Comma-separated paths or Hub ids of trained LoRA/OFT adapters to apply to the base model, in order.",
        wiring=ACTS,
    )
    adapter_folder: str | None = F(
        None,
        "Folder holding adapter weights to load with the model, as an alternative to adapter_name_or_path.",
        wiring=ACTS,
    )
    cache_dir: str | None = F(
        None,
        "Where downloaded models and Hub files are cached; unset uses the Hugging Face default cache.",
        wiring=ACTS,
    )
    use_fast_tokenizer: bool = F(True, "Load the Rust-backed fast tokenizer when the model ships one.", wiring=ACTS)
    resize_vocab: bool = F(
        False,
        "Resize the input embeddings and output layer to the tokenizer's vocabulary size (needed after adding tokens).",
        wiring=ACTS,
    )
    split_special_tokens: bool = F(
        False,
        "Tokenize special-token strings that appear in the text as plain text instead of single special tokens.",
        wiring=ACTS,
    )
    add_tokens: str | None = F(
        None, "Comma-separated ordinary tokens to add to the tokenizer; the embeddings grow to fit.", wiring=ACTS
    )
    add_special_tokens: str | None = F(
        None, "Comma-separated special tokens to add to the tokenizer; the embeddings grow to fit.", wiring=ACTS
    )
    new_special_tokens_config: str | None = F(
        None,
        "YAML file mapping each new special token to a text description (`<|tool_start|>: Marks the start of a "
        "tool call`), read by the desc_init methods; its tokens replace add_special_tokens.",
        wiring=ACTS,
    )
    init_special_tokens: Literal["noise_init", "desc_init", "desc_init_w_noise"] = F(
        "noise_init",
        "How the embedding rows of new tokens start (input embeddings and an untied output layer). noise_init: "
        "the mean row plus noise; desc_init: the mean row of the description's words (new_special_tokens_config); "
        "desc_init_w_noise: that plus noise.",
        wiring=ACTS,
    )
    model_revision: str = F(
        "main", "Model version to fetch from the Hub: a branch name, tag or commit id.", wiring=ACTS
    )
    low_cpu_mem_usage: bool = F(
        True,
        "Load weights straight into the model without a temporary full copy, lowering peak CPU memory.",
        wiring=ACTS,
    )
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = F(
        None, "RoPE scaling method used to stretch the context window beyond the model's trained length.", wiring=ACTS
    )
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2", "fa3"] = F(
        "auto",
        "Attention implementation: auto picks the best available, disabled means eager, sdpa is PyTorch's "
        "fused kernel, fa2/fa3 need flash-attn on a GPU.",
        wiring=ACTS,
    )
    shift_attn: bool = F(
        False,
        "Train with LongLoRA's shifted short attention (S2-Attn, 4 groups, half the heads shifted); llama, "
        "mistral, qwen2 and qwen3 models over sdpa or eager attention; evaluation uses full attention.",
        wiring=ACTS,
    )
    mixture_of_depths: Literal["convert", "load"] | None = F(
        None,
        "Mixture of depths: convert routes only the router's top tokens through every second decoder layer "
        "(capacity falling from 1 to 1/8 over training); load loads a model saved after convert. llama, mistral, "
        "mixtral, gemma, phi and starcoder2 models; padded batches only (no neat_packing / max_tokens_per_batch).",
        wiring=ACTS,
    )
    use_unsloth: bool = F(
        False,
        "Train LoRA with Unsloth's optimised kernels (GPU and the optional unsloth package only).",
        wiring=refused(
            "Unsloth is not supported; tuneforge's own fused kernels (`speed_kernels: auto`, Liger when "
            "installed) give the speed-up instead"
        ),
    )
    use_unsloth_gc: bool = F(
        False,
        "Offloaded gradient checkpointing (LLaMA-Factory's name, after Unsloth's): the activations checkpointing "
        "keeps go to pinned host memory, freeing layers x sequence x hidden of GPU memory for a slower step "
        "(transformers' offload). Warns that it has no effect on CPU or with disable_gradient_checkpointing.",
        wiring=ACTS,
    )
    enable_liger_kernel: bool = F(
        False,
        "Patch the model with Liger Triton kernels (RMSNorm, RoPE, SwiGLU, fused cross-entropy); GPU and "
        "the optional liger-kernel package only.",
        wiring=ACTS,
    )
    moe_aux_loss_coef: float | None = F(
        None,
        "Weight of the mixture-of-experts router load-balancing loss added to the training loss (Mixtral, "
        "Qwen2/Qwen3-MoE, OLMoE, ...: turns the model's router logits on; the value is logged as `aux_loss`); "
        "unset or 0 keeps the model config as it is.",
        wiring=ACTS,
    )
    disable_gradient_checkpointing: bool = F(
        False,
        "Turn off gradient checkpointing, which is on by default to trade recomputation for activation memory.",
        wiring=ACTS,
    )
    use_reentrant_gc: bool = F(
        True,
        "Use PyTorch's reentrant gradient checkpointing; false selects the non-reentrant implementation.",
        wiring=ACTS,
    )
    upcast_layernorm: bool = F(
        False,
        "Keep normalization-layer weights in float32 when training in half precision, for stability.",
        wiring=ACTS,
    )
    upcast_lmhead_output: bool = F(
        False, "Cast the language-model head's output logits to float32 before the loss.", wiring=ACTS
    )
    train_from_scratch: bool = F(
        False,
        "Build the model from its config with random weights instead of loading the pretrained ones.",
        wiring=ACTS,
    )
    offload_folder: str = F(
        "offload",
        "Folder for weights offloaded to disk when the model does not fit in device and CPU memory.",
        wiring=ACTS,
    )
    use_v1_kernels: bool | None = F(
        False,
        "Swap in LLaMA-Factory v1's high-performance training kernels where the model supports them (GPU-oriented).",
        wiring=refused(
            "LLaMA-Factory v1 kernels are not part of tuneforge; fused kernels are chosen with `speed_kernels`"
        ),
    )
    hf_hub_token: str | None = F(
        None,
        "Access token for the Hugging Face Hub (private or gated models); the HF_TOKEN variable also works.",
        wiring=ACTS,
    )
    ms_hub_token: str | None = F(
        None,
        "Access token for the ModelScope Hub.",
        wiring=no_op("tuneforge loads models from local folders and the Hugging Face Hub only, never ModelScope"),
    )
    om_hub_token: str | None = F(
        None,
        "Access token for the Modelers (openMind) Hub.",
        wiring=no_op("tuneforge loads models from local folders and the Hugging Face Hub only, never Modelers"),
    )
    print_param_status: bool = F(
        False,
        "After the model is prepared, print every parameter's name, dtype, device and trainable flag.",
        wiring=ACTS,
    )
    trust_remote_code: bool = F(
        False,
        "Allow running Python code shipped in a model or dataset repository (custom architectures); enable "
        "only for sources you trust.",
        wiring=ACTS,
    )
    image_max_pixels: int = F(
        589824,
        "Images with more pixels (width x height) than this are downscaled before encoding.",
        wiring=ACTS,
    )
    image_min_pixels: int = F(
        1024,
        "Images with fewer pixels (width x height) than this are upscaled before encoding.",
        wiring=ACTS,
    )
    image_do_pan_and_scan: bool = F(
        False,
        "Gemma 3 pan-and-scan (media plugin gemma3): also encode up to 4 crops of wide or tall images besides "
        "the resized whole image.",
        wiring=ACTS,
    )
    crop_to_patches: bool = F(
        False,
        "InternVL (media plugin intern_vl): split each image into 1 to 12 tiles of the model's size plus a "
        "thumbnail before encoding, instead of one resized tile.",
        wiring=ACTS,
    )
    video_max_pixels: int = F(
        65536,
        "Video frames with more pixels (width x height) than this are downscaled.",
        wiring=ACTS,
    )
    video_min_pixels: int = F(
        256,
        "Video frames with fewer pixels (width x height) than this are upscaled.",
        wiring=ACTS,
    )
    video_fps: float = F(
        2.0,
        "Frames sampled per second of a video's duration (videos given as frame lists are taken whole).",
        wiring=ACTS,
    )
    video_maxlen: int = F(
        128,
        "Maximum number of frames sampled from one video.",
        wiring=ACTS,
    )
    use_audio_in_video: bool = F(
        False,
        "Also feed each video's audio track to the model (omni models such as Qwen2.5-Omni).",
        wiring=no_op(
            "interleaving a video's audio track with its frames is not built yet (the qwen2_omni plugin stops on "
            "it); give the audio as its own <audio> beside the <video>"
        ),
    )
    audio_sampling_rate: int = F(
        16000,
        "Sample rate in Hz that audio inputs are resampled to (must be the rate the model's feature extractor takes).",
        wiring=ACTS,
    )
    use_kt: bool = F(
        False,
        "Run MoE expert layers through KTransformers' CPU kernels (GPU and the optional ktransformers package only).",
        wiring=refused("KTransformers is not implemented in tuneforge yet (MoE CPU offload); remove `use_kt`"),
    )
    kt_weight_path: str | None = F(
        None,
        "KTransformers: folder of preprocessed (e.g. INT8) expert weights to load instead of converting online.",
        wiring=only_with("KTransformers", "use_kt"),
    )
    kt_expert_checkpoint_path: str | None = F(
        None,
        "KTransformers: safetensors expert checkpoint converted online when kt_weight_path is unset.",
        wiring=only_with("KTransformers", "use_kt"),
    )
    kt_use_lora_experts: bool | None = F(
        None,
        "KTransformers: add extra GPU-side LoRA experts to each MoE layer (legacy option).",
        wiring=only_with("KTransformers", "use_kt"),
    )
    kt_lora_expert_num: int | None = F(
        None,
        "KTransformers: number of GPU-side LoRA experts per MoE layer.",
        wiring=only_with("KTransformers", "use_kt"),
    )
    kt_lora_expert_intermediate_size: int | None = F(
        None,
        "KTransformers: intermediate (feed-forward) size of each GPU-side LoRA expert.",
        wiring=only_with("KTransformers", "use_kt"),
    )

    @property
    def adapters(self) -> list[str]:
        """`adapter_name_or_path` as a list, in the order they are applied (each inside `adapter_folder` if set)."""
        paths = split_list(self.adapter_name_or_path)
        return [f"{p.rstrip('/')}/{self.adapter_folder}" for p in paths] if self.adapter_folder else paths
