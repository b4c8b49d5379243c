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
