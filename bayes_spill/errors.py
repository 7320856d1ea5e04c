"""The package's own error types: every bad input is reported through these."""

from __future__ import annotations

from collections.abc import Sequence

MAX_ROWS_SHOWN = 5


class BayesSpillError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(BayesSpillError, ValueError):
    """A problem in a user's input file, naming the file, the column and the offending rows.

    ``rows`` are labels a user can find in the file: 1-based file line numbers for tables
    (the header is line 1, so the first data row is line 2; ``unit="line"``), or firm
    identifiers (``unit="firm"``).
    """

    def __init__(
        self,
        file: str,
        column: str | None,
        problem: str,
        rows: Sequence | None = None,
        hint: str | None = None,
        unit: str = "line",
    ) -> None:
        self.unit = unit
        self.file = str(file)
        self.column = column
        self.problem = problem
        self.rows = list(rows) if rows is not None else []
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.file}"
        if self.column is not None:
            where += f", column '{self.column}'"
        msg = f"{where}: {self.problem}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_ROWS_SHOWN])
            more = f" and {len(self.rows) - MAX_ROWS_SHOWN} more" if len(self.rows) > MAX_ROWS_SHOWN else ""
            msg += f" ({len(self.rows)} {self.unit}{'s' if len(self.rows) != 1 else ''}: {shown}{more})"
        if self.hint:
            msg += f". {self.hint}"
        return msg


class ConfigError(BayesSpillError, ValueError):
    """A problem in a model configuration (TOML) file."""


class PosteriorError(BayesSpillError):
    """A saved posterior that is missing, incomplete or does not match what it claims to be."""
