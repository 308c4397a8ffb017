"""TLS: the server's ``ssl.SSLContext``, made and checked before anything is served.

uvicorn's ``--ssl-*`` options, with their meanings: ``ssl_certfile`` (the
certificate chain, PEM), ``ssl_keyfile`` (its private key, PEM; may be the
same file), ``ssl_keyfile_password``, ``ssl_ca_certs`` (the CAs client
certificates are checked against), ``ssl_cert_reqs`` (0 none, 1 optional,
2 required client certificates) and ``ssl_ciphers`` (an OpenSSL cipher
list for TLS 1.2; fastsrv leaves OpenSSL's defaults when it is not given,
where uvicorn sets ``TLSv1``).  ALPN offers ``http/1.1``, the one protocol
fastsrv speaks.

Every problem (a missing file, a key that does not match the certificate,
a wrong password, an unknown cipher) is a :class:`ConfigError` naming the
file and what to do, so ``fastsrv run`` exits 2 at start instead of
failing at the first handshake.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from fastsrv.errors import ConfigError

CERT_REQS = {0: ssl.CERT_NONE, 1: ssl.CERT_OPTIONAL, 2: ssl.CERT_REQUIRED}


def server_context(config: Any) -> ssl.SSLContext:
    """The TLS context of ``config`` (a :class:`fastsrv.Config`)."""
    certfile, keyfile = config.ssl_certfile, config.ssl_keyfile
    if config.ssl_cert_reqs not in CERT_REQS:
        raise ConfigError(f"ssl_cert_reqs must be 0 (no client certificate), 1 (optional) or 2 (required), "
                          f"got {config.ssl_cert_reqs}")
    for what, path in (("ssl_certfile", certfile), ("ssl_keyfile", keyfile), ("ssl_ca_certs", config.ssl_ca_certs)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{what} {path!r}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    password = config.ssl_keyfile_password
    try:
        context.load_cert_chain(certfile, keyfile, password=password if password else _no_password(keyfile or certfile))
    except ssl.SSLError as exc:
        raise ConfigError(_explain_chain_error(certfile, keyfile, bool(password), exc)) from None
    except _NeedsPassword:
        raise ConfigError(f"ssl_keyfile {keyfile or certfile!r} is encrypted: give its password "
                          "with --ssl-keyfile-password") from None
    context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except ssl.SSLError as exc:
            raise ConfigError(f"ssl_ca_certs {config.ssl_ca_certs!r} holds no PEM certificate "
                              f"OpenSSL can read ({exc.reason or exc})") from None
    elif config.ssl_cert_reqs == 2:
        raise ConfigError("ssl_cert_reqs 2 (client certificates required) needs ssl_ca_certs "
                          "(--ssl-ca-certs), the CAs that sign them")
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(f"ssl_ciphers {config.ssl_ciphers!r} selects no cipher OpenSSL knows "
                              "(see `openssl ciphers -v`)") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


class _NeedsPassword(Exception):
    pass


def _no_password(path: str) -> Any:
    """The password callback when none was given: an encrypted key is an
    error that says so, never a prompt on the terminal."""
    def ask() -> str:
        raise _NeedsPassword(path)
    return ask


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20).decode("latin-1")
    except OSError:
        return ""


def _explain_chain_error(certfile: str, keyfile: str | None, with_password: bool, exc: ssl.SSLError) -> str:
    reason = (exc.reason or str(exc)).lower()
    key = keyfile or certfile
    key_text = _read_text(key)
    if "PRIVATE KEY" not in key_text:
        return f"ssl_keyfile {key!r} holds no PEM private key: give the key of the certificate {certfile!r}"
    if with_password and "ENCRYPTED" in key_text:
        return f"ssl_keyfile {key!r}: the password (--ssl-keyfile-password) does not decrypt it"
    if "CERTIFICATE" not in _read_text(certfile):
        return f"ssl_certfile {certfile!r} holds no PEM certificate"
    if "key values mismatch" in reason or "mismatch" in reason:
        return (f"ssl_keyfile {key!r} is not the private key of the certificate in {certfile!r}: "
                "give the matching pair")
    if "no start line" in reason or "pem" in reason or "asn1" in reason or "nocertificate" in reason.replace(" ", ""):
        return (f"{certfile!r} / {key!r}: not a PEM certificate and private key OpenSSL can read "
                f"({exc.reason or exc})")
    return f"cannot load the certificate {certfile!r} with the key {key!r}: {exc.reason or exc}"
