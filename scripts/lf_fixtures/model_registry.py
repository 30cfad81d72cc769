"""Write tuneforge's model registry (`src/tuneforge/models/registry.yaml`) from LLaMA-Factory 0.9.5's model list.

Run with LLaMA-Factory's own environment (not in CI), from the repository root:

    /work/lfvenv/bin/python scripts/lf_fixtures/model_registry.py

It reads the facts only (display name, Hugging Face hub id, the group's template, whether the group is multimodal)
from the `register_model_group(...)` calls of `llamafactory/extras/constants.py` by parsing that file, then adds
what LLaMA-Factory does not record: the family label, each model's architecture (`model_type` in its config.json)
and its size, from the rules below. Re-run it when the reference install changes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "src" / "tuneforge" / "models" / "registry.yaml"
CHAT_WORDS = ("-Chat", "-Distill", "-Instruct", "-Thinking")  # LLaMA-Factory's rule for a default template

# Family label of a group, by its first model's name, where the automatic label (the name up to its size) is
# ambiguous or too narrow.
FAMILY = {
    "DeepSeek-LLM-7B-Base": "DeepSeek",
    "DeepSeek-V2-0628-236B-Chat": "DeepSeek-V2/V3",
    "DeepSeek-R1-1.5B-Distill": "DeepSeek-R1",
    "MiMo-7B-VL-Instruct": "MiMo-VL-SFT",
    "MiMo-7B-VL-RL": "MiMo-VL",
    "Mistral-Small-3.1-24B-Base": "Mistral-Small-3.1",
    "Ministral-8B-Instruct-2410": "Ministral/Mistral-Nemo",
    "Granite-3.0-1B-A400M-Base": "Granite-3",
    "Granite-4.0-tiny-preview": "Granite-4",
    "Qwen3-0.6B-Base": "Qwen3",
    "Qwen3-4B-Instruct-2507": "Qwen3-2507-Instruct",
    "Qwen3-Omni-30B-A3B-Captioner": "Qwen3-Omni",
    "Qwen3-Omni-30B-A3B-Thinking": "Qwen3-Omni-Thinking",
    "Qwen3-VL-2B-Instruct": "Qwen3-VL",
    "Qwen3-VL-2B-Thinking": "Qwen3-VL-Thinking",
    "Qwen2-VL-2B": "Qwen2-VL",
    "Qwen2.5-Omni-3B": "Qwen2.5-Omni",
    "ERNIE-4.5-21B-A3B-Thinking": "ERNIE-4.5-Thinking",
    "ERNIE-4.5-0.3B-Instruct": "ERNIE-4.5",
    "Gemma-4-26B-A4B-Thinking": "Gemma-4",
    "Gemma-4-E2B-Thinking": "Gemma-4n",
    "Gemma-3n-E2B": "Gemma-3n",
    "GLM-4.1V-9B-Base": "GLM-4.1V",
    "GLM-4.5-Air-Base": "GLM-4.5",
    "GLM-4.5V-Air-Thinking": "GLM-4.5V",
    "GLM-Z1-0414-9B-Chat": "GLM-Z1",
    "GPT-2-Small": "GPT-2",
    "GPT-OSS-20B-Thinking": "GPT-OSS",
    "MiniMax-Text-01-Instruct": "MiniMax-M1",
    "MiniMax-M2-Thinking": "MiniMax-M2",
    "Hunyuan-0.5B-Instruct": "Hunyuan",
    "HY-MT1.5-1.8B-Instruct": "HY-MT",
    "InternLM2-7B": "InternLM2/3",
    "InternVL2.5-2B-MPO": "InternVL",
    "Kimi-VL-A3B-Instruct": "Kimi-VL",
    "LFM2.5-1.2B": "LFM2.5",
    "LLaVA-NeXT-Video-7B-32k-Chat": "LLaVA-NeXT-Video-Mistral",
    "Llama-4-Scout-17B-16E": "Llama-4",
    "Llama-3.2-11B-Vision": "Llama-3.2-Vision",
    "Mistral-7B-v0.1": "Mistral",
    "Mixtral-8x7B-v0.1": "Mixtral",
    "MiniCPM4-0.5B-Chat": "MiniCPM4",
    "Moonlight-16B-A3B": "Moonlight",
    "Phi-3-4B-4k-Instruct": "Phi-3",
    "Phi-3-7B-8k-Instruct": "Phi-3-small",
    "Phi-4-3.8B-instruct": "Phi-4-mini",
    "Qwen2.5-0.5B": "Qwen2.5",
    "Qwen3.5-0.8B-Base": "Qwen3.5",
    "Seed-OSS-36B-Base": "Seed-OSS",
    "Seed-Coder-8B-Base": "Seed-Coder",
    "Youtu-LLM-2B-Instruct": "Youtu-LLM",
    "Aeva-Flash-Chat": "Aeva",
    "dots.ocr": "dots.ocr",
    "GLM-OCR": "GLM-OCR",
    "GLM-4.7-Flash": "GLM-4.7",
    "Hy3-Preview": "Hy3",
    "Jamba-v0.1": "Jamba",
    "MiMo-V2-Flash-Base": "MiMo-V2",
    "Granite-Vision-3.2-2B": "Granite-Vision",
    "OLMo-1B": "OLMo",
    "OpenChat3.5-7B-Chat": "OpenChat-3.5",
    "OpenChat3.6-8B-Chat": "OpenChat-3.6",
    "SOLAR-10.7B-v1.0": "SOLAR",
    "Vicuna-v1.5-7B-Chat": "Vicuna",
    "Zephyr-7B-Alpha-Chat": "Zephyr",
    "TeleChat2-3B-Chat": "TeleChat2",
    "XuanYuan-6B": "XuanYuan",
    "Yuan2-2B-Chat": "Yuan2",
    "MiniCPM-o-2.6": "MiniCPM-o",
    "MiniCPM-V-2.6": "MiniCPM-V",
    "MiniCPM-V-4.6": "MiniCPM-V-4.6",
    "Keye-VL-8B-Chat": "Keye-VL",
    "Kimi-Dev-72B-Instruct": "Kimi-Dev",
    "Codestral-22B-v0.1-Chat": "Codestral",
    "Devstral-Small-2507-Instruct": "Devstral",
    "EXAONE-3.0-7.8B-Instruct": "EXAONE-3.0",
    "Pixtral-12B": "Pixtral",
    "Intern-S1-mini": "Intern-S1",
    "Falcon-H1-0.5B-Base": "Falcon-H1",
    "Video-LLaVA-7B-Chat": "Video-LLaVA",
    "LLaVA-NeXT-34B-Chat": "LLaVA-NeXT-Yi",
    "LLaVA-NeXT-72B-Chat": "LLaVA-NeXT-Qwen",
    "LLaVA-NeXT-Video-34B-Chat": "LLaVA-NeXT-Video-Yi",
    "LLaVA-NeXT-Mistral-7B-Chat": "LLaVA-NeXT-Mistral",
    "LLaVA-NeXT-Llama3-8B-Chat": "LLaVA-NeXT-Llama3",
}

# Architecture (config.json `model_type`) by model name, first matching rule wins; from the model cards.
ARCH_RULES = [
    (r"^Aya-23|^CommandR", "cohere"),
    (r"^BLOOM", "bloom"),
    (r"^Breeze|^Codestral|^Mistral-7B|^Mistral-Nemo|^Ministral-8B|^Mistral-Small-24B|^Devstral|^Zephyr-7B", "mistral"),
    (r"^OpenChat3\.5", "mistral"),
    (r"^MiniCPM4", "minicpm"),
    (r"^ChatGLM3|^GLM-4-9B(?!-0414)", "chatglm"),
    (r"^GLM-4-0414|^GLM-Z1", "glm4"),
    (r"^GLM-4\.1V", "glm4v"),
    (r"^GLM-4\.5V|^GLM-4\.6V", "glm4v_moe"),
    (r"^GLM-4\.5|^GLM-4\.6", "glm4_moe"),
    (r"^GLM-4\.7", "glm4_moe_lite"),
    (r"^GLM-OCR", "glm_ocr"),
    (r"^CodeGemma|^Gemma-\d?B|^Gemma-1\.1|^Gemma-[27]B", "gemma"),
    (r"^Gemma-2", "gemma2"),
    (r"^Gemma-3n", "gemma3n"),
    (r"^Gemma-3-(270M|1B)|^MedGemma-27B-Instruct$", "gemma3_text"),
    (r"^Gemma-3|^MedGemma", "gemma3"),
    (r"^Gemma-4", "gemma4"),
    (r"^PaliGemma", "paligemma"),
    (r"^DBRX", "dbrx"),
    (r"^DeepSeek-LLM|^DeepSeek-Coder-(?!V2)|^DeepSeek-Math|^DeepSeek-R1-8B|^DeepSeek-R1-70B", "llama"),
    (r"^DeepSeek-MoE", "deepseek"),
    (r"^DeepSeek-V2|^DeepSeek-Coder-V2", "deepseek_v2"),
    (r"^DeepSeek-R1-0528-8B", "qwen3"),
    (r"^DeepSeek-(V3|R1-\d{4}|R1-671B|Prover-V2-671B)|^DeepSeek-R1-671B|^Moonlight", "deepseek_v3"),
    (r"^DeepSeek-R1-", "qwen2"),
    (r"^dots\.ocr", "dots_ocr"),
    (r"^ERNIE-4\.5-VL", "ernie4_5_moe_vl"),
    (r"^ERNIE-4\.5-0\.3B", "ernie4_5"),
    (r"^ERNIE", "ernie4_5_moe"),
    (r"^EXAONE", "exaone"),
    (r"^Falcon-H1", "falcon_h1"),
    (r"^Falcon", "falcon"),
    (r"^GPT-2", "gpt2"),
    (r"^GPT-OSS", "gpt_oss"),
    (r"^MiniMax", "minimax"),
    (r"^Granite-Vision", "llava_next"),
    (r"^Granite-3\.\d-\d+B-A", "granitemoe"),
    (r"^Granite-4", "granitemoehybrid"),
    (r"^Granite", "granite"),
    (r"^Hunyuan-A13B", "hunyuan_v1_moe"),
    (r"^Hunyuan|^HY-MT", "hunyuan_v1_dense"),
    (r"^Hy3", "hy_v3"),
    (r"^Index", "llama"),
    (r"^InternLM3", "internlm3"),
    (r"^InternLM2", "internlm2"),
    (r"^InternVL", "internvl"),
    (r"^Intern-S1", "interns1"),
    (r"^Jamba", "jamba"),
    (r"^Keye", "keye_vl"),
    (r"^Kimi-Dev", "qwen2"),
    (r"^Kimi-VL", "kimi_vl"),
    (r"^LFM2\.5-VL", "lfm2_vl"),
    (r"^LFM2", "lfm2"),
    (r"^Llama-3\.2-\d+B-Vision", "mllama"),
    (r"^Llama-4", "llama4"),
    (r"^LLaVA-NeXT-Video", "llava_next_video"),
    (r"^LLaVA-NeXT", "llava_next"),
    (r"^LLaVA", "llava"),
    (r"^Video-LLaVA", "video_llava"),
    (r"^MiMo-V2", "mimo_v2_flash"),
    (r"^MiMo-.*VL", "qwen2_5_vl"),
    (r"^MiMo", "mimo"),
    (r"^MiniCPM-o", "minicpmo"),
    (r"^MiniCPM-V", "minicpmv"),
    (r"^Ministral-3", "mistral3"),
    (r"^Mistral-Small-3", "mistral3"),
    (r"^Mixtral|^Zephyr-141B", "mixtral"),
    (r"^OLMo", "olmo"),
    (r"^Phi-3\.5-MoE", "phimoe"),
    (r"^Phi-3-7B", "phi3small"),
    (r"^Phi-3|^Phi-4-3\.8B", "phi3"),
    (r"^Phi-4", "phi3"),
    (r"^Pixtral", "llava"),
    (r"^Qwen1\.5-MoE|^Qwen2-57B-A14B", "qwen2_moe"),
    (r"^Qwen2-Audio", "qwen2_audio"),
    (r"^Qwen2\.5-Omni", "qwen2_5_omni"),
    (r"^Qwen3-Omni", "qwen3_omni_moe"),
    (r"^Qwen2-VL|^QVQ", "qwen2_vl"),
    (r"^Qwen2\.5-VL", "qwen2_5_vl"),
    (r"^Qwen3-VL-\d+B-A\d+B", "qwen3_vl_moe"),
    (r"^Qwen3-VL", "qwen3_vl"),
    (r"Qwen3-Next", "qwen3_next"),
    (r"^Qwen3\.5-\d+B-A\d+B", "qwen3_5_moe"),
    (r"^Qwen3\.5", "qwen3_5"),
    (r"^Qwen3-\d+B-A\d+B", "qwen3_moe"),
    (r"^Qwen3|^VibeThinker", "qwen3"),
    (r"^Qwen|^QwQ", "qwen2"),
    (
        r"^OpenCoder|^Seed-Coder|^Chinese-|^Llama|^OpenChat3\.6|^MobileLLM|^Vicuna|^XuanYuan|^Yi-\d|^Yi-1\.5|^Yi-Coder|^SOLAR",
        "llama",
    ),
    (r"^Seed-OSS", "seed_oss"),
    (r"^SmolLM", "llama"),
    (r"^StarCoder2", "starcoder2"),
    (r"^TeleChat", "telechat"),
    (r"^Yi-VL", "llava"),
    (r"^Youtu-VL", "youtu_vl"),
    (r"^Youtu", "youtu"),
    (r"^Yuan2", "yuan"),
    (r"^Aeva", "aeva"),
]
SIZE = re.compile(r"(?<![A-Za-z\d.])(\d+x\d+(?:\.\d+)?[BM]|E\d+B|\d+(?:\.\d+)?[BM])(?![A-Za-z\d])")


def groups(constants: Path) -> list[dict]:
    """The register_model_group calls of LLaMA-Factory's constants file, as plain data."""
    found = []
    for node in ast.walk(ast.parse(constants.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_model_group"):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        models = {}
        for key, value in zip(kw["models"].keys, kw["models"].values, strict=True):
            pairs = zip(value.keys, value.values, strict=True)
            sources = {ast.unparse(s).split(".")[-1]: ast.literal_eval(p) for s, p in pairs}
            models[ast.literal_eval(key)] = sources.get("DEFAULT")
        template = ast.literal_eval(kw["template"]) if "template" in kw else None
        multimodal = ast.literal_eval(kw["multimodal"]) if "multimodal" in kw else False
        for earlier in found:  # a later registration replaces an earlier one, as in LLaMA-Factory's dict
            for name in set(earlier["models"]) & set(models):
                del earlier["models"][name]
        found.append({"template": template, "multimodal": multimodal, "models": models})
    found = [g for g in found if g["models"]]
    found.sort(key=lambda g: next(iter(g["models"])).lower())
    return found


def architecture(name: str) -> str:
    for pattern, arch in ARCH_RULES:
        if arch and re.search(pattern, name):
            return arch
    raise SystemExit(f"no architecture rule matches {name!r}")


def family(first: str) -> str:
    if first in FAMILY:
        return FAMILY[first]
    match = SIZE.search(first)
    return first[: match.start()].rstrip("-") if match else first


def record(group: dict) -> dict:
    models = []
    for name, hub in group["models"].items():
        entry = {"name": name, "hub": hub, "architecture": architecture(name)}
        size = SIZE.search(name.split("/")[-1])
        if size:
            entry["size"] = size.group(1)
        if group["template"] and not group["multimodal"] and not any(w in name for w in CHAT_WORDS):
            entry["base"] = True
        models.append(entry)
    out = {"family": family(next(iter(group["models"]))), "template": group["template"] or "default"}
    if group["multimodal"]:
        out["multimodal"] = True
    return out | {"models": models}


def main() -> None:
    import llamafactory
    import yaml

    constants = Path(llamafactory.__file__).parent / "extras" / "constants.py"
    families = [record(g) for g in groups(constants)]
    names = [f["family"] for f in families]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SystemExit(f"family labels used twice: {dupes}")
    header = (
        f"# Model registry: families LLaMA-Factory {llamafactory.__version__} lists, with hub ids, template,\n"
        "# architecture (config.json model_type) and size. Generated by scripts/lf_fixtures/model_registry.py;\n"
        "# edit the rules there, not this file. `base: true` marks a model LLaMA-Factory gives no default\n"
        "# template (its web UI then uses `default`); `multimodal: true` marks vision/audio-language families\n"
        "# (`tuneforge models` shows which media tuneforge takes for each).\n"
    )
    body = yaml.safe_dump({"families": families}, sort_keys=False, allow_unicode=True, width=120)
    OUT.write_text(header + body, encoding="utf-8")
    print(f"wrote {OUT} ({len(families)} families, {sum(len(f['models']) for f in families)} models)")


if __name__ == "__main__":
    main()
