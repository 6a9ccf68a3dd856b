"""TLS for SIP (RFC 3261 §26.3.1, RFC 5630): stdlib ``ssl`` contexts and the demo certificate.

A deployment loads its own certificate and key. For the demo and the tests we make a
self-signed one for ``localhost``/``127.0.0.1``/``::1`` with ``cryptography`` (no ``openssl``
binary needed) and keep it in the data directory, so every run presents the same certificate
that clients can pin.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from softphone.sip.errors import SipError

DEMO_HOSTS = ("localhost", "127.0.0.1", "::1")
CERT_NAME = "sip-demo-cert.pem"
KEY_NAME = "sip-demo-key.pem"


class TlsError(SipError):
    """A certificate or key that cannot be loaded or made."""


def make_self_signed(cert_path: Path, key_path: Path, *, hosts: Sequence[str] = DEMO_HOSTS,
                     days: int = 365) -> None:
    """Write a self-signed ECDSA P-256 certificate valid for ``hosts`` (DNS names and IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "softphone"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "softphone demo")])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    # The key is written owner-only from the start, never world-readable even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _still_valid(cert_path: Path, margin_days: int = 7) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    expires = cert.not_valid_after_utc
    return expires - dt.timedelta(days=margin_days) > dt.datetime.now(dt.UTC)


def ensure_demo_cert(data_dir: Path, *, hosts: Sequence[str] = DEMO_HOSTS) -> tuple[Path, Path]:
    """The demo certificate and key in ``data_dir``, made (or remade near expiry) on demand."""
    cert_path = data_dir / CERT_NAME
    key_path = data_dir / KEY_NAME
    if not (cert_path.exists() and key_path.exists() and _still_valid(cert_path)):
        make_self_signed(cert_path, key_path, hosts=hosts)
    return cert_path, key_path


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) presenting this certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load certificate {cert_path} / key {key_path}: {exc}") from exc
    return ctx


def client_context(cafile: Path | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """A TLS client context; ``cafile`` pins e.g. the demo certificate."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
