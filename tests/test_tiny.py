"""The offline Qwen tokenizer and the tiny random models: real ids, real formats, loadable by plain transformers."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.errors import TuneforgeError
from tuneforge.models import tokenizer as tokmod
from tuneforge.models.tiny import build_config, count_parameters, make_tiny, make_tiny_command, vocab_size_for
from tuneforge.models.tiny_archs import TEXT_ARCHES

QWEN_SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|vision_pad|>": 151654,
    "<|video_pad|>": 151656,
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<|fim_prefix|>": 151659,
    "<|file_sep|>": 151664,
}
QWEN3_EXTRA_IDS = {"<tool_response>": 151665, "</tool_response>": 151666, "<think>": 151667, "</think>": 151668}


def test_encodes_chinese_like_the_real_qwen_tokenizer(qwen_tokenizer):
    assert qwen_tokenizer.encode("你好，世界", add_special_tokens=False) == [108386, 3837, 99489]
    assert qwen_tokenizer.encode("Hello world", add_special_tokens=False) == [9707, 1879]


def test_qwen2_special_tokens_at_real_ids(qwen_tokenizer):
    for token, token_id in QWEN_SPECIAL_IDS.items():
        assert qwen_tokenizer.convert_tokens_to_ids(token) == token_id, token
    assert len(qwen_tokenizer) == 151665
    assert (qwen_tokenizer.eos_token, qwen_tokenizer.pad_token, qwen_tokenizer.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    assert "<think>" not in qwen_tokenizer.get_vocab()


def test_skip_special_tokens_keeps_tool_call_tags(qwen_tokenizer):
    ids = qwen_tokenizer.encode("<|im_start|>assistant\n<tool_call>\n{}\n</tool_call><|im_end|>")
    assert ids[0] == 151644 and ids[-1] == 151645 and 151657 in ids
    assert qwen_tokenizer.decode(ids, skip_special_tokens=True) == "assistant\n<tool_call>\n{}\n</tool_call>"


def test_fresh_qwen3_build_in_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE_DIR", str(tmp_path))
    tok = tokmod.build_qwen_tokenizer("qwen3")
    assert [p.name.split("-")[0] for p in (tmp_path / "tokenizers").iterdir()] == ["qwen3"]
    for token, token_id in {**QWEN_SPECIAL_IDS, **QWEN3_EXTRA_IDS}.items():
        assert tok.convert_tokens_to_ids(token) == token_id, token
    assert tok.encode("你好，世界", add_special_tokens=False) == [108386, 3837, 99489]
    assert tok.decode([151667, 151668], skip_special_tokens=True) == "<think></think>"


def test_unknown_family_is_a_user_error():
    with pytest.raises(TuneforgeError, match="unknown tokenizer family 'gpt2'"):
        tokmod.build_qwen_tokenizer("gpt2")


@pytest.mark.parametrize(
    ("fixture", "model_type", "vocab"),
    [("tiny_qwen2", "qwen2", 151936), ("tiny_qwen3", "qwen3", 151936), ("tiny_llama", "llama", 151680)],
)
def test_tiny_model_loads_with_auto_classes_and_generates(request, fixture, model_type, vocab):
    path = request.getfixturevalue(fixture)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == model_type and model.config.vocab_size == vocab
    assert model.config.tie_word_embeddings and model.config.num_hidden_layers == 2
    assert len(tok) <= vocab
    assert tok.eos_token_id in model.generation_config.eos_token_id
    enc = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False, min_new_tokens=3)
    assert out.shape == (1, enc["input_ids"].shape[1] + 3)


def test_llama_tokenizer_prepends_bos_and_uses_llama3_tokens(tiny_llama):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    bos, eot = tok.convert_tokens_to_ids(["<|begin_of_text|>", "<|eot_id|>"])
    assert (bos, eot) == (151643, 151652)  # Llama 3's 128000 / 128009, shifted past the Qwen vocabulary
    assert tok.encode("Hello world") == [bos, 9707, 1879]
    assert tok.eos_token == "<|eot_id|>" and vocab_size_for("llama") % 64 == 0


def test_chat_templates_render_each_family_format(qwen_tokenizer, tiny_qwen3, tiny_llama):
    chat = [{"role": "user", "content": "hi"}]
    assert qwen_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    qwen3 = AutoTokenizer.from_pretrained(tiny_qwen3)
    text = qwen3.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    llama = AutoTokenizer.from_pretrained(tiny_llama)
    system_chat = [{"role": "system", "content": "Be brief."}, *chat]
    ids = llama.apply_chat_template(system_chat, add_generation_prompt=True)["input_ids"]
    assert llama.decode(ids) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert ids.count(151643) == 1  # bos once, not twice


def test_shipped_qwen_templates_are_the_official_files(shared_dir):
    official = shared_dir / "fixtures" / "chat_templates"
    for shipped, name in [
        ("qwen2.5-instruct.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja"),
        ("qwen3.jinja", "Qwen-Qwen3-0.6B.jinja"),
    ]:
        ours = hashlib.sha256(tokmod.chat_template(shipped).encode()).hexdigest()
        assert ours == hashlib.sha256((official / name).read_bytes()).hexdigest(), shipped


def test_same_seed_gives_same_weights_and_command_reports(tiny_qwen2, tmp_path, capsys):
    again = make_tiny_command("qwen2", tmp_path / "again", layers=2, hidden=64, seed=0)
    assert f"to {again}" in capsys.readouterr().out
    other = make_tiny("qwen2", tmp_path / "other", layers=2, hidden=64, seed=1)
    first, second, third = (load_file(p / "model.safetensors") for p in (tiny_qwen2, again, other))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["model.embed_tokens.weight"], third["model.embed_tokens.weight"])


def test_refuses_non_empty_out_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("user file")
    with pytest.raises(TuneforgeError, match="is not empty"):
        make_tiny("qwen2", tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "user file"


def test_bad_arch_or_shape_is_a_user_error():
    with pytest.raises(TuneforgeError, match="unknown arch 'falcon': choose one of qwen2, qwen3, llama, mistral"):
        build_config("falcon")
    with pytest.raises(TuneforgeError, match="unknown shape"):
        build_config("qwen2", shape="qwen2-7b")
    with pytest.raises(TuneforgeError, match="is a qwen3 model"):
        build_config("qwen2", shape="qwen3-0.6b")


def test_qwen2_1_5b_shape_matches_deepseek_r1_distill():
    config = build_config("qwen2", shape="qwen2-1.5b")
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (1536, 28, 8960)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (12, 2, 151936)
    assert config.rope_parameters["rope_theta"] == 10000.0 and config.max_position_embeddings == 131072
    assert not config.tie_word_embeddings
    assert 1.77e9 < count_parameters(config) < 1.79e9


def test_qwen3_0_6b_shape_matches_qwen3():
    config = build_config("qwen3", shape="qwen3-0.6b")
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (1024, 28, 3072)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (16, 8, 128)
    assert config.rope_parameters["rope_theta"] == 1000000.0 and config.tie_word_embeddings
    assert 0.59e9 < count_parameters(config) < 0.60e9


@pytest.mark.parametrize("arch", list(TEXT_ARCHES))
def test_text_arch_configs_use_the_qwen_tokenizer_ids(arch):
    from tuneforge.models.tokenizer import special_token_ids

    record = TEXT_ARCHES[arch]
    config = build_config(arch, hidden=32)
    assert config.model_type == record.model_type and config.vocab_size == 151936
    assert (config.hidden_size, config.num_hidden_layers) == (32, 2)
    ids = special_token_ids(record.family)
    assert (config.eos_token_id, config.pad_token_id) == (ids["<|im_end|>"], ids["<|endoftext|>"])
    experts = [getattr(config, k, None) for k in ("num_experts", "n_routed_experts", "num_local_experts")]
    assert (4 in experts) == record.moe
    assert count_parameters(config) < 5_500_000  # the 151,936 x 32 tied embedding and little else


@pytest.mark.parametrize("arch", list(TEXT_ARCHES))
def test_text_arch_eager_and_sdpa_attention_agree(arch):
    """Both attention paths work on the tiny shapes (Gemma 2 and gpt-oss have eager attention only)."""
    from tuneforge.models.tiny import _model_class

    config = build_config(arch, hidden=32)
    torch.manual_seed(0)
    model = _model_class(config.model_type)(config).eval()
    ids = torch.tensor([[9707, 1879, 11, 1879, 13]])
    with torch.no_grad():
        logits = {}
        for impl in ("eager", "sdpa") if model._supports_sdpa else ("eager",):
            model.set_attn_implementation(impl)
            logits[impl] = model(input_ids=ids).logits
    assert torch.isfinite(logits["eager"]).all()
    assert torch.allclose(logits["eager"], logits.get("sdpa", logits["eager"]), atol=1e-4)
    assert model._supports_sdpa or arch in ("gemma2", "gpt_oss")
