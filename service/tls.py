"""TLS files of ``protoreg serve``, checked before the server binds.

gRPC reports a key that does not match its certificate, or a file that is not PEM at all, only as
a failure to bind, which reads like a busy port. Python's :mod:`ssl` can load the same files and
say what is wrong with which one, so each file is loaded there first.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from protoreg.registry.errors import UsageError


class TLSFileError(UsageError):
    """A TLS file that is missing, unreadable, not PEM, or does not fit its partner."""


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TLSFileError(f"cannot read {flag} {path}: {error.strerror or error}") from error


def check_tls_files(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Raise :class:`TLSFileError` naming the file and the problem, if any."""
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key"), (client_ca, "--tls-client-ca")):
        if path is not None and b"-----BEGIN " not in _read(path, flag):
            raise TLSFileError(f"{flag} {path} is not a PEM file (no -----BEGIN line)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as error:
        reason = (error.reason or str(error)).replace("_", " ").lower()
        if "key values mismatch" in reason:
            raise TLSFileError(
                f"--tls-key {key} is not the private key of the certificate in --tls-cert {cert}"
            ) from error
        raise TLSFileError(
            f"--tls-cert {cert} and --tls-key {key} do not load as a certificate chain and its key ({reason})"
        ) from error
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except ssl.SSLError as error:
            reason = (error.reason or str(error)).replace("_", " ").lower()
            raise TLSFileError(f"--tls-client-ca {client_ca} holds no usable CA certificate ({reason})") from error


def server_credentials(cert: Path | None, key: Path | None, client_ca: Path | None) -> grpc.ServerCredentials | None:
    """The server's credentials (None without TLS), after checking every file."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TLSFileError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        return None
    if cert is None or key is None:
        raise TLSFileError("TLS needs both --tls-cert and --tls-key")
    check_tls_files(cert, key, client_ca)
    pair = (_read(key, "--tls-key"), _read(cert, "--tls-cert"))
    ca = _read(client_ca, "--tls-client-ca") if client_ca is not None else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def server_ssl_context(cert: Path | None, key: Path | None, client_ca: Path | None) -> ssl.SSLContext | None:
    """The same TLS set-up for the HTTP side (``--http-address``): None without TLS; with
    ``client_ca``, a client certificate signed by it is required, as on gRPC."""
    if server_credentials(cert, key, client_ca) is None:  # checks every file, as for gRPC
        return None
    assert cert is not None and key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
