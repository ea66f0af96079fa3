"""What Docker engines share: daemon.json merging, the version gate, API sockets, the drop-in."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import urlsplit

from thinpool.config import daemon_json
from thinpool.config.document import ConfigError, Problem
from thinpool.core import tls
from thinpool.core.findings import Finding, Severity
from thinpool.core.model import EngineState
from thinpool.core.plan import Action, ActionKind, Target
from thinpool.core.programs import argv as programs
from thinpool.core.spec import EngineOptions
from thinpool.engines import systemd
from thinpool.engines.target import PoolTarget
from thinpool.errors import SpecError

DAEMON_JSON = daemon_json.PATH
DOCKER_DROP_IN = "/etc/systemd/system/docker.service.d/thinpool.conf"
DEVICEMAPPER_REMOVED_IN = 25
DNSMASQ_CONF = "/etc/dnsmasq.d/thinpool-docker.conf"  # Debian's dnsmasq.service reads /etc/dnsmasq.d
DEFAULT_BRIDGE = "172.17.0.1"  # docker0's address unless daemon.json sets bip
# With resolvconf installed, Debian's dnsmasq.service makes 127.0.0.1 the host's resolver unless
# this file excepts lo; the cache listens on the bridge address only, so the host would lose DNS.
DNSMASQ_DEFAULTS = "/etc/default/dnsmasq"


def major_version(version: str) -> int | None:
    found = re.match(r"(\d+)\.", version)
    return int(found.group(1)) if found else None


# Docker's containerd image store: images and containers live in containerd's snapshotters, under containerd's
# root, which data-root does not move. An opt-in from Docker 24, the default of fresh installs from Docker 29.
SNAPSHOTTER_FEATURE = "containerd-snapshotter"
CONTAINERD_STORE_DEFAULT_IN = 29
CONTAINERD_ROOT = "/var/lib/containerd"  # the system containerd's root (config.toml root), Debian's dockerd uses it
DEFAULT_DATA_ROOT = "/var/lib/docker"
OUTSIDE_POOL = "engine-data-outside-pool"


def layer_links(data_root: str) -> str:
    """The overlay2 driver's folder of short links: one entry per image or container layer."""
    return f"{data_root}/overlay2/l"


CLASSIC_DRIVERS = ("overlay2", "devicemapper", "btrfs", "zfs", "vfs", "fuse-overlayfs", "aufs")


def snapshotter_feature(settings: dict[str, Any]) -> bool | None:
    """daemon.json's features.containerd-snapshotter: True or False when set, None when not."""
    features = settings.get("features")
    value = features.get(SNAPSHOTTER_FEATURE) if isinstance(features, dict) else None
    return value if isinstance(value, bool) else None


def uses_containerd_store(settings: dict[str, Any], version: str) -> bool:
    """Whether dockerd keeps images in the containerd image store: the feature when daemon.json sets it; else
    Docker 29 and newer on a fresh install with no classic storage-driver named (so, possibly)."""
    feature = snapshotter_feature(settings)
    if feature is not None:
        return feature
    major = major_version(version)
    return major is not None and major >= CONTAINERD_STORE_DEFAULT_IN and "storage-driver" not in settings


def classic_store_keys(settings: dict[str, Any], state: EngineState, force: bool) -> dict[str, Any]:
    """The daemon.json keys that keep Docker on the classic store, whose overlay2 data the thin volume holds.

    daemon.json that turns the containerd store on is refused (its images and containers would stay off the
    pool, and storage-driver overlay2 names no snapshotter: every docker run would fail) unless ``force``. On
    Docker 29 and newer, whose fresh installs default to the containerd store, the choice is written down.
    """
    feature = snapshotter_feature(settings)
    if feature and not force:
        raise SpecError(
            f'{DAEMON_JSON} turns on Docker\'s containerd image store ("features": {{"{SNAPSHOTTER_FEATURE}": '
            f"true}}): images and containers would live in {CONTAINERD_ROOT}, off the pool, and storage-driver "
            'overlay2 is no containerd snapshotter (every docker run would fail: "snapshotter not loaded")',
            fix="use --engine docker-containerd-thin to keep the containerd store and put it on the pool too, or "
            "pass --force to switch Docker to the classic store on the thin volume (images in the containerd "
            "store are hidden then: docker save what you need first)",
        )
    major = major_version(state.versions.get("dockerd", ""))
    if feature is False or (feature is None and (major is None or major < CONTAINERD_STORE_DEFAULT_IN)):
        return {}
    features = settings.get("features")
    return {"features": {**(features if isinstance(features, dict) else {}), SNAPSHOTTER_FEATURE: False}}


def store_findings(state: EngineState, data: dict[str, Any], target: PoolTarget) -> list[Finding]:
    """Docker's containerd image store where the classic store was wired: broken, or holding its data off the pool."""
    if not uses_containerd_store(data, state.versions.get("dockerd", "")):
        return []
    fix = (
        f"{configure_command('docker-containerd-thin', target)} (the containerd store, containerd's root on a thin "
        f'volume too), or {configure_command("docker-overlay2-thin", target)} --force ("{SNAPSHOTTER_FEATURE}": '
        "false: the classic store on the thin volume; docker save what the containerd store holds first); then "
        "systemctl restart containerd docker"
    )
    driver = data.get("storage-driver")
    if driver in CLASSIC_DRIVERS:
        problem = (
            f"daemon.json turns on Docker's containerd image store and names storage-driver {driver!r}, which is no "
            f'containerd snapshotter: every docker run fails ("snapshotter not loaded: {driver}")'
        )
        return [Finding(Severity.CRITICAL, "docker-store-mismatch", problem, fix)]
    data_root = state.root(_data_root(data)).source
    if not data_root or state.root(CONTAINERD_ROOT).source:
        return []
    problem = (
        f"Docker uses the containerd image store: its images and containers are in {CONTAINERD_ROOT}, which is not "
        f"on a thin volume (only {data_root} on the data root is): they fill the root filesystem"
    )
    return [Finding(Severity.WARNING, OUTSIDE_POOL, problem, fix)]


def _data_root(data: dict[str, Any]) -> str:
    root = data.get("data-root")
    return root if isinstance(root, str) and root.startswith("/") else DEFAULT_DATA_ROOT


def layers_findings(state: EngineState, data: dict[str, Any], target: PoolTarget) -> list[Finding]:
    """The classic store's layers on the root filesystem: Docker's data is not on the pool at all."""
    if uses_containerd_store(data, state.versions.get("dockerd", "")):
        return []
    data_root = _data_root(data)
    seen = state.root(layer_links(data_root))
    if not (seen.entries and seen.on_root_filesystem):
        return []
    problem = (
        f"Docker keeps {seen.entries} image and container layers in {data_root} on the root filesystem, not on a "
        "thin volume: they fill it, and the pool's monitoring, autoextend and trims do not reach them"
    )
    fix = (
        f"stop Docker, move {data_root} aside (mv {data_root} {data_root}.old), then "
        f"{configure_command('docker-overlay2-thin', target)} and start Docker (docker save and load, or pull, "
        "the images you need)"
    )
    return [Finding(Severity.WARNING, OUTSIDE_POOL, problem, fix)]


def reports_containerd_root(state: EngineState) -> bool:
    """Docker's own rule already names containerd's root as off the pool (its containerd image store)."""
    parsed = daemon_json.parse(state.source(DAEMON_JSON))
    if not isinstance(parsed, daemon_json.DaemonJson):
        return False
    found = store_findings(state, parsed.data, PoolTarget("", "", 0))
    return any(finding.code == OUTSIDE_POOL for finding in found)


def data_folders(state: EngineState) -> tuple[str, ...]:
    """The classic store's layers (Docker's containerd image store is containerd's: its adapter names it)."""
    parsed = daemon_json.parse(state.source(DAEMON_JSON))
    data = parsed.data if isinstance(parsed, daemon_json.DaemonJson) else {}
    return (layer_links(_data_root(data)),)


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
        parts = urlsplit(host)  # checked by EngineOptions.validate
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


def _refusal(error: ConfigError) -> SpecError:
    if error.problem == Problem.UNREADABLE:
        return SpecError(f"{error}; it was left untouched", fix=f"check {error.path}'s permissions, then re-run")
    return SpecError(
        f"{error}; it was left untouched",
        fix=f"repair {error.path} (python3 -m json.tool {error.path} shows where), "
        "or --force to replace it (a backup is kept)",
    )


def daemon_newline(state: EngineState) -> str:
    return daemon_json.newline_of(state.files.get(DAEMON_JSON))


def current_settings(state: EngineState, force: bool) -> dict[str, Any]:
    """daemon.json's settings to merge into: {} when it is missing (or broken, with ``force``)."""
    parsed = daemon_json.parse(state.source(DAEMON_JSON))
    if isinstance(parsed, daemon_json.DaemonJson):
        return dict(parsed.data)
    if parsed.problem == Problem.MISSING or (force and parsed.problem != Problem.UNREADABLE):
        return {}
    raise _refusal(parsed)


def _option_key(option: str) -> str:
    return option.split("=", 1)[0].strip()


def merged_daemon_json(
    current: dict[str, Any], driver: str, options: list[str], extra: dict[str, Any], *, force: bool, newline: str = "\n"
) -> str | None:
    """daemon.json with the storage driver, its options and ``extra`` keys; every other key kept.

    Returns None when the file already says all of it. Refuses another storage driver, or
    another devicemapper pool, unless ``force``.
    """
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
    return daemon_json.dumps(merged, newline)


def api_keys(options: EngineOptions) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    if options.hosts:
        keys["hosts"] = list(options.hosts)
    if options.dns:
        keys["dns"] = list(options.dns)
    if options.tls_files:
        keys.update(tls=True, tlsverify=True, tlscacert=options.tls_cacert, tlscert=options.tls_cert)
        keys["tlskey"] = options.tls_key
    if options.tls_generate:
        keys.update(tls.daemon_json_keys())
    return keys


def tls_actions(options: EngineOptions, state: EngineState) -> tuple[Action, ...]:
    """--tls-generate: make the CA, server and client certificates when missing, near expiry, lacking one
    of the host's names, or on --tls-renew; nothing when those on disk serve."""
    if not options.tls_generate:
        return ()
    files = state.tls_files or tls.TlsFiles()
    want = tls.wanted(state.host_names, state.host_addresses, options.tls_sans)
    reason = tls.remake_reason(files, want, state.observed_at, renew=options.tls_renew)
    if reason is None:
        return ()
    want = replace(want, new_ca=tls.renews_ca(files, state.observed_at))
    names = ", ".join((*want.names, *want.addresses))
    target = Target(path=tls.TLS_ROOT)
    op: Literal["create", "change"] = "create" if files.ca is None else "change"
    why = f"{reason}; dockerd's certificate names {names}; the client bundle is {tls.path(tls.CLIENT, '')}"
    return (Action(op, ActionKind.TLS, target, why, path=tls.TLS_ROOT, content=want.to_json()),)


def bridge_address(current: dict[str, Any]) -> str:
    """docker0's address: daemon.json's bip without its prefix length, or Docker's default.

    A bip that is not an address with a prefix length (dockerd refuses it too) is refused here, before it
    could reach dnsmasq's configuration.
    """
    address = _bridge(current)
    if address is None:
        raise SpecError(
            f"{DAEMON_JSON}'s bip {str(current.get('bip'))[:60]!r} is not an address with a prefix length; "
            "it was left untouched",
            fix=f'set it like "bip": "172.17.0.1/16" in {DAEMON_JSON}, or remove it for Docker\'s default',
        )
    return address


def _bridge(current: dict[str, Any]) -> str | None:
    """docker0's address, or None when daemon.json's bip is not an address with a prefix length."""
    bip = current.get("bip")
    if not isinstance(bip, str) or not bip:
        return DEFAULT_BRIDGE
    try:
        return str(ipaddress.ip_interface(bip).ip) if "/" in bip else None
    except ValueError:
        return None


def dnsmasq_conf(address: str) -> str:
    return (
        "\n".join(
            (
                "# Written by thinpool (--dns-cache): a DNS cache for Docker's containers.",
                "# Only the bridge's address: not loopback, not the host's other interfaces.",
                f"listen-address={address}",
                "# Bound when the address appears: dnsmasq may start before dockerd makes docker0.",
                "bind-dynamic",
                "# Upstream: the host's resolvers (/etc/resolv.conf). "
                "Never forward bare names or private reverse lookups.",
                "domain-needed",
                "bogus-priv",
                "cache-size=1000",
            )
        )
        + "\n"
    )


def dns_cache(
    options: EngineOptions, state: EngineState, current: dict[str, Any]
) -> tuple[tuple[Action, ...], dict[str, Any], list[str]]:
    """--dns-cache: dnsmasq's configuration (and its restart), daemon.json's dns, and warnings."""
    if not options.dns_cache:
        return (), {}, []
    address = bridge_address(current)
    content = dnsmasq_conf(address)
    warnings = []
    if state.observed and "dnsmasq" not in state.programs:
        warnings.append("dnsmasq is not installed: apt install dnsmasq (it reads the configuration written here)")
    defaults = state.files.get(DNSMASQ_DEFAULTS, "")
    if "resolvconf" in state.programs and not re.search(r"^DNSMASQ_EXCEPT=.*\blo\b", defaults, re.MULTILINE):
        warnings.append(
            f'resolvconf is installed: add DNSMASQ_EXCEPT="lo" to {DNSMASQ_DEFAULTS}, or dnsmasq.service '
            "makes 127.0.0.1 the host's resolver, where this cache does not listen"
        )
    if state.files.get(DNSMASQ_CONF) == content:
        return (), {"dns": [address]}, warnings
    why = f"a DNS cache for the containers on the bridge address {address}, forwarding to the host's resolvers"
    actions: tuple[Action, ...] = (
        Action("write", ActionKind.ENGINE_CONFIG, Target(name="dnsmasq"), why, path=DNSMASQ_CONF, content=content),
    )
    if state.systemd:
        restart = programs.systemctl_restart(("dnsmasq",))
        actions += (
            Action(
                "change",
                ActionKind.SYSTEMD,
                Target(name="dnsmasq.service"),
                "dnsmasq reads its new configuration (containers keep running)",
                restart,
            ),
        )
    return actions, {"dns": [address]}, warnings


def dns_findings(state: EngineState, data: dict[str, Any], configure: str) -> list[Finding]:
    """Each DNS server daemon.json gives containers that did not answer a query of ours."""
    found = []
    for address in state.dns_silent:
        if address == _bridge(data) and DNSMASQ_CONF in state.files:
            fix = (
                "apt install dnsmasq"
                if state.observed and "dnsmasq" not in state.programs
                else "systemctl restart dnsmasq; journalctl -u dnsmasq says why it stopped"
            )
            fix += f" (thinpool's cache: {DNSMASQ_CONF})"
        else:
            fix = f"start the DNS server at {address}, or give daemon.json another ({configure} --dns-cache --force)"
        problem = (
            f"daemon.json gives containers the DNS server {address}, which does not answer: they cannot resolve names"
        )
        found.append(Finding(Severity.CRITICAL, "dns-not-answering", problem, fix))
    return found


def tls_findings(state: EngineState, configure: str) -> list[Finding]:
    """dockerd's certificates that expired or expire within core.tls.RENEW_WITHIN_DAYS."""
    found = []
    for certificate in state.certificates:
        ours = certificate.path.startswith(tls.TLS_ROOT + "/")
        fix = (
            f"{configure} --tls-generate --tls-renew, then systemctl restart docker"
            if ours
            else f"renew {certificate.path}, then systemctl restart docker"
        )
        days = tls.days_left(certificate, state.observed_at)
        if days < 0:
            problem = f"{certificate.path} expired {-days} days ago: dockerd refuses every TLS client"
            found.append(Finding(Severity.CRITICAL, "tls-certificate-expired", problem, fix))
        elif days < tls.RENEW_WITHIN_DAYS:
            found.append(
                Finding(Severity.WARNING, "tls-certificate-expiring", f"{certificate.path} expires in {days} days", fix)
            )
    return found


def config_action(content: str | None, reason: str) -> tuple[Action, ...]:
    if content is None:
        return ()
    target = Target(name="docker daemon.json")
    return (Action("write", ActionKind.ENGINE_CONFIG, target, reason, path=DAEMON_JSON, content=content),)


def drop_in_action(
    state: EngineState, options: EngineOptions, unit: dict[str, str], why: str, before_start: tuple[str, ...] = ()
) -> tuple[Action, ...]:
    """docker.service waits for its storage; with --host, dockerd's own -H fd:// is dropped (it would clash)."""
    service = before_start
    if options.hosts:
        service += ("ExecStart=", f"ExecStart={state.programs.get('dockerd', '/usr/bin/dockerd')}")
    return systemd.drop_in_action(state, DOCKER_DROP_IN, "docker.service", unit, why, service)


def _loopback_only(data: dict[str, Any]) -> list[str]:
    exposed = []
    for host in data.get("hosts", []):
        parts = urlsplit(str(host))
        if parts.scheme == "tcp" and not _is_loopback(parts.hostname or "") and not data.get("tlsverify"):
            exposed.append(str(host))
    return exposed


def configure_command(engine: str, target: PoolTarget) -> str:
    return f"thinpool engine configure --engine {engine} --vg {target.vg} --pool {target.pool}"


def doctor(state: EngineState, target: PoolTarget) -> list[Finding]:
    """What daemon.json says that can hurt: another pool, no deferred removal, an open API, Docker 25."""
    configure = configure_command("docker-devicemapper", target)
    parsed = daemon_json.parse(state.source(DAEMON_JSON))
    if isinstance(parsed, ConfigError):
        if parsed.problem == Problem.MISSING:
            return layers_findings(state, {}, target)
        return [
            Finding(
                Severity.WARNING,
                "daemon-json-invalid",
                f"{parsed}: dockerd will not start",
                f"repair it (python3 -m json.tool {DAEMON_JSON}), or {configure} --force",
            )
        ]
    found = [
        Finding(
            Severity.CRITICAL,
            "tcp-without-tls",
            f"daemon.json opens Docker's API on {host} without TLS: anyone who reaches it is root on this host",
            f"{configure} --host unix:///run/docker.sock --force, or add --tlscacert/--tlscert/--tlskey",
        )
        for host in _loopback_only(parsed.data)
    ]
    found += tls_findings(state, configure) + dns_findings(state, parsed.data, configure)
    found += store_findings(state, parsed.data, target) + layers_findings(state, parsed.data, target)
    if parsed.storage_driver != "devicemapper":
        return found
    return found + _devicemapper_findings(state, parsed, target, configure)


def _devicemapper_findings(
    state: EngineState, parsed: daemon_json.DaemonJson, target: PoolTarget, configure: str
) -> list[Finding]:
    found = []
    pool = parsed.thinpooldev
    if pool != target.dm_path:
        found.append(
            Finding(
                Severity.WARNING,
                "engine-other-pool",
                f"daemon.json points Docker at {pool or 'no pool (loopback)'}, not at {target.dm_path}",
                f"{configure} --force",
            )
        )
    if "dm.use_deferred_removal=true" not in parsed.storage_opts:
        found.append(
            Finding(
                Severity.WARNING,
                "deferred-removal-off",
                "Docker's devicemapper runs without deferred removal: busy devices make container removal fail",
                configure,
            )
        )
    if "dm.blkdiscard=false" in parsed.storage_opts:
        found.append(
            Finding(
                Severity.WARNING,
                "discard-off",
                "Docker's devicemapper runs with dm.blkdiscard=false: deleted images and containers never "
                "give their space back to the pool",
                f"remove dm.blkdiscard=false from {DAEMON_JSON}'s storage-opts, then systemctl restart docker",
            )
        )
    major = major_version(state.versions.get("dockerd", ""))
    if major is not None and major >= DEVICEMAPPER_REMOVED_IN:
        found.append(
            Finding(
                Severity.CRITICAL,
                "docker-without-devicemapper",
                f"daemon.json asks for devicemapper but "
                f"dockerd {state.versions['dockerd']} has none: Docker will not start",
                configure_command("docker-overlay2-thin", target) + " --force",
            )
        )
    return found


def points_at(state: EngineState, target: PoolTarget) -> bool:
    """daemon.json hands ``target`` to devicemapper."""
    parsed = daemon_json.parse(state.source(DAEMON_JSON))
    return isinstance(parsed, daemon_json.DaemonJson) and parsed.thinpooldev == target.dm_path


def pool_users(state: EngineState, target: PoolTarget) -> tuple[str, ...]:
    """daemon.json, when it names the pool (a file that does not parse is searched as text)."""
    source = state.source(DAEMON_JSON)
    parsed = daemon_json.parse(source)
    if isinstance(parsed, daemon_json.DaemonJson):
        return (DAEMON_JSON,) if parsed.thinpooldev == target.dm_path else ()
    text = source.text or ""
    return (DAEMON_JSON,) if target.dm_name in text or f"{target.vg}/{target.pool}" in text else ()
