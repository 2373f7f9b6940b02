"""Mutual TLS for host agents: a testbed CA, per-host certificates, and strict ``ssl`` contexts.

Layout of a PKI directory (created by :func:`create_pki`, e.g. by ``edgemigrate agent pki``)::

    ca.pem  ca.key  client.pem  client.key          the operator's: never copied to an agent host
    hosts/<host>/ca.pem  <host>.pem  <host>.key     one folder per agent: its own key and the CA certificate

An agent is pointed at its own ``hosts/<host>`` folder only: with the CA key it could mint certificates, with
the client key act as the controller. Keys are created 0600 and folders 0700 (never written first and
restricted afterwards).

Both ends require a certificate signed by the CA (``CERT_REQUIRED`` on the server too), TLS >= 1.2. The
host name the peer must present is checked by the client (``server_hostname=<host>``; certificates carry
the host name as a DNS SAN). An agent whose certificate comes from another CA fails the handshake.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.ids import check_id, child

CERT_VALIDITY_DAYS = 365
CLIENT_NAME = "client"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key readable by its owner only from the first byte: a temporary file created 0600
    (O_EXCL, O_NOFOLLOW), then renamed over ``path``."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def host_dir(pki_dir: Path, host: str) -> Path:
    """The folder an agent for ``host`` is given (``--pki``): the CA certificate and the host's own key."""
    return child(pki_dir / "hosts", host)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgemigrate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def create_ca(pki_dir: Path, common_name: str = "edgemigrate testbed CA") -> None:
    _private_dir(pki_dir)
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


def issue(pki_dir: Path, name: str, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Issue ``<name>.pem``/``<name>.key`` signed by the CA in ``pki_dir`` (server+client usage), written to
    ``out_dir`` (default ``pki_dir``)."""
    check_id(name, "certificate name")
    out = _private_dir(out_dir) if out_dir is not None else pki_dir
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
    cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def create_pki(pki_dir: Path, hosts: list[str]) -> Path:
    """A CA and the ``client`` (CLI/controller) certificate in ``pki_dir``, and one folder per host with its
    own certificate and key (:func:`host_dir`); returns ``pki_dir``. Existing certificates are kept."""
    for h in hosts:
        if h == CLIENT_NAME:
            raise ConfigError(f"host name {h!r} is reserved for the client (controller) certificate")
        check_id(h, "host name")
    if not (pki_dir / "ca.pem").exists():
        create_ca(pki_dir)
    if not (pki_dir / f"{CLIENT_NAME}.pem").exists():
        issue(pki_dir, CLIENT_NAME)
    ca_pem = (pki_dir / "ca.pem").read_bytes()
    for h in hosts:
        d = _private_dir(host_dir(pki_dir, h))
        if not (d / f"{h}.pem").exists():
            issue(pki_dir, h, d)
        (d / "ca.pem").write_bytes(ca_pem)
    return pki_dir


def _paths(pki_dir: Path, name: str) -> tuple[Path, Path, Path]:
    ca, cert, key = pki_dir / "ca.pem", pki_dir / f"{name}.pem", pki_dir / f"{name}.key"
    for p in (ca, cert, key):
        if not p.exists():
            raise ConfigError(f"{p}: missing (`edgemigrate agent --pki DIR pki HOST...` creates DIR/hosts/HOST for each agent)")
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
