"""``--address HOST:PORT``: parsed and checked before anything binds.

gRPC accepts what it cannot bind as it was asked (``127.0.0.1:99999`` listens on whatever port
the number wraps to), so the port is checked here: 1 to 65535, or 0 for any free port (the port
chosen is printed in the ``listening on`` line).
"""

from __future__ import annotations

from protoreg.registry.errors import UsageError

MAX_PORT = 65535


def parse_address(address: str, option: str = "--address") -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[::1]:50051`` for IPv6); a bad one is a UsageError."""
    host, sep, port_text = address.rpartition(":")
    fix = "use HOST:PORT with a port from 1 to 65535 (or 0 for any free port), like 127.0.0.1:50051"
    if not sep or not host:
        raise UsageError(f'{option} "{address}" is not HOST:PORT; {fix}')
    if host.startswith("[") != host.endswith("]") or ":" in host.strip("[]") and not host.startswith("["):
        raise UsageError(f'{option} "{address}": write an IPv6 host in brackets, like [::1]:50051')
    if not port_text.isdigit() or not 0 <= int(port_text) <= MAX_PORT:
        raise UsageError(f'{option} "{address}" has port "{port_text}", which is not a port; {fix}')
    return host, int(port_text)
