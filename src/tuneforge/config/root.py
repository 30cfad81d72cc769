"""The typed root config: one object grouping every section, plus the flat-key index LLaMA-Factory YAML uses."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.data import DataSection
from tuneforge.config.evaluation import EvaluationSection
from tuneforge.config.export import ExportSection
from tuneforge.config.fields import Section
from tuneforge.config.generation import GenerationSection
from tuneforge.config.inference import InferenceSection
from tuneforge.config.method import MethodSection
from tuneforge.config.model import ModelSection
from tuneforge.config.profiler import ProfilerSection
from tuneforge.config.quantization import QuantizationSection
from tuneforge.config.ray import RaySection
from tuneforge.config.rlhf import RlhfSection
from tuneforge.config.server import ServerSection
from tuneforge.config.swanlab import SwanlabSection
from tuneforge.config.training import TrainingSection

SECTIONS: dict[str, type[Section]] = {
    "model": ModelSection,
    "quantization": QuantizationSection,
    "data": DataSection,
    "method": MethodSection,
    "rlhf": RlhfSection,
    "training": TrainingSection,
    "profiler": ProfilerSection,
    "ray": RaySection,
    "swanlab": SwanlabSection,
    "generation": GenerationSection,
    "inference": InferenceSection,
    "export": ExportSection,
    "evaluation": EvaluationSection,
    "server": ServerSection,
}


class TuneforgeConfig(BaseModel):
    """The whole resolved configuration: one typed section per concern.

    Every LLaMA-Factory key lives in exactly one section under its LLaMA-Factory name, so
    `cfg.method.lora_rank` is the flat YAML key `lora_rank`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    model: ModelSection = Field(default_factory=ModelSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)
    data: DataSection = Field(default_factory=DataSection)
    method: MethodSection = Field(default_factory=MethodSection)
    rlhf: RlhfSection = Field(default_factory=RlhfSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    profiler: ProfilerSection = Field(default_factory=ProfilerSection)
    ray: RaySection = Field(default_factory=RaySection)
    swanlab: SwanlabSection = Field(default_factory=SwanlabSection)
    generation: GenerationSection = Field(default_factory=GenerationSection)
    inference: InferenceSection = Field(default_factory=InferenceSection)
    export: ExportSection = Field(default_factory=ExportSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    server: ServerSection = Field(default_factory=ServerSection)
    training_args_extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Hugging Face TrainingArguments keys that are not LLaMA-Factory keys, passed through as given.",
    )
    source: str | None = Field(default=None, description="The YAML file the config was read from, if any.")

    def get(self, key: str) -> Any:
        """The value of a flat key, e.g. `cfg.get("lora_rank")`."""
        if key in self.training_args_extra:
            return self.training_args_extra[key]
        return getattr(getattr(self, field_section(key)), key)

    def flat(self, only_changed: bool = False) -> dict[str, Any]:
        """All keys as one flat dict in LLaMA-Factory form (optionally only those set by the user)."""
        out: dict[str, Any] = {}
        for name in SECTIONS:
            section: Section = getattr(self, name)
            out.update(section.changed() if only_changed else section.model_dump())
        out.update(self.training_args_extra)
        return out


@cache
def field_index() -> dict[str, str]:
    """Map every flat key to the section that owns it."""
    index: dict[str, str] = {}
    for name, cls in SECTIONS.items():
        for key in cls.model_fields:
            if key in index:
                raise RuntimeError(f"config key {key!r} is declared in both {index[key]} and {name}")
            index[key] = name
    return index


def field_section(key: str) -> str:
    """The section owning a flat key; KeyError if unknown."""
    return field_index()[key]


def type_label(annotation: Any) -> str:
    """A short readable name for a field's type, e.g. `int`, `str | None`, `Literal['a', 'b']`."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def field_info(key: str) -> Any:
    """The pydantic FieldInfo of a flat key (its description, default and annotation)."""
    return SECTIONS[field_section(key)].model_fields[key]
