"""OpenTelemetry traces of calls (the optional ``otel`` extra).

``dna.enable_tracing()`` (``dna node --trace-file``) gives every call a CLIENT
span on the caller's node and, when the call is forwarded to the actor's node,
a SERVER span there, child of the caller's: the W3C ``traceparent`` travels as
a seventh item of the forwarded call frame. A call made inside a handler is a
child of the call that handler serves, so a chain of calls across nodes is one
trace.

Off (the default, or without opentelemetry installed) nothing on the hot path
changes: enabling swaps in a traced ``CallSender._call`` and sets ``ON``, which
only the forwarding of a call reads; frames stay six items long. A node with
tracing off ignores a peer's traceparent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core import TURN
from .errors import InterfaceError

if TYPE_CHECKING:
    from .senders import CallSender

__all__ = ["ON", "disable", "enable", "serve", "trace_file_provider"]

ON = False  # tracing is on in this process
_state: dict[str, Any] = {}  # tracer, propagator, the untraced CallSender._call


def enable(tracer_provider: Any = None) -> None:
    """Trace calls with ``tracer_provider`` (default: OpenTelemetry's global one)."""
    global ON
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise InterfaceError("tracing needs opentelemetry: pip install 'dna-actors[otel]'"
                             ) from None
    from .senders import CallSender

    _state["tracer"] = trace.get_tracer("dna", tracer_provider=tracer_provider)
    _state["w3c"] = TraceContextTextMapPropagator()
    _state["kinds"] = (trace.SpanKind.CLIENT, trace.SpanKind.SERVER)
    if not ON:
        _state["untraced"] = CallSender.__dict__["_call"]
        CallSender._call = _traced_call  # type: ignore[method-assign]
    ON = True


def disable() -> None:
    """Stop tracing; calls go back to the untraced path."""
    global ON
    if ON:
        from .senders import CallSender

        CallSender._call = _state["untraced"]  # type: ignore[method-assign]
    ON = False


def trace_file_provider(path: str) -> Any:
    """An SDK tracer provider writing each finished span to ``path``, one JSON a line."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError:
        raise InterfaceError("--trace-file needs opentelemetry-sdk: "
                             "pip install 'dna-actors[otel]'") from None
    out = open(path, "a", encoding="utf-8")
    provider = TracerProvider(resource=Resource.create({"service.name": "dna"}))
    exporter = ConsoleSpanExporter(out=out, formatter=lambda s: s.to_json(indent=None) + "\n")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _inject(span: Any) -> str | None:
    from opentelemetry import trace

    carrier: dict[str, str] = {}
    _state["w3c"].inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _context_of(traceparent: str | None) -> Any:
    if traceparent is None:
        return None  # the current context
    return _state["w3c"].extract({"traceparent": traceparent})


async def _traced_call(self: CallSender, args: tuple[Any, ...], kwargs: Any,
                       chain: tuple[Any, ...]) -> Any:
    """``CallSender._call`` in a CLIENT span whose traceparent the call carries."""
    msg = TURN.msg  # inside a handler: the call it serves is the parent
    outer = getattr(msg[3], "trace", None) if msg is not None and msg[3] is not None else None
    aid = self.aid
    with _state["tracer"].start_as_current_span(
        f"call {aid.type_name}.{self.name}", context=_context_of(outer),
        kind=_state["kinds"][0],
        attributes={"dna.actor.type": aid.type_name, "dna.actor.key": aid.key,
                    "dna.actor.namespace": aid.namespace, "dna.node": self.node.node_id},
    ) as span:
        return await _call_carrying(self, args, kwargs, chain, _inject(span))


async def _call_carrying(self: CallSender, args: tuple[Any, ...], kwargs: Any,
                         chain: tuple[Any, ...], traceparent: str | None) -> Any:
    from .senders import CallFuture, _expire

    loop = self.node.loop
    timeout = self.timeout
    deadline = loop.time() + timeout
    fut = CallFuture(loop, deadline, chain)
    fut.trace = traceparent
    inbox = self.route()
    handle = loop.call_at(deadline, _expire, fut, timeout, self)
    try:
        inbox.push((self.index, args, kwargs, fut))
        return await fut
    finally:
        handle.cancel()


class _SpanReply:
    """A peer's reply that ends the SERVER span when it settles."""

    __slots__ = ("reply", "span")

    def __init__(self, reply: Any, span: Any) -> None:
        self.reply = reply  # the transport's answer to the peer
        self.span = span

    @property
    def deadline(self) -> float:
        return float(self.reply.deadline)

    def done(self) -> bool:
        return bool(self.reply.done())

    def set_result(self, value: Any) -> None:
        self.span.end()
        self.reply.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.record_exception(exc)
        self.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self.span.end()
        self.reply.set_exception(exc)


def serve(call: Any, traceparent: str, aid: Any, handler: str, node_id: str) -> None:
    """A forwarded call (a ``PeerCall``) answered inside a SERVER span, child of the
    caller's; calls its handler makes carry this span on. Only called when ``ON``."""
    span = _state["tracer"].start_span(
        f"handle {aid.type_name}.{handler}", context=_context_of(traceparent),
        kind=_state["kinds"][1],
        attributes={"dna.actor.type": aid.type_name, "dna.actor.key": aid.key,
                    "dna.actor.namespace": aid.namespace, "dna.node": node_id},
    )
    call.reply = _SpanReply(call.reply, span)
    call.trace = _inject(span)
