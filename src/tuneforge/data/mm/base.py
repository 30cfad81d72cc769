"""The contract every media plugin keeps, and the settings that size media (LLaMA-Factory's names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tuneforge.errors import DataError

if TYPE_CHECKING:
    import torch

    from tuneforge.config.model import ModelSection


@dataclass(frozen=True)
class MediaSettings:
    """The run's media limits (part of the data cache key through the plugin's fingerprint)."""

    image_max_pixels: int = 589824
    image_min_pixels: int = 1024
    video_max_pixels: int = 65536
    video_min_pixels: int = 256
    video_fps: float = 2.0
    video_maxlen: int = 128
    audio_sampling_rate: int = 16000
    use_audio_in_video: bool = False
    image_do_pan_and_scan: bool = False
    crop_to_patches: bool = False

    @classmethod
    def from_model(cls, m: ModelSection) -> MediaSettings:
        """The settings of a run's model section."""
        names = cls.__dataclass_fields__
        return cls(**{name: getattr(m, name) for name in names})


class MediaPlugin(Protocol):
    """Media handling of one model family.

    `kinds` are the media kinds it takes (`images`, `videos`, `audios`); `expand` gives the text that replaces
    one `<image>`/`<video>`/`<audio>` mark (the model's media tokens, sized by the processor) and raises
    `RowError` for a file it cannot read; `model_inputs` turns a batch's media, in order, into the model's
    tensors; `token_inputs` gives a mask of the media tokens in `input_ids` (kept out of the loss) and any
    per-token inputs the model needs (e.g. `mm_token_type_ids`).
    """

    kinds: tuple[str, ...]

    def fingerprint(self) -> dict[str, Any]:
        """What decides token counts and tensors (processor settings, limits), for the data cache key."""
        ...

    def expand(self, kind: str, path: str) -> str:
        """The text that replaces one mark of `kind` for the media file at `path`."""
        ...

    def model_inputs(self, media: dict[str, list[str]]) -> dict[str, Any]:
        """The model's media tensors for the files of one batch, per kind, in order."""
        ...

    def bind(self, tokenizer: Any) -> None:
        """Learn the media tokens' ids from the run's tokenizer (before `token_inputs` is called)."""
        ...

    def token_inputs(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """A boolean mask of the media tokens in `input_ids`, and per-token model inputs."""
        ...


def load_processor_part(model_path: str, auto_class: str, what: str) -> Any:
    """One processor component saved with the model (`AutoImageProcessor`, `AutoFeatureExtractor`, ...), or a
    clear error naming the model folder."""
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(model_path)
    except (OSError, ValueError) as err:
        raise DataError(
            f"No {what} found with model {model_path!r} ({err}); a multimodal model folder holds its processor "
            "configs (e.g. preprocessor_config.json)."
        ) from err
