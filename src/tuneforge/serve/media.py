"""Media content parts of chat requests: OpenAI's `image_url` and `input_audio`, LLaMA-Factory's `video_url` and
`audio_url`.

Each part becomes an `<image>`/`<video>`/`<audio>` mark where it stands in the message and one file for the
engine. A part's URL is a `data:` URL (base64), an http(s) URL (fetched with a size cap and a timeout; private,
loopback and link-local addresses are refused and redirects are not followed, as LLaMA-Factory refuses them), or a
local path, read only inside the server's `api_media_dir` (unset: local paths are refused). Decoded and fetched
files go to a temporary folder of the request, removed once the engine has turned them into tensors. Every bad
part is a 400 naming it (`messages.0.content.1`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import mimetypes
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tuneforge.serve.errors import APIError

# part type -> (media kind, mark, the MIME major type its data: URLs must have)
PART_KINDS = {
    "image_url": ("images", "<image>", "image"),
    "video_url": ("videos", "<video>", "video"),
    "audio_url": ("audios", "<audio>", "audio"),
    "input_audio": ("audios", "<audio>", "audio"),
}
FETCH_CHUNK = 1 << 16


class MediaParts:
    """Collects a request's media files per kind; `close` removes the files it wrote."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.media: dict[str, list[str]] = {}
        self._folder: Path | None = None

    def __enter__(self) -> MediaParts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the request's temporary folder (if any file was written)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def mark(self, part: Any, where: str) -> str:
        """The mark standing for one media part, after its file is in place (APIError 400 for a bad part)."""
        kind, mark, major = PART_KINDS[part.type]
        if part.type == "input_audio":
            path = self._audio_data(part.input_audio, where)
        else:
            url = getattr(part, part.type)
            if url is None:
                raise APIError(400, f'{where}: a {part.type} part needs `{part.type}: {{"url": ...}}`', where)
            path = self._file(url.url, major, where)
        self.media.setdefault(kind, []).append(path)
        return mark

    def _file(self, url: str, major: str, where: str) -> str:
        if url.startswith("data:"):
            return self._data_url(url, major, where)
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch(url, where)
        if scheme not in ("", "file"):
            raise APIError(400, f"{where}: unsupported URL scheme {scheme!r}; use data:, http(s) or a path", where)
        return self._local(urllib.parse.unquote(urllib.parse.urlsplit(url).path) if scheme else url, where)

    def _data_url(self, url: str, major: str, where: str) -> str:
        header, comma, payload = url.partition(",")
        mime = header[len("data:") :].split(";")[0].lower()
        if not comma or ";base64" not in header.lower() or not mime.startswith(f"{major}/"):
            raise APIError(400, f"{where}: expected a data:{major}/...;base64,... URL", where)
        return self._write(_b64(payload, where), mimetypes.guess_extension(mime) or "", where)

    def _audio_data(self, audio: Any, where: str) -> str:
        if audio is None:
            raise APIError(400, f'{where}: an input_audio part needs `input_audio: {{"data": ..., "format": ...}}`')
        if not audio.format.isascii() or not audio.format.isalnum():
            raise APIError(400, f"{where}: input_audio.format should be a file type such as wav or mp3", where)
        return self._write(_b64(audio.data, where), "." + audio.format.lower(), where)

    def _local(self, path: str, where: str) -> str:
        root = self.settings.media_dir
        if not root:
            raise APIError(
                400,
                f"{where}: local file paths are refused; send a data: URL, or set api_media_dir on the server",
                where,
            )
        real_root = os.path.realpath(root)
        try:
            real = os.path.realpath(os.path.join(real_root, path))
        except (ValueError, OSError):  # a NUL byte, a path too long
            real = ""
        if not real or os.path.commonpath([real, real_root]) != real_root or not os.path.isfile(real):
            raise APIError(400, f"{where}: {path!r} is not a file inside the server's media folder", where)
        return real

    def _fetch(self, url: str, where: str) -> str:
        if not self.settings.allow_private_urls:
            _check_public(url, where)
        cap = self.settings.media_max_bytes
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(url, timeout=self.settings.media_timeout) as response:
                data = _read_capped(response, cap, where)
                suffix = Path(urllib.parse.urlsplit(url).path).suffix
                suffix = suffix or mimetypes.guess_extension(response.headers.get_content_type()) or ""
        except APIError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise APIError(400, f"{where}: fetching {url} failed ({reason})", where) from None
        return self._write(data, suffix, where)

    def _write(self, data: bytes, suffix: str, where: str) -> str:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="tuneforge-media-"))
        count = sum(len(paths) for paths in self.media.values())
        path = self._folder / f"{count}{suffix}"
        path.write_bytes(data)
        return str(path)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed (a public URL could redirect to a private address)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _b64(payload: str, where: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{where}: the media data is not valid base64", where) from None


def _read_capped(response: Any, cap: int, where: str) -> bytes:
    chunks, size = [], 0
    while chunk := response.read(FETCH_CHUNK):
        size += len(chunk)
        if size > cap:
            raise APIError(400, f"{where}: the media file is larger than {cap} bytes", where)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_public(url: str, where: str) -> None:
    """APIError 400 unless every address the URL's host resolves to is a public one."""
    parts = urllib.parse.urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname or "", parts.port or None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        raise APIError(400, f"{where}: cannot resolve the host of {url}", where) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise APIError(400, f"{where}: {url} points to a private or local address ({address}); refused", where)
