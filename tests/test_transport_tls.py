"""Mutual TLS between transports, with certificates made by ``trustme``: who
gets in, who is refused, and contexts that would verify nothing."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from dna.errors import InterfaceError, PeerUnavailable
from dna.transport import tls_contexts
from test_transport import LOOPBACK, make, port_of, started
from test_transport_security import reflect_over


def issue(ca: trustme.CA, tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """cert, key and CA files for a node reachable at 127.0.0.1."""
    cert = ca.issue_cert(LOOPBACK, "localhost")
    paths = tmp / f"{name}.crt", tmp / f"{name}.key", tmp / f"{name}-ca.crt"
    cert.cert_chain_pems[0].write_to_path(str(paths[0]))
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return paths


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def test_mutual_tls_round_trip(tmp_path: Path, ca: trustme.CA) -> None:
    server_a, client_a = tls_contexts(*issue(ca, tmp_path, "a"))
    server_b, client_b = tls_contexts(*issue(ca, tmp_path, "b"))
    a = make("a", ssl=server_a, client_ssl=client_a)
    b = make("b", ssl=server_b, client_ssl=client_b)
    plain = make("plain")
    async with started(a, b, plain) as (addr_a, addr_b, _):
        with pytest.raises(PeerUnavailable):  # plaintext peers cannot talk to a TLS node
            await plain.request(addr_b, 3, 2.0)
        assert await a.request(addr_b, b"over tls", 2.0) == ["a", b"over tls"]
        assert await b.request(addr_a, 2, 2.0) == ["b", 2]
        (conn,) = b._all
        assert conn.transport is not None
        assert conn.transport.get_extra_info("peercert")  # a's client certificate, verified


async def test_peer_without_a_client_certificate_is_refused(
    tmp_path: Path, ca: trustme.CA
) -> None:
    calls: list[Any] = []
    server_b, client_b = tls_contexts(*issue(ca, tmp_path, "b"))
    b = make("b", ssl=server_b, client_ssl=client_b, on_request=lambda p, m: calls.append(m))
    no_cert = ssl.create_default_context(cafile=str(tmp_path / "b-ca.crt"))  # trusts b, no cert
    server_c, _ = tls_contexts(*issue(ca, tmp_path, "c"))
    c = make("c", ssl=server_c, client_ssl=no_cert)
    async with started(b, c) as (addr_b, _):
        with pytest.raises(PeerUnavailable):
            await c.request(addr_b, "let me in", 2.0)
        assert calls == []


async def test_certificate_of_another_ca_is_refused(tmp_path: Path, ca: trustme.CA) -> None:
    calls: list[Any] = []
    server_b, client_b = tls_contexts(*issue(ca, tmp_path, "b"))
    b = make("b", ssl=server_b, client_ssl=client_b, on_request=lambda p, m: calls.append(m))
    server_r, client_r = tls_contexts(*issue(trustme.CA(), tmp_path, "rogue"))
    rogue = make("rogue", ssl=server_r, client_ssl=client_r)
    async with started(b, rogue) as (addr_b, addr_r):
        with pytest.raises(PeerUnavailable):
            await rogue.request(addr_b, "let me in", 2.0)
        with pytest.raises(PeerUnavailable):
            await b.request(addr_r, "who are you?", 2.0)
        assert calls == []


def test_contexts_that_verify_nothing_are_refused(tmp_path: Path, ca: trustme.CA) -> None:
    good_server, good_client = tls_contexts(*issue(ca, tmp_path, "a"))
    lax_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # verify_mode CERT_NONE
    with pytest.raises(InterfaceError, match="verify"):
        make("a", ssl=lax_server, client_ssl=good_client)
    optional = tls_contexts(*issue(ca, tmp_path, "o"))[0]
    optional.verify_mode = ssl.CERT_OPTIONAL
    with pytest.raises(InterfaceError, match="verify"):
        make("a", ssl=optional, client_ssl=good_client)
    lax_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    lax_client.check_hostname = False
    lax_client.verify_mode = ssl.CERT_NONE
    with pytest.raises(InterfaceError, match="verify"):
        make("a", ssl=good_server, client_ssl=lax_client)
    with pytest.warns(DeprecationWarning):  # old, but still around: both sides, verifies nothing
        generic = ssl.SSLContext(ssl.PROTOCOL_TLS)
    with pytest.raises(InterfaceError, match="verify"):
        make("a", ssl=generic)
    with pytest.raises(InterfaceError, match="client_ssl"):
        make("a", ssl=good_server)  # a server context cannot dial
    make("a", ssl=good_server, client_ssl=good_client)


def test_tls_contexts_report_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InterfaceError, match=r"nope\.crt"):
        tls_contexts(tmp_path / "nope.crt", tmp_path / "nope.key", tmp_path / "ca.crt")


async def test_reflection_fails_over_tls_too(tmp_path: Path, ca: trustme.CA) -> None:
    """An insider holding a valid certificate, but not the secret, still cannot reflect."""
    delivered: list[Any] = []
    server_v, client_v = tls_contexts(*issue(ca, tmp_path, "victim"))
    victim = make("victim", ssl=server_v, client_ssl=client_v,
                  on_request=lambda p, m: delivered.append(m),
                  on_message=lambda p, m: delivered.append(m))
    attacker_server, attacker_client = tls_contexts(*issue(ca, tmp_path, "attacker"))
    async with started(victim):
        outcome, _ = await reflect_over(
            port_of(victim), lambda addr: victim.send(addr, "bait"),
            attacker_client, attacker_server,
        )
        assert outcome != "injected"
        assert delivered == []
