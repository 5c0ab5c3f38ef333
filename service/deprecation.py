"""Deprecated request fields still sent: logged once per client peer and field.

A field the model marks ``Field(deprecated=...)`` is rendered ``[deprecated = true]`` and keeps
working. So that its removal can be planned, the server logs a warning the first time a client
sends it: once per client peer (its address without the port, so one client's many connections
count once) and field path, whatever the transport (gRPC in ``service/server.py``, JSON over HTTP
in ``service/http.py``). What the server remembers is bounded (:data:`REMEMBERED`); past that it
starts afresh, so a busy server logs a peer again rather than growing.

Which fields are deprecated is read from the compiled descriptors, the contract clients were
generated from; a request message that cannot reach a deprecated field costs nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import descriptor

log = logging.getLogger("protoreg.service.deprecation")

REMEMBERED = 10_000
"""How many (peer, field) pairs are remembered before the memory starts afresh."""


def peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:51022`` -> ``ipv4:127.0.0.1``; ``ipv6:[::1]:5`` -> ``ipv6:[::1]``; others as they are."""
    if peer.startswith(("ipv4:", "ipv6:")) and peer.count(":") >= 2:
        host, _, port = peer.rpartition(":")
        return host if port.isdigit() else peer
    return peer


def _reaching(root: descriptor.Descriptor) -> dict[str, bool]:
    """Message full name -> whether a deprecated field can be set in it or below it."""
    reach: dict[str, bool] = {}

    def visit(message: descriptor.Descriptor) -> bool:
        if message.full_name in reach:
            return reach[message.full_name]
        reach[message.full_name] = False  # a cycle adds nothing new
        found = False
        for f in message.fields:
            if f.GetOptions().deprecated:
                found = True
            if f.message_type is not None and visit(f.message_type):
                found = True
        reach[message.full_name] = found
        return found

    visit(root)
    return reach


class DeprecatedFields:
    """Finds the deprecated fields a request sets, and logs them once per client peer."""

    def __init__(self, request: descriptor.Descriptor, subject: str) -> None:
        self.subject = subject
        self._reach = _reaching(request)
        self.active = self._reach.get(request.full_name, False)
        self._seen: set[tuple[str, str]] = set()

    def used(self, message: Any) -> list[str]:
        """The paths (``customer.zip``) of the deprecated fields ``message`` sets."""
        paths: list[str] = []
        if self.active:
            self._walk(message, "", paths)
        return paths

    def _walk(self, message: Any, prefix: str, paths: list[str]) -> None:
        for f, value in message.ListFields():
            path = f"{prefix}{f.name}"
            if f.GetOptions().deprecated:
                paths.append(path)
            target = f.message_type
            if target is None or not self._reach.get(target.full_name, False):
                continue
            if f.message_type.GetOptions().map_entry:
                items = list(value.values())
            elif f.is_repeated:
                items = list(value)
            else:
                items = [value]
            for item in items:
                if hasattr(item, "ListFields"):
                    self._walk(item, f"{path}.", paths)

    def note(self, message: Any, peer: str) -> None:
        """Log each deprecated field ``message`` sets that this peer has not been told about yet."""
        if not self.active:
            return
        host = peer_host(peer)
        for path in self.used(message):
            key = (host, path)
            if key in self._seen:
                continue
            if len(self._seen) >= REMEMBERED:
                self._seen.clear()
            self._seen.add(key)
            log.warning('client %s sent the deprecated field "%s" of %s; it will be removed in a later '
                        "major version", host, path, self.subject)
