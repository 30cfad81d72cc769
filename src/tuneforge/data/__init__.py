"""Datasets: LLaMA-Factory registries, conversion to one conversation form, chat templates, tokenization, packing."""
