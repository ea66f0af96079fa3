"""containerd-devmapper: containerd's devmapper snapshotter on the pool (config.toml versions 2 and 3)."""

from __future__ import annotations

from typing import Any

from thinpool.core.health import Finding
from thinpool.core.model import EngineState
from thinpool.core.plan import Action
from thinpool.core.spec import PoolSpec
from thinpool.core.units import MiB
from thinpool.engines import EngineChanges, PoolTarget, docker, systemd
from thinpool.engines.docker_devicemapper import refuse_shared_pool
from thinpool.errors import SpecError

CONFIG_TOML = "/etc/containerd/config.toml"
CONTAINERD_DROP_IN = "/etc/systemd/system/containerd.service.d/thinpool.conf"
PLUGIN = "io.containerd.snapshotter.v1.devmapper"
ROOT_PATH = "/var/lib/containerd/io.containerd.snapshotter.v1.devmapper"


def snapshotter_settings(spec: PoolSpec, target: PoolTarget) -> dict[str, Any]:
    return {
        "pool_name": target.dm_name,
        "root_path": ROOT_PATH,
        # containerd reads sizes in binary units: "10240MB" is 10 GiB
        "base_image_size": f"{spec.engine_options.base_size // MiB}MB",
        "discard_blocks": True,
        "fs_type": "xfs",
    }


def _config_version(document: Any, state: EngineState, exists: bool) -> int:
    if not exists:
        major = docker.major_version(state.versions.get("containerd", ""))
        return 3 if major is not None and major >= 2 else 2
    version = document.get("version", 1)
    if version not in (2, 3):
        raise SpecError(
            f"{CONFIG_TOML} uses the version {version} layout; thinpool writes versions 2 and 3 only",
            fix=f"migrate it first: containerd config migrate > {CONFIG_TOML}.new, review, then move it in place",
        )
    return int(version)


def merged_config(text: str | None, settings: dict[str, Any], state: EngineState, *, force: bool) -> str | None:
    """config.toml with the snapshotter's section set; comments and every other section kept."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    exists = bool(text and text.strip())
    try:
        document = tomlkit.parse(text or "")
    except ParseError as error:
        raise SpecError(
            f"{CONFIG_TOML} is not valid TOML ({error}); it was left untouched",
            fix=f"repair {CONFIG_TOML} (containerd config dump shows what containerd reads)",
        ) from error
    version = _config_version(document, state, exists)
    if not exists:
        document["version"] = version
    plugins = document.setdefault("plugins", tomlkit.table(is_super_table=True))
    section = plugins.setdefault(PLUGIN, tomlkit.table())
    present = section.get("pool_name")
    if present not in (None, settings["pool_name"]) and not force:
        raise SpecError(
            f"{CONFIG_TOML} already gives the devmapper snapshotter pool {present!r}",
            fix="pass --force to point it at this pool instead (snapshots in the other pool are lost to containerd)",
        )
    if all(section.get(key) == value for key, value in settings.items()):
        return None
    for key, value in settings.items():
        section[key] = value
    return tomlkit.dumps(document)


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    refuse_shared_pool(target)
    warnings = (
        []
        if "containerd" in state.versions or not state.observed
        else ["containerd was not found: config.toml is written anyway"]
    )
    content = merged_config(
        state.files.get(CONFIG_TOML), snapshotter_settings(spec, target), state, force=spec.engine_options.force
    )
    actions: tuple[Action, ...] = ()
    if content is not None:
        reason = f"devmapper snapshotter on pool {target.dm_name}"
        actions += (
            Action("write", "engine-config", "containerd config.toml", reason, path=CONFIG_TOML, content=content),
        )
    unit = systemd.device_unit(target.dm_path)
    why = f"containerd starts once {target.dm_path} is there"
    actions += systemd.drop_in_action(
        state, CONTAINERD_DROP_IN, "containerd.service", {"Requires": unit, "After": unit}, why
    )
    changes = actions + systemd.reload_action(state, actions)
    steps = systemd.restart_steps("containerd", actions)
    if actions:
        steps += ('use it with: ctr run --snapshotter devmapper ..., or snapshotter = "devmapper" for CRI',)
    return EngineChanges(changes, tuple(warnings), steps)


def doctor(state: EngineState, dm_name: str, configure: str) -> list[Finding]:
    import tomllib

    text = state.files.get(CONFIG_TOML)
    if not text:
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return [
            Finding(
                "warning",
                "config-toml-invalid",
                f"{CONFIG_TOML} is not valid TOML: containerd will not start",
                "repair it; containerd config dump shows what containerd reads",
            )
        ]
    pool = data.get("plugins", {}).get(PLUGIN, {}).get("pool_name")
    if pool is None or pool == dm_name:
        return []
    return [
        Finding(
            "warning",
            "engine-other-pool",
            f"containerd's devmapper snapshotter uses pool {pool}, not {dm_name}",
            f"{configure.replace('docker-devicemapper', 'containerd-devmapper')} --force",
        )
    ]
