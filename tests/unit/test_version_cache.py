"""Engine versions for the watch commands: run once per binary, read from the cache until it changes."""

from __future__ import annotations

import os
from pathlib import Path

from thinpool.core.model import StoreRoot
from thinpool.core.programs import argv as programs
from thinpool.core.spec import PoolSpec
from thinpool.system import observe, observe_engine
from thinpool.testing import ScriptedRunner


def _binary(root: Path, text: str) -> str:
    path = root / "usr/bin/dockerd"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return "/usr/bin/dockerd"


def test_a_version_is_run_once_then_read_until_the_binary_changes(tmp_path: Path) -> None:
    dockerd = _binary(tmp_path, "#!/bin/sh\n# 20.10\n")
    runner = ScriptedRunner()
    runner.expect(programs.program_version(dockerd), stdout="Docker version 20.10.24+dfsg1, build 297e128\n")
    assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    assert runner.exhausted
    assert (
        observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    )  # no command: the runner is empty
    _binary(tmp_path, "#!/bin/sh\n# 25.0, a longer file\n")  # upgraded in place
    runner.expect(programs.program_version(dockerd), stdout="Docker version 25.0.3, build 4debf41\n")
    assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "25.0.3"
    assert runner.exhausted


def test_a_broken_or_unwritable_cache_only_costs_the_command(tmp_path: Path) -> None:
    dockerd = _binary(tmp_path, "#!/bin/sh\n")
    cache = observe.under(tmp_path, observe_engine.VERSION_CACHE)
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    runner = ScriptedRunner()
    runner.expect(programs.program_version(dockerd), stdout="Docker version 20.10.24\n")
    assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    assert (
        observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    )  # rewritten: read now
    cache.unlink()
    if os.geteuid() != 0:  # root writes anyway
        cache.parent.chmod(0o500)
        runner.expect(programs.program_version(dockerd), stdout="Docker version 20.10.24\n")
        assert observe_engine.cached_program_versions(runner, [dockerd], tmp_path)[dockerd] == "20.10.24"
    assert runner.exhausted


def _engine_host(root: Path, mounts: str) -> PoolSpec:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mounts)
    (root / "dev/mapper").mkdir(parents=True)
    (root / "dev/mapper/docker-docker--data").write_text("")
    return PoolSpec(engine="docker-overlay2-thin")


def test_a_volume_mounted_on_the_data_root_is_not_probed(tmp_path: Path) -> None:
    """A converging apply reads the volume's filesystem from the kernel's mount table: no wipefs."""
    spec = _engine_host(tmp_path, "30 1 253:4 / /var/lib/docker rw,noatime - xfs /dev/mapper/docker-docker--data rw\n")
    state = observe_engine.engine_state(ScriptedRunner(), spec, tmp_path)  # strict: any command fails the test
    assert state.root("/var/lib/docker") == StoreRoot("/dev/mapper/docker-docker--data", 0, "xfs")


def test_a_volume_not_mounted_there_is_probed(tmp_path: Path) -> None:
    spec = _engine_host(tmp_path, "20 1 254:1 / / rw - ext4 /dev/vda1 rw\n")
    runner = ScriptedRunner()
    runner.expect(programs.wipefs_probe("/dev/mapper/docker-docker--data"), stdout='{"signatures": [{"type": "xfs"}]}')
    state = observe_engine.engine_state(runner, spec, tmp_path)
    assert state.root("/var/lib/docker") == StoreRoot("", 0, "xfs") and runner.exhausted
