"""The `ragline` command. Database commands run here; `materialize` and `status` go through
Dagster, so they live in orchestration/ and are imported only when called."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
from pathlib import Path

from ragline.config import ConfigError, Settings, load_settings
from ragline.db import (
    DATABASE_URL_ENV,
    DatabaseError,
    database_url,
    embedded_server,
    migrate,
    redact,
    sqlalchemy_url,
    stop_embedded,
)
from ragline.sources import SourceError


def dagster_environment(settings: Settings) -> dict[str, str]:
    """What the Dagster instance (dagster.yaml) reads: its home and a psycopg2 URL of our server."""
    # $DAGSTER_HOME if set; else the project's folder; else the dagster.yaml ragline ships.
    candidates = [
        os.environ.get("DAGSTER_HOME"),
        settings.project_dir,
        Path(__file__).resolve().parent.parent,
    ]
    home = next((str(c) for c in candidates if c and (Path(c) / "dagster.yaml").is_file()), None)
    if home is None:
        raise ConfigError(f"no dagster.yaml in any of {[str(c) for c in candidates if c]}")
    storage = settings.data_dir / "dagster"
    return {
        "DAGSTER_HOME": home,
        "DAGSTER_PG_URL": sqlalchemy_url(database_url(settings.data_dir)),
        "RAGLINE_DAGSTER_STORAGE": str(storage),
    }


def _cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "url":
        url = database_url(settings.data_dir)
        print(sqlalchemy_url(url) if args.dagster else url)
    elif args.db_command == "start":
        if os.environ.get(DATABASE_URL_ENV):
            print(f"DATABASE_URL is set; using {redact(os.environ[DATABASE_URL_ENV])}, nothing to start")
            return 0
        url = database_url(settings.data_dir)
        server = embedded_server(settings.data_dir)
        print(f"embedded PostgreSQL running (pid {server.get_pid()}): {url}")
    elif args.db_command == "stop":
        stopped = stop_embedded(settings.data_dir)
        print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    elif args.db_command == "migrate":
        applied = migrate(database_url(settings.data_dir))
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def _cmd_orchestrated(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "materialize":
        names = [settings.source(args.source).name] if args.source else [s.name for s in settings.sources]
    os.environ.update(dagster_environment(settings))
    commands = importlib.import_module("orchestration.commands")
    if args.command == "materialize":
        ok = commands.materialize(settings, names)
        return 0 if ok else 1
    report = commands.status(settings)
    print(json.dumps(report, indent=2) if args.json else commands.format_status(report))
    return 0 if report["healthy"] else 1


def _cmd_env(_args: argparse.Namespace, settings: Settings) -> int:
    for key, value in dagster_environment(settings).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ragline", description=__doc__)
    p.add_argument("--config", help="ragline.yaml to use (default: $RAGLINE_CONFIG or ./ragline.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    url = db.add_parser("url", help="print the database URL (starts the embedded server if needed)")
    url.add_argument("--dagster", action="store_true", help="as dagster-postgres needs it (psycopg2)")
    db.add_parser("start", help="start the embedded PostgreSQL (reuses a running one)")
    db.add_parser("stop", help="stop the embedded PostgreSQL")
    db.add_parser("migrate", help="apply pending migrations and refresh views")
    m = sub.add_parser("materialize", help="run the whole pipeline in-process through Dagster")
    m.add_argument("--source", help="only this source (default: every source)")
    s = sub.add_parser("status", help="per asset and source: last run, row counts, check results")
    s.add_argument("--json", action="store_true")
    sub.add_parser("env", help="print shell exports for the Dagster instance (used by make dev)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "db":
            return _cmd_db(args, settings)
        if args.command == "env":
            return _cmd_env(args, settings)
        return _cmd_orchestrated(args, settings)
    except (ConfigError, DatabaseError, SourceError) as exc:
        print(f"ragline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
