"""Errors that reach the operator: each names the problem and the way out."""

from __future__ import annotations


class ThinpoolError(Exception):
    """Base of every error thinpool reports on purpose (never a traceback)."""

    exit_code = 1

    def __init__(self, problem: str, *, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}" if self.fix else self.problem

    def to_dict(self) -> dict[str, str]:
        return {"error": type(self).__name__, "problem": self.problem, "fix": self.fix}


class SpecError(ThinpoolError):
    """The requested layout is malformed or impossible."""


class DoesNotFit(SpecError):
    """The layout does not fit the volume group."""


class CommandFailed(ThinpoolError):
    """A command run through the runner exited non-zero."""


class CommandTimedOut(CommandFailed):
    """A command run through the runner did not finish in time and was killed."""


class CommandNotRun(CommandFailed):
    """A command could not be started at all (not executable, wrong format)."""


class MissingTool(ThinpoolError):
    """A program thinpool needs is not installed."""
