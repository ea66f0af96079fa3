"""The engines' side of the system, read for a spec: their configuration files, versions (cached), data root,
thin volume, certificates and DNS. Only the commands that plan or check an engine import it; ``status``
reads the pool alone (system/observe.py).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from thinpool import engines
from thinpool.config import containerd_toml, daemon_json
from thinpool.core.model import EngineState, Observed, Source, StoreRoot
from thinpool.core.programs import argv as programs
from thinpool.core.programs.output import parse_ip_addresses, parse_wipefs
from thinpool.core.spec import NO_ENGINE, PoolSpec
from thinpool.core.tls import Certificate
from thinpool.engines import docker
from thinpool.errors import MissingTool
from thinpool.system import files
from thinpool.system.observe import (
    ROOT,
    mounted_at,
    observe,
    read_crypt,
    read_files,
    read_lvm_local,
    systemd_running,
    under,
)
from thinpool.system.runner import Runner

ENGINE_PROGRAMS = ("dockerd", "containerd", "podman")  # their versions matter (Docker 25 has no devicemapper)
HELPER_PROGRAMS = ("dnsmasq", "resolvconf")  # only whether they are installed
VERSION_CACHE = "/var/cache/thinpool/program-versions.json"
_VERSION = re.compile(r"\bv?(\d+\.\d+\.\d+)")


def observe_for(spec: PoolSpec, runner: Runner, root: Path = ROOT) -> Observed:
    """The real system as ``spec`` needs it: devices, lvm, the profile, and (with an engine) the engine."""
    observed = observe(runner, spec.devices, profiles=(spec.profile_name,), root=root, vg=spec.vg)
    observed = replace(observed, lvm_local=read_lvm_local(runner, root))
    if spec.encryption is not None:
        observed = read_crypt(runner, spec.devices, spec.encryption, observed, root)
    if spec.vg not in observed.vgs and under(root, f"/dev/{spec.vg}").exists():
        observed = replace(observed, taken_dev_names=frozenset({spec.vg}))
    if spec.engine == NO_ENGINE:
        return observed
    return replace(observed, engine=engine_state(runner, spec, root))


def find_program(name: str, root: Path = ROOT) -> str:
    """The program's absolute path on PATH, looked up under ``root`` ("" when there is none)."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = under(root, f"{folder}/{name}")
        if folder.startswith("/") and candidate.is_file() and os.access(candidate, os.X_OK):
            return f"{folder.rstrip('/')}/{name}"
    return ""


def program_version(runner: Runner, path: str) -> str:
    done = runner.run(programs.program_version(path), check=False, timeout=30)
    found = _VERSION.search(done.stdout)
    return found.group(1) if done.returncode == 0 and found else ""


def _stamp(path: Path) -> str:
    """What changes when the binary is replaced: inode, size and modification time."""
    found = path.stat()
    return f"{found.st_ino}:{found.st_size}:{found.st_mtime_ns}"


def _read_cache(cache: Path) -> dict[str, Any]:
    """The cache's entries; a missing, unreadable or broken one is empty (and rewritten)."""
    try:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def cached_program_versions(runner: Runner, paths: Iterable[str], root: Path = ROOT) -> dict[str, str]:
    """Each program's version, run once per binary: kept in VERSION_CACHE until the file at its path changes.

    For the watch commands, which run every minute, and converging applies: ``dockerd --version``
    costs more than the pool's lvm report (seconds under emulation). The cache is read once and
    written once; one that cannot be read or written is simply not used.
    """
    cache = under(root, VERSION_CACHE)
    known = _read_cache(cache)
    versions, learned = {}, {}
    for path in paths:
        try:
            stamp = _stamp(under(root, path))
        except OSError:
            versions[path] = program_version(runner, path)
            continue
        entry = known.get(path)
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("version"), str):
            versions[path] = str(entry["version"])
            continue
        versions[path] = program_version(runner, path)
        if versions[path]:
            learned[path] = {"stamp": stamp, "version": versions[path]}
    if learned:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            files.write_atomically(cache, json.dumps({**known, **learned}) + "\n")
        except OSError:
            pass
    return versions


def _entries(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def host_names() -> tuple[str, ...]:
    import socket

    return tuple(dict.fromkeys(name for name in (socket.gethostname(), socket.getfqdn()) if name))


def host_addresses(runner: Runner) -> tuple[str, ...]:
    try:
        found = runner.run(programs.ip_addresses(), check=False)
    except MissingTool:
        return ()
    return parse_ip_addresses(found.stdout) if found.returncode == 0 else ()


def _daemon_json(state: EngineState) -> daemon_json.DaemonJson | None:
    """daemon.json as read into ``state``; None when it is missing or does not parse."""
    parsed = daemon_json.parse(state.source(daemon_json.PATH))
    return parsed if isinstance(parsed, daemon_json.DaemonJson) else None


def daemon_certificates(parsed: daemon_json.DaemonJson | None, root: Path = ROOT) -> tuple[Certificate, ...]:
    """The certificates daemon.json's tlscert and tlscacert name (nothing is imported without them)."""
    if parsed is None or not parsed.tls_certificates:
        return ()
    import importlib.util

    if importlib.util.find_spec("cryptography") is None:  # a bare python3 (Ansible's target): not checked
        return ()
    from thinpool.system import tls

    found = []
    for path in parsed.tls_certificates:
        certificate = tls.read_certificate(under(root, path))
        if certificate is not None:
            found.append(replace(certificate, path=path))  # as daemon.json names it, not under the test root
    return tuple(found)


def silent_dns(parsed: daemon_json.DaemonJson | None) -> tuple[str, ...]:
    """The DNS servers daemon.json gives containers that do not answer a query of ours."""
    if parsed is None or not parsed.dns:
        return ()
    from thinpool.system import dns

    return tuple(address for address in parsed.dns if not dns.answers(address))


def tls_state(runner: Runner, spec: PoolSpec, state: EngineState, root: Path = ROOT) -> EngineState:
    """What daemon.json's TLS and DNS lead to: its certificates, the DNS servers that do not answer (not under a
    test's root folder, which has no resolvers to ask); for --tls-generate what thinpool made and the host's names."""
    parsed = _daemon_json(state)
    silent = silent_dns(parsed) if root == ROOT else ()
    state = replace(state, certificates=daemon_certificates(parsed, root), dns_silent=silent, observed_at=time.time())
    if not spec.engine_options.tls_generate:
        return state
    from thinpool.system import tls

    return replace(
        state, tls_files=tls.read_files(root), host_names=host_names(), host_addresses=host_addresses(runner)
    )


def engine_files(root: Path = ROOT) -> EngineState:
    """Only the engines' configuration files (what destroy checks); no program is run."""
    paths = engines.config_files()
    files, unreadable = read_files(paths, root)
    imported, imported_unreadable = read_files(containerd_imports(files.get(containerd_toml.PATH, ""), root), root)
    return EngineState(
        observed=True,
        files=files | imported,
        unreadable=unreadable | imported_unreadable,
        links=read_links(paths, root),
    )


MAX_IMPORTS = 64  # more drop-ins than any host has; a glob matching thousands is not read whole


def containerd_imports(text: str, root: Path = ROOT) -> list[str]:
    """The files config.toml's ``imports`` name (glob patterns), in order."""
    parsed = containerd_toml.parse(Source(containerd_toml.PATH, text)) if text else None
    if not isinstance(parsed, containerd_toml.ContainerdConfig):
        return []
    found: list[str] = []
    for pattern in parsed.import_patterns:
        matches = sorted(under(root, pattern).parent.glob(posixpath.basename(pattern)))
        found += ["/" + str(match.relative_to(root)) for match in matches]
    return list(dict.fromkeys(found))[:MAX_IMPORTS]


def read_links(paths: Iterable[str], root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """The symbolic links among ``paths``: what each says, and whether its target exists."""
    found = {}
    for path in paths:
        file = under(root, path)
        if file.is_symlink():
            found[path] = (os.readlink(file), file.exists())
    return found


def engine_state(runner: Runner, spec: PoolSpec, root: Path = ROOT) -> EngineState:
    """The engines' files, versions (from VERSION_CACHE while their binaries are unchanged), data root and volume."""
    found_programs = {name: path for name in ENGINE_PROGRAMS if (path := find_program(name, root))}
    by_path = cached_program_versions(runner, found_programs.values(), root)
    versions = {name: by_path[path] for name, path in found_programs.items() if by_path[path]}
    found_programs |= {name: path for name in HELPER_PROGRAMS if (path := find_program(name, root))}
    files = engine_files(root)
    stores = engines.adapter(spec.engine).stores(spec, files) if spec.engine != NO_ENGINE else ()
    docker_root = spec.engine_options.data_root
    watched = {docker_root: "", docker.CONTAINERD_ROOT: ""} | dict.fromkeys(engines.data_folders(files), "")
    watched |= {store.root: store.device_in(spec.vg) for store in stores}
    files = tls_state(runner, spec, files, root)
    return replace(
        files,
        versions=versions,
        programs=found_programs,
        systemd=systemd_running(root),
        udev=under(root, "/run/udev/control").exists(),
        docker_devicemapper_state=_entries(under(root, f"{docker_root}/devicemapper/metadata")) > 0,
        roots={path: store_root(runner, path, volume, root) for path, volume in watched.items()},
    )


def store_root(runner: Runner, path: str, volume: str, root: Path = ROOT) -> StoreRoot:
    """What is mounted on ``path``, how many entries it holds, and the filesystem on ``volume`` ("" for none)."""
    source, mounted_type = mounted_at(path, root)
    filesystem = ""
    if volume and source == volume:
        filesystem = mounted_type  # mounted where it belongs: the kernel says what it is, no probe needed
    elif volume and under(root, volume).exists():
        found = runner.run(programs.wipefs_probe(volume), check=False)
        filesystem = next(iter(parse_wipefs(found.stdout)), "") if found.returncode == 0 else ""
    folder = under(root, path)
    return StoreRoot(source, _entries(folder), filesystem, _on_root_filesystem(folder, root))


def _on_root_filesystem(folder: Path, root: Path) -> bool:
    """``folder`` exists on the filesystem mounted at ``root``, not on one mounted below it."""
    try:
        return folder.stat().st_dev == root.stat().st_dev
    except OSError:
        return False
