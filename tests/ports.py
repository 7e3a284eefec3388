"""Ports for the servers the tests start, chosen so that two never meet.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from the ephemeral range
(`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 here), which is also where every
outgoing connection (to PostgreSQL, Redis, the object store) takes its local port; and
once the probing socket is closed, the kernel may hand the same port out again. A server
started on such a port a moment later can then fail to bind it ("address already in
use"), and a health check that meets the other holder of the port is fooled. So ports are
drawn below the ephemeral range, probed free, and never handed out twice in one run.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_taken: set[int] = set()
_random = random.SystemRandom()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Below the ephemeral range (and above the ports of well-known services).
LOW, HIGH = 10000, min(_ephemeral_start(), 32768)


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, offsets: tuple[int, ...] = (0,)) -> list[int]:
    """`count` ports free now and not handed out before in this run.

    With `offsets`, each port `p` is chosen so that every `p + offset` is free and unused
    too (SeaweedFS listens on `port + 10000` for gRPC), and all of them are taken.
    """
    chosen: list[int] = []
    span = max(offsets)
    while len(chosen) < count:
        port = _random.randrange(LOW, HIGH - span)
        group = [port + offset for offset in offsets]
        if any(p in _taken for p in group) or not all(is_free(p) for p in group):
            continue
        _taken.update(group)
        chosen.append(port)
    return chosen


def free_port() -> int:
    return free_ports(1)[0]
