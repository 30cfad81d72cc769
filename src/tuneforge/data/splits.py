"""What the data pipeline produces and works from: the plan resolved from the config, the tokenized splits and
the statistics of a run. Shared by the cached pipeline (`pipeline.py`) and streaming (`streaming.py`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config.data import DataSection
    from tuneforge.config.stages import DataKind
    from tuneforge.data.process import ProcessOptions
    from tuneforge.data.registry import DatasetAttr
    from tuneforge.data.templates.template import Template


@dataclass
class DatasetStat:
    """Rows read, kept and dropped for one dataset."""

    name: str
    rows_read: int
    rows_kept: int
    rows_dropped: int


@dataclass
class DataStats:
    """What preprocessing did: per-dataset counts, drop reasons, lengths, packing and cache use."""

    kind: str
    template: str | None
    datasets: list[DatasetStat] = field(default_factory=list)
    drop_reasons: dict[str, int] = field(default_factory=dict)
    train_rows: int = 0
    eval_rows: int = 0
    length_percentiles: dict[str, int] = field(default_factory=dict)
    packed_rows: int | None = None
    packing_fill: float | None = None
    cache_hit: bool = False
    cache_path: str | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # the bad-row summary (first lines)
    warnings: list[str] = field(default_factory=list)  # chat template / tokenizer warnings

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored in the cache's meta.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataStats:
        """Inverse of `to_dict`."""
        data = dict(data)
        data["datasets"] = [DatasetStat(**d) for d in data.get("datasets", [])]
        return cls(**data)


@dataclass
class DatasetSplits:
    """The tokenized training and evaluation data (datasets.Dataset; eval may be a dict per dataset)."""

    train: Any | None
    eval: Any | None
    stats: DataStats
    template: Template | None = None


@dataclass
class Plan:
    """Everything `prepare_dataset` needs, resolved from the config."""

    kind: DataKind
    template: Template | None
    warnings: list[str]
    opts: ProcessOptions
    train_attrs: list[DatasetAttr]
    eval_attrs: list[DatasetAttr]
    data: DataSection
    seed: int
    pack: bool
    neat: bool
    media: Any = None  # a data.media.MediaPlugin when a dataset has media columns

    @property
    def template_name(self) -> str | None:
        """The chat template's name (None for pre-training, which uses none)."""
        return self.template.name if self.template is not None else None
