"""Where the API listens: resolving --api-host, telling loopback from the rest, and checking the
port before anything is spawned. No tornado here: the supervisor uses it."""

from __future__ import annotations

import ipaddress
import socket

from ..errors import BadRequest

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback_host(host_header: str) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_bind(host: str, port: int) -> list[tuple]:
    """Addresses to listen on; raises BadRequest with a clear message for an unknown host."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadRequest(f"--api-host {host!r} cannot be resolved: {exc.strerror}") from None
    return infos


def is_loopback_bind(host: str, port: int) -> bool:
    return all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
        for info in resolve_bind(host, port)
    )


def check_port_free(host: str, port: int) -> None:
    """Bind and release once before spawning the API, so a busy port is a clear startup error
    rather than a restart loop."""
    for family, kind, proto, _, address in resolve_bind(host, port):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise BadRequest(
                    f"cannot listen on {host}:{port}: {exc.strerror}; is another "
                    "service (or petit) using that port? choose one with --api-port"
                ) from None
