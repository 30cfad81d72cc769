"""Bad-row reporting: every invalid row is named (dataset, row, reason), counted and skipped, or stops the run.

Rows are numbered from 1 in the order the file holds them (for JSON-lines and text files that is the line
number); the summary is logged once per dataset at the end of preprocessing.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from tuneforge.errors import DataError

logger = logging.getLogger("tuneforge.data")

_SHOWN_PER_DATASET = 5


@dataclass
class BadRow:
    """One rejected row: where it is and why it was rejected."""

    dataset: str
    row: int
    reason: str

    def __str__(self) -> str:
        return f"{self.dataset}, row {self.row}: {self.reason}"


@dataclass
class RowReport:
    """Collects rejected rows. With `strict`, the first problem raises `DataError` instead."""

    strict: bool = False
    problems: list[BadRow] = field(default_factory=list)
    kept: Counter = field(default_factory=Counter)

    def bad(self, dataset: str, row: int, reason: str) -> None:
        """Record a rejected row (or raise at once under `strict_data: true`)."""
        problem = BadRow(dataset, row, reason)
        if self.strict:
            raise DataError(f"Invalid row in dataset {problem} (strict_data is true; fix the row or unset it).")
        self.problems.append(problem)

    def merge(self, other: RowReport) -> None:
        """Add another report's problems and counts (used when workers preprocess in parallel)."""
        self.problems.extend(other.problems)
        self.kept.update(other.kept)

    def dropped(self, dataset: str | None = None) -> int:
        """How many rows were rejected (in one dataset, or overall)."""
        return sum(1 for p in self.problems if dataset is None or p.dataset == dataset)

    def reasons(self) -> Counter:
        """Counts of rejection reasons with row-specific details stripped (for stats)."""
        return Counter(p.reason.split(":")[0] for p in self.problems)

    def summary_lines(self) -> list[str]:
        """Human-readable lines: per dataset the number dropped and the first few problems."""
        lines: list[str] = []
        for name in dict.fromkeys(p.dataset for p in self.problems):
            mine = sorted((p for p in self.problems if p.dataset == name), key=lambda p: p.row)
            lines.append(f"dataset {name!r}: {len(mine)} invalid row(s) skipped")
            lines.extend(f"  row {p.row}: {p.reason}" for p in mine[:_SHOWN_PER_DATASET])
            if len(mine) > _SHOWN_PER_DATASET:
                lines.append(
                    f"  ... and {len(mine) - _SHOWN_PER_DATASET} more (set strict_data: true to stop at the first)"
                )
        return lines

    def log_summary(self) -> None:
        """Warn once with the summary when any row was rejected."""
        if self.problems:
            logger.warning("Invalid dataset rows were skipped:\n%s", "\n".join(self.summary_lines()))
