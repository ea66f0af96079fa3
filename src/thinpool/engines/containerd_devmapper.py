"""containerd-devmapper: containerd's devmapper snapshotter on the pool (config.toml versions 2 and 3)."""

from __future__ import annotations

import fnmatch
from typing import Any

from thinpool.config import containerd_toml
from thinpool.config.document import ConfigError, Problem
from thinpool.core.findings import Finding, Severity
from thinpool.core.model import EngineState
from thinpool.core.plan import Action, ActionKind, Target
from thinpool.core.spec import PoolSpec
from thinpool.core.units import MiB
from thinpool.engines import docker, systemd
from thinpool.engines.docker_devicemapper import refuse_shared_pool
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

CONFIG_TOML = containerd_toml.PATH
CONTAINERD_DROP_IN = "/etc/systemd/system/containerd.service.d/thinpool.conf"
PLUGIN = containerd_toml.DEVMAPPER
FILES = (CONFIG_TOML, CONTAINERD_DROP_IN)
ROOT_PATH = "/var/lib/containerd/io.containerd.snapshotter.v1.devmapper"
KEPT = ("root_path", "base_image_size", "fs_type")  # the snapshots containerd has depend on these


def largest_device(spec: PoolSpec, target: PoolTarget) -> tuple[str, int]:  # noqa: ARG001
    """containerd has no min_free_space guard: a snapshot may fill the pool."""
    return "each snapshot (base_image_size)", spec.engine_options.base_size


def snapshotter_settings(spec: PoolSpec, target: PoolTarget) -> dict[str, Any]:
    return {
        "pool_name": target.dm_name,
        "root_path": ROOT_PATH,
        # containerd reads sizes in binary units: "10240MB" is 10 GiB
        "base_image_size": f"{spec.engine_options.base_size // MiB}MB",
        "discard_blocks": True,
        "fs_type": "xfs",
    }


def _config_version(parsed: containerd_toml.ContainerdConfig | None, state: EngineState) -> int:
    if parsed is None:
        major = docker.major_version(state.versions.get("containerd", ""))
        return 3 if major is not None and major >= 2 else 2
    if parsed.version not in (2, 3):
        raise SpecError(
            f"{CONFIG_TOML} uses the version {parsed.version} layout; thinpool writes versions 2 and 3 only",
            fix=f"migrate it first: containerd config migrate > {CONFIG_TOML}.new, review, then move it in place",
        )
    return parsed.version


def _parsed(state: EngineState) -> containerd_toml.ContainerdConfig | None:
    """config.toml to merge into; None when there is none (or it is empty). A broken one is refused."""
    parsed = containerd_toml.parse(state.source(CONFIG_TOML))
    if isinstance(parsed, containerd_toml.ContainerdConfig):
        return parsed if (state.source(CONFIG_TOML).text or "").strip() else None
    if parsed.problem == Problem.MISSING:
        return None
    raise SpecError(
        f"{parsed}; it was left untouched",
        fix=f"repair {CONFIG_TOML} (containerd config dump shows what containerd reads)",
    )


def merged_config(state: EngineState, settings: dict[str, Any], *, force: bool) -> str | None:
    """config.toml with the snapshotter's section set; comments and every other section kept."""
    parsed = _parsed(state)
    version = _config_version(parsed, state)
    section = parsed.devmapper if parsed else {}
    present = section.get("pool_name")
    if present not in (None, settings["pool_name"]) and not force:
        raise SpecError(
            f"{CONFIG_TOML} already gives the devmapper snapshotter pool {present!r}",
            fix="pass --force to point it at this pool instead (snapshots in the other pool are lost to containerd)",
        )
    kept = [key for key in KEPT if key in section and section[key] != settings[key]]
    if present is not None and kept and not force:
        theirs = ", ".join(f"{key} = {section[key]!r}" for key in kept)
        raise SpecError(
            f"{CONFIG_TOML} already sets {theirs} for this pool; changing it orphans the snapshots containerd has",
            fix="keep them by passing the same values (--base-size), or --force to replace them (a backup is kept)",
        )
    for path, pool in imported_pools(state):
        if pool != settings["pool_name"]:
            raise SpecError(
                f"{path}, which {CONFIG_TOML} imports, gives the devmapper snapshotter pool {pool!r}; "
                "containerd reads it over config.toml, so thinpool's setting would not count",
                fix=f"remove that setting from {path} (or the import), then re-run",
            )
    return containerd_toml.edit(state.source(CONFIG_TOML).text or "", settings, version)


def _configs(state: EngineState) -> list[tuple[str, containerd_toml.ContainerdConfig]]:
    """config.toml and the drop-ins it imports that parse, in the order containerd merges them."""
    main = containerd_toml.parse(state.source(CONFIG_TOML))
    if not isinstance(main, containerd_toml.ContainerdConfig):
        return []
    found = [(CONFIG_TOML, main)]
    for pattern in main.import_patterns:
        for path in sorted(path for path in state.files if path != CONFIG_TOML and fnmatch.fnmatchcase(path, pattern)):
            parsed = containerd_toml.parse(state.source(path))
            if isinstance(parsed, containerd_toml.ContainerdConfig):
                found.append((path, parsed))
    return found


def imported_pools(state: EngineState) -> list[tuple[str, str]]:
    """(drop-in, pool) for each imported drop-in that names the devmapper snapshotter's pool."""
    return [
        (path, str(config.devmapper["pool_name"]))
        for path, config in _configs(state)[1:]
        if "pool_name" in config.devmapper
    ]


def disabled_by(state: EngineState) -> str:
    """The file whose disabled_plugins turns the devmapper snapshotter off ("" when none does)."""
    return next((path for path, config in _configs(state) if PLUGIN in config.disabled_plugins), "")


def plan(spec: PoolSpec, target: PoolTarget, state: EngineState) -> EngineChanges:
    refuse_shared_pool(target)
    warnings = (
        []
        if "containerd" in state.versions or not state.observed
        else ["containerd was not found: config.toml is written anyway"]
    )
    content = merged_config(state, snapshotter_settings(spec, target), force=spec.engine_options.force)
    disabled = disabled_by(state)
    if disabled:
        warnings.append(f"{disabled} lists {PLUGIN} in disabled_plugins: containerd will not load the snapshotter")
    actions: tuple[Action, ...] = ()
    if content is not None:
        reason = f"devmapper snapshotter on pool {target.dm_name}"
        target_name = Target(name="containerd config.toml")
        actions += (Action("write", ActionKind.ENGINE_CONFIG, target_name, reason, path=CONFIG_TOML, content=content),)
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


def doctor(state: EngineState, target: PoolTarget) -> list[Finding]:
    parsed = containerd_toml.parse(state.source(CONFIG_TOML))
    if isinstance(parsed, ConfigError):
        if parsed.problem == Problem.MISSING:
            return []
        return [
            Finding(
                Severity.WARNING,
                "config-toml-invalid",
                f"{parsed}: containerd will not start",
                "repair it; containerd config dump shows what containerd reads",
            )
        ]
    disabled = disabled_by(state)
    if disabled:
        problem = f"{disabled} lists {PLUGIN} in disabled_plugins: containerd does not load the snapshotter"
        fix = f"remove it from disabled_plugins in {disabled}, then systemctl restart containerd"
        return [Finding(Severity.WARNING, "snapshotter-disabled", problem, fix)]
    pool = next((pool for _path, pool in reversed(imported_pools(state))), parsed.devmapper.get("pool_name"))
    if pool is None or pool == target.dm_name:
        return []
    return [
        Finding(
            Severity.WARNING,
            "engine-other-pool",
            f"containerd's devmapper snapshotter uses pool {pool}, not {target.dm_name}",
            f"{docker.configure_command('containerd-devmapper', target)} --force",
        )
    ]


def data_folders(state: EngineState) -> tuple[str, ...]:  # noqa: ARG001 (the protocol's)
    """None: the devmapper snapshotter keeps its snapshots in the pool's own thin devices."""
    return ()


def pool_users(state: EngineState, target: PoolTarget) -> tuple[str, ...]:
    """config.toml, when it names the pool (a file that does not parse is searched as text)."""
    source = state.source(CONFIG_TOML)
    parsed = containerd_toml.parse(source)
    if isinstance(parsed, containerd_toml.ContainerdConfig):
        named = [path for path, config in _configs(state) if config.devmapper.get("pool_name") == target.dm_name]
        return tuple(named)
    text = source.text or ""
    return (CONFIG_TOML,) if target.dm_name in text or f"{target.vg}/{target.pool}" in text else ()


def stores(spec: PoolSpec, state: EngineState) -> tuple[()]:  # noqa: ARG001 (the protocol's signature)
    """No store on a thin volume: its data is in the pool's own thin devices."""
    return ()
