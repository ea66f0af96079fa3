"""The remote API thinpool makes: --tls-generate's certificates in use by a real dockerd and a real docker client."""

from __future__ import annotations

import pytest

from thinpool.rehearse.vm import VM

from .helpers import DOCKERD, start_daemon, thinpool_json

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]

TLS = "/etc/thinpool/tls"
APPLY = ("--engine", "docker-overlay2-thin", "--volume-size", "1GiB", "--host", "unix:///run/docker.sock",
         "--host", "tcp://0.0.0.0:2376", "--tls-generate", "--tls-san", "build.example.test", "/dev/vda")  # fmt: skip
REMOTE = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": f"{TLS}/client"}
# A TLS client that trusts thinpool's CA, with or without the client bundle's certificate.
HANDSHAKE = (
    "import socket, ssl, sys\n"
    "context = ssl.create_default_context(cafile=sys.argv[1])\n"
    "if len(sys.argv) > 2: context.load_cert_chain(sys.argv[2], sys.argv[3])\n"
    "try:\n"
    " with context.wrap_socket(socket.create_connection(('127.0.0.1', 2376), timeout=20),\n"
    "                          server_hostname='localhost') as tls:\n"
    "  tls.sendall(b'GET /_ping HTTP/1.0\\r\\n\\r\\n')\n"
    "  print(tls.recv(200).decode(errors='replace').splitlines()[0])\n"
    "except (ssl.SSLError, OSError) as error:\n"
    " print('refused:', error); sys.exit(3)\n"
)

SANS = (
    "import sys; from cryptography import x509\n"
    "cert = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())\n"
    "print(*(str(name.value) for name in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value))"
)


def _files(vm: VM) -> str:
    return vm.run(["bash", "-c", f"cd {TLS} && sha256sum */*.pem"]).stdout


def test_the_generated_bundle_reaches_dockerd_over_tls_and_nothing_else_does(vm: VM) -> None:
    code, result, err = thinpool_json(vm, "apply", "--yes", *APPLY)
    assert code == 0, err or result
    modes = vm.run(["bash", "-c", f"cd {TLS} && stat -c '%a %n' ca server client */*.pem"]).stdout.splitlines()
    assert {line for line in modes if line.startswith("600")} == {
        "600 ca/ca-key.pem",
        "600 client/key.pem",
        "600 server/key.pem",
    }
    assert {"700 ca", "700 server", "700 client"} <= set(modes)
    start_daemon(vm, DOCKERD, ["docker", "-H", "unix:///run/docker.sock", "version"], "/tmp/dockerd.log")

    server = vm.run(["docker", "version", "--format", "{{.Server.Version}}"], env=REMOTE)
    assert server.stdout.strip().startswith(("20.10", "26.1"))  # the release's client, the bundle as DOCKER_CERT_PATH
    by_name = vm.run(
        ["docker", "info", "--format", "{{.Driver}}"], env={**REMOTE, "DOCKER_HOST": "tcp://localhost:2376"}
    )
    assert by_name.stdout.strip() == "overlay2"  # the certificate names localhost as well as 127.0.0.1
    names = vm.python("-c", SANS, f"{TLS}/server/cert.pem").stdout.split()
    assert "build.example.test" in names and "127.0.0.1" in names

    plain = vm.run(["docker", "-H", "tcp://127.0.0.1:2376", "version"], check=False)
    assert plain.returncode != 0  # no TLS at all
    without = vm.python("-c", HANDSHAKE, f"{TLS}/client/ca.pem", check=False)
    assert without.returncode == 3, without.stdout  # TLS, but no client certificate: refused
    bundle = (f"{TLS}/client/ca.pem", f"{TLS}/client/cert.pem", f"{TLS}/client/key.pem")
    assert vm.python("-c", HANDSHAKE, *bundle).stdout.startswith("HTTP/1.0 200")  # the same client, with the bundle

    before = _files(vm)
    code, result, err = thinpool_json(vm, "apply", "--yes", *APPLY)
    assert code == 0 and result["changed"] is False, err or result
    assert _files(vm) == before  # a second apply keeps the CA, the certificates and the keys
    code, result, err = thinpool_json(vm, "apply", "--yes", "--tls-renew", *APPLY)
    assert code == 0 and result["changed"] is True, err or result
    renewed = _files(vm)
    assert renewed != before and [line for line in renewed.splitlines() if "ca/" in line] == [
        line for line in before.splitlines() if "ca/" in line
    ]  # new leaves, the same CA
