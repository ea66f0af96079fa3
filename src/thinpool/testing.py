"""For tests of code that runs commands through thinpool: a runner that replays a script.

Tests of thinpool and of programs built on its library hand a ``ScriptedRunner`` to a ``Context``
in place of the real runner. Nothing on the CLI's path imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from thinpool.system.runner import Completed

__all__ = ["ScriptedRunner"]


@dataclass
class ScriptedRunner:
    """Replays ``(argv, Completed)`` pairs in order; anything else is a test failure."""

    script: list[tuple[tuple[str, ...], Completed]] = field(default_factory=list)
    history: list[Completed] = field(default_factory=list)
    options: list[dict[str, object]] = field(default_factory=list)
    effects: dict[int, Callable[[], None]] = field(default_factory=dict)

    def expect(
        self,
        argv: Sequence[str],
        *,
        returncode: int = 0,
        stdout: str = "",
        stderr: str = "",
        then: Callable[[], None] | None = None,
    ) -> None:
        """``then`` does what the command would have done to files (a dump it writes, say)."""
        if then is not None:
            self.effects[len(self.history) + len(self.script)] = then
        self.script.append((tuple(argv), Completed(tuple(argv), returncode, stdout, stderr)))

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: int | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Completed:
        argv = tuple(argv)
        self.options.append({"input": input, "timeout": timeout, "cwd": cwd, "env": env})
        if not self.script:
            raise AssertionError(f"unexpected command (script is empty): {argv}")
        expected, result = self.script.pop(0)
        if expected != argv:
            raise AssertionError(f"expected {expected}, got {argv}")
        effect = self.effects.pop(len(self.history), None)
        if effect is not None:
            effect()
        self.history.append(result)
        return result.raise_for_status() if check else result

    @property
    def exhausted(self) -> bool:
        return not self.script
