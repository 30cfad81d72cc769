"""Keep every path the web UI touches inside the folders it was started with (`--root`)."""

from __future__ import annotations

import os
from pathlib import Path

from tuneforge.errors import TuneforgeError


class PathOutsideRootError(TuneforgeError):
    """A path typed or uploaded in the UI resolves outside the allowed roots."""


class PathJail:
    """Resolve user paths (relative ones against the first root) and refuse any that escape the roots.

    Resolution follows symlinks and `..`, so a link inside a root that points outside it is refused too.
    """

    def __init__(self, *roots: str | os.PathLike) -> None:
        if not roots:
            raise ValueError("PathJail needs at least one root")
        self.roots = [Path(root).expanduser().resolve() for root in roots]

    @property
    def home(self) -> Path:
        """The first root: where relative paths start."""
        return self.roots[0]

    def resolve(self, user_path: str | os.PathLike) -> Path:
        """The absolute, symlink-free form of `user_path`; raises PathOutsideRootError outside the roots."""
        text = str(user_path).strip()
        if not text:
            raise PathOutsideRootError("Empty path: type a file or folder inside " + self.describe())
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.home / path
        resolved = path.resolve()
        if not self.allows(resolved):
            raise PathOutsideRootError(
                f"{text!r} resolves to {resolved}, outside {self.describe()}; pick a path inside."
            )
        return resolved

    def allows(self, resolved: Path) -> bool:
        """Whether an already resolved path lies in one of the roots."""
        return any(resolved == root or resolved.is_relative_to(root) for root in self.roots)

    def describe(self) -> str:
        """The roots, for messages."""
        return ", ".join(str(root) for root in self.roots)
