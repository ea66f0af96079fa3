"""Docker's TLS files: read a certificate's expiry and names, and make the CA, server and client set.

The rules (layout, names, when to make them again) are in thinpool.core.tls; this module does the
cryptography (the ``cryptography`` package, imported only here) and the writing. Keys are ECDSA
P-256: Docker's client and daemon accept them, and they are made in milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.core import tls
from thinpool.core.tls import Certificate, TlsFiles, Wanted
from thinpool.system import files

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec


def _load(path: Path) -> x509.Certificate | None:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``certificate`` (thinpool's CA key is EC; cryptography 38, Debian 12's,
    has no verify_directly_issued_by)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    key, algorithm = issuer.public_key(), certificate.signature_hash_algorithm
    if certificate.issuer != issuer.subject or not isinstance(key, ec.EllipticCurvePublicKey) or algorithm is None:
        return False
    try:
        key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


def _not_after(certificate: x509.Certificate) -> int:
    """Seconds since the epoch (not_valid_after_utc is cryptography 42's; before, a naive UTC datetime)."""
    aware = getattr(certificate, "not_valid_after_utc", None)
    when = aware if aware is not None else certificate.not_valid_after.replace(tzinfo=datetime.UTC)
    return int(when.timestamp())


def _matches(certificate: x509.Certificate, key_path: Path | None) -> bool:
    if key_path is None:
        return True
    from cryptography.hazmat.primitives import serialization

    def spki(key: object) -> bytes:  # keys compare equal only from cryptography 40 on
        encoding, layout = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        return key.public_bytes(encoding, layout)  # type: ignore[attr-defined,no-any-return]

    try:
        return spki(_load_key(key_path).public_key()) == spki(certificate.public_key())
    except (OSError, ValueError, TypeError):
        return False


def _describe(
    path: Path, certificate: x509.Certificate, issuer: x509.Certificate | None, key_path: Path | None
) -> Certificate:
    from cryptography import x509

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(names.get_values_for_type(x509.DNSName))
        ips = tuple(str(address) for address in names.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return Certificate(
        path=str(path),
        not_after=_not_after(certificate),
        names=dns,
        addresses=ips,
        sound=(issuer is None or _signed_by(certificate, issuer)) and _matches(certificate, key_path),
    )


def read_certificate(path: Path, issuer: Path | None = None, key: Path | None = None) -> Certificate | None:
    """A certificate file's expiry and names (and whether ``issuer`` signed it and ``key`` is its key);
    None when it is missing or not a PEM certificate."""
    certificate = _load(path)
    if certificate is None:
        return None
    issued_by = _load(issuer) if issuer else None
    return _describe(path, certificate, issued_by, key)


def read_files(root: Path, folder: str = tls.TLS_ROOT) -> TlsFiles:
    """The set under ``folder``: a certificate whose key is missing counts as missing."""
    base = root / folder.lstrip("/")

    def part(name: str, key: str) -> Certificate | None:
        if not (base / name / key).is_file():
            return None
        issuer = base / tls.CA / tls.CA_CERT if name != tls.CA else None
        certificate = base / name / (tls.CA_CERT if name == tls.CA else tls.CERT)
        return read_certificate(certificate, issuer, base / name / key)

    return TlsFiles(ca=part(tls.CA, tls.CA_KEY), server=part(tls.SERVER, tls.KEY), client=part(tls.CLIENT, tls.KEY))


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "thinpool"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, days: int) -> x509.CertificateBuilder:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _key()
    builder = _builder("thinpool Docker CA", key, _name("thinpool Docker CA"), tls.CA_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
    )
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return key, builder.sign(key, hashes.SHA256())


def _make_leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, subject: str, want: Wanted | None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate (``want`` names it) or a client one (``want`` is None)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _key()
    builder = _builder(subject, key, ca.subject, tls.LEAF_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
    )
    # Python 3.13's default context (VERIFY_X509_STRICT) refuses a certificate without the issuer's key id
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if want is None else ExtendedKeyUsageOID.SERVER_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if want is not None:
        alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in want.names]
        alternatives += [x509.IPAddress(ipaddress.ip_address(address)) for address in want.addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(folder: Path, name: str, text: str, mode: int) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    files.write_atomically(folder / name, text, keep_owner=False, mode=mode)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not the EC key thinpool made")
    return key


def make(root: Path, want: Wanted, *, new_ca: bool, folder: str = tls.TLS_ROOT) -> list[str]:
    """Make the server and client certificates (and the CA first when ``new_ca``, or when there is
    none); returns the files written. Each file is replaced atomically, keys written 0600."""
    from cryptography import x509

    base = root / folder.lstrip("/")
    ca_dir, server_dir, client_dir = base / tls.CA, base / tls.SERVER, base / tls.CLIENT
    written = []
    existing = _load(ca_dir / tls.CA_CERT)
    if new_ca or existing is None or not (ca_dir / tls.CA_KEY).is_file():
        ca_key, ca = _make_ca()
        _write(ca_dir, tls.CA_KEY, _key_pem(ca_key), 0o600)
        _write(ca_dir, tls.CA_CERT, _cert_pem(ca), 0o644)
        written += [str(ca_dir / tls.CA_KEY), str(ca_dir / tls.CA_CERT)]
    else:
        ca_key, ca = _load_key(ca_dir / tls.CA_KEY), existing
    assert isinstance(ca, x509.Certificate)
    for target, subject, names in ((server_dir, "dockerd", want), (client_dir, "docker client", None)):
        key, certificate = _make_leaf(ca_key, ca, subject, names)
        _write(target, tls.KEY, _key_pem(key), 0o600)
        _write(target, tls.CERT, _cert_pem(certificate), 0o644)
        _write(target, tls.CA_CERT, _cert_pem(ca), 0o644)
        written += [str(target / name) for name in (tls.KEY, tls.CERT, tls.CA_CERT)]
    return written
