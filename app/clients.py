"""Who counts as one client for the limits kept per IP address.

An IPv4 address is one client; so is an IPv6 /64. One host commonly gets a
whole /64 and may draw addresses from it at will (privacy extensions, or
simply by choice), so counting IPv6 addresses one by one would hand anyone
with one connection 2^64 fresh quotas. An IPv4-mapped IPv6 address is the
IPv4 address it maps.
"""

from __future__ import annotations

import ipaddress


def network(ip: str) -> str:
    """The unit a per-IP limit counts: an IPv4 address, or an IPv6 /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
