"""--dns-cache and doctor's DNS check: dnsmasq's configuration, daemon.json's dns, the probe against real sockets."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from thinpool.core.model import EngineState
from thinpool.core.plan import ActionKind
from thinpool.core.spec import EngineOptions, PoolSpec
from thinpool.core.units import GiB
from thinpool.engines import docker, docker_devicemapper, docker_overlay2
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError
from thinpool.system import dns

TARGET = PoolTarget("docker", "thinpool", 6 * GiB)
HOST = EngineState(
    observed=True,
    versions={"dockerd": "20.10.24"},
    systemd=True,
    programs={"dockerd": "/usr/sbin/dockerd", "dnsmasq": "/usr/sbin/dnsmasq"},
)


def _spec(engine: str = "docker-overlay2-thin", **options: object) -> PoolSpec:
    chosen = EngineOptions(**{"dns_cache": True, **options})  # type: ignore[arg-type]
    return PoolSpec(devices=("/dev/vda",), engine=engine, engine_options=chosen)


def _content(changes: EngineChanges, path: str) -> str:
    return next(action.content for action in changes.actions if action.path == path)


@pytest.mark.parametrize("engine", [docker_overlay2, docker_devicemapper])
def test_the_cache_listens_on_the_bridge_address_and_containers_are_sent_there(engine: object) -> None:
    state = replace(HOST, files={docker.DAEMON_JSON: json.dumps({"bip": "172.18.0.1/16", "log-driver": "local"})})
    name = "docker-overlay2-thin" if engine is docker_overlay2 else "docker-devicemapper"
    changes = engine.plan(_spec(name), TARGET, state)  # type: ignore[attr-defined]
    conf = _content(changes, docker.DNSMASQ_CONF)
    assert "listen-address=172.18.0.1\n" in conf and "bind-dynamic\n" in conf and "interface=" not in conf
    written = json.loads(_content(changes, docker.DAEMON_JSON))
    assert written["dns"] == ["172.18.0.1"] and written["log-driver"] == "local" and written["bip"] == "172.18.0.1/16"
    restart = [action for action in changes.actions if action.target.name == "dnsmasq.service"]
    assert [action.argv for action in restart] == [("systemctl", "restart", "dnsmasq")]
    kinds = [action.path or action.target.name for action in changes.actions]
    assert kinds.index(docker.DNSMASQ_CONF) < kinds.index("dnsmasq.service")
    settled = replace(state, files={docker.DAEMON_JSON: json.dumps(written), docker.DNSMASQ_CONF: conf})
    again = engine.plan(_spec(name), TARGET, settled)  # type: ignore[attr-defined]
    assert not [action for action in again.actions if "dnsmasq" in (action.path + action.target.name)]


def test_without_bip_the_cache_is_on_dockers_default_bridge_and_a_missing_dnsmasq_is_warned_of() -> None:
    state = replace(HOST, programs={"dockerd": "/usr/sbin/dockerd"}, systemd=False)
    changes = docker_overlay2.plan(_spec(), TARGET, state)
    assert "listen-address=172.17.0.1\n" in _content(changes, docker.DNSMASQ_CONF)
    assert not [
        action for action in changes.actions if action.kind == ActionKind.SYSTEMD and action.argv[1:2] == ("restart",)
    ]
    assert any("apt install dnsmasq" in warning for warning in changes.warnings)


def test_dns_cache_and_dns_together_are_refused() -> None:
    with pytest.raises(SpecError, match="either --dns-cache or --dns"):
        EngineOptions(dns=("10.0.0.2",), dns_cache=True).validate()


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq is not installed (thinpool.rehearse.deps)")
def test_real_dnsmasq_accepts_the_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "thinpool-docker.conf"
    conf.write_text(docker.dnsmasq_conf("172.17.0.1"))
    done = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "syntax check OK" in done.stderr, done.stderr
    conf.write_text(docker.dnsmasq_conf("172.17.0.1") + "listen-adress=1.2.3.4\n")  # the check does catch a typo
    assert subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, check=False).returncode


@pytest.fixture
def resolver() -> Iterator[tuple[int, list[bytes]]]:
    """A UDP server on loopback that answers every query with its header, QR set: a resolver as far as we ask."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.1)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                packet, sender = server.recvfrom(512)
            except TimeoutError:
                continue
            seen.append(packet)
            server.sendto(packet[:2] + bytes([packet[2] | 0x80]) + packet[3:], sender)

    thread = threading.Thread(target=serve)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


def test_the_probe_sees_a_resolver_answer_and_silence_time_out(resolver: tuple[int, list[bytes]]) -> None:
    port, seen = resolver
    assert dns.answers("127.0.0.1", port=port, timeout=2)
    assert seen and seen[0][12:] == dns.QUESTION  # one query of ours: localhost, A
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives, never answers
        assert not dns.answers("127.0.0.1", port=silent.getsockname()[1], timeout=0.2)
    assert not dns.is_answer(dns.query(7), 7)  # our own query is not an answer (QR unset)
    assert not dns.is_answer(b"\x00\x07\x81\x80", 7)  # too short


def test_doctor_says_when_the_containers_dns_server_does_not_answer() -> None:
    daemon = json.dumps({"storage-driver": "overlay2", "dns": ["172.17.0.1", "10.9.9.9"]})
    files = {docker.DAEMON_JSON: daemon, docker.DNSMASQ_CONF: docker.dnsmasq_conf("172.17.0.1")}
    state = replace(HOST, files=files, dns_silent=("172.17.0.1", "10.9.9.9"))
    found = [finding for finding in docker.doctor(state, TARGET) if finding.code == "dns-not-answering"]
    assert [finding.severity for finding in found] == ["critical", "critical"]
    assert found[0].fix.startswith("systemctl restart dnsmasq") and docker.DNSMASQ_CONF in found[0].fix
    assert found[1].fix.startswith("start the DNS server at 10.9.9.9")
    assert not [f for f in docker.doctor(replace(state, dns_silent=()), TARGET) if f.code == "dns-not-answering"]


def test_with_resolvconf_the_plan_warns_until_dnsmasq_leaves_loopback_alone() -> None:
    with_resolvconf = replace(HOST, programs={**HOST.programs, "resolvconf": "/sbin/resolvconf"})
    warned = docker_overlay2.plan(_spec(), TARGET, with_resolvconf).warnings
    assert any('DNSMASQ_EXCEPT="lo"' in warning for warning in warned)
    excepted = replace(
        with_resolvconf, files={docker.DNSMASQ_DEFAULTS: 'CONFIG_DIR=/etc/dnsmasq.d\nDNSMASQ_EXCEPT="lo"\n'}
    )
    assert not any("DNSMASQ_EXCEPT" in warning for warning in docker_overlay2.plan(_spec(), TARGET, excepted).warnings)
    assert not any("DNSMASQ_EXCEPT" in warning for warning in docker_overlay2.plan(_spec(), TARGET, HOST).warnings)
