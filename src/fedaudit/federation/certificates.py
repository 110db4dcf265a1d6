"""TLS for a deployed federation (:mod:`fedaudit.federation.deployment`): a certificate
authority made for the run and one server certificate per process that serves. The folder is
owner-only (0700) and each private key is created owner-only (0600) in one exclusive ``open``,
so no other account can read it at any moment and a file or link planted at its path is refused;
the keys are deleted when the run ends, by the job or, if the job is killed, by its reaper
(:func:`fedaudit.federation.processes.start_reaper`)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedaudit.federation.processes import HOST

# -- TLS ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Certificates:
    """PEM files made for one run: the CA's certificate and, per name, (certificate, key)."""

    ca: Path
    pairs: dict[str, tuple[Path, Path]]

    def keys(self) -> list[Path]:
        return [k for _, k in self.pairs.values()]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FedAudit deployment"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def key_path(folder: str | Path, name: str) -> Path:
    """Where :func:`make_certificates` writes ``name``'s private key (known before it exists, so
    the reaper can be told first)."""
    return Path(folder) / f"{name}.key"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Created 0600 by the ``open`` itself (a write-then-chmod leaves the key readable by
    everyone in between); ``O_EXCL`` refuses an existing file and ``O_NOFOLLOW`` a symlink, so a
    path planted in advance cannot redirect or expose the key."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def make_certificates(folder: str | Path, names: Sequence[str],
                      hosts: Sequence[str] = (HOST, "localhost"),
                      days: float = 7.0) -> Certificates:
    """A certificate authority and one server certificate per name, for ``hosts``.

    X.509 v3 as profiled by RFC 5280: the CA's certificate is self-signed with
    ``basicConstraints`` CA:TRUE, path length 0 (§4.2.1.9) and ``keyUsage`` keyCertSign/cRLSign
    (§4.2.1.3); each server certificate names every host as a ``subjectAltName`` -- IP address
    entries for literal addresses, DNS names otherwise (§4.2.1.6), which is what TLS clients
    match the address they dialled against (RFC 6125 §6) -- with ``extendedKeyUsage``
    serverAuth (§4.2.1.12) and the authority/subject key identifiers (§4.2.1.1-2). Keys are
    ECDSA P-256 (RFC 5480), signatures ECDSA with SHA-256. Valid from an hour ago (clock skew)
    for ``days``. ``folder`` is created, or narrowed, owner-only (0700); each private key is
    created 0600 and must not exist yet (:func:`_write_key`).
    """
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # mkdir's mode is masked by the umask and ignored for an existing folder
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("FedAudit run CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    san: list[x509.GeneralName] = []
    for h in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            san.append(x509.DNSName(h))
    pairs = {}
    for n in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(n)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
        cert_path, key_file = folder / f"{n}.pem", key_path(folder, n)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        pairs[n] = (cert_path, key_file)
    return Certificates(ca_path, pairs)
