"""The ports the tests give their servers never meet each other or an outgoing connection."""

from __future__ import annotations

import socket

from tests import ports


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    handed = ports.free_ports(300)
    assert len(set(handed)) == len(handed)
    assert all(ports.LOW <= port < ports.HIGH for port in handed)
    # Ports handed out stay out, even once nothing holds them.
    assert not set(ports.free_ports(50)) & set(handed)


def test_a_port_held_by_a_listener_is_not_handed_out() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert not ports.is_free(port)
    assert ports.is_free(ports.free_port())


def test_offsets_reserve_each_port_of_a_group() -> None:
    (base,) = ports.free_ports(1, offsets=(0, 10000))
    assert base + 10000 < ports.HIGH
    assert {base, base + 10000} <= ports._taken
    assert base not in ports.free_ports(200) and base + 10000 not in ports.free_ports(200)
