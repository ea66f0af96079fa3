"""Read what the engine adapters plan against: config files, versions, the data root (I/O here)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from thinpool.core.model import EngineState
from thinpool.core.spec import PoolSpec
from thinpool.engines import containerd_devmapper, docker, docker_overlay2
from thinpool.lvm import commands
from thinpool.system import inspect
from thinpool.system.runner import Runner

FILES = (
    docker.DAEMON_JSON,
    docker.DOCKER_DROP_IN,
    containerd_devmapper.CONFIG_TOML,
    containerd_devmapper.CONTAINERD_DROP_IN,
    docker_overlay2.FSTAB,
)
_VERSION = re.compile(r"\bv?(\d+\.\d+\.\d+)")


def program_version(runner: Runner, path: str) -> str:
    done = runner.run((path, "--version"), check=False, timeout=30)
    found = _VERSION.search(done.stdout)
    return found.group(1) if done.returncode == 0 and found else ""


def mounted_source(mount_point: str, root: Path = Path("/")) -> str:
    """The source mounted on ``mount_point`` (the last mount wins), "" when none."""
    mounts = root / "proc/self/mounts"
    if not mounts.is_file():
        return ""
    source = ""
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1] == mount_point.rstrip("/"):
            source = fields[0]
    return source


def _entries(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def observe_engine(runner: Runner, spec: PoolSpec, root: Path = Path("/")) -> EngineState:
    programs = {name: path for name in ("dockerd", "containerd") if (path := shutil.which(name))}
    versions = {name: version for name, path in programs.items() if (version := program_version(runner, path))}
    data_root = spec.engine_options.data_root
    volume = f"/dev/mapper/{commands.dm_name(spec.vg, spec.engine_options.volume_name)}"
    filesystem = ""
    if spec.engine == "docker-overlay2-thin" and (root / volume.lstrip("/")).exists():
        found = runner.run(("wipefs", "--json", "--no-act", volume), check=False)
        filesystem = next(iter(inspect.parse_wipefs(found.stdout)), "") if found.returncode == 0 else ""
    return EngineState(
        observed=True,
        files=inspect.read_engine_configs(FILES, root),
        versions=versions,
        programs=programs,
        systemd=(root / "run/systemd/system").is_dir(),
        docker_devicemapper_state=_entries(root / data_root.lstrip("/") / "devicemapper/metadata") > 0,
        data_root_entries=_entries(root / data_root.lstrip("/")),
        data_root_source=mounted_source(data_root, root),
        volume_filesystem=filesystem,
    )


def _storage_of_daemon_json(text: str | None) -> dict[str, object]:
    import json

    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {"error": "not valid JSON"}
    if not isinstance(data, dict):
        return {"error": "not a JSON object"}
    keys = ("storage-driver", "storage-opts", "data-root", "hosts", "dns", "tlsverify")
    return {key: data[key] for key in keys if key in data}


def _devmapper_of_config_toml(text: str | None) -> dict[str, object]:
    import tomllib

    try:
        data = tomllib.loads(text or "")
    except tomllib.TOMLDecodeError:
        return {"error": "not valid TOML"}
    section = data.get("plugins", {}).get(containerd_devmapper.PLUGIN, {})
    return {"version": data.get("version", 1), **section} if text else {}


def describe(state: EngineState) -> dict[str, object]:
    """What 'thinpool engine show' prints: versions and the storage parts of each config."""
    return {
        "versions": dict(state.versions),
        "docker daemon.json": _storage_of_daemon_json(state.files.get(docker.DAEMON_JSON)),
        "containerd devmapper": _devmapper_of_config_toml(state.files.get(containerd_devmapper.CONFIG_TOML)),
        "data root mounted from": state.data_root_source or "(not a mount point)",
        "docker devicemapper state": state.docker_devicemapper_state,
        "systemd drop-ins": {
            path: "present"
            for path in (docker.DOCKER_DROP_IN, containerd_devmapper.CONTAINERD_DROP_IN)
            if path in state.files
        },
    }
