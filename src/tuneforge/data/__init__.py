"""Datasets: LLaMA-Factory registries, conversion to one conversation form, chat templates, tokenization, packing.

Entry points (import them from their modules; this package imports nothing heavy):

- `pipeline.prepare_dataset(cfg, tokenizer, stage=None) -> DatasetSplits` (train / eval datasets.Dataset + stats)
- `collate.PaddingCollator`, `PairwiseCollator`, `KTOCollator`, `PaddingFreeCollator`
- `preview.preview_command(cfg, n, jsonl)` and `preview.stats_command(cfg)` for `tuneforge data preview|stats`
- `templates` (chat templates as data) is its own subpackage.

Flow: registry.py (which datasets) -> loading.py (raw rows) -> convert.py (canonical examples) -> process.py with
turns.py / tokens.py (token ids per stage) -> mixing.py (mix, val split) -> packing.py -> cache.py (Arrow on disk).
"""
