"""``free_port``: a port handed to a server we start later is held for it meanwhile.

A port picked by binding to 0 and closing is free only for that instant: another process's
``bind(0)`` or an outgoing connection's local port can take it before the server binds it
(the port race of ``makerflow run --workers N`` and of every peer a test starts). A held
port sits in TIME_WAIT, so the kernel hands it to no other ``bind(0)`` or ``connect()``,
while a listener that sets SO_REUSEADDR (as Rust's std and tokio, Go's net and Python's
servers all do) still binds it.
"""

from __future__ import annotations

import errno
import socket

import pytest

from makerflow.broker import free_port, port_is_free

HOST = "127.0.0.1"


def test_a_picked_port_is_held_against_other_binds_but_a_server_binds_it() -> None:
    port = free_port(HOST)
    with socket.socket() as other, pytest.raises(OSError) as refused:
        other.bind((HOST, port))
    assert refused.value.errno == errno.EADDRINUSE
    assert port_is_free(HOST, port), "a listener could still bind it"
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((HOST, port))
        server.listen(1)
        assert not port_is_free(HOST, port), "now something listens there"
        with socket.create_connection((HOST, port), timeout=5):
            conn, _ = server.accept()
            conn.close()
