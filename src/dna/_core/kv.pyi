from typing import Any

def pack_value(value: Any) -> bytes: ...

class KVWriter:
    def __init__(
        self,
        ws: Any,
        module: str,
        max_key: int = -1,
        max_value: int = -1,
        too_large: type[Exception] = ...,
    ) -> None: ...
    def write(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...
