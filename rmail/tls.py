"""TLS: the server certificate, generated at init, and one reloadable server context.

Every TLS listener and every STARTTLS uses the same ``ServerTLS`` object; SIGHUP
calls ``reload`` so a renewed certificate is used by new connections at once while
established ones keep theirs.  TLS 1.2 is the minimum unless ``tls.min_version`` raises it.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from rmail import durable

CERT_DAYS = 825

# tls.min_version -> the floor the context is raised to.
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TLSError(Exception):
    """A certificate or key that cannot be used; the message says which file and why."""


def generate_self_signed(hostname: str, cert_path: str, key_path: str) -> None:
    """Write a self-signed certificate for *hostname* and its key (blocking)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    try:
        alt = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        alt = x509.DNSName(hostname)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    for path in (cert_path, key_path):
        durable.make_dirs(os.path.dirname(path))
    durable.write_atomic(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), mode=0o600)
    durable.write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def is_self_signed(cert_path: str) -> bool:
    """True for a certificate rmail may replace at will (one `init` generated)."""
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return True
    return cert.issuer == cert.subject


def load_options(cert_path: str, key_path: str, min_version="1.2") -> ssl.CertificateOptions:
    """CertificateOptions for the server; TLSError naming the file when unusable."""
    try:
        with open(cert_path, "rb") as f:
            cert_pem = f.read()
    except OSError as e:
        raise TLSError(f"cannot read the TLS certificate {cert_path} ({e.strerror}); "
                       "run `python run.py init` or set tls.cert")
    try:
        with open(key_path, "rb") as f:
            key_pem = f.read()
    except OSError as e:
        raise TLSError(f"cannot read the TLS key {key_path} ({e.strerror}); "
                       "run `python run.py init` or set tls.key")
    try:
        certs = [x509.load_pem_x509_certificate(pem) for pem in _pem_blocks(cert_pem)]
        if not certs:
            raise ValueError("no certificate in the file")
        key = serialization.load_pem_private_key(key_pem, password=None)
        if key.public_key().public_bytes(*_SPKI) != certs[0].public_key().public_bytes(*_SPKI):
            raise ValueError("the key does not belong to the certificate")
        return ssl.CertificateOptions(
            privateKey=key, certificate=certs[0], extraCertChain=certs[1:] or None,
            raiseMinimumTo=_VERSIONS[min_version],
        )
    except Exception as e:
        raise TLSError(f"the TLS certificate {cert_path} or key {key_path} is not usable ({e})")


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem_blocks(pem: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The server's TLS context, swappable while running."""

    def __init__(self, cert_path: str, key_path: str, min_version="1.2"):
        self.cert_path = cert_path
        self.key_path = key_path
        self.min_version = min_version
        self.options = load_options(cert_path, key_path, min_version)

    def reload(self, cert_path=None, key_path=None, min_version=None) -> None:
        """Load the (possibly new) files; on TLSError the current context stays."""
        cert_path = cert_path or self.cert_path
        key_path = key_path or self.key_path
        min_version = min_version or self.min_version
        self.options = load_options(cert_path, key_path, min_version)
        self.cert_path, self.key_path, self.min_version = cert_path, key_path, min_version

    def serverConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self.options.getContext(), None)
