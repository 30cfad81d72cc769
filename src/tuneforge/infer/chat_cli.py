"""`chat_command(cfg)`: an interactive terminal chat on the inference engine.

Commands: `clear` forgets the history, `exit` quits, `/system TEXT` sets the system prompt (`/system` alone resets
it to `default_system`). Ctrl-C during an answer stops that answer; Ctrl-C at the prompt or end of input (Ctrl-D)
quits. Empty lines are ignored. Reasoning, when the model thinks, is shown dimmed before the answer.

With a multimodal model, `/image PATH` (and `/video PATH`, `/audio PATH` for the kinds its plugin takes) attaches a
file to the next message; `--image PATH` on the command line attaches it to the first. The message gets one
`<image>` mark per file at its start unless it places them itself; earlier turns keep their media.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from tuneforge.console import shown
from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

HELP = "Type a message. Commands: clear (new conversation), /system TEXT (system prompt), exit (quit)."
MEDIA_COMMANDS = {"/image": "images", "/video": "videos", "/audio": "audios"}
MARKS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}


@dataclass
class ChatSession:
    """History, system prompt and media of one terminal conversation.

    `media`: the files of the messages in `history`, per kind; `pending`: files attached to the next message.
    """

    system: str | None = None
    history: list[dict] = field(default_factory=list)
    media: dict[str, list[str]] = field(default_factory=dict)
    pending: dict[str, list[str]] = field(default_factory=dict)

    def forget(self) -> None:
        """Drop the conversation and its media."""
        self.history.clear()
        self.media.clear()


def help_line(engine: Any) -> str:
    """The help line; for a multimodal model it names the attach commands of the kinds it takes."""
    kinds = getattr(engine, "media_kinds", ())
    attach = ", ".join(f"/{kind[:-1]} PATH" for kind in kinds)
    return HELP if not attach else f"{HELP[:-1]}; {attach} attaches a file to the next message."


def check_media_files(media: dict[str, list[str]]) -> None:
    """Stop with a clear message naming a file given with --image / --video / --audio that does not exist."""
    for kind, paths in media.items():
        for path in paths:
            if not os.path.isfile(path):
                raise TuneforgeError(f"--{kind[:-1]} {path}: no such file.")


def chat_command(cfg: TuneforgeConfig, media: dict[str, list[str]] | None = None) -> None:
    """`tuneforge chat CONFIG`: load the model and chat in the terminal until `exit`, EOF or Ctrl-C.

    `media` (file paths per kind) is attached to the first message. Timings (loading, and per answer the time to
    first token and the decoding speed) go to stderr.
    """
    media = {kind: list(paths) for kind, paths in (media or {}).items() if paths}
    check_media_files(media)
    from tuneforge.infer import load_engine
    from tuneforge.timing import Breakdown, loaded_line

    timing = Breakdown()
    engine = load_engine(cfg, timing)
    print(f"[{loaded_line(timing, engine)}]", file=sys.stderr)
    for kind in media:
        if kind not in engine.media_kinds:
            engine.close(timeout=5)
            raise TuneforgeError(_not_taken(engine, kind))
    session = ChatSession(system=cfg.data.default_system, pending=media)
    try:
        run_chat(engine, session, sys.stdin, sys.stdout, timings=sys.stderr)
    finally:
        engine.close(timeout=5)


def run_chat(engine: Any, session: ChatSession, stdin: TextIO, stdout: TextIO, timings: TextIO | None = None) -> None:
    """The read-answer loop (testable with any text streams); `timings` gets one line per answer."""
    print(help_line(engine), file=stdout)
    while True:
        line = _read(stdin, stdout)
        if line is None:
            print("\nBye.", file=stdout)
            return
        text = line.strip()
        if not text:
            continue
        if text == "exit":
            return
        if _command(text, session, stdout) or _attach(text, engine, session, stdout):
            continue
        attached = session.pending
        session.pending = {}
        session.history.append({"role": "user", "content": _marked(text, attached)})
        answer = _answer(engine, session, attached, stdout, timings)
        if answer is None:
            session.history.pop()  # interrupted: forget the question so the history stays user/assistant
        else:
            session.history.append({"role": "assistant", "content": answer})
            for kind, paths in attached.items():
                session.media.setdefault(kind, []).extend(paths)


def _read(stdin: TextIO, stdout: TextIO) -> str | None:
    print("\nUser: ", end="", file=stdout, flush=True)
    try:
        line = stdin.readline()
    except KeyboardInterrupt:
        return None
    return line if line else None


def _command(text: str, session: ChatSession, stdout: TextIO) -> bool:
    if text == "clear":
        session.forget()
        print("History cleared.", file=stdout)
        return True
    if text == "/system" or text.startswith("/system "):
        session.system = text[len("/system") :].strip() or None
        session.forget()
        print(f"System prompt {'set' if session.system else 'reset'}; history cleared.", file=stdout)
        return True
    return False


def _attach(text: str, engine: Any, session: ChatSession, stdout: TextIO) -> bool:
    """`/image PATH` (or /video, /audio): attach a file to the next message; False when `text` is no such command."""
    command, _, path = text.partition(" ")
    kind = MEDIA_COMMANDS.get(command)
    if kind is None:
        return False
    path = os.path.expanduser(path.strip())
    if kind not in getattr(engine, "media_kinds", ()):
        print(_not_taken(engine, kind), file=stdout)
    elif not path:
        print(f"Usage: {command} PATH", file=stdout)
    elif not os.path.isfile(path):
        print(f"No such file: {path}", file=stdout)
    else:
        session.pending.setdefault(kind, []).append(path)
        print(f"Attached {path} to your next message.", file=stdout)
    return True


def _not_taken(engine: Any, kind: str) -> str:
    kinds = getattr(engine, "media_kinds", ())
    if not kinds:
        return f"This model is text-only: it takes no {kind}."
    return f"This model takes {', '.join(kinds)}, not {kind}."


def _marked(text: str, attached: dict[str, list[str]]) -> str:
    """The message with one mark per attached file at its start, for each kind it does not mark itself."""
    for kind, paths in attached.items():
        if MARKS[kind] not in text:
            text = MARKS[kind] * len(paths) + text
    return text


def _answer(
    engine: Any, session: ChatSession, attached: dict[str, list[str]], stdout: TextIO, timings: TextIO | None
) -> str | None:
    """Stream one answer (model text shown literally); returns its content, or None when interrupted or refused."""
    print("Assistant: ", end="", file=stdout, flush=True)
    started, first, tokens = time.perf_counter(), None, 0
    media = {kind: [*session.media.get(kind, []), *attached.get(kind, [])] for kind in {*session.media, *attached}}
    with_media = {"media": media} if media else {}  # text chats call the engine exactly as before
    stream = engine.stream_chat(session.history, system=session.system, **with_media)
    content, thinking = [], False
    try:
        for delta in stream:
            first = first if first is not None else time.perf_counter()
            tokens = delta.completion_tokens or tokens
            if delta.reasoning:
                print(("\033[2m" if not thinking else "") + shown(delta.reasoning), end="", file=stdout, flush=True)
                thinking = True
            if delta.content:
                if thinking:
                    print("\033[0m\n", end="", file=stdout)
                    thinking = False
                content.append(delta.content)
                print(shown(delta.content), end="", file=stdout, flush=True)
    except KeyboardInterrupt:
        stream.close()  # cancels the request in the engine
        print("\033[0m\n[interrupted]", file=stdout)
        return None
    except TuneforgeError as error:  # e.g. a bad image: this message is dropped, the chat goes on
        print(f"\033[0m\nError: {error}", file=stdout)
        return None
    print("\033[0m" if thinking else "", file=stdout)
    if timings is not None and first is not None:
        print(_timing_line(started, first, tokens), file=timings, flush=True)
    return "".join(content)


def _timing_line(started: float, first: float, tokens: int) -> str:
    """`[first token 85 ms, 64 tokens, 210.3 tokens/s]` for one answer."""
    now = time.perf_counter()
    rate = f", {(tokens - 1) / (now - first):.1f} tokens/s" if tokens > 1 and now > first else ""
    return f"[first token {1000 * (first - started):.0f} ms, {tokens} tokens{rate}]"
