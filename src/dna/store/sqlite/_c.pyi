"""Type stubs of ``dna.store.sqlite._c`` (the SQLite binding, see the .pyx)."""

from collections.abc import Iterable, Sequence
from typing import Any

MIN_VERSION_NUMBER: int
OPEN_READONLY: int
OPEN_READWRITE: int
OPEN_CREATE: int
sqlite_version: str
sqlite_version_number: int

BUSY: int
LOCKED: int
READONLY: int
IOERR: int
CORRUPT: int
FULL: int
CANTOPEN: int
PROTOCOL: int
PERM: int
NOTADB: int
MISUSE: int

class SqliteError(Exception):
    message: str
    code: int  # extended result code
    primary: int  # code & 0xFF
    def __init__(self, message: str, code: int) -> None: ...

class MisuseError(SqliteError):
    def __init__(self, message: str, code: int = ...) -> None: ...

Param = int | float | str | bytes | None

class Connection:
    release_gil: bool  # default of execute/executemany: run without the GIL
    @property
    def path(self) -> str: ...
    def __init__(
        self,
        path: str,
        flags: int = ...,
        busy_timeout_ms: int = 5000,
        release_gil: bool = True,
    ) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def in_transaction(self) -> bool: ...
    def changes(self) -> int: ...
    def last_insert_rowid(self) -> int: ...
    def set_busy_timeout(self, ms: int) -> None: ...
    def execute(
        self, sql: str, params: Sequence[Param] = (), release_gil: bool | None = None
    ) -> list[tuple[Any, ...]]: ...
    def executemany(
        self, sql: str, seq: Iterable[Sequence[Param]], release_gil: bool | None = None
    ) -> None: ...
    def commit_rows(
        self,
        upsert_sql: str,
        delete_sql: str,
        actor: int,
        rows: Iterable[tuple[str, str, bytes | None]],
    ) -> None: ...
    def commit_record(self, upsert_sql: str, delete_sql: str, actor: int, body: bytes) -> int: ...
    def commit_records(
        self, upsert_sql: str, delete_sql: str, records: list[tuple[int, bytes]]
    ) -> int: ...

def encode_rows(
    rows: Iterable[tuple[str, str, bytes | None]], skip_module: str | None = None
) -> tuple[bytes, int]: ...
