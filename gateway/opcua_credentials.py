"""The certificate and private key an OPC UA probe secures its connection with, read and
checked once: a file that is not what it should be is named when the gateway starts, not by
a server refusing the connection without saying why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


def read_certificate(path: Path) -> x509.Certificate:
    """A certificate file, PEM or DER whatever its name says (asyncua goes by the extension);
    ValueError naming the path if it is not one."""
    data = _read(path)
    try:
        if b"-----BEGIN " in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"{path} is not an X.509 certificate (PEM or DER)") from exc


def read_private_key(path: Path) -> RSAPrivateKey:
    """An unencrypted RSA private key file, PEM or DER; ValueError naming the path if it is
    not one."""
    data = _read(path)
    try:
        if b"-----BEGIN " in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError as exc:  # what cryptography raises for a key that needs a password
        raise ValueError(f"{path}: the key is encrypted; give it unencrypted, "
                         "protected by the file's permissions") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not a private key (PEM or DER)") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA key, which OPC UA's security policies need")
    return key


def read_client_certificate(path: Path) -> tuple[x509.Certificate, str]:
    """The gateway's own certificate and its application URI; ValueError naming the path when
    it is not valid now, which servers refuse without saying why."""
    certificate = read_certificate(path)
    now = datetime.now(UTC)
    if now < certificate.not_valid_before_utc:
        raise ValueError(f"{path} is not valid before "
                         f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: check the "
                         "gateway's clock")
    if now > certificate.not_valid_after_utc:
        raise ValueError(f"{path} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M}"
                         " UTC: issue a new one and have the server trust it")
    return certificate, _application_uri(certificate, path)


def _application_uri(certificate: x509.Certificate, path: Path) -> str:
    """The application URI an OPC UA application certificate carries as a URI subject
    alternative name: the client must announce the same one, or servers refuse it."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if not uris:
        raise ValueError(f"{path} has no application URI (a URI subject alternative name, "
                         "such as URI:urn:instrushare:gateway), which OPC UA requires")
    return uris[0]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class Credentials:
    """The gateway's certificate and key as sent to asyncua (DER)."""

    certificate: bytes
    private_key: bytes
    application_uri: str
    server_certificate: x509.Certificate | None
    """The server's certificate when pinned: any other is refused."""

    @classmethod
    def read(cls, certificate: Path, private_key: Path,
             server_certificate: Path | None = None) -> Credentials:
        """ValueError naming the file when one is not what it should be, or the key is not
        the certificate's."""
        (cert, uri), key = read_client_certificate(certificate), read_private_key(private_key)
        if key.public_key() != cert.public_key():
            raise ValueError(f"private_key {private_key} is not the key of certificate "
                             f"{certificate}")
        return cls(
            certificate=cert.public_bytes(serialization.Encoding.DER),
            private_key=key.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()),
            application_uri=uri,
            server_certificate=None if server_certificate is None
            else read_certificate(server_certificate),
        )


def read_security(policy: str, *, mode: str | None, certificate: Path | None,
                  private_key: Path | None, server_certificate: Path | None
                  ) -> Credentials | None:
    """The credentials a security ``policy`` other than ``None`` secures a connection with
    (None for ``None``), checking that the keys given go together: ValueError naming what is
    missing, superfluous or not what it should be. The configuration and the probe both ask
    it, so that a file is judged the same way when loaded and when used."""
    if policy == "None":
        given = [name for name, value in (
            ("security_mode", mode), ("certificate", certificate), ("private_key", private_key),
            ("server_certificate", server_certificate)) if value is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise ValueError(f"{' and '.join(given)} {verb} security_policy")
        return None
    if certificate is None or private_key is None:
        missing = [name for name, path in (("certificate", certificate),
                                           ("private_key", private_key)) if path is None]
        raise ValueError(f"security_policy {policy} needs {' and '.join(missing)}")
    return Credentials.read(certificate, private_key, server_certificate)
