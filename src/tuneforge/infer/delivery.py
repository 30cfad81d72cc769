"""Handing engine events to an asyncio event loop with one wake-up per burst instead of one per event.

`loop.call_soon_threadsafe` writes to the loop's wake-up socket on every call. The emitter thread streams one
event per row per decode step, so with 8 rows that is 8 socket writes and as many hand-overs of the GIL between
the emitter and the loop per step, each of which can wait for the other thread to get a core on a busy machine.
`LoopPost` queues the calls and wakes the loop once; the loop runs everything queued by then, in order. Inside
`deferred_wakeups()` (the emitter runs each step's messages in one) the wake-ups wait for the end of the block.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

logger = logging.getLogger(__name__)
_posts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPost] = weakref.WeakKeyDictionary()
_posts_lock = threading.Lock()
_deferred = threading.local()  # .posts: the LoopPosts to wake at the end of this thread's deferred block


@contextmanager
def deferred_wakeups() -> Iterator[None]:
    """Posts made by this thread inside the block wake their loops once, when the block ends."""
    _deferred.posts = posts = {}
    try:
        yield
    finally:
        _deferred.posts = None
        for post in posts:
            try:
                post.wake()
            except Exception:  # a closed loop loses its own events only, as a direct post would
                logger.exception("Waking an event loop for generation events failed")


class LoopPost:
    """Thread-safe `post(fn, arg)`: runs `fn(arg)` on the loop, in posting order, batching the wake-ups."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: deque[tuple[Callable[[Any], object], Any]] = deque()
        self._scheduled = False

    def post(self, fn: Callable[[Any], object], arg: Any, wake: bool = True) -> None:
        """Queue `fn(arg)` for the loop; wakes the loop unless a run is scheduled or the wake-up is deferred.
        `wake=False` only queues it: it runs, in order, with the next post that wakes the loop."""
        with self._lock:
            self._pending.append((fn, arg))
        if not wake:
            return
        deferred = getattr(_deferred, "posts", None)
        if deferred is None:
            self.wake()
        else:
            deferred[self] = None

    def wake(self) -> None:
        """Schedule a run of everything queued, unless one is already scheduled."""
        with self._lock:
            if self._scheduled or not self._pending:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except BaseException:  # the loop is closed: the next post tries again (and raises to its caller)
            with self._lock:
                self._scheduled = False
            raise

    def _run(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, deque()
            self._scheduled = False
        for fn, arg in batch:
            fn(arg)


def loop_post(loop: asyncio.AbstractEventLoop) -> LoopPost:
    """The shared `LoopPost` of `loop` (one per loop, so the events of all its requests share wake-ups)."""
    with _posts_lock:
        post = _posts.get(loop)
        if post is None:
            post = _posts[loop] = LoopPost(loop)
        return post
