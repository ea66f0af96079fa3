"""Engine versions for the watch commands: run once per binary, read from the cache until it changes."""

from __future__ import annotations

import os
from pathlib import Path

from thinpool.host import commands as host
from thinpool.system import observe, observe_engine
from thinpool.system.runner import ScriptedRunner


def _binary(root: Path, text: str) -> str:
    path = root / "usr/bin/dockerd"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return "/usr/bin/dockerd"


def test_a_version_is_run_once_then_read_until_the_binary_changes(tmp_path: Path) -> None:
    dockerd = _binary(tmp_path, "#!/bin/sh\n# 20.10\n")
    runner = ScriptedRunner()
    runner.expect(host.program_version(dockerd), stdout="Docker version 20.10.24+dfsg1, build 297e128\n")
    assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    assert runner.exhausted
    assert (
        observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    )  # no command: the runner is empty
    _binary(tmp_path, "#!/bin/sh\n# 25.0, a longer file\n")  # upgraded in place
    runner.expect(host.program_version(dockerd), stdout="Docker version 25.0.3, build 4debf41\n")
    assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "25.0.3"
    assert runner.exhausted


def test_a_broken_or_unwritable_cache_only_costs_the_command(tmp_path: Path) -> None:
    dockerd = _binary(tmp_path, "#!/bin/sh\n")
    cache = observe.under(tmp_path, observe_engine.VERSION_CACHE)
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    runner = ScriptedRunner()
    runner.expect(host.program_version(dockerd), stdout="Docker version 20.10.24\n")
    assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    assert (
        observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    )  # rewritten: read now
    cache.unlink()
    if os.geteuid() != 0:  # root writes anyway
        cache.parent.chmod(0o500)
        runner.expect(host.program_version(dockerd), stdout="Docker version 20.10.24\n")
        assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    assert runner.exhausted
