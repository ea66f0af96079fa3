"""--tls-generate: the certificates made for real (cryptography), the rules for remaking them, the plan,
the executor, and doctor's expiry findings. dockerd and its client use them in tests/vm/test_remote_api.py."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from thinpool.app import executor
from thinpool.core import tls
from thinpool.core.model import EngineState
from thinpool.core.plan import ActionKind, Plan
from thinpool.core.spec import EngineOptions, PoolSpec
from thinpool.core.units import GiB
from thinpool.engines import docker, docker_overlay2
from thinpool.engines.target import PoolTarget
from thinpool.errors import SpecError
from thinpool.system import tls as tls_files
from thinpool.testing import ScriptedRunner

NOW = 1_800_000_000.0
TARGET = PoolTarget("docker", "thinpool", 6 * GiB)
HOST = EngineState(
    observed=True,
    versions={"dockerd": "20.10.24"},
    programs={"dockerd": "/usr/sbin/dockerd"},
    host_names=("build1", "build1.example.com"),
    host_addresses=("10.0.0.5", "fd00::5"),
    observed_at=NOW,
)
WANT = tls.wanted(HOST.host_names, HOST.host_addresses, ("builds.example.com", "192.0.2.7"))


def _spec(**options: object) -> PoolSpec:
    options = {"hosts": ("tcp://0.0.0.0:2376",), "tls_generate": True, **options}
    return PoolSpec(devices=("/dev/vda",), engine="docker-overlay2-thin", engine_options=EngineOptions(**options))  # type: ignore[arg-type]


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_server_certificate_names_the_host_loopback_and_every_san_once() -> None:
    assert WANT.names == ("build1", "build1.example.com", "builds.example.com", "localhost")
    assert WANT.addresses == ("10.0.0.5", "127.0.0.1", "192.0.2.7", "::1", "fd00::5")
    assert tls.wanted(("Build1.", "build1"), ("127.0.0.1",), ()).names == ("build1", "localhost")


def test_made_files_chain_to_the_ca_with_root_only_keys_and_the_ca_key_apart(tmp_path: Path) -> None:
    written = tls_files.make(tmp_path, WANT, new_ca=True)
    base = tmp_path / tls.TLS_ROOT.lstrip("/")
    assert len(written) == 8
    for folder in (tls.CA, tls.SERVER, tls.CLIENT):
        assert stat.S_IMODE((base / folder).stat().st_mode) == 0o700
    for key in (base / "ca/ca-key.pem", base / "server/key.pem", base / "client/key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(path.name for path in (base / "client").iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert not list(base.glob("server/ca-key.pem")) and not list(base.glob("client/ca-key.pem"))
    ca, server, client = _cert(base / "ca/ca.pem"), _cert(base / "server/cert.pem"), _cert(base / "client/cert.pem")
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == list(WANT.names)
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == set(WANT.addresses)
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_key_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    for leaf in (server, client):  # what Python 3.13's strict verification asks of a chain
        assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ca_key_id
    read = tls_files.read_files(tmp_path)
    assert read.ca and read.server and read.client and read.server.sound and read.client.sound
    assert tls.remake_reason(read, WANT, NOW - 86400 * 400, renew=False) is None  # what it made serves


def test_renewing_keeps_the_ca_so_clients_keep_trusting(tmp_path: Path) -> None:
    tls_files.make(tmp_path, WANT, new_ca=True)
    base = tmp_path / tls.TLS_ROOT.lstrip("/")
    ca_before, server_before = (base / "ca/ca.pem").read_text(), (base / "server/cert.pem").read_text()
    tls_files.make(tmp_path, WANT, new_ca=False)
    assert (base / "ca/ca.pem").read_text() == ca_before and (base / "server/cert.pem").read_text() != server_before
    _cert(base / "server/cert.pem").verify_directly_issued_by(_cert(base / "ca/ca.pem"))


def test_a_key_that_does_not_match_its_certificate_is_remade(tmp_path: Path) -> None:
    """What a run killed between writing a new key and its certificate leaves."""
    tls_files.make(tmp_path, WANT, new_ca=True)
    base = tmp_path / tls.TLS_ROOT.lstrip("/")
    (base / "server/key.pem").write_text((base / "client/key.pem").read_text())
    files = tls_files.read_files(tmp_path)
    assert files.server is not None and not files.server.sound
    assert tls.remake_reason(files, WANT, NOW, renew=False) == (
        "the server certificate does not match its key or the CA beside it"
    )


def _files(days: int = 400, names: tuple[str, ...] = WANT.names) -> tls.TlsFiles:
    def certificate(name: str) -> tls.Certificate:
        return tls.Certificate(name, int(NOW) + days * tls.DAY + 60, names, WANT.addresses)

    return tls.TlsFiles(certificate("ca"), certificate("server"), certificate("client"))


@pytest.mark.parametrize(
    ("files", "renew", "reason"),
    [
        (tls.TlsFiles(), False, "no CA yet"),
        (replace(_files(), client=None), False, "the client certificate or its key is missing"),
        (_files(days=29), False, "the CA certificate expires in 29 days"),
        (_files(names=("localhost",)), False, "does not name build1, build1.example.com, builds.example.com"),
        (_files(), True, "--tls-renew"),
        (_files(days=30), False, None),
    ],
)
def test_certificates_are_remade_only_when_they_no_longer_serve(
    files: tls.TlsFiles, renew: bool, reason: str | None
) -> None:
    found = tls.remake_reason(files, WANT, NOW, renew=renew)
    assert found == reason if reason is None else reason in (found or "")


def test_the_plan_makes_the_files_before_daemon_json_names_them_and_then_keeps_them() -> None:
    changes = docker_overlay2.plan(_spec(tls_sans=("builds.example.com", "192.0.2.7")), TARGET, HOST)
    kinds = [action.kind for action in changes.actions]
    assert kinds.index(ActionKind.TLS) < kinds.index(ActionKind.ENGINE_CONFIG)
    made = next(action for action in changes.actions if action.kind == ActionKind.TLS)
    assert made.op == "create" and tls.Wanted.from_json(made.content) == replace(WANT, new_ca=True)
    written = json.loads(next(a.content for a in changes.actions if a.path == docker.DAEMON_JSON))
    assert written["tlsverify"] is True and written["hosts"] == ["tcp://0.0.0.0:2376"]
    assert (written["tlscacert"], written["tlscert"], written["tlskey"]) == (
        "/etc/thinpool/tls/server/ca.pem",
        "/etc/thinpool/tls/server/cert.pem",
        "/etc/thinpool/tls/server/key.pem",
    )
    kept = replace(HOST, tls_files=_files(), files={docker.DAEMON_JSON: json.dumps(written)})
    again = docker_overlay2.plan(_spec(tls_sans=("builds.example.com", "192.0.2.7")), TARGET, kept)
    assert ActionKind.TLS not in [action.kind for action in again.actions]
    renewed = docker_overlay2.plan(_spec(tls_sans=("builds.example.com", "192.0.2.7"), tls_renew=True), TARGET, kept)
    action = next(action for action in renewed.actions if action.kind == ActionKind.TLS)
    assert action.op == "change" and not tls.Wanted.from_json(action.content).new_ca  # the CA stays


def test_the_executor_makes_and_checks_the_files(tmp_path: Path) -> None:
    action = next(a for a in docker_overlay2.plan(_spec(), TARGET, HOST).actions if a.kind == ActionKind.TLS)
    result = executor.apply(Plan("docker", "thinpool", (action,), None, {}), ScriptedRunner(), root=tmp_path)
    assert result.ok, result.steps[0].error
    assert "/etc/thinpool/tls/client/" in result.steps[0].note
    assert tls_files.read_files(tmp_path).server is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tls_generate": True, "tls_cert": "/c", "tls_key": "/k", "tls_cacert": "/a"}, "either --tls-generate"),
        ({"tls_sans": ("build1",)}, "add --tls-generate"),
        ({"tls_renew": True}, "add --tls-generate"),
        ({"tls_generate": True, "tls_sans": ("bad name",)}, "neither a host name nor an IP address"),
        ({"tls_generate": True, "tls_sans": ("-x.example.com",)}, "neither a host name"),
    ],
)
def test_tls_options_that_cannot_work_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as refused:
        EngineOptions(**options).validate()  # type: ignore[arg-type]
    assert message in str(refused.value)


def test_doctor_names_expiring_and_expired_certificates_with_the_fix() -> None:
    daemon = json.dumps({"tlsverify": True, **tls.daemon_json_keys(), "hosts": ["tcp://0.0.0.0:2376"]})
    near = tls.Certificate("/etc/thinpool/tls/server/cert.pem", int(NOW) + 10 * tls.DAY + 60)
    gone = tls.Certificate("/etc/docker/ca.pem", int(NOW) - 3 * tls.DAY)
    fine = tls.Certificate("/etc/docker/other.pem", int(NOW) + 400 * tls.DAY)
    state = replace(HOST, files={docker.DAEMON_JSON: daemon}, certificates=(near, gone, fine))
    found = {finding.code: finding for finding in docker.doctor(state, TARGET)}
    assert found["tls-certificate-expiring"].severity == "warning"
    assert "expires in 10 days" in found["tls-certificate-expiring"].problem
    assert "--tls-generate --tls-renew" in found["tls-certificate-expiring"].fix
    assert found["tls-certificate-expired"].severity == "critical"
    assert found["tls-certificate-expired"].fix.startswith("renew /etc/docker/ca.pem")
    assert "tcp-without-tls" not in found
