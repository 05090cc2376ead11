"""Where the API listens: resolving --api-host, telling loopback from the rest, and checking the
port before anything is spawned. No tornado here: the supervisor uses it."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from ..errors import BadRequest

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


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
    """Addresses to listen on; raises BadRequest with a clear message for an unknown host (the
    caller says where the host came from)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadRequest(f"{host!r} cannot be resolved: {exc.strerror}") from None
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
                    "service (or petit) using that port? choose another one"
                ) from None


def public_origin(url: str) -> str:
    """--public-url as the Origin a browser sends from it: scheme and host in lower case, the
    port only when it is not the scheme's default ('https://Petit.example.com:443/' ->
    'https://petit.example.com'). Raises ValueError saying what is wrong."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError("the scheme must be http or https")
    if "@" in parts.netloc:
        raise ValueError("no user or password may be given")
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.strip().endswith("?"):
        raise ValueError("an origin has no path, query or fragment")
    host = parts.hostname or ""
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif not _HOST_NAME.fullmatch(host):
        raise ValueError("a host name is needed (letters, digits, dots and dashes)")
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def public_hosts(origin: str) -> frozenset[str]:
    """The Host headers of requests sent to a public_origin(): the host with its port, as a
    browser sends it, and without (what nginx's `$host` forwards)."""
    scheme, host = origin.split("://", 1)
    if host.endswith("]") or ":" not in host:  # no port: the scheme's default one
        return frozenset({host, f"{host}:{_DEFAULT_PORTS[scheme]}"})
    return frozenset({host, host.rsplit(":", 1)[0]})
