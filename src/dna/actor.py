"""The ``Actor`` base class users subclass, handler decorators, and ``ActorRef``.

Handlers are methods marked ``@dna.call`` (the caller awaits a reply) or
``@dna.cast`` (one-way). Both may be ``def`` or ``async def``. A call's reply is
gated on durability by default: it is released only once every storage write
made before it in the activation has committed. ``@dna.call(reply_async=True)``
opts out (the seed's ``reply_async``).
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

from .errors import ActorRedefinedWarning, InterfaceError, UnknownHandler
from .storage.base import DESTROY, StorageContext, StorageModule
from .storage.outbox import BoundOutbox, Outbox, receive

if TYPE_CHECKING:
    from .ids import ActorId

__all__ = ["Actor", "ActorRef", "HandlerSpec", "StorageModule", "actor_type", "call", "cast"]

F = TypeVar("F", bound=Callable[..., Any])
A = TypeVar("A", bound="Actor")


class NodeHandle(Protocol):
    """What an actor sees of the node hosting it (``self.node``) and what a ref needs
    (``dna.Node`` is one): refs to other actors, the node's id."""

    node_id: str

    def ref(self, atype: type[A], key: str, namespace: str = "default") -> A: ...
    def _sender(self, ref: ActorRef, index: int) -> Any: ...

KIND_CALL = 0
KIND_CAST = 1


class HandlerSpec:
    """How one handler is dispatched; shared by every activation of its class."""

    __slots__ = ("fn", "gated", "index", "is_async", "kind", "name")

    def __init__(self, name: str, fn: Callable[..., Any], kind: int, gated: bool) -> None:
        self.name = name  # method name, also the name remote callers use
        self.fn = fn  # the plain function; called as fn(instance, *args)
        self.kind = kind  # KIND_CALL or KIND_CAST
        self.gated = gated  # reply waits for durability of earlier writes
        self.is_async = inspect.iscoroutinefunction(fn)  # drive with send(None)
        self.index = -1  # position in the class's handler table

    def __repr__(self) -> str:
        kind = "call" if self.kind == KIND_CALL else "cast"
        return f"<{kind} handler {self.name}>"


def _mark(fn: F, kind: int, gated: bool) -> F:
    if not callable(fn):
        raise TypeError(f"@dna.{'call' if kind == KIND_CALL else 'cast'} decorates a function")
    fn.__dna_handler__ = (kind, gated)  # type: ignore[attr-defined]
    return fn


# ---------------------------------------------------------------- typing of refs
#
# For the type checker, ``@dna.call`` turns a method into a descriptor whose value on
# an instance (a ref, as ``node.ref(Room, k)`` is typed ``Room``) is an awaitable
# callable with the handler's parameters: mypy checks handler names, argument types
# and awaited results. At run time the decorators return the function unchanged.

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class CallMethod(Protocol[P, R_co]):
    """``ref.handler`` of a call: ``await ref.handler(...)`` returns the handler's result."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R_co]: ...
    def with_timeout(self, timeout: float) -> Callable[P, Awaitable[R_co]]: ...


class CastMethod(Protocol[P]):
    """``ref.handler`` of a cast: ``await`` waits only for room; ``nowait`` never waits."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[None]: ...
    def nowait(self, *args: P.args, **kwargs: P.kwargs) -> None: ...


class CallHandler(Protocol[P, R_co]):
    """What ``@dna.call`` makes of a method, as the type checker sees it."""

    @overload
    def __get__(self, obj: None, owner: type) -> CallHandler[P, R_co]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> CallMethod[P, R_co]: ...


class CastHandler(Protocol[P]):
    """What ``@dna.cast`` makes of a method, as the type checker sees it."""

    @overload
    def __get__(self, obj: None, owner: type) -> CastHandler[P]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> CastMethod[P]: ...


class _CallDecorator(Protocol):
    @overload
    def __call__(
        self, fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
    ) -> CallHandler[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], R], /) -> CallHandler[P, R]: ...


@overload
def call(
    fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
) -> CallHandler[P, R]: ...
@overload
def call(fn: Callable[Concatenate[Any, P], R], /) -> CallHandler[P, R]: ...
@overload
def call(*, reply_async: bool = False) -> _CallDecorator: ...
def call(fn: Any = None, /, *, reply_async: bool = False) -> Any:
    """Mark a request/response handler.

    The reply is released once every storage write made before it in this
    activation is durable, unless ``reply_async=True``.
    """
    if fn is None:
        return lambda f: _mark(f, KIND_CALL, not reply_async)
    return _mark(fn, KIND_CALL, True)


def cast(fn: Callable[Concatenate[Any, P], Any]) -> CastHandler[P]:
    """Mark a one-way handler: handled in send order, no reply."""
    return _mark(fn, KIND_CAST, False)


# type_name -> class; weak, so a class nothing uses any more frees its name
_TYPES: weakref.WeakValueDictionary[str, type[Actor]] = weakref.WeakValueDictionary()


def _register(cls: type[Actor]) -> None:
    """One class per ``type_name``: it names the actor's storage and its handlers on the
    wire, so two classes sharing one would call each other's handlers and share data.
    A class defined again under the same module and name (a notebook cell run twice, a
    reload) replaces the old one, with a warning."""
    old = _TYPES.get(cls.type_name)
    if old is not None and old is not cls:
        if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise InterfaceError(
                f"actor type_name {cls.type_name!r} of {cls.__module__}.{cls.__qualname__} "
                f"is already used by {old.__module__}.{old.__qualname__}: pin a distinct "
                f"type_name on one of them"
            )
        warnings.warn(
            f"actor class {cls.__module__}.{cls.__qualname__} redefined: the new definition "
            f"replaces the old one for type_name {cls.type_name!r}",
            ActorRedefinedWarning,
            stacklevel=3,
        )
    _TYPES[cls.type_name] = cls


def timer_types() -> frozenset[str]:
    """Type names of the registered classes that can have timers (``Timers``, or an
    ``Outbox``'s wake-up): what this process's timer scanner lists."""
    return frozenset(name for name, cls in list(_TYPES.items())
                     if "_dna_timer" in cls._dna_handlers)


def actor_type(type_name: str) -> type[Actor]:
    """The actor class registered under ``type_name``; InterfaceError if none."""
    try:
        return _TYPES[type_name]
    except KeyError:
        raise InterfaceError(f"unknown actor type {type_name!r}") from None


class _Defers(Protocol):
    """What destroy() needs of the activation running it."""

    def defer_rest(self) -> None: ...


class Actor:
    """Base class of user actors. One activation per name, cluster-wide.

    Subclasses declare handlers with ``@dna.call`` / ``@dna.cast`` and storage
    modules as class attributes. ``type_name`` defaults to the class name; pin
    it (``type_name = "Room"``) so that renaming the class keeps its data.
    Inside handlers: ``self.key``, ``self.namespace``, ``self.node``.
    """

    type_name: ClassVar[str] = "Actor"
    _dna_handlers: ClassVar[dict[str, HandlerSpec]] = {}
    _dna_table: ClassVar[list[HandlerSpec]] = []
    _dna_modules: ClassVar[dict[str, StorageModule[Any]]] = {}
    _dna_ref_class: ClassVar[type[ActorRef]]
    _dna_dispatcher: ClassVar[Any] = None

    # set on each activation by the runtime before on_activate
    key: str
    namespace: str
    node: NodeHandle
    _dna_aid: ActorId
    _dna_storage: StorageContext  # this activation's storage (destroy writes to it)
    _dna_activation: _Defers  # its defer_rest() holds back the batch after destroy()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__
        if not isinstance(cls.type_name, str) or not cls.type_name:
            raise InterfaceError(f"{cls.__qualname__}.type_name must be a non-empty str")
        handlers: dict[str, HandlerSpec] = {}
        modules: dict[str, StorageModule[Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, StorageModule):
                    modules[name] = value
                mark = getattr(value, "__dna_handler__", None)
                if mark is not None:
                    handlers[name] = HandlerSpec(name, value, mark[0], mark[1])
                elif name in handlers:  # overridden without a decorator
                    del handlers[name]
        for module in modules.values():  # handlers a storage module brings (Timers)
            for name, fn in module.handlers().items():
                handlers.setdefault(name, HandlerSpec(name, fn, KIND_CALL, True))
        table = list(handlers.values())
        for i, spec in enumerate(table):
            spec.index = i
        cls._dna_handlers = handlers
        cls._dna_table = table
        cls._dna_modules = modules
        cls._dna_dispatcher = None  # built on first activation
        cls._dna_ref_class = _make_ref_class(cls)
        _register(cls)

    async def on_activate(self) -> None:
        """Called once per activation before its first message: build in-memory state."""

    async def on_passivate(self) -> None:
        """Called before an idle activation is removed or the node drains."""

    def destroy(self) -> None:
        """Delete this actor for good when the running batch commits: every storage
        module's data and its registration go in that one atomic commit, the
        activation is then dropped, and a later message starts the name afresh
        (empty storage, a new activation).

        Part of the handler's writes: discarded if the handler raises (the actor
        then goes on as if it had not been called). Writes made before it in the
        batch go with the actor; replies of the batch wait for the destroy to be
        durable. Messages after this one, in the batch or queued, run on the
        fresh actor, in order.
        """
        storage = self.__dict__.get("_dna_storage")
        act = self.__dict__.get("_dna_activation")  # gone once the activation closed
        if storage is None or act is None:
            raise InterfaceError("destroy() is usable only inside an activation")
        storage.ws.write(DESTROY[0], DESTROY[1], b"")
        act.defer_rest()

    @call
    def _dna_destroy(self) -> None:  # what Node.destroy sends: routed like any message
        self.destroy()

    # ---------------------------------------------------------- exactly-once sends

    def send(self, handler: Any, /, *args: Any, **kwargs: Any) -> None:
        """Send ``handler(*args, **kwargs)`` (``handler`` is ``ref.name`` of any actor)
        exactly once, as part of this handler's commit: recorded in this actor's
        ``Outbox`` with the handler's writes (discarded with them if it raises),
        delivered after the commit and retried until the receiver has committed it;
        the receiver runs it once, in send order. Only inside a handler of an actor
        that declares an ``Outbox``; arguments must be msgpack-serialisable."""
        try:
            outbox = self._dna_storage.outbox
        except AttributeError:  # not activated
            outbox = None
        if outbox is None:
            outbox = self._dna_outbox()
        outbox.send(self, handler, args, kwargs)

    def _dna_outbox(self) -> BoundOutbox:
        ctx = self.__dict__.get("_dna_storage")
        bound = ctx.outbox if ctx is not None else None
        if bound is not None:
            return bound  # type: ignore[no-any-return]
        if not any(isinstance(m, Outbox) for m in type(self)._dna_modules.values()):
            raise InterfaceError(f"{type(self).__qualname__} declares no Outbox: add "
                                 f"`outbox = dna.storage.Outbox()` to use self.send")
        raise InterfaceError("self.send is usable only inside a handler of this actor")

    @call
    async def _dna_deliver(self, sender: list[str], prev: str, entries: list[list[Any]]) -> int:
        """Internal: sends of another actor's ``self.send`` (see ``storage.outbox``)."""
        return await receive(self, self._dna_storage, sender, prev, entries)

    @cast
    def _dna_acked(self, keys: list[str]) -> None:
        """Internal: the receiver committed these sends of ours; delete their rows."""
        self._dna_outbox().acked(keys)


class ActorRef:
    """A handle on a named actor; attribute access gives its handlers.

    ``await ref.put("a", b"1")`` calls; ``await ref.put_cast(...)`` casts (waits
    only while the mailbox is full); ``ref.put_cast.nowait(...)`` raises
    ``Overloaded`` instead of waiting; ``ref.put.with_timeout(2.0)(...)`` sets a
    per-call deadline. Refs are cheap; keep them for repeated messaging.
    """

    __slots__ = ("__dict__", "actor_id", "actor_type", "node")

    actor_type: type[Actor]

    def __init__(self, node: NodeHandle, actor_type: type[Actor], actor_id: ActorId) -> None:
        self.node = node
        self.actor_type = actor_type
        self.actor_id = actor_id

    def __repr__(self) -> str:
        return f"<ActorRef {self.actor_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.actor_id == self.actor_id

    def __hash__(self) -> int:
        return hash(self.actor_id)

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not handlers (handlers are descriptors)
        raise UnknownHandler(f"{self.actor_type.type_name} has no handler {name!r}")


class _HandlerAttr:
    """Class attribute of a generated ref class: builds and caches the sender."""

    __slots__ = ("index", "name")

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index

    def __get__(self, ref: ActorRef | None, owner: type) -> Any:
        if ref is None:
            return self
        sender = ref.node._sender(ref, self.index)
        ref.__dict__[self.name] = sender
        return sender


def _make_ref_class(cls: type[Actor]) -> type[ActorRef]:
    ns: dict[str, Any] = {"__slots__": ()}
    for spec in cls._dna_table:
        if spec.name in ("node", "actor_id", "actor_type") or spec.name.startswith("__"):
            raise InterfaceError(f"{cls.__qualname__}: handler name {spec.name!r} is reserved")
        ns[spec.name] = _HandlerAttr(spec.name, spec.index)
    return type(f"{cls.__name__}Ref", (ActorRef,), ns)
