"""`chat_command(cfg)`: an interactive terminal chat on the inference engine.

Commands: `clear` forgets the history, `exit` quits, `/system TEXT` sets the system prompt (`/system` alone resets
it to `default_system`). Ctrl-C during an answer stops that answer; Ctrl-C at the prompt or end of input (Ctrl-D)
quits. Empty lines are ignored. Reasoning, when the model thinks, is shown dimmed before the answer.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from tuneforge.console import shown

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

HELP = "Type a message. Commands: clear (new conversation), /system TEXT (system prompt), exit (quit)."


@dataclass
class ChatSession:
    """History and system prompt of one terminal conversation."""

    system: str | None = None
    history: list[dict] = field(default_factory=list)


def chat_command(cfg: TuneforgeConfig) -> None:
    """`tuneforge chat CONFIG`: load the model and chat in the terminal until `exit`, EOF or Ctrl-C.

    Timings (loading, and per answer the time to first token and the decoding speed) go to stderr.
    """
    from tuneforge.infer import load_engine
    from tuneforge.timing import Breakdown, loaded_line

    timing = Breakdown()
    engine = load_engine(cfg, timing)
    print(f"[{loaded_line(timing, engine)}]", file=sys.stderr)
    try:
        run_chat(engine, ChatSession(system=cfg.data.default_system), sys.stdin, sys.stdout, timings=sys.stderr)
    finally:
        engine.close(timeout=5)


def run_chat(engine: Any, session: ChatSession, stdin: TextIO, stdout: TextIO, timings: TextIO | None = None) -> None:
    """The read-answer loop (testable with any text streams); `timings` gets one line per answer."""
    print(HELP, file=stdout)
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
        if _command(text, session, stdout):
            continue
        session.history.append({"role": "user", "content": text})
        answer = _answer(engine, session, stdout, timings)
        if answer is None:
            session.history.pop()  # interrupted: forget the question so the history stays user/assistant
        else:
            session.history.append({"role": "assistant", "content": answer})


def _read(stdin: TextIO, stdout: TextIO) -> str | None:
    print("\nUser: ", end="", file=stdout, flush=True)
    try:
        line = stdin.readline()
    except KeyboardInterrupt:
        return None
    return line if line else None


def _command(text: str, session: ChatSession, stdout: TextIO) -> bool:
    if text == "clear":
        session.history.clear()
        print("History cleared.", file=stdout)
        return True
    if text == "/system" or text.startswith("/system "):
        session.system = text[len("/system") :].strip() or None
        session.history.clear()
        print(f"System prompt {'set' if session.system else 'reset'}; history cleared.", file=stdout)
        return True
    return False


def _answer(engine: Any, session: ChatSession, stdout: TextIO, timings: TextIO | None) -> str | None:
    """Stream one answer (model text shown literally); returns its content, or None when interrupted."""
    print("Assistant: ", end="", file=stdout, flush=True)
    started, first, tokens = time.perf_counter(), None, 0
    stream = engine.stream_chat(session.history, system=session.system)
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
    print("\033[0m" if thinking else "", file=stdout)
    if timings is not None and first is not None:
        print(_timing_line(started, first, tokens), file=timings, flush=True)
    return "".join(content)


def _timing_line(started: float, first: float, tokens: int) -> str:
    """`[first token 85 ms, 64 tokens, 210.3 tokens/s]` for one answer."""
    now = time.perf_counter()
    rate = f", {(tokens - 1) / (now - first):.1f} tokens/s" if tokens > 1 and now > first else ""
    return f"[first token {1000 * (first - started):.0f} ms, {tokens} tokens{rate}]"
