"""Docker's remote API with TLS that thinpool makes: where the files go, which names a server
certificate carries, when the set is made again. Pure.

The layout under TLS_ROOT keeps the CA's key apart from everything handed out:

* ``ca/``: ``ca.pem`` and ``ca-key.pem`` (the key that signs; never leaves this host);
* ``server/``: ``ca.pem``, ``cert.pem``, ``key.pem`` (daemon.json's tlscacert, tlscert, tlskey);
* ``client/``: ``ca.pem``, ``cert.pem``, ``key.pem``: what Docker's client reads from
  DOCKER_CERT_PATH, to copy to the machines that build remotely.

Keys are 0600 and every folder 0700 (root's); certificates 0644.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

TLS_ROOT = "/etc/thinpool/tls"
CA, SERVER, CLIENT = "ca", "server", "client"
CERT, KEY, CA_CERT, CA_KEY = "cert.pem", "key.pem", "ca.pem", "ca-key.pem"
DAY = 86400
CA_DAYS = 3650
LEAF_DAYS = 825  # server and client certificates
RENEW_WITHIN_DAYS = 30  # apply makes them again this close to expiry; doctor warns from here
ALWAYS_NAMED = ("localhost",)
ALWAYS_ADDRESSED = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Certificate:
    """One certificate as read from its file."""

    path: str
    not_after: int  # seconds since the epoch
    names: tuple[str, ...] = ()  # DNS subject alternative names
    addresses: tuple[str, ...] = ()  # IP subject alternative names
    sound: bool = True  # signed by the CA beside it, and its key beside it matches


@dataclass(frozen=True)
class TlsFiles:
    """What is on disk under TLS_ROOT: None for a certificate that is missing (or its key is)."""

    ca: Certificate | None = None
    server: Certificate | None = None
    client: Certificate | None = None


@dataclass(frozen=True)
class Wanted:
    """The server certificate's names and addresses; ``new_ca``: make the CA too."""

    names: tuple[str, ...]
    addresses: tuple[str, ...]
    new_ca: bool = False

    def to_json(self) -> str:
        return json.dumps({"names": list(self.names), "addresses": list(self.addresses), "new_ca": self.new_ca})

    @classmethod
    def from_json(cls, text: str) -> Wanted:
        data = json.loads(text)
        return cls(tuple(data["names"]), tuple(data["addresses"]), bool(data.get("new_ca")))


def path(part: str, name: str, root: str = TLS_ROOT) -> str:
    return f"{root}/{part}/{name}"


def daemon_json_keys(root: str = TLS_ROOT) -> dict[str, object]:
    """What dockerd needs to require a client certificate signed by thinpool's CA."""
    return {
        "tls": True,
        "tlsverify": True,
        "tlscacert": path(SERVER, CA_CERT, root),
        "tlscert": path(SERVER, CERT, root),
        "tlskey": path(SERVER, KEY, root),
    }


def _address_order(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return address.version, int(address)


def wanted(host_names: tuple[str, ...], host_addresses: tuple[str, ...], extra: tuple[str, ...]) -> Wanted:
    """The host's names and addresses, loopback, and --tls-san; each once, sorted."""
    names, addresses = set(ALWAYS_NAMED), set(ALWAYS_ADDRESSED)
    for item in (*host_names, *host_addresses, *extra):
        try:
            addresses.add(str(ipaddress.ip_address(item)))
        except ValueError:
            if item:
                names.add(item.rstrip(".").lower())
    return Wanted(tuple(sorted(names)), tuple(sorted(addresses, key=_address_order)))


def remake_reason(files: TlsFiles, want: Wanted, now: float, *, renew: bool) -> str | None:
    """Why the certificates are made (again), or None when those on disk serve as they are."""
    if renew:
        return "--tls-renew: a new server and client certificate"
    if files.ca is None:
        return "no CA yet: a CA, a server certificate and a client bundle are made"
    for part, certificate in (("CA", files.ca), ("server", files.server), ("client", files.client)):
        if certificate is None:
            return f"the {part} certificate or its key is missing"
        if not certificate.sound:
            return f"the {part} certificate does not match its key or the CA beside it"
        days = days_left(certificate, now)
        if days < RENEW_WITHIN_DAYS:
            return f"the {part} certificate expires in {days} days (renewed from {RENEW_WITHIN_DAYS})"
    assert files.server is not None
    missing = sorted(set(want.names) - set(files.server.names)) + sorted(
        set(want.addresses) - set(files.server.addresses), key=_address_order
    )
    if missing:
        return f"the server certificate does not name {', '.join(missing)}"
    return None


def renews_ca(files: TlsFiles, now: float) -> bool:
    """A CA near its end is replaced, and with it everything it signed (clients need the new ca.pem)."""
    return files.ca is None or days_left(files.ca, now) < RENEW_WITHIN_DAYS


def days_left(certificate: Certificate, now: float) -> int:
    return int((certificate.not_after - now) // DAY)
