"""The transport's handshake: fixed-layout HELLO and PROOF records, exchanged
before any byte is decoded as a msgpack frame.

Both sides send a HELLO (random nonce, node id, advertised address) as soon
as the connection is made; on the peer's HELLO each sends a PROOF, an
HMAC-SHA256 keyed by the cluster secret over its role and both HELLOs (so
both nonces, node ids and addresses). A side accepts the connection only
when the peer's PROOF verifies (constant-time compare). Without a secret
the PROOF is all zeros and both sides must be secret-less. Every record is
bounded (``MAX_HELLO`` bytes), so an unauthenticated peer can never make us
buffer more than that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

from .errors import ProtocolError

__all__ = [
    "MAX_HELLO",
    "MAX_PREAUTH_BUFFER",
    "PROOF_SIZE",
    "Hello",
    "build_hello",
    "check_proof",
    "make_proof",
    "new_nonce",
    "parse_hello",
]

MAGIC = b"DNA\x01"  # protocol name and version; a peer speaking anything else is refused
NONCE_SIZE = 32  # bytes of randomness per side per connection
PROOF_SIZE = 32  # an HMAC-SHA256 digest
FLAG_SECRET = 0x01  # the sender has a cluster secret
_FIXED = len(MAGIC) + 1 + NONCE_SIZE  # magic, flags, nonce
MAX_FIELD = 255  # node id and address are each at most this many UTF-8 bytes
MAX_HELLO = _FIXED + 1 + MAX_FIELD + 1 + MAX_FIELD
MAX_PREAUTH_BUFFER = 1024  # bytes held from a peer that has not authenticated yet
_NO_SECRET_PROOF = bytes(PROOF_SIZE)


class Hello(NamedTuple):
    """What a peer said about itself before authenticating."""

    has_secret: bool
    nonce: bytes
    node_id: str
    address: str  # where the peer listens ("" when it does not)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def encode_field(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > MAX_FIELD:
        raise ValueError(f"{what} is longer than {MAX_FIELD} UTF-8 bytes: {value!r}")
    return bytes((len(raw),)) + raw


def build_hello(has_secret: bool, nonce: bytes, node_id: str, address: str) -> bytes:
    flags = FLAG_SECRET if has_secret else 0
    return (
        MAGIC + bytes((flags,)) + nonce
        + encode_field(node_id, "node id") + encode_field(address, "address")
    )


def parse_hello(buf: bytes | bytearray) -> tuple[Hello, int] | None:
    """The HELLO at the start of ``buf`` and its length, or None while incomplete.

    Raises ProtocolError as soon as the bytes cannot be a HELLO.
    """
    head = bytes(buf[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise ProtocolError("not a DNA peer (bad handshake magic)")
    if len(buf) < _FIXED + 1:
        return None
    flags = buf[len(MAGIC)]
    if flags & ~FLAG_SECRET:
        raise ProtocolError(f"unknown handshake flags {flags:#x}")
    nonce = bytes(buf[len(MAGIC) + 1 : _FIXED])
    id_len = buf[_FIXED]
    addr_at = _FIXED + 1 + id_len
    if len(buf) < addr_at + 1:
        return None
    end = addr_at + 1 + buf[addr_at]
    if len(buf) < end:
        return None
    try:
        node_id = bytes(buf[_FIXED + 1 : addr_at]).decode("utf-8")
        address = bytes(buf[addr_at + 1 : end]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("handshake fields are not UTF-8") from None
    if not node_id:
        raise ProtocolError("empty node id in handshake")
    return Hello(bool(flags & FLAG_SECRET), nonce, node_id, address), end


def make_proof(
    secret: bytes | None, server: bool, own: Hello, peer: Hello
) -> bytes:
    """Our PROOF: binds our role and both HELLOs (nonces, ids, addresses) to the secret."""
    if secret is None:
        return _NO_SECRET_PROOF
    return hmac.new(secret, _proof_input(server, own, peer), hashlib.sha256).digest()


def check_proof(
    secret: bytes | None, server: bool, own: Hello, peer: Hello, proof: bytes
) -> None:
    """Raises ProtocolError (with a reason fit for the log) unless the peer's PROOF is right.

    ``server`` is our own role; the peer's is the other one.
    """
    if secret is None:
        if peer.has_secret:
            raise ProtocolError("peer uses a cluster secret and this node has none")
        if not hmac.compare_digest(proof, _NO_SECRET_PROOF):
            raise ProtocolError("malformed proof from a secret-less peer")
        return
    if not peer.has_secret:
        raise ProtocolError("peer has no cluster secret")
    expected = hmac.new(secret, _proof_input(not server, peer, own), hashlib.sha256).digest()
    if not hmac.compare_digest(proof, expected):
        raise ProtocolError("authentication failed (wrong cluster secret)")


def _proof_input(server: bool, prover: Hello, verifier: Hello) -> bytes:
    # both HELLOs whole: nonces, node ids, addresses and flags are all bound to the secret
    role = b"dna-server" if server else b"dna-client"
    return b"".join((role, build_hello(*prover), build_hello(*verifier)))
