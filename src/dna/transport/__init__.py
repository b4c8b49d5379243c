"""Inter-node TCP (the only package that opens sockets): ``Transport`` and
``tls_contexts``. Its parts: ``_transport`` (listening, dialling, calls, flow control,
liveness), ``_conn`` (one peer connection: handshake, records, frames), ``_auth`` (the
handshake, keys and record MACs, TLS contexts), ``_wire`` (frame kinds, errors on the
wire, addresses)."""

from __future__ import annotations

from ._transport import Transport, tls_contexts

__all__ = ["Transport", "tls_contexts"]
