"""The handshake of one connection (HELLO both ways, then proofs), and the states
a connection goes through.

Private to ``dna.transport``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._core import FrameDecoder
from ..errors import ProtocolError
from ._auth import (
    MAX_PREAUTH_BUFFER,
    PROOF_SIZE,
    RECORD_HEADER,
    Hello,
    Opener,
    Sealer,
    check_hello,
    check_proof,
    derive_keys,
    parse_hello,
)
from ._wire import CREDIT, INITIAL_CREDIT

if TYPE_CHECKING:
    from ._conn import Connection

__all__ = ["CLOSED", "DIALING", "HANDSHAKE", "READY", "handshake_received"]

log = logging.getLogger("dna.transport")

DIALING, HANDSHAKE, READY, CLOSED = range(4)  # connection states, in order


def handshake_received(conn: Connection, data: bytes) -> None:
    """Bytes before authentication: HELLO, then proof; what follows goes to frames."""
    buf = conn.inbuf
    buf += data
    try:
        while conn.state == HANDSHAKE:
            if conn.peer_hello is None:
                parsed = parse_hello(buf)
                if parsed is None:
                    break
                _peer_hello_received(conn, parsed[0])
                del buf[: parsed[1]]
            elif len(buf) >= PROOF_SIZE:
                proof = bytes(buf[:PROOF_SIZE])
                del buf[:PROOF_SIZE]
                assert conn.keys is not None
                check_proof(conn.keys, proof)
                _authenticated(conn)
            else:
                break
    except ProtocolError as e:
        conn.fail(str(e), ProtocolError)
        return
    if conn.state == HANDSHAKE and len(buf) > MAX_PREAUTH_BUFFER:
        conn.fail(f"more than {MAX_PREAUTH_BUFFER} bytes before authenticating", ProtocolError)
    elif conn.state == READY and buf:
        rest = bytes(buf)
        buf.clear()
        conn._frames_received(rest)


def _peer_hello_received(conn: Connection, peer: Hello) -> None:
    owner = conn.owner
    check_hello(conn.hello.has_secret, owner.node_id, owner._nonces, peer)
    conn.peer_hello = peer
    conn.peer_id = peer.node_id
    conn.keys = derive_keys(owner._master, conn.server, conn.hello, peer)
    assert conn.transport is not None
    conn.transport.write(conn.keys.proof_out)


def _authenticated(conn: Connection) -> None:
    assert conn.peer_hello is not None
    conn.state = READY
    conn._release()
    if conn.hs_timer is not None:
        conn.hs_timer.cancel()
        conn.hs_timer = None
    assert conn.keys is not None
    conn.decoder = FrameDecoder(conn.owner._max_frame_size)
    conn.opener = Opener(conn.keys.mac_in, conn.owner._max_frame_size + RECORD_HEADER)
    conn.sealer = Sealer(conn.keys.mac_out)
    conn.inbuf = bytearray()
    log.debug("%s authenticated", conn.describe())
    if conn.owner._window > INITIAL_CREDIT:  # one-way items, then calls (credit of their own)
        more = conn.owner._window - INITIAL_CREDIT
        conn.out[:0] = [[CREDIT, more], [CREDIT, more, 1]]
    conn.owner._authenticated(conn, conn.peer_hello.address)
    if conn.out:
        conn.flush()
