"""Certificates the TLS tests make (trustme), and a TLS RawClient."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import trustme

from conftest import RawClient


@dataclass
class Certs:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, as files."""
    ca: trustme.CA
    certfile: str
    keyfile: str
    ca_file: str
    client_chain: str         # the client's certificate and key, one PEM file
    other_key: str            # a key of another certificate

    def client_context(self, with_client_cert: bool = False, alpn: Optional[list[str]] = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if with_client_cert:
            context.load_cert_chain(self.client_chain)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.test", common_name="client-1")
    other = ca.issue_cert("elsewhere.test")
    paths = {name: str(directory / f"{name}.pem") for name in ("cert", "key", "ca", "client", "other")}
    server.cert_chain_pems[0].write_to_path(paths["cert"])
    server.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    client.private_key_and_cert_chain_pem.write_to_path(paths["client"])
    other.private_key_pem.write_to_path(paths["other"])
    return Certs(ca, paths["cert"], paths["key"], paths["ca"], paths["client"], paths["other"])


class TlsClient(RawClient):
    """RawClient over TLS; ``suppress_ragged_eofs=False``, so a close
    without close_notify raises instead of reading as a clean EOF."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float = 5.0) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
        self.buf = b""

    def closed_with_close_notify(self, wait: float = 5.0) -> bool:
        """True when the server ends the TLS session with close_notify
        within ``wait`` s (recv returns b""), False on a bare TCP close.
        The socket is closed then, as a client does."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ssl.SSLEOFError, ConnectionResetError):
            return False
        finally:
            self.sock.close()
