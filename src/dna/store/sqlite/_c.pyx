# cython: language_level=3, boundscheck=False, wraparound=False
"""A small binding to the system SQLite library for DNA's SQLite store.

Why not apsw or the standard ``sqlite3`` module: both release and re-take the
GIL around every ``sqlite3_step``, so a bulk commit on the writer thread waits
for one GIL handoff per row while the event-loop thread runs Python.
``Connection.commit_rows`` converts the rows once under the GIL, then binds
and steps every row WITHOUT the GIL, and raises any error after re-taking it.

One SQLite library per process: every connection of the store (reads,
claims, schema, the writer) goes through this module, which links the
system ``libsqlite3`` (the same one the standard ``sqlite3`` module uses),
never a second bundled copy whose POSIX/WAL locks would not see ours.

A connection is opened with ``SQLITE_OPEN_NOMUTEX`` and must be used by one
thread at a time; a call while another thread is inside the same connection
raises ``MisuseError`` (checked under the GIL, so it cannot race).

GIL policy: ``execute`` releases the GIL around prepare and step when the
connection (or the call) says ``release_gil``. Otherwise it keeps it (a
statement of microseconds is cheaper than handing the GIL to a busy thread
and waiting up to a switch interval for it back), but never across a lock
wait: such a statement runs first with no busy timeout, and if the database
is locked, again without the GIL for the full timeout. ``commit_rows``,
``close`` and opening always run without the GIL.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t
from libc.string cimport memcmp, memcpy, strlen


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL


cdef extern from "sqlite3.h" nogil:
    ctypedef struct sqlite3
    ctypedef struct sqlite3_stmt
    ctypedef long long sqlite3_int64
    ctypedef unsigned long long sqlite3_uint64
    ctypedef void (*sqlite3_destructor_type)(void*)

    int SQLITE_OK, SQLITE_ROW, SQLITE_DONE, SQLITE_MISUSE, SQLITE_RANGE, SQLITE_TOOBIG
    int SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL
    int SQLITE_OPEN_READONLY, SQLITE_OPEN_READWRITE, SQLITE_OPEN_CREATE, SQLITE_OPEN_NOMUTEX
    int SQLITE_PREPARE_PERSISTENT
    unsigned char SQLITE_UTF8
    sqlite3_destructor_type SQLITE_STATIC

    const char* sqlite3_libversion()
    int sqlite3_libversion_number()
    int sqlite3_threadsafe()
    int sqlite3_open_v2(const char* filename, sqlite3** db, int flags, const char* vfs)
    int sqlite3_close_v2(sqlite3* db)
    int sqlite3_extended_result_codes(sqlite3* db, int onoff)
    int sqlite3_busy_timeout(sqlite3* db, int ms)
    int sqlite3_extended_errcode(sqlite3* db)
    const char* sqlite3_errmsg(sqlite3* db)
    const char* sqlite3_errstr(int code)
    int sqlite3_get_autocommit(sqlite3* db)
    int sqlite3_changes(sqlite3* db)
    sqlite3_int64 sqlite3_last_insert_rowid(sqlite3* db)

    int sqlite3_prepare_v3(sqlite3* db, const char* sql, int nbyte, unsigned int flags,
                           sqlite3_stmt** stmt, const char** tail)
    int sqlite3_finalize(sqlite3_stmt* stmt)
    int sqlite3_reset(sqlite3_stmt* stmt)
    int sqlite3_clear_bindings(sqlite3_stmt* stmt)
    int sqlite3_step(sqlite3_stmt* stmt)
    int sqlite3_bind_parameter_count(sqlite3_stmt* stmt)
    int sqlite3_bind_int64(sqlite3_stmt* stmt, int i, sqlite3_int64 v)
    int sqlite3_bind_double(sqlite3_stmt* stmt, int i, double v)
    int sqlite3_bind_null(sqlite3_stmt* stmt, int i)
    int sqlite3_bind_text64(sqlite3_stmt* stmt, int i, const char* v, sqlite3_uint64 n,
                            sqlite3_destructor_type d, unsigned char encoding)
    int sqlite3_bind_blob64(sqlite3_stmt* stmt, int i, const void* v, sqlite3_uint64 n,
                            sqlite3_destructor_type d)
    int sqlite3_column_count(sqlite3_stmt* stmt)
    int sqlite3_column_type(sqlite3_stmt* stmt, int i)
    sqlite3_int64 sqlite3_column_int64(sqlite3_stmt* stmt, int i)
    double sqlite3_column_double(sqlite3_stmt* stmt, int i)
    const unsigned char* sqlite3_column_text(sqlite3_stmt* stmt, int i)
    const void* sqlite3_column_blob(sqlite3_stmt* stmt, int i)
    int sqlite3_column_bytes(sqlite3_stmt* stmt, int i)


MIN_VERSION_NUMBER = 3035000  # UPSERT with a conflict target-less DO UPDATE, 3.35
OPEN_READONLY = SQLITE_OPEN_READONLY
OPEN_READWRITE = SQLITE_OPEN_READWRITE
OPEN_CREATE = SQLITE_OPEN_CREATE
sqlite_version = sqlite3_libversion().decode()
sqlite_version_number = sqlite3_libversion_number()

if sqlite_version_number < MIN_VERSION_NUMBER:
    raise ImportError(
        f"DNA's SQLite store needs SQLite >= 3.35.0; the system library is {sqlite_version} "
        f"(install a newer libsqlite3)"
    )
if sqlite3_threadsafe() == 0:
    raise ImportError(
        f"DNA's SQLite store needs a thread-safe SQLite build; {sqlite_version} was built "
        f"with SQLITE_THREADSAFE=0"
    )

# result codes the store maps (primary codes; ``code & 0xFF`` of an extended one)
BUSY = 5
LOCKED = 6
READONLY = 8
IOERR = 10
CORRUPT = 11
FULL = 13
CANTOPEN = 14
PROTOCOL = 15
PERM = 3
NOTADB = 26
MISUSE = 21

cdef enum:
    CACHE_SIZE = 64  # prepared statements kept per connection


class SqliteError(Exception):
    """An SQLite failure: ``code`` is the extended result code, ``primary``
    its primary code (``code & 0xFF``), ``message`` SQLite's error message."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(f"{message} [{_code_name(code)}]")
        self.message = message
        self.code = code
        self.primary = code & 0xFF


class MisuseError(SqliteError):
    """Wrong use of the binding: closed connection, used from two threads at
    once, wrong number or type of parameters."""

    def __init__(self, message: str, code: int = SQLITE_MISUSE) -> None:
        super().__init__(message, code)


cdef str _code_name(int code):
    return f"SQLite error {code}: {sqlite3_errstr(code).decode('utf-8', 'replace')}"


cdef class _Stmt:
    cdef sqlite3_stmt* stmt
    cdef int nparams
    cdef bint rows_seen  # the last run returned a row (then it is not retried)

    def __dealloc__(self):
        if self.stmt is not NULL:
            sqlite3_finalize(self.stmt)
            self.stmt = NULL


ctypedef struct _Row:
    const char* module
    Py_ssize_t module_len
    const char* key
    Py_ssize_t key_len
    const char* value  # NULL: delete
    Py_ssize_t value_len


ctypedef struct _Seg:  # one record of commit_records: its rows are buf[previous end:end]
    const unsigned char* p
    Py_ssize_t size
    int64_t actor
    Py_ssize_t end


cdef class Connection:
    """One SQLite connection (``OPEN_READWRITE | OPEN_CREATE`` style ``flags``)."""

    cdef sqlite3* db
    cdef dict _cache  # sql text -> _Stmt (insertion order: oldest first)
    cdef bint _busy  # a thread is inside this connection
    cdef public bint release_gil
    cdef readonly str path
    cdef int _timeout_ms

    def __cinit__(self):
        self.db = NULL
        self._cache = {}
        self._busy = False

    def __init__(
        self, str path, int flags=SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
        int busy_timeout_ms=5000, bint release_gil=True,
    ):
        cdef bytes bpath = path.encode("utf-8", "surrogateescape")
        cdef const char* cpath = bpath
        cdef int rc
        cdef sqlite3* db = NULL
        cdef int oflags = flags | SQLITE_OPEN_NOMUTEX
        self.path = path
        self.release_gil = release_gil
        with nogil:
            rc = sqlite3_open_v2(cpath, &db, oflags, NULL)
        if db is not NULL:
            sqlite3_extended_result_codes(db, 1)
        if rc != SQLITE_OK:
            if db is NULL:
                raise SqliteError("out of memory opening the database", rc)
            err = SqliteError(_errmsg(db), sqlite3_extended_errcode(db))
            with nogil:
                sqlite3_close_v2(db)
            raise err
        self.db = db
        self._timeout_ms = busy_timeout_ms
        sqlite3_busy_timeout(db, busy_timeout_ms)

    def __dealloc__(self):
        if self.db is not NULL:
            self._cache = None  # finalize statements before closing
            sqlite3_close_v2(self.db)
            self.db = NULL

    cdef int _enter(self) except -1:
        if self.db is NULL:
            raise MisuseError(f"the connection to {self.path} is closed")
        if self._busy:
            raise MisuseError(f"the connection to {self.path} is in use by another thread")
        self._busy = True
        return 0

    def close(self) -> None:
        """Finalize every statement and close. Idempotent."""
        cdef sqlite3* db = self.db
        if db is NULL:
            return
        self._enter()
        try:
            for st in self._cache.values():
                sqlite3_finalize((<_Stmt>st).stmt)
                (<_Stmt>st).stmt = NULL
            self._cache.clear()
            self.db = NULL
            with nogil:
                sqlite3_close_v2(db)
        finally:
            self._busy = False

    @property
    def closed(self) -> bool:
        return self.db is NULL

    @property
    def in_transaction(self) -> bool:
        if self.db is NULL:
            return False
        return not sqlite3_get_autocommit(self.db)

    def changes(self) -> int:
        self._enter()
        self._busy = False
        return sqlite3_changes(self.db)

    def last_insert_rowid(self) -> int:
        self._enter()
        self._busy = False
        return sqlite3_last_insert_rowid(self.db)

    def set_busy_timeout(self, int ms) -> None:
        self._enter()
        self._busy = False
        self._timeout_ms = ms
        sqlite3_busy_timeout(self.db, ms)

    # ------------------------------------------------------------ statements

    cdef _Stmt _prepare(self, str sql, bint nogil_):
        """The cached statement for ``sql`` (one statement), or None when
        ``sql`` holds several (run by ``_script``)."""
        cdef _Stmt st = self._cache.get(sql)
        if st is not None:
            return st
        cdef Py_ssize_t n
        cdef const char* csql = PyUnicode_AsUTF8AndSize(sql, &n)
        cdef const char* tail = NULL
        cdef sqlite3_stmt* stmt = NULL
        cdef int rc
        if nogil_:
            with nogil:
                rc = sqlite3_prepare_v3(self.db, csql, <int>n, SQLITE_PREPARE_PERSISTENT,
                                        &stmt, &tail)
        else:
            rc = sqlite3_prepare_v3(self.db, csql, <int>n, SQLITE_PREPARE_PERSISTENT,
                                    &stmt, &tail)
        if rc != SQLITE_OK:
            sqlite3_finalize(stmt)
            raise SqliteError(_errmsg(self.db), sqlite3_extended_errcode(self.db))
        if tail is not NULL and tail[0] != 0 and _has_more(tail):
            sqlite3_finalize(stmt)
            return None
        st = _Stmt.__new__(_Stmt)
        st.stmt = stmt
        st.nparams = sqlite3_bind_parameter_count(stmt) if stmt is not NULL else 0
        if len(self._cache) >= CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[sql] = st
        return st

    def execute(self, str sql, params=(), release_gil=None) -> list:
        """Run ``sql`` with ``params`` (int, float, str, bytes, None) and return
        every row as a tuple; the statement is reset afterwards, so no read
        transaction lingers. ``sql`` may hold several statements (then without
        parameters; the rows are those of the last one)."""
        cdef bint nogil_ = self.release_gil if release_gil is None else bool(release_gil)
        self._enter()
        try:
            st = self._prepare(sql, nogil_)
            if st is None:
                if params:
                    raise MisuseError("parameters with several statements")
                return self._script(sql, nogil_)
            return self._run(st, params, nogil_)
        finally:
            self._busy = False

    def executemany(self, str sql, seq, release_gil=None) -> None:
        """Run one statement once per parameter tuple of ``seq``."""
        cdef bint nogil_ = self.release_gil if release_gil is None else bool(release_gil)
        self._enter()
        try:
            st = self._prepare(sql, nogil_)
            if st is None:
                raise MisuseError("executemany needs exactly one statement")
            for params in seq:
                self._run(st, params, nogil_)
        finally:
            self._busy = False

    cdef list _script(self, str sql, bint nogil_):
        cdef bytes b = sql.encode("utf-8")
        cdef const char* p = b
        cdef const char* tail = NULL
        cdef sqlite3_stmt* stmt = NULL
        cdef int rc
        cdef list rows = []
        cdef _Stmt st
        while p[0] != 0:
            with nogil:
                rc = sqlite3_prepare_v3(self.db, p, -1, 0, &stmt, &tail)
            if rc != SQLITE_OK:
                raise SqliteError(_errmsg(self.db), sqlite3_extended_errcode(self.db))
            p = tail
            if stmt is NULL:  # only whitespace or a comment
                continue
            st = _Stmt.__new__(_Stmt)
            st.stmt = stmt
            st.nparams = sqlite3_bind_parameter_count(stmt)
            rows = self._run(st, (), nogil_)
            sqlite3_finalize(st.stmt)
            st.stmt = NULL
        return rows

    cdef list _run(self, _Stmt st, params, bint nogil_):
        """Under the GIL, a lock wait must not hold it: the statement first runs
        with no busy timeout and, if it finds the database locked, runs again
        without the GIL, waiting the full timeout."""
        if nogil_ or self._timeout_ms == 0:
            return self._run1(st, params, nogil_)
        sqlite3_busy_timeout(self.db, 0)
        try:
            return self._run1(st, params, False)
        except SqliteError as exc:
            if exc.primary != BUSY or st.rows_seen:
                raise
        finally:
            sqlite3_busy_timeout(self.db, self._timeout_ms)
        return self._run1(st, params, True)

    cdef list _run1(self, _Stmt st, params, bint nogil_):
        cdef sqlite3_stmt* stmt = st.stmt
        cdef int rc, i, ncol
        cdef list rows = []
        st.rows_seen = False
        if stmt is NULL:
            return rows
        if len(params) != st.nparams:
            raise MisuseError(
                f"{len(params)} parameters for {st.nparams} placeholders", SQLITE_RANGE
            )
        try:
            for i in range(st.nparams):
                _bind(stmt, i + 1, params[i])
            while True:
                if nogil_:
                    with nogil:
                        rc = sqlite3_step(stmt)
                else:
                    rc = sqlite3_step(stmt)
                if rc == SQLITE_ROW:
                    st.rows_seen = True
                    ncol = sqlite3_column_count(stmt)
                    rows.append(tuple([_column(stmt, i) for i in range(ncol)]))
                elif rc == SQLITE_DONE:
                    return rows
                else:
                    raise SqliteError(_errmsg(self.db), sqlite3_extended_errcode(self.db))
        finally:
            sqlite3_reset(stmt)
            if st.nparams:
                sqlite3_clear_bindings(stmt)

    # ------------------------------------------------------------ the fast path

    def commit_rows(self, str upsert_sql, str delete_sql, int64_t actor, rows) -> None:
        """Apply ``rows`` ((module, key, value-or-None), in order) for ``actor``:
        ``upsert_sql`` is bound (actor, module, key, value), ``delete_sql``
        (actor, module, key). Converted once under the GIL, bound and stepped
        without it; the first failure stops the loop and is raised (the
        caller undoes the partial work, e.g. with a savepoint)."""
        cdef tuple keep = tuple(rows)  # holds every row (and its str/bytes) alive
        cdef Py_ssize_t n = len(keep)
        if n == 0:
            return
        cdef _Row* buf = <_Row*>PyMem_Malloc(n * sizeof(_Row))
        if buf is NULL:
            raise MemoryError()
        cdef list fixed = []  # rows converted from lists, kept alive
        self._enter()
        try:
            any_delete = _collect(keep, buf, fixed)
            self._step_rows(upsert_sql, delete_sql, actor, buf, n, any_delete)
        finally:
            self._busy = False
            PyMem_Free(buf)

    def commit_record(self, str upsert_sql, str delete_sql, int64_t actor, bytes body) -> int:
        """Apply one record made by ``encode_rows`` like ``commit_rows`` applies its
        rows, read in place and stepped without the GIL (no Python object per
        row). A damaged record raises ``SqliteError`` (CORRUPT) and applies
        nothing. Returns the number of rows."""
        return self.commit_records(upsert_sql, delete_sql, [(actor, body)])

    def commit_records(self, str upsert_sql, str delete_sql, list records) -> int:
        """Apply ``records`` ((actor, body) pairs, bodies made by ``encode_rows``) in
        order, as ``commit_record`` applies one, in ONE section without the GIL: a
        writer thread that takes the GIL back waits up to a switch interval for a busy
        event loop, and taking it back per record cost the applier 13% of its time
        (py-spy over a 10M-put run on the log path). Every record is checked before
        any row is stepped: a damaged one raises ``SqliteError`` (CORRUPT) and
        applies nothing. Returns the number of rows."""
        cdef tuple keep = tuple(records)  # holds every body alive
        cdef Py_ssize_t nrec = len(keep), total = 0, k, at = 0, bad = -1
        cdef Py_ssize_t n
        cdef bytes body
        if nrec == 0:
            return 0
        cdef _Seg* segs = <_Seg*>PyMem_Malloc(nrec * sizeof(_Seg))
        if segs is NULL:
            raise MemoryError()
        cdef _Row* buf = NULL
        cdef bint any_delete = False
        try:
            for k in range(nrec):
                actor, body = keep[k]
                segs[k].p = <const unsigned char*>PyBytes_AS_STRING(body)
                segs[k].size = PyBytes_GET_SIZE(body)
                segs[k].actor = actor
                if (segs[k].size < 8 or segs[k].p[0] != 68 or segs[k].p[1] != 78
                        or segs[k].p[2] != 82 or segs[k].p[3] != 49):  # b"DNR1"
                    raise SqliteError("not a DNA log record", CORRUPT)
                n = _u32(segs[k].p + 4)
                if n > segs[k].size // 9:  # every row takes at least 9 bytes
                    raise SqliteError("damaged DNA log record (row count)", CORRUPT)
                total += n
                segs[k].end = total
            if total == 0:
                return 0
            buf = <_Row*>PyMem_Malloc(total * sizeof(_Row))
            if buf is NULL:
                raise MemoryError()
            self._enter()
            try:
                with nogil:
                    for k in range(nrec):
                        n = segs[k].end - at
                        if n and not _parse(segs[k].p, segs[k].size, buf + at, n, &any_delete):
                            bad = k
                            break
                        at = segs[k].end
                if bad >= 0:
                    raise SqliteError("damaged DNA log record (lengths)", CORRUPT)
                self._step_segs(upsert_sql, delete_sql, segs, nrec, buf, total, any_delete)
            finally:
                self._busy = False
        finally:
            PyMem_Free(buf)
            PyMem_Free(segs)
        return total

    cdef int _step_rows(self, str upsert_sql, str delete_sql, int64_t actor, _Row* buf,
                        Py_ssize_t n, bint any_delete) except -1:
        """Bind and step every row of ``buf`` (one actor's) without the GIL."""
        cdef _Seg seg
        seg.actor = actor
        seg.end = n
        return self._step_segs(upsert_sql, delete_sql, &seg, 1, buf, n, any_delete)

    cdef int _step_segs(self, str upsert_sql, str delete_sql, _Seg* segs, Py_ssize_t nseg,
                        _Row* buf, Py_ssize_t n, bint any_delete) except -1:
        """Bind and step every row of ``buf`` without the GIL, row i for the actor of
        the segment it falls in; raise the first failure."""
        cdef _Stmt ups, dels
        cdef Py_ssize_t seg = 0
        cdef int64_t actor = segs[0].actor
        cdef sqlite3_stmt* su
        cdef sqlite3_stmt* sd
        cdef sqlite3_stmt* s
        cdef int rc = SQLITE_OK, code = 0
        cdef bint bind_failed = False
        cdef Py_ssize_t failed = -1, i
        cdef const char* msg
        cdef bytes errmsg = b""
        ups = self._prepare(upsert_sql, True)
        dels = self._prepare(delete_sql, True) if any_delete else ups
        if ups is None or dels is None or ups.stmt is NULL or dels.stmt is NULL:
            raise MisuseError("commit_rows needs one upsert and one delete statement")
        if ups.nparams != 4 or (any_delete and dels.nparams != 3):
            raise MisuseError("commit_rows: the upsert takes 4 parameters, the delete 3")
        su = ups.stmt
        sd = dels.stmt
        with nogil:
            for i in range(n):
                while i >= segs[seg].end and seg + 1 < nseg:
                    seg += 1
                    actor = segs[seg].actor
                if buf[i].value is NULL:
                    s = sd
                else:
                    s = su
                rc = sqlite3_bind_int64(s, 1, actor)
                if rc == SQLITE_OK:
                    rc = sqlite3_bind_text64(s, 2, buf[i].module, buf[i].module_len,
                                             SQLITE_STATIC, SQLITE_UTF8)
                if rc == SQLITE_OK:
                    rc = sqlite3_bind_text64(s, 3, buf[i].key, buf[i].key_len,
                                             SQLITE_STATIC, SQLITE_UTF8)
                if rc == SQLITE_OK and s == su:
                    rc = sqlite3_bind_blob64(s, 4, buf[i].value, buf[i].value_len,
                                             SQLITE_STATIC)
                if rc != SQLITE_OK:  # a bind error sets no connection error
                    failed = i
                    code = rc
                    bind_failed = True
                    break
                rc = sqlite3_step(s)
                sqlite3_reset(s)
                if rc != SQLITE_DONE:
                    failed = i
                    code = sqlite3_extended_errcode(self.db)
                    break
            # the bindings point into Python objects: never leave them behind
            sqlite3_clear_bindings(su)
            if sd != su:
                sqlite3_clear_bindings(sd)
        if failed >= 0:
            msg = sqlite3_errstr(code) if bind_failed else sqlite3_errmsg(self.db)
            errmsg = msg[:strlen(msg)] if msg is not NULL else b""
            raise SqliteError(
                f"{errmsg.decode('utf-8', 'replace')} (row {failed})", code
            )
        return 0


cdef bint _collect(tuple keep, _Row* buf, list fixed) except -1:
    """Point ``buf`` into the rows of ``keep`` (validated); True if any is a delete."""
    cdef Py_ssize_t i
    cdef bint any_delete = False
    for i in range(len(keep)):
        row = keep[i]
        if type(row) is not tuple:
            row = tuple(row)
            fixed.append(row)  # keep the converted row alive too
        if len(<tuple>row) != 3:
            raise TypeError(f"row {i}: expected (module, key, value), got {row!r}")
        m, k, v = <tuple>row
        if type(m) is not str or type(k) is not str:
            raise TypeError(f"row {i}: module and key must be str, got {row!r}")
        buf[i].module = PyUnicode_AsUTF8AndSize(m, &buf[i].module_len)
        buf[i].key = PyUnicode_AsUTF8AndSize(k, &buf[i].key_len)
        if v is None:
            buf[i].value = NULL
            buf[i].value_len = 0
            any_delete = True
        elif type(v) is bytes:
            buf[i].value = PyBytes_AS_STRING(v)
            buf[i].value_len = PyBytes_GET_SIZE(v)
        else:
            raise TypeError(f"row {i}: value must be bytes or None, got {type(v).__name__}")
        if buf[i].module_len > 0xFFFFFFFF or buf[i].key_len > 0xFFFFFFFF \
                or buf[i].value_len > 0xFFFFFFFF:
            raise ValueError(f"row {i}: a part longer than 4 GiB")
    return any_delete


cdef inline Py_ssize_t _u32(const unsigned char* p) noexcept nogil:
    return <Py_ssize_t>(p[0] | (p[1] << 8) | (p[2] << 16) | (<unsigned int>p[3] << 24))


cdef inline unsigned char* _put32(unsigned char* p, Py_ssize_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF
    return p + 4


cdef bint _parse(const unsigned char* p, Py_ssize_t size, _Row* buf, Py_ssize_t n,
                 bint* any_delete) noexcept nogil:
    """Point ``buf`` into a record's rows; False when a length runs past its end."""
    cdef Py_ssize_t at = 8, i, ln
    cdef unsigned char kind
    for i in range(n):
        if at + 5 > size:
            return False
        kind = p[at]
        ln = _u32(p + at + 1)
        at += 5
        if kind > 1 or ln > size - at:
            return False
        buf[i].module = <const char*>(p + at)
        buf[i].module_len = ln
        at += ln
        at = _field(p, size, at, &buf[i].key, &buf[i].key_len)
        if at < 0:
            return False
        if kind == 1:
            buf[i].value = NULL
            buf[i].value_len = 0
            any_delete[0] = True
            continue
        at = _field(p, size, at, &buf[i].value, &buf[i].value_len)
        if at < 0:
            return False
    return at == size


cdef inline Py_ssize_t _field(const unsigned char* p, Py_ssize_t size, Py_ssize_t at,
                              const char** out, Py_ssize_t* out_len) noexcept nogil:
    """Point ``out`` at the length-prefixed field at ``at``; where the next one
    starts, or -1 when it runs past ``size``."""
    cdef Py_ssize_t ln
    if at + 4 > size:
        return -1
    ln = _u32(p + at)
    at += 4
    if ln > size - at:
        return -1
    out[0] = <const char*>(p + at)
    out_len[0] = ln
    return at + ln


def encode_rows(rows, str skip_module=None) -> tuple:
    """One log record of ``rows`` ((module, key, value-or-None), in order), for
    ``Connection.commit_record``: b"DNR1", the row count, then per row a kind byte
    (0 upsert, 1 delete) and the module, key and (upsert) value, each after its
    length; integers are 4 bytes little endian. Rows of module ``skip_module``
    are left out. Returns (record, rows in it)."""
    cdef tuple keep = tuple(rows)
    cdef Py_ssize_t n = len(keep), i, total = 8, kept = 0
    cdef const char* skip = NULL
    cdef Py_ssize_t skip_len = 0
    if skip_module is not None:
        skip = PyUnicode_AsUTF8AndSize(skip_module, &skip_len)
    if n > 0xFFFFFFFF:
        raise ValueError("more than 2**32 rows in one record")
    cdef _Row* buf = <_Row*>PyMem_Malloc(max(n, 1) * sizeof(_Row))
    if buf is NULL:
        raise MemoryError()
    cdef list fixed = []
    cdef bytes out
    cdef unsigned char* q
    try:
        _collect(keep, buf, fixed)
        for i in range(n):
            if skip is not NULL and buf[i].module_len == skip_len \
                    and memcmp(buf[i].module, skip, skip_len) == 0:
                buf[i].module = NULL  # left out
                continue
            kept += 1
            total += 9 + buf[i].module_len + buf[i].key_len
            if buf[i].value is not NULL:
                total += 4 + buf[i].value_len
        out = PyBytes_FromStringAndSize(NULL, total)
        q = <unsigned char*>PyBytes_AS_STRING(out)
        with nogil:
            memcpy(q, b"DNR1", 4)
            q = _put32(q + 4, kept)
            for i in range(n):
                if buf[i].module is NULL:
                    continue
                q[0] = 1 if buf[i].value is NULL else 0
                q = _put32(q + 1, buf[i].module_len)
                memcpy(q, buf[i].module, buf[i].module_len)
                q = _put32(q + buf[i].module_len, buf[i].key_len)
                memcpy(q, buf[i].key, buf[i].key_len)
                q += buf[i].key_len
                if buf[i].value is not NULL:
                    q = _put32(q, buf[i].value_len)
                    memcpy(q, buf[i].value, buf[i].value_len)
                    q += buf[i].value_len
        return out, kept
    finally:
        PyMem_Free(buf)


cdef bint _has_more(const char* tail) noexcept:
    """Is there another statement after ``tail`` (not just blanks or a semicolon)?"""
    while tail[0] != 0:
        if tail[0] not in b" \t\r\n;":
            return True
        tail += 1
    return False


cdef str _errmsg(sqlite3* db):
    cdef const char* m = sqlite3_errmsg(db)
    if m is NULL:
        return "unknown error"
    return m[:strlen(m)].decode("utf-8", "replace")


cdef int _bind(sqlite3_stmt* stmt, int i, object v) except -1:
    cdef int rc
    cdef Py_ssize_t n
    cdef const char* p
    if v is None:
        rc = sqlite3_bind_null(stmt, i)
    elif isinstance(v, int):
        rc = sqlite3_bind_int64(stmt, i, <sqlite3_int64>v)
    elif isinstance(v, float):
        rc = sqlite3_bind_double(stmt, i, <double>v)
    elif isinstance(v, str):
        p = PyUnicode_AsUTF8AndSize(v, &n)
        rc = sqlite3_bind_text64(stmt, i, p, n, SQLITE_STATIC, SQLITE_UTF8)
    elif isinstance(v, bytes):
        rc = sqlite3_bind_blob64(stmt, i, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v),
                                 SQLITE_STATIC)
    else:
        raise TypeError(f"cannot bind parameter {i} of type {type(v).__name__}")
    if rc != SQLITE_OK:
        raise SqliteError(f"binding parameter {i}: {sqlite3_errstr(rc).decode()}", rc)
    return 0


cdef object _column(sqlite3_stmt* stmt, int i):
    cdef int t = sqlite3_column_type(stmt, i)
    cdef const void* p
    cdef int n
    if t == SQLITE_INTEGER:
        return sqlite3_column_int64(stmt, i)
    if t == SQLITE_FLOAT:
        return sqlite3_column_double(stmt, i)
    if t == SQLITE_TEXT:
        p = sqlite3_column_text(stmt, i)
        n = sqlite3_column_bytes(stmt, i)
        return PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")
    if t == SQLITE_BLOB:
        p = sqlite3_column_blob(stmt, i)
        n = sqlite3_column_bytes(stmt, i)
        return PyBytes_FromStringAndSize(<const char*>p, n)
    return None
