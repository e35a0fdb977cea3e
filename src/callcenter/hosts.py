"""Whether two addresses name the same listening place: one function for the bridge (its service port must not be
its callback port on the same host) and the CRM (a resource's bridge address must be the one the bridge reports,
S-2/S-4.5). No Django here: the bridge imports it.

Addresses are compared by what they resolve to, not as text: ``localhost``, ``127.0.0.1``, ``::1`` and ``[::1]`` are
all this machine's loopback; IP addresses are compared in their canonical form (``0:0::1`` is ``::1``, an
IPv4-mapped IPv6 address is its IPv4 address); and a wildcard listener (``0.0.0.0``, ``::``) answers on the loopback
too. Host names other than ``localhost`` are compared without case (no DNS look-up: the answer must not depend on
the network at the moment of asking).
"""

from __future__ import annotations

import ipaddress
from typing import Final

_WILDCARDS: Final = frozenset({"0.0.0.0", "::"})  # noqa: S104 - names, not a bind
_LOOPBACKS: Final = frozenset({"127.0.0.1", "::1"})


def canonical_host(host: str) -> str:
    """``host`` as compared: ``localhost`` is 127.0.0.1, ``::1`` and ``[::1]`` alike, an IP address canonical."""
    host = str(host).strip().strip("[]").lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:  # 127.0.0.0/8 is all this machine
        return "127.0.0.1" if address.version == 4 else "::1"
    return str(address)


def same_host(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same listening place (a wildcard listener covers the loopback address)."""
    first, second = canonical_host(a), canonical_host(b)
    if first == second:
        return True
    if first in _LOOPBACKS and second in _LOOPBACKS:
        return True  # localhost may resolve to either; a listener on one is reached through the name
    return (first in _WILDCARDS and second in _LOOPBACKS) or (second in _WILDCARDS and first in _LOOPBACKS)


def same_port(a: object, b: object) -> bool:
    """Ports compared as numbers (``"05050"`` is 5050); anything that is not a number compares as text."""
    try:
        return int(str(a).strip()) == int(str(b).strip())
    except ValueError:
        return str(a).strip() == str(b).strip()
