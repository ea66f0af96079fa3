"""What Docker engines share: daemon.json merging, the version gate, API sockets, the drop-in."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from thinpool.core.health import Finding
from thinpool.core.model import EngineState
from thinpool.core.plan import Action
from thinpool.core.spec import EngineOptions
from thinpool.engines import systemd
from thinpool.errors import SpecError

DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_DROP_IN = "/etc/systemd/system/docker.service.d/thinpool.conf"
DEVICEMAPPER_REMOVED_IN = 25


def major_version(version: str) -> int | None:
    found = re.match(r"(\d+)\.", version)
    return int(found.group(1)) if found else None


def refuse_removed_devicemapper(state: EngineState) -> None:
    major = major_version(state.versions.get("dockerd", ""))
    if major is not None and major >= DEVICEMAPPER_REMOVED_IN:
        raise SpecError(
            f"dockerd {state.versions['dockerd']} has no devicemapper storage driver (removed in Docker 25)",
            fix="use --engine docker-overlay2-thin (overlay2 on a thin volume, every Docker version) or "
            "--engine containerd-devmapper; or install Docker 24 or older",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_hosts(options: EngineOptions) -> list[str]:
    """Refuse a TCP API beyond loopback without TLS unless --insecure-tcp; return warnings."""
    warnings = []
    for host in options.hosts:
        parts = urlsplit(host)
        if parts.scheme not in ("unix", "tcp", "fd", "ssh"):
            raise SpecError(f"--host {host!r} is not unix://, tcp:// or fd://", fix="e.g. unix:///run/docker.sock")
        if parts.scheme != "tcp" or _is_loopback(parts.hostname or "") or options.tls:
            continue
        if not options.insecure_tcp:
            raise SpecError(
                f"--host {host} opens Docker's API to the network without TLS: anyone who reaches it is root here",
                fix="give --tlscacert, --tlscert and --tlskey (clients must then present a certificate), "
                "listen on 127.0.0.1, or pass --insecure-tcp if you really mean it",
            )
        warnings.append(f"{host}: Docker's API without TLS grants root on this host to whoever can reach it")
    return warnings


def _load(path: str, text: str | None, force: bool) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as error:
        if force:
            return {}
        raise SpecError(
            f"{path} is not valid JSON ({error}); it was left untouched",
            fix=f"repair {path} (python3 -m json.tool {path} shows where), or --force to replace it (a backup is kept)",
        ) from error
    if not isinstance(data, dict):
        if force:
            return {}
        raise SpecError(f"{path} does not hold a JSON object", fix=f"repair {path}, or --force to replace it")
    return data


def _option_key(option: str) -> str:
    return option.split("=", 1)[0].strip()


def daemon_json(text: str | None, driver: str, options: list[str], extra: dict[str, Any], *, force: bool) -> str | None:
    """daemon.json with the storage driver, its options and ``extra`` keys; every other key kept.

    Returns None when the file already says all of it. Refuses another storage driver, or
    another devicemapper pool, unless ``force``.
    """
    current = _load(DAEMON_JSON, text, force)
    present = current.get("storage-driver")
    if present not in (None, driver) and not force:
        raise SpecError(
            f"{DAEMON_JSON} already sets storage-driver {present!r}; switching hides every image and container",
            fix=f"pass --force to switch to {driver} (a backup of {DAEMON_JSON} is kept)",
        )
    existing_opts = [str(option) for option in current.get("storage-opts", [])]
    wanted_keys = {_option_key(option): option for option in options}
    for option in existing_opts:
        key = _option_key(option)
        if key == "dm.thinpooldev" and option != wanted_keys.get(key) and not force:
            raise SpecError(
                f"{DAEMON_JSON} already points Docker at another pool ({option})",
                fix="pass --force to point it at this pool instead (Docker's images in the other pool are lost to it)",
            )
    prefix = "dm." if driver == "devicemapper" else f"{driver}."
    kept = [opt for opt in existing_opts if _option_key(opt) not in wanted_keys and opt.startswith(prefix)]
    merged = {**current, "storage-driver": driver, **extra}
    merged["storage-opts"] = kept + options
    if not merged["storage-opts"]:
        del merged["storage-opts"]
    if merged == current:
        return None
    return json.dumps(merged, indent=2) + "\n"


def api_keys(options: EngineOptions) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    if options.hosts:
        keys["hosts"] = list(options.hosts)
    if options.dns:
        keys["dns"] = list(options.dns)
    if options.tls:
        keys.update(tls=True, tlsverify=True, tlscacert=options.tls_cacert, tlscert=options.tls_cert)
        keys["tlskey"] = options.tls_key
    return keys


def config_action(content: str | None, reason: str) -> tuple[Action, ...]:
    if content is None:
        return ()
    return (Action("write", "engine-config", "docker daemon.json", reason, path=DAEMON_JSON, content=content),)


def drop_in_action(state: EngineState, options: EngineOptions, unit: dict[str, str], why: str) -> tuple[Action, ...]:
    """docker.service waits for its storage; with --host, dockerd's own -H fd:// is dropped (it would clash)."""
    service: tuple[str, ...] = ()
    if options.hosts:
        service = ("ExecStart=", f"ExecStart={state.programs.get('dockerd', '/usr/bin/dockerd')}")
    return systemd.drop_in_action(state, DOCKER_DROP_IN, "docker.service", unit, why, service)


def _loopback_only(data: dict[str, Any]) -> list[str]:
    exposed = []
    for host in data.get("hosts", []):
        parts = urlsplit(str(host))
        if parts.scheme == "tcp" and not _is_loopback(parts.hostname or "") and not data.get("tlsverify"):
            exposed.append(str(host))
    return exposed


def doctor(state: EngineState, dm_path: str, configure: str) -> list[Finding]:
    """What daemon.json says that can hurt: another pool, no deferred removal, an open API, Docker 25."""
    text = state.files.get(DAEMON_JSON)
    if text is None:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return [
            Finding(
                "warning",
                "daemon-json-invalid",
                f"{DAEMON_JSON} is not valid JSON: dockerd will not start",
                f"repair it (python3 -m json.tool {DAEMON_JSON}), or {configure} --force",
            )
        ]
    if not isinstance(data, dict):
        return []
    found = [
        Finding(
            "critical",
            "tcp-without-tls",
            f"daemon.json opens Docker's API on {host} without TLS: anyone who reaches it is root on this host",
            f"{configure} --host unix:///run/docker.sock --force, or add --tlscacert/--tlscert/--tlskey",
        )
        for host in _loopback_only(data)
    ]
    if data.get("storage-driver") != "devicemapper":
        return found
    options = [str(option) for option in data.get("storage-opts", [])]
    pool = next((opt.split("=", 1)[1] for opt in options if opt.startswith("dm.thinpooldev=")), "")
    if pool != dm_path:
        found.append(
            Finding(
                "warning",
                "engine-other-pool",
                f"daemon.json points Docker at {pool or 'no pool (loopback)'}, not at {dm_path}",
                f"{configure} --force",
            )
        )
    if "dm.use_deferred_removal=true" not in options:
        found.append(
            Finding(
                "warning",
                "deferred-removal-off",
                "Docker's devicemapper runs without deferred removal: busy devices make container removal fail",
                configure,
            )
        )
    major = major_version(state.versions.get("dockerd", ""))
    if major is not None and major >= DEVICEMAPPER_REMOVED_IN:
        found.append(
            Finding(
                "critical",
                "docker-without-devicemapper",
                f"daemon.json asks for devicemapper but "
                f"dockerd {state.versions['dockerd']} has none: Docker will not start",
                configure.replace("docker-devicemapper", "docker-overlay2-thin") + " --force",
            )
        )
    return found
