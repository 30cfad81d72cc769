"""The OpenAI-compatible API server started by `tuneforge api`."""

from __future__ import annotations

from tuneforge.config.fields import ACTS, F, Section


class ServerSection(Section):
    """The OpenAI-compatible API server started by `tuneforge api`."""

    api_host: str | None = F(
        None,
        "Address the API binds to. Unset: 127.0.0.1 when no API key is configured (private), "
        "0.0.0.0 when keys are set. Env: API_HOST.",
        lf_default=None,
        wiring=ACTS,
    )
    api_port: int = F(8000, "TCP port of the API server. Env: API_PORT.", lf_default=None, wiring=ACTS)
    api_keys: str | None = F(
        None,
        "Comma-separated API keys clients must send as `Authorization: Bearer KEY`. Each entry is "
        "`[NAME=]KEY[@RPM]`: an optional name (shown in rate-limit errors) and an optional limit in requests per "
        "minute for that key, e.g. `alice=sk-a@60,bob=sk-b`. Env: API_KEY.",
        lf_default=None,
        wiring=ACTS,
    )
    served_model_name: str | None = F(
        None,
        "Model name reported by /v1/models and in responses (default: the model folder's name).",
        lf_default=None,
        wiring=ACTS,
    )
    max_queue_size: int = F(
        64,
        "Requests waiting for the engine beyond which the server answers 429 with Retry-After.",
        lf_default=None,
        wiring=ACTS,
    )
    max_batch_size: int = F(
        8, "Requests the Hugging Face engine decodes together in one dynamic batch.", lf_default=None, wiring=ACTS
    )
    request_timeout: float | None = F(
        600.0,
        "Seconds a request may take from arrival to its last token (queueing included); past it the request is "
        "cancelled and answered 408 (or, once streaming, an error event). Unset: no deadline.",
        lf_default=None,
        gt=0,
        wiring=ACTS,
    )
    api_media_dir: str | None = F(
        None,
        "Folder whose files chat requests may name by local path in image_url / video_url / audio_url content "
        "parts (paths relative to it or inside it); unset: local paths are refused and media come as data: or "
        "http(s) URLs. Env: SAFE_MEDIA_PATH (LLaMA-Factory's name).",
        lf_default=None,
        wiring=ACTS,
    )
    max_request_bytes: int = F(
        4 * 1024 * 1024,
        "Largest request body the API reads; bigger bodies are answered 413 before being parsed.",
        lf_default=None,
        ge=1024,
        wiring=ACTS,
    )
