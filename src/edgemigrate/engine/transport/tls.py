"""Mutual TLS for host agents: a testbed CA, per-host certificates, and strict ``ssl`` contexts.

Layout of a PKI directory (created by :func:`create_pki`, e.g. by the testbed/agent setup)::

    ca.pem  ca.key  <host>.pem  <host>.key  client.pem  client.key

Both ends require a certificate signed by the CA (``CERT_REQUIRED`` on the server too), TLS >= 1.2. The
host name the peer must present is checked by the client (``server_hostname=<host>``; certificates carry
the host name as a DNS SAN). An agent whose certificate comes from another CA fails the handshake.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgemigrate.core.errors import ConfigError

CERT_VALIDITY_DAYS = 365
CLIENT_NAME = "client"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgemigrate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def create_ca(pki_dir: Path, common_name: str = "edgemigrate testbed CA") -> None:
    pki_dir.mkdir(parents=True, exist_ok=True)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(pki_dir / "ca.key", key)
    (pki_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def issue(pki_dir: Path, name: str) -> tuple[Path, Path]:
    """Issue ``<name>.pem``/``<name>.key`` signed by the CA in ``pki_dir`` (server+client usage)."""
    try:
        ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc.filename}: no CA here; create one first (create_pki)") from None
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = pki_dir / f"{name}.pem", pki_dir / f"{name}.key"
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def create_pki(pki_dir: Path, hosts: list[str]) -> Path:
    """A CA plus certificates for every host and for the ``client`` (CLI/controller); returns ``pki_dir``."""
    if not (pki_dir / "ca.pem").exists():
        create_ca(pki_dir)
    for name in [*hosts, CLIENT_NAME]:
        if not (pki_dir / f"{name}.pem").exists():
            issue(pki_dir, name)
    return pki_dir


def _paths(pki_dir: Path, name: str) -> tuple[Path, Path, Path]:
    ca, cert, key = pki_dir / "ca.pem", pki_dir / f"{name}.pem", pki_dir / f"{name}.key"
    for p in (ca, cert, key):
        if not p.exists():
            raise ConfigError(f"{p}: missing (create it: `edgemigrate agent --pki DIR pki HOST...`)")
    return ca, cert, key


def server_context(pki_dir: Path, name: str) -> ssl.SSLContext:
    ca, cert, key = _paths(pki_dir, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(pki_dir: Path, name: str) -> ssl.SSLContext:
    ca, cert, key = _paths(pki_dir, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    return ctx


def peer_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """Common name of the verified peer certificate."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
