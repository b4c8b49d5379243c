"""The transport's handshake and record layer.

Handshake: both sides send a HELLO (random nonce, node id, advertised
address) as soon as the connection is made, then a PROOF. Keys come from
the cluster secret through HKDF-SHA256, salted by both nonces and bound to
the whole transcript (both HELLOs in client-then-server order, so both
nonces, node ids and addresses): one PROOF key per direction and one
record MAC key per direction, all different. A side accepts the connection
only when the peer's PROOF verifies (constant-time compare), and refuses
at once a HELLO carrying its own node id or one of its own nonces (a
reflected handshake). Without a secret the keys come from an empty secret:
both sides must be secret-less, and nothing is authenticated (loopback only).

Records: after the handshake every byte travels in records, ``uint32 length
+ payload + 16-byte MAC``; the MAC is keyed BLAKE2b over an implicit
per-direction sequence number (8 bytes, never sent) and the payload, so a record that is
injected, replayed, reordered, dropped or reflected fails verification and
nothing of it is decoded. The payload holds whole frames (``framing``).

Every handshake record is bounded (``MAX_HELLO``), so an unauthenticated
peer can never make us buffer more than ``MAX_PREAUTH_BUFFER`` bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
from hashlib import blake2b
from os import PathLike
from struct import Struct
from typing import NamedTuple

from ..errors import InterfaceError, ProtocolError

__all__ = [
    "MAC_SIZE",
    "MAX_HELLO",
    "MAX_PREAUTH_BUFFER",
    "PROOF_SIZE",
    "RECORD_HEADER",
    "Hello",
    "Keys",
    "Opener",
    "Sealer",
    "build_hello",
    "check_proof",
    "check_tls",
    "derive_keys",
    "new_nonce",
    "parse_hello",
    "tls_contexts",
]

MAGIC = b"DNA\x02"  # protocol name and version; a peer speaking anything else is refused
NONCE_SIZE = 32  # bytes of randomness per side per connection
PROOF_SIZE = 32  # an HMAC-SHA256 digest
MAC_SIZE = 16  # keyed BLAKE2b digest closing every record
RECORD_HEADER = 4  # big-endian payload length in front of every record
FLAG_SECRET = 0x01  # the sender has a cluster secret
_FIXED = len(MAGIC) + 1 + NONCE_SIZE  # magic, flags, nonce
MAX_FIELD = 255  # node id and address are each at most this many UTF-8 bytes
MAX_HELLO = _FIXED + 1 + MAX_FIELD + 1 + MAX_FIELD
MAX_PREAUTH_BUFFER = 1024  # bytes held from a peer that has not authenticated yet
_SALT = b"dna transport v2"  # HKDF-extract salt of the cluster secret
_HEADER = Struct(">I")  # a record's payload length
_SEQ = Struct("<Q")  # a record's sequence number, MACed first, never sent
_FORGED = "a record failed authentication (injected, replayed or reordered)"


class Hello(NamedTuple):
    """What a peer said about itself before authenticating."""

    has_secret: bool
    nonce: bytes
    node_id: str
    address: str  # where the peer listens ("" when it does not)


class Keys(NamedTuple):
    """One connection's keys, from our side's point of view."""

    proof_out: bytes  # the PROOF we send
    proof_in: bytes  # the PROOF we expect
    mac_out: bytes  # keys the MACs of records we send
    mac_in: bytes  # keys the MACs of records we receive


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
        raise ProtocolError("not a DNA peer of this version (bad handshake magic)")
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


def master_key(secret: bytes | None) -> bytes:
    """HKDF-extract of the cluster secret: what every connection's keys derive from."""
    return hmac.digest(_SALT, secret or b"", "sha256")


def _hkdf(prk_salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    # RFC 5869 with SHA-256: extract with the nonces as salt, then expand
    prk = hmac.digest(prk_salt, ikm, "sha256")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), "sha256")
        out += block
        counter += 1
    return out[:length]


def derive_keys(master: bytes, server: bool, own: Hello, peer: Hello) -> Keys:
    """The connection's keys for our ``server`` role, bound to both HELLOs.

    The peer's HELLO must have been checked by ``check_hello`` first.
    """
    client, srv = (peer, own) if server else (own, peer)
    transcript = hashlib.sha256(build_hello(*client) + build_hello(*srv)).digest()
    okm = _hkdf(client.nonce + srv.nonce, master, b"dna v2 keys" + transcript, 128)
    c_proof, s_proof, c_mac, s_mac = okm[:32], okm[32:64], okm[64:96], okm[96:]
    if server:
        return Keys(s_proof, c_proof, s_mac, c_mac)
    return Keys(c_proof, s_proof, c_mac, s_mac)


def check_hello(has_secret: bool, node_id: str, own_nonces: object, peer: Hello) -> None:
    """Raises ProtocolError (a reason fit for the log) for a HELLO we must refuse.

    ``own_nonces`` supports ``in``: the nonces of our own live connections.
    """
    if peer.node_id == node_id:
        raise ProtocolError("peer claims our own node id (a reflected handshake?)")
    if peer.nonce in own_nonces:  # type: ignore[operator]
        raise ProtocolError("peer sent one of our own nonces (a reflected handshake?)")
    if has_secret and not peer.has_secret:
        raise ProtocolError("peer has no cluster secret")
    if not has_secret and peer.has_secret:
        raise ProtocolError("peer uses a cluster secret and this node has none")


def check_proof(keys: Keys, proof: bytes) -> None:
    """Raises ProtocolError unless ``proof`` is the peer's PROOF for ``keys``."""
    if not hmac.compare_digest(proof, keys.proof_in):
        raise ProtocolError("authentication failed (wrong cluster secret)")


# ---------------------------------------------------------------- records


class Sealer:
    """Seals one direction's records: ``seal(payload)`` is the next record's bytes."""

    __slots__ = ("_base", "seq")

    def __init__(self, key: bytes) -> None:
        # keyed once: each MAC copies this state instead of hashing the key block again
        self._base = blake2b(key=key, digest_size=MAC_SIZE)
        self.seq = 0  # sequence number of the next record

    def seal(self, payload: bytes) -> bytes:
        h = self._base.copy()
        h.update(_SEQ.pack(self.seq))
        h.update(payload)
        self.seq += 1
        return b"".join((_HEADER.pack(len(payload)), payload, h.digest()))


class Opener:
    """Incremental reader of one direction's records: ``feed`` bytes, get the
    verified payloads of the records they complete, in order.

    Raises ProtocolError for a record over ``limit`` bytes (as soon as its
    header arrives) or one whose MAC does not verify; it is then poisoned.
    At most one record (``limit`` + 20 bytes) is ever buffered.
    """

    __slots__ = ("_base", "_buf", "_error", "_limit", "_need", "seq")

    def __init__(self, key: bytes, limit: int) -> None:
        self._base = blake2b(key=key, digest_size=MAC_SIZE)  # keyed by the direction's key
        self._limit = limit  # largest payload accepted
        self._buf = bytearray()  # bytes of the record being received
        self._error = ""  # set once poisoned
        self._need = 0  # bytes _buf must hold before its first record can be complete
        self.seq = 0  # sequence number of the next record

    def feed(self, data: bytes) -> list[bytes | memoryview]:
        if self._error:
            raise ProtocolError(self._error)
        buf = self._buf
        if not buf and len(data) > RECORD_HEADER + MAC_SIZE:
            # the common case, one whole record (a call, a reply): no views, no loop
            n = _HEADER.unpack_from(data)[0]
            if len(data) == RECORD_HEADER + n + MAC_SIZE and n <= self._limit:
                payload = data[RECORD_HEADER : RECORD_HEADER + n]
                h = self._base.copy()
                h.update(_SEQ.pack(self.seq))
                h.update(payload)
                if not hmac.compare_digest(h.digest(), data[RECORD_HEADER + n :]):
                    self._poison(_FORGED)
                self.seq += 1
                return [payload]
        if buf:
            buf += data
            if len(buf) < self._need:
                return []  # a large record arriving in pieces: no copy per piece
            view = memoryview(bytes(buf))
            buf.clear()
        else:
            view = memoryview(data)
        out: list[bytes | memoryview] = []
        pos, end = 0, len(view)
        unpack = _HEADER.unpack_from
        while end - pos >= RECORD_HEADER:
            n = unpack(view, pos)[0]
            if n > self._limit:
                self._poison(f"record of {n} bytes exceeds the limit of {self._limit} bytes")
            stop = pos + RECORD_HEADER + n
            if end - stop < MAC_SIZE:
                self._need = RECORD_HEADER + n + MAC_SIZE
                break
            part = view[pos + RECORD_HEADER : stop]
            h = self._base.copy()
            h.update(_SEQ.pack(self.seq))
            h.update(part)
            if not hmac.compare_digest(h.digest(), view[stop : stop + MAC_SIZE]):
                self._poison(_FORGED)
            self.seq += 1
            out.append(part)
            pos = stop + MAC_SIZE
        if pos < end:
            if end - pos < RECORD_HEADER:
                self._need = RECORD_HEADER
            buf += view[pos:]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _poison(self, message: str) -> None:
        self._error = message
        self._buf = bytearray()
        raise ProtocolError(message)


# ---------------------------------------------------------------- TLS


def tls_contexts(
    cert: str | PathLike[str], key: str | PathLike[str], ca: str | PathLike[str],
    *, check_hostname: bool = True,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server_ctx, client_ctx)`` for mutual TLS between nodes from PEM files.

    ``cert``/``key`` are this node's certificate chain and private key, ``ca``
    the certificates that sign every node's. Both contexts require the peer's
    certificate and verify it against ``ca`` (TLS 1.2 at least); the client
    also checks that the certificate names the host it dials, unless
    ``check_hostname`` is false (the CA alone then vouches for the peer).
    Raises ``InterfaceError`` naming the file that cannot be used.
    """
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise InterfaceError(f"cannot load TLS certificate {cert!s} / key {key!s}: {e}") from e
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise InterfaceError(f"cannot load TLS CA file {ca!s}: {e}") from e
        ctx.verify_mode = ssl.CERT_REQUIRED
    client.check_hostname = check_hostname
    return server, client


def check_tls(server: ssl.SSLContext | None, client: ssl.SSLContext | None) -> None:
    """InterfaceError for contexts on the wrong side or that do not verify their peer."""
    if server is not None:
        if server.protocol == ssl.PROTOCOL_TLS_CLIENT:
            raise InterfaceError("ssl is the listener's context: it cannot be PROTOCOL_TLS_CLIENT")
        if server.verify_mode != ssl.CERT_REQUIRED:
            raise InterfaceError(
                "ssl must verify every peer's certificate (verify_mode CERT_REQUIRED: mutual "
                "TLS); a context that verifies nothing lets anyone in. See tls_contexts()"
            )
    if client is not None:
        if client.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise InterfaceError(
                "a PROTOCOL_TLS_SERVER context cannot dial peers: pass client_ssl as well"
            )
        if client.verify_mode != ssl.CERT_REQUIRED:
            raise InterfaceError(
                "client_ssl must verify the peer's certificate (verify_mode CERT_REQUIRED). "
                "See tls_contexts()"
            )
