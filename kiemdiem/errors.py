"""Errors a user can act on: each names where the problem is and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: the file, the row (1-based, header is row 1), the field, why."""

    source: str
    reason: str
    row: int | None = None
    field: str | None = None  # the canonical name code works with ('proposed_level')
    column: str | None = None  # for a table: the column as its file names it ('Chi bộ đề xuất'), shown instead

    def __str__(self) -> str:
        where = self.source
        if self.row is not None:
            where += f", dòng {self.row}"
        if self.column:
            where += f", cột '{self.column}'"
        elif self.field and self.field.startswith("--"):  # a command-line option, not a column
            where += f", tùy chọn {self.field}"
        elif self.field:
            where += f", cột/trường '{self.field}'"
        return f"{where}: {self.reason}"

    def as_dict(self) -> dict:
        return {"source": self.source, "row": self.row, "field": self.field, "column": self.column, "reason": self.reason}


class KiemdiemError(Exception):
    """Base for errors shown to users; the CLI prints them and exits non-zero."""

    exit_code = 1


class InvalidInput(KiemdiemError):
    """One or more problems in an input; nothing was stored."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFound(KiemdiemError):
    exit_code = 3


class Unavailable(KiemdiemError):
    """A service the command needs (the database) cannot be reached; nothing was done."""

    exit_code = 5


class Refused(KiemdiemError):
    """A request that is well-formed but not allowed (e.g. a document the unit does not owe)."""

    exit_code = 4
