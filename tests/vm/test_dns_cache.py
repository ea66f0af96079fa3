"""--dns-cache with the real parts: Debian's dnsmasq reads thinpool's configuration and answers a container on
Docker's bridge; doctor says when it stops answering, and stops saying so when it is back."""

from __future__ import annotations

import json

import pytest

from thinpool.rehearse.vm import VM

from .helpers import start_daemon, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

APPLY = ("--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "--dns-cache", "/dev/vda")
# Bridge networking (docker0 at 172.17.0.1), no iptables: a container reaches the host's bridge address.
DOCKERD_BRIDGE = ("dockerd", "--iptables=false", "--ip-masq=false")
# What Debian's dnsmasq.service reads, its package's /etc/dnsmasq.conf aside (it only holds comments).
DNSMASQ = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--conf-dir=/etc/dnsmasq.d,.dpkg-dist"]
RECORD = "host-record=cache-test.example,192.0.2.10"  # a name only this dnsmasq knows (the VM has no network)
PROBE = "from thinpool.system import dns; print(dns.answers('172.17.0.1'), dns.answers('127.0.0.1'))"


def _dns_findings(vm: VM) -> list[dict[str, str]]:
    report = json.loads(vm.thinpool("doctor", "--json", check=False).stdout)
    return [finding for finding in report["findings"] if finding["code"] == "dns-not-answering"]


def test_a_container_resolves_through_the_cache_and_doctor_notices_when_it_stops(
    vm: VM, images: dict[str, str]
) -> None:
    code, result, err = thinpool_json(vm, "apply", "--yes", *APPLY)
    assert code == 0, err or result
    assert json.loads(vm.run(["cat", "/etc/docker/daemon.json"]).stdout)["dns"] == ["172.17.0.1"]
    vm.run(["bash", "-c", f"echo {RECORD} > /etc/dnsmasq.d/test-record.conf"])
    dnsmasq = vm.start_background(DNSMASQ)  # before docker0 exists: bind-dynamic binds it when it appears
    start_daemon(vm, DOCKERD_BRIDGE, ["docker", "version"], "/tmp/dockerd.log")
    vm.run(["docker", "import", images["rootfs"], "tiny:1"], timeout=300)
    looked_up = vm.run(
        ["docker", "run", "--rm", "tiny:1", "nslookup", "-type=a", "cache-test.example"], timeout=300
    ).stdout
    assert "172.17.0.1" in looked_up and "192.0.2.10" in looked_up  # asked the cache, got its answer
    assert vm.python("-c", PROBE).stdout.split() == ["True", "False"]  # the bridge address only, not loopback
    assert _dns_findings(vm) == []

    vm.run(["kill", str(dnsmasq)])
    down = _dns_findings(vm)
    assert [finding["severity"] for finding in down] == ["critical"]
    assert "172.17.0.1" in down[0]["problem"] and down[0]["fix"].startswith("systemctl restart dnsmasq")
    failed = vm.run(
        ["docker", "run", "--rm", "tiny:1", "nslookup", "-type=a", "cache-test.example"], check=False, timeout=300
    )
    assert "192.0.2.10" not in failed.stdout  # what the finding warns of: names no longer resolve

    vm.start_background(DNSMASQ)
    vm.run(["bash", "-c", "for i in $(seq 50); do ss -lun | grep -q 172.17.0.1:53 && exit 0; sleep 0.2; done; exit 1"])
    assert _dns_findings(vm) == []  # back: the finding is gone
    code, result, err = thinpool_json(vm, "apply", "--yes", *APPLY)
    assert code == 0 and result["changed"] is False, err or result
