"""What doctor, status and the engine adapters report: one finding model for all of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How bad a finding is, mildest first (the JSON and the exit code carry the value)."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)


_ORDER = tuple(Severity)


@dataclass(frozen=True)
class Finding:
    """One problem: how bad, a stable code for scripts and alerts, what is wrong and the command that fixes it."""

    severity: Severity
    code: str
    problem: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}


def worst(findings: list[Finding]) -> Severity:
    """The most severe of ``findings`` (ok when there is none)."""
    return max((finding.severity for finding in findings), key=lambda severity: severity.rank, default=Severity.OK)
