from collections.abc import Callable
from typing import Any

class Dispatcher:
    def __init__(
        self,
        table: list[Any],
        make_error: Callable[[BaseException], BaseException],
        on_cast_error: Callable[[Any, BaseException], None],
    ) -> None: ...
    def run(
        self,
        instance: Any,
        batch: list[Any],
        start: int,
        ws: Any,
        gated: list[Any],
        inflight: list[Any],
    ) -> tuple[int, Any, Any] | None: ...
    def complete(
        self, msg: Any, ok: bool, value: Any, ws: Any, gated: list[Any], inflight: list[Any]
    ) -> None: ...

ACTIVATING: int
IDLE: int
SCHEDULED: int
RUNNING: int
BLOCKED: int
CLOSING: int
CLOSED: int

class _Done:
    def __await__(self) -> Any: ...

DONE: _Done

class Turn:
    instance: Any
    msg: Any

TURN: Turn

class SenderBase:
    node: Any
    ref: Any
    index: int
    name: str
    timeout: float
    inbox: Any
    limit: int
    def too_large(self, size: int) -> Exception: ...
    def __init__(self, node: Any, ref: Any, index: int, timeout: float) -> None: ...
    def route(self) -> Any: ...

class CastSenderBase(SenderBase):
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

def args_size(args: tuple[Any, ...], kwargs: Any) -> int: ...
