"""The `ragline` command. Database commands run here; `materialize` and `status` go through
Dagster, so they live in orchestration/ and are imported only when called."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import math
import os
import shlex
import sys
import threading
from pathlib import Path

from ragline.answer.answering import AnswerError
from ragline.config import (
    CONFIG_ENV,
    RERANKERS,
    RETRIEVAL_STRATEGIES,
    TOKENIZERS,
    ConfigError,
    Settings,
    chat_models,
    config_path,
    is_loopback_url,
    load_settings,
)
from ragline.costs import ROLLUPS
from ragline.endpoints import calls_recorded_by
from ragline.llm import LLMError
from ragline.safe_text import printable
from ragline.storage.db import (
    DATABASE_URL_ENV,
    check_connection,
    database_mode,
    database_url,
    embedded_server,
    redact,
    sqlalchemy_url,
    stop_embedded,
)
from ragline.storage.provenance import first_partition_day
from ragline.types import (
    CallRecord,
    DatabaseError,
    EmbeddingError,
    PublishError,
    RetrievalError,
    SourceError,
)

# The most chunks a search or context may ask for.
MAX_K = 10_000


def echo(text: str = "", file=None) -> None:
    """Print for a person: outside text (chunk text, paths, ids) can hold terminal escapes, so every
    control character is escaped but the line breaks and tabs of `text` itself."""
    lines = ("\t".join(printable(part) for part in line.split("\t")) for line in text.split("\n"))
    print("\n".join(lines), file=file)


def dagster_environment(settings: Settings) -> dict[str, str]:
    """What the Dagster instance (dagster.yaml) and the code location read: its home, a psycopg2
    URL of our server, and this config file (definitions.py loads it on import)."""
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
        CONFIG_ENV: str(settings.path),
        "DAGSTER_HOME": home,
        "DAGSTER_PG_URL": sqlalchemy_url(_database_url(settings)),
        "RAGLINE_DAGSTER_STORAGE": str(storage),
        "RAGLINE_DAGSTER_COMPUTE_LOGS": str(storage / "compute_logs"),
    }


def _database_url(settings: Settings) -> str:
    """The database URL, checked with one connection: a malformed or unreachable $DATABASE_URL is a
    one-line error here, where Dagster's pool would retry for about 25 s and end in a traceback."""
    url = database_url(settings.data_dir)
    check_connection(url)
    return url


def _settings(path: str | None) -> Settings:
    """The config file's settings; a file that cannot be read as YAML text is a ConfigError too."""
    try:
        return load_settings(path)
    except ConfigError:
        raise
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config_path(path)}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{config_path(path)}: nested too deeply") from None
    except ValueError as exc:  # pathlib's, for a path holding NUL
        raise ConfigError(f"{config_path(path)}: {exc}") from None


def _cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "url":
        url = database_url(settings.data_dir)
        echo(sqlalchemy_url(url) if args.dagster else url)
    elif args.db_command == "start":
        if os.environ.get(DATABASE_URL_ENV) and database_mode() != "embedded":
            echo(f"DATABASE_URL is set; using {redact(os.environ[DATABASE_URL_ENV])}, nothing to start")
            return 0
        url = database_url(settings.data_dir)
        server = embedded_server(settings.data_dir)
        echo(f"embedded PostgreSQL running (pid {server.get_pid()}): {url}")
    elif args.db_command == "stop":
        stopped = stop_embedded(settings.data_dir)
        echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    elif args.db_command == "migrate":
        # The Dagster instance's tables too (orchestration.commands.prepare), in the same step.
        os.environ.update(dagster_environment(settings))
        applied = importlib.import_module("orchestration.commands").prepare(settings)
        echo("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def _day(settings: Settings, raw: str | None) -> str | None:
    """--date as a daily partition that exists: from the first partition day to today (UTC)."""
    if raw is None:
        return None
    try:
        day = dt.date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ConfigError(f"--date takes a day as YYYY-MM-DD, got '{printable(raw, 40)}'")
    (first, why), today = first_partition_day(settings), dt.datetime.now(dt.UTC).date()
    if not first <= day <= today:
        raise ConfigError(f"--date must be from {first} ({why}) to today, {today}")
    return raw


def _cmd_orchestrated(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "materialize":
        names = [settings.source(args.source).name] if args.source else [s.name for s in settings.sources]
        day = _day(settings, args.date)
    # Before orchestration/ is imported: its definitions load the config named by the environment.
    os.environ.update(dagster_environment(settings))
    commands = importlib.import_module("orchestration.commands")
    if args.command == "materialize":
        ok = commands.materialize(settings, names, day=day)
        return 0 if ok else 1
    if args.html:
        from ragline.monitoring.board import dagster_url, headline, render_board

        base_url = dagster_url(args.dagster_url)  # a bad URL fails before the work
    report = commands.status(settings)
    if args.html:
        try:
            Path(args.html).write_text(render_board(report, base_url=base_url), encoding="utf-8")
        except OSError as exc:
            print(
                f"ragline: error: cannot write {printable(args.html)}: {printable(exc.strerror)}",
                file=sys.stderr,
            )
            return 2
        echo(f"{headline(report)[1]}\nwrote {args.html}")
    elif args.json:
        print(json.dumps(report, indent=2))
    else:
        echo(commands.format_status(report))
    return 0 if report["healthy"] else 1


def _retriever(args: argparse.Namespace, settings: Settings, need_embedder: bool = False):
    from dataclasses import replace
    from functools import partial

    from ragline.index.background import BackgroundEmbedder
    from ragline.index.embedding import build_embedder
    from ragline.retrieval.search import build_retriever
    from ragline.storage.db import Database

    variant = None
    if args.variant:
        variant = next((v for v in settings.variants if v.name == args.variant), None)
        if variant is None:
            raise ConfigError(
                f"unknown variant {args.variant!r}; configured: {[v.name for v in settings.variants]}"
            )
    if args.rerank is not None:
        rerank = None if args.rerank == "none" else args.rerank
        if variant is not None:
            variant = replace(variant, retrieval=replace(variant.retrieval, rerank=rerank))
        else:
            settings = replace(settings, retrieval=replace(settings.retrieval, rerank=rerank))
    for name in args.source or []:
        settings.source(name)  # a clear error for a misspelt source
    retrieval = variant.retrieval if variant else settings.retrieval
    strategy = args.strategy or retrieval.strategy
    mmr_lambda = retrieval.mmr_lambda if args.mmr is None else args.mmr
    embedder = None
    # A lexical search without MMR or MaxSim needs no model: it is not loaded at all.
    if need_embedder or strategy != "lexical" or mmr_lambda is not None or retrieval.rerank == "maxsim":
        build = partial(build_embedder, settings.embedding, settings.embedding.api_key())
        # The model loads on a thread of its own while this one connects to the database (MaxSim
        # reuses the loaded model itself, so it is built here).
        embedder = build() if retrieval.rerank == "maxsim" else BackgroundEmbedder(build)
    # Two connections: a hybrid search runs its lexical side on the second one.
    db = Database(_database_url(settings), max_size=2)
    retriever = build_retriever(settings, db, embedder, variant=variant, caller="cli")
    return db, retriever


def _question(text: str) -> str:
    if not text.strip():
        raise ConfigError("the question is empty")
    if "\x00" in text:
        raise ConfigError("the question holds a NUL character")
    if any("\ud800" <= ch <= "\udfff" for ch in text):  # bytes that were not UTF-8 (surrogateescape)
        raise ConfigError("the question is not valid UTF-8 text")
    return text


def _search(args: argparse.Namespace, settings: Settings, k: int):
    from ragline.retrieval.search import parse_filters

    # Bad input fails here, before a database connection or the model is opened.
    question = _question(args.question)
    filters = parse_filters(args.source or [], args.where or [])
    db, retriever = _retriever(args, settings)
    result = retriever.search(
        question,
        k=k,
        strategy=args.strategy,
        filters=filters,
        mmr_lambda=args.mmr,
        log=False if args.no_log else None,
    )
    return db, retriever, result


def _cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    db, _retriever_, result = _search(args, settings, args.k)
    db.close()
    if args.json:
        from ragline.retrieval.search import result_json

        print(json.dumps(result_json(result), indent=2))
        return 0
    echo(f"{len(result.hits)} results, {result.strategy}, {result.latency_ms:.0f} ms")
    for i, h in enumerate(result.hits, start=1):
        snippet = " ".join(h.text.split())[:160]
        echo(f"{i:>3}. {h.score:8.4f}  {printable(h.citation)}\n       {printable(snippet)}")
    return 0


def _cmd_context(args: argparse.Namespace, settings: Settings) -> int:
    from ragline.retrieval.context import assemble_context, tokenizer_for

    db, retriever, result = _search(args, settings, args.k)
    try:
        with db.connection() as conn:
            context = assemble_context(
                result.hits,
                budget=args.budget,
                tokenizer=tokenizer_for(args.tokenizer),
                conn=conn,
                neighbours=args.neighbours,
                chunk_set=retriever.chunk_set,
                order=args.order,
            )
    finally:
        db.close()
    if args.json:
        print(json.dumps(context.as_json(result.query), indent=2))
        return 0
    # Line breaks of the passages are kept; any other control character shows escaped (--json has
    # the exact text).
    echo(context.text())
    used = f"{context.tokens}/{context.budget} tokens ({context.tokenizer})"
    echo(f"\n--- {used}, {len(context.passages)} passages")
    for c in context.citations():
        extra = f" (neighbour of {printable(c['neighbour_of'])})" if c["neighbour_of"] else ""
        echo(f"[{c['number']}] {printable(c['document'])} chars {c['start_char']}-{c['end_char']}{extra}")
    return 0


def _cmd_answer(args: argparse.Namespace, settings: Settings) -> int:
    from ragline.answer.pipeline import build_answerer, model_selector
    from ragline.costs import Caller
    from ragline.retrieval.search import parse_filters

    # Bad input and a missing model fail here, before the database or the embedding model is opened.
    question = _question(args.question)
    filters = parse_filters(args.source or [], args.where or [])
    models = model_selector(settings)
    db, retriever = _retriever(args, settings, need_embedder=True)
    options = {
        "k": args.k,
        "strategy": args.strategy,
        "filters": filters,
        "mmr_lambda": args.mmr,
        "log": False if args.no_log else None,
    }
    caller = Caller("cli")
    try:
        answerer = build_answerer(settings, db, retriever=retriever, models=models)
        if args.stream and not args.json:
            result = None
            for kind, item in answerer.stream(question, caller=caller, **options):
                if kind == "token":
                    # Escaped like every other outside text; line breaks are kept.
                    sys.stdout.write("\n".join(printable(line) for line in item.split("\n")))
                    sys.stdout.flush()
                else:
                    result = item
            assert result is not None
            if result.replaced:
                echo("\n--- the output checks replaced the streamed text with:")
            if result.abstained or result.cached or result.replaced:
                echo(result.text)
            else:
                echo()
        else:
            result = answerer.answer(question, caller=caller, **options)
            if not args.json:
                echo(result.text)
    finally:
        db.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    if result.abstained:
        echo(f"\n--- abstained: {result.reason}")
        return 0
    for c in result.citations:
        echo(f"[{c.number}] {c.document} chars {c.start_char}-{c.end_char}")
    if result.guardrails.get("invalid_citations"):
        echo(f"(cited passages that do not exist, dropped: {result.guardrails['invalid_citations']})")
    tokens = (
        "from the answer cache, 0 tokens"
        if result.cached
        else f"{result.prompt_tokens}+{result.completion_tokens} tokens"
    )
    echo(f"--- {result.model}, {result.prompt}, {tokens}, {result.timings_ms.get('total', 0):.0f} ms")
    if result.route:
        echo(f"--- route: {result.route}")
    return 0


def _cmd_drift(args: argparse.Namespace, settings: Settings) -> int:
    from ragline.index.embedding import build_embedder
    from ragline.monitoring.drift import pin_baseline
    from ragline.storage.db import Database

    model_id = build_embedder(settings.embedding, settings.embedding.api_key()).model_id
    with Database(_database_url(settings), max_size=1) as db, db.connection() as conn:
        counts = pin_baseline(conn, model_id, args.per_source)
    if not counts:
        echo(f"no vectors of {model_id} to pin; materialize the pipeline first", file=sys.stderr)
        return 1
    echo(
        f"pinned the drift baseline for {model_id}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0


def _cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from ragline.index.publishing import accept_change, publication, release, rollback
    from ragline.storage.db import Database

    source = settings.source(args.rollback or args.release or args.accept_change).name
    with Database(_database_url(settings), max_size=1) as db, db.connection() as conn:
        if args.rollback:
            result = rollback(conn, source)
            echo(
                f"{source}: serving generation {result.generation} again (was {result.previous}); "
                f"held: automated publishes wait for `ragline publish --release {source}`"
            )
        elif args.release:
            held = release(conn, source)
            echo(f"{source}: released; the next run publishes" if held else f"{source} was not held")
        else:
            accept_change(conn, source)
            echo(f"{source}: the next publish may delete or replace any share of its documents")
        now = publication(conn, source)
        if now is not None:
            echo(f"{source}: generation {now.generation}, {now.documents} documents, {now.chunks} chunks")
    return 0


def _cmd_gc(args: argparse.Namespace, settings: Settings) -> int:
    from ragline.answer.cache import AnswerCache
    from ragline.index.gc import collect_garbage, format_gc
    from ragline.storage.db import Database

    with Database(_database_url(settings), max_size=1) as db, db.connection() as conn:
        echo(format_gc(collect_garbage(conn, dry_run=args.dry_run)))
        # Answers built on data no longer served, and expired ones, can never hit again.
        with conn.transaction(force_rollback=args.dry_run):
            purged = AnswerCache(settings.cache).purge(conn)
        echo(f"answer cache: {'would purge' if args.dry_run else 'purged'} {purged} entries")
    return 0


NO_AUTH_ENV = "RAGLINE_SERVE_NO_AUTH"  # set by `ragline serve --no-auth` for its worker processes


def _board(settings: Settings) -> str:
    """The on-call health board's HTML, built as `ragline status --html` builds it (through Dagster,
    reached only here, by importlib); raises when Dagster's instance cannot be read."""
    from ragline.monitoring.board import dagster_url, render_board

    os.environ.update(dagster_environment(settings))
    commands = importlib.import_module("orchestration.commands")
    return render_board(commands.status(settings), base_url=dagster_url())


def _warm_lexical(retriever) -> None:
    """Load the served chunk set's BM25 postings before the first request; a failure (nothing
    published yet) is logged, and searches load it when there is something to load."""
    try:
        retriever.bm25.warm(retriever.chunk_set)
    except Exception as exc:
        logging.getLogger("ragline.serve").warning(
            "lexical index not loaded at start: %s", printable(exc, 300)
        )


def build_api(settings: Settings, *, auth: bool = True):
    """The HTTP API of `ragline serve`: one database pool and one retriever (and embedding model,
    loading in the background) per process."""
    from dataclasses import replace
    from functools import partial

    from ragline.answer.pipeline import build_answerer
    from ragline.index.background import BackgroundEmbedder
    from ragline.index.embedding import build_embedder
    from ragline.retrieval.search import build_retriever
    from ragline.serving.app import create_app
    from ragline.storage.db import Database

    db = Database(_database_url(settings), max_size=settings.serve.pool_size)
    embedder = BackgroundEmbedder(partial(build_embedder, settings.embedding, settings.embedding.api_key()))
    retrieval = replace(settings.retrieval, lexical_index=settings.serve.lexical_index)
    retriever = build_retriever(replace(settings, retrieval=retrieval), db, embedder, caller="api")
    if settings.serve.lexical_index == "memory":
        _warm_lexical(retriever)
    answerer = None
    if chat_models(settings):  # else /v1/answer and /v1/chat/completions answer 501
        answerer = build_answerer(settings, db, retriever=retriever)
    return create_app(
        settings, db, retriever=retriever, answerer=answerer, board=partial(_board, settings), auth=auth
    )


def serve_app():
    """uvicorn's app factory for `ragline serve --workers N`: each worker builds its own API from
    $RAGLINE_CONFIG (set by the command)."""
    return build_api(_settings(None), auth=os.environ.get(NO_AUTH_ENV) != "1")


def _is_loopback_host(host: str) -> bool:
    return is_loopback_url(f"http://[{host}]/" if ":" in host else f"http://{host}/")


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    host = args.host or settings.serve.host
    port = settings.serve.port if args.port is None else args.port
    workers = args.workers or settings.serve.workers
    if args.no_auth and not _is_loopback_host(host):
        raise ConfigError(
            f"--no-auth serves every /v1 route to anyone who can reach {printable(host, 80)}; it is "
            "allowed only on a loopback address (127.0.0.1, ::1, localhost). Create a key with "
            "`ragline keys create --name NAME` instead"
        )
    if workers > 1:
        os.environ[CONFIG_ENV] = str(settings.path)
        os.environ[NO_AUTH_ENV] = "1" if args.no_auth else "0"
        uvicorn.run(
            "ragline.cli:serve_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            # A worker imports the stack and loads its model before it answers the supervisor's
            # ping; under load that took over uvicorn's default 5 s, and the worker was killed and
            # restarted in a loop.
            timeout_worker_healthcheck=60,
        )
        return 0
    app = build_api(settings, auth=not args.no_auth)
    uvicorn.run(app, host=host, port=port)
    return 0


def _cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from ragline.serving.keys import create_key, list_keys, revoke_key
    from ragline.storage.db import Database

    with Database(_database_url(settings), max_size=1) as db, db.connection() as conn:
        if args.keys_command == "create":
            created = create_key(
                conn, args.name, rate_per_minute=args.rate_per_minute, token_budget=args.token_budget
            )
            echo(
                f"created API key {created.name!r} (id {created.key_id}); it is shown only now, "
                "store it (ragline keeps only its hash):",
                file=sys.stderr,
            )
            print(created.key)
        elif args.keys_command == "list":
            keys = list_keys(conn)
            if args.json:
                print(json.dumps(keys, indent=2, default=str))
                return 0
            if not keys:
                echo("no API keys; create one with `ragline keys create --name NAME`")
            for k in keys:
                state = f"revoked {k['revoked_at']:%Y-%m-%d %H:%M}" if k["revoked_at"] else "active"
                rate = f"{k['rate_per_minute']}/min" if k["rate_per_minute"] else "no rate limit"
                budget = (
                    f"{k['tokens_used']:,}/{k['token_budget']:,} tokens"
                    if k["token_budget"]
                    else (f"{k['tokens_used']:,} tokens, no budget")
                )
                echo(
                    f"{k['name']}\t{k['key_prefix']}…\t{state}\t{rate}\t{budget}\t"
                    f"{k['requests']:,} requests\tcreated {k['created_at']:%Y-%m-%d %H:%M}"
                )
        else:
            if not revoke_key(conn, args.name):
                raise ConfigError(f"no API key named '{printable(args.name, 80)}'")
            echo(f"revoked API key {args.name!r}: its requests now answer 403")
    return 0


LABEL_PROMPT = "y yes · p partly · n no · Enter skips · s skips the item · q quits"


def _ask(question: str) -> str:
    """One answer from the terminal (EOFError at the end of input)."""
    return input(question).strip()


def _label_item(item: dict, position: str) -> dict | None:
    """Ask for one item's verdicts and note; None when the item is skipped."""
    from ragline.evaluation.annotation import CHOICES

    echo(
        f"\n── item {item['item_id']} · {position} · {item['eval_set']} / {item['variant']} / "
        f"{item['question_id']} · {', '.join(item['reasons'])}"
    )
    echo(f"question: {item['question']}")
    echo(f"answer:   {item['answer'] or '(no answer: it abstained)'}")
    for p in item["context"] or []:
        echo(f"  [{p.get('number')}] {p.get('document', '')}: {printable(p.get('text', ''), 300)}")
    if item["reference"]:
        echo("reference: (r at a prompt shows it)")
    verdicts: dict[str, str | None] = {}
    for kind in ("faithful", "relevant", "correct"):
        while True:
            raw = _ask(f"{kind}? [y/p/n] ").lower()
            if raw == "r" and item["reference"]:
                echo(f"reference: {item['reference']}")
                continue
            if raw in ("q", "quit"):
                raise EOFError
            if raw == "s":
                return None
            named = {"y": "yes", "p": "partly", "n": "no"}.get(raw, raw)
            if raw == "" or named in CHOICES:
                verdicts[kind] = named or None
                break
            echo(f"  '{printable(raw, 20)}': {LABEL_PROMPT}")
    verdicts["note"] = _ask("note (Enter for none): ")
    return verdicts


def _cmd_label(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from ragline.evaluation import annotation
    from ragline.storage.db import Database

    with Database(_database_url(settings), max_size=1) as db, db.connection() as conn:
        if args.label_command == "export":
            return _label_export(conn, Path(args.label_studio))
        if args.label_command == "import":
            return _label_import(conn, Path(args.label_studio))
        if args.label_command == "promote":
            path = Path(args.path) if args.path else settings.annotation.golden_path
            done = annotation.promote(conn, path, args.item)
            echo(
                f"promoted {len(done.written)} item(s) to {path}"
                + (f"; {len(done.already)} already there" if done.already else "")
            )
            for item_id, why in sorted(done.skipped.items()):
                echo(f"not promoted: item {item_id}: {why}")
            return 0
        annotator = annotation.annotator_name(args.annotator or getpass.getuser())
        saved = 0
        echo(f"labelling as {annotator}: {LABEL_PROMPT}; r shows the reference")
        skipped: set[int] = set()  # asked once per session
        try:
            while items := [
                i for i in annotation.items_for(conn, annotator, 1000) if i["item_id"] not in skipped
            ]:
                left = annotation.open_count(conn, annotator)
                for k, item in enumerate(items, start=1):
                    verdicts = _label_item(item, f"{k} of {left} open")
                    try:
                        if verdicts is None or not any(verdicts.values()):
                            raise annotation.AnnotationError("skipped")
                        label = annotation.make_label(item["item_id"], annotator, source="cli", **verdicts)
                    except annotation.AnnotationError as exc:
                        skipped.add(item["item_id"])
                        echo(f"not saved: {exc}")
                        continue
                    annotation.save_label(conn, label)
                    saved += 1
                    echo(f"saved ({saved} this session)")
        except (EOFError, KeyboardInterrupt):
            echo(f"\nstopped; {saved} label(s) saved")
            return 0
        echo(f"nothing left to label; {saved} label(s) saved")
    return 0


def _label_export(conn, path: Path) -> int:
    from ragline.evaluation.annotation import export_tasks
    from ragline.evaluation.label_studio import LABELING_CONFIG

    tasks = export_tasks(conn)
    config = path.with_name(path.name + ".config.xml")
    try:
        path.write_text(json.dumps(tasks, indent=2, default=str), encoding="utf-8")
        config.write_text(LABELING_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {printable(path)}: {printable(exc.strerror)}") from None
    echo(f"wrote {len(tasks)} task(s) to {path}; Label Studio labeling config: {config}")
    return 0


def _label_import(conn, path: Path) -> int:
    from ragline.evaluation.annotation import import_tasks

    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {printable(path)}: {printable(exc.strerror)}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{printable(path)}: not a JSON file: {printable(exc, 200)}") from None
    done = import_tasks(conn, tasks)
    echo(f"imported {done.labels_saved} label(s) from {path} ({done.items_created} new item(s))")
    return 0


class _CliLedger:
    """The CLI's call sink: every model call of a command goes to llm_calls as made by the CLI. The
    database is opened on the first call (a lexical search makes none, and opens nothing)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db = None
        self._sink = None
        self._lock = threading.Lock()

    def __call__(self, record: CallRecord) -> None:
        from ragline.costs import Caller, postgres_sink
        from ragline.storage.db import Database

        with self._lock:
            if self._sink is None:
                self._db = Database(database_url(self.settings.data_dir), max_size=1)
                self._sink = postgres_sink(self._db, Caller("cli"), self.settings.prices)
        self._sink(record)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _since(raw: str | None) -> dt.datetime:
    """--since as the start of a UTC day (default: today)."""
    if raw is None:
        day = dt.datetime.now(dt.UTC).date()
    else:
        try:
            day = dt.date.fromisoformat(raw) if len(raw) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise ConfigError(f"--since takes a day as YYYY-MM-DD, got '{printable(raw, 40)}'")
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _cmd_cost(args: argparse.Namespace, settings: Settings) -> int:
    from ragline.costs import rollup
    from ragline.storage.db import Database

    since = _since(args.since)
    with Database(_database_url(settings), max_size=1) as db, db.connection() as conn:
        rows = rollup(conn, args.by, since)
    unpriced = sorted({m for r in rows for m in r.unpriced_models})
    total = sum(r.cost_usd for r in rows)
    if args.json:
        print(
            json.dumps(
                {
                    "by": args.by,
                    "since": since.isoformat(),
                    "rows": [r.as_dict() for r in rows],
                    "total_usd": round(total, 8),
                    "unpriced_models": unpriced,
                },
                indent=2,
            )
        )
        return 0
    echo(f"model calls since {since:%Y-%m-%d} (UTC), by {args.by}")
    echo(f"{args.by:<44} {'calls':>7} {'failed':>6} {'tokens in':>11} {'tokens out':>10} {'USD':>12}")
    for r in rows:
        label = printable(r.label, 44)
        echo(
            f"{label:<44} {r.calls:>7} {r.failed:>6} {r.prompt_tokens:>11} {r.completion_tokens:>10} "
            f"{r.cost_usd:>12.6f}"
        )
    echo(f"{'total':<44} {sum(r.calls for r in rows):>7} {'':>6} {'':>11} {'':>10} {total:>12.6f}")
    if unpriced:
        echo(f"no price in prices: for {', '.join(unpriced)}: their calls are not in the totals")
    return 0


def _cmd_env(_args: argparse.Namespace, settings: Settings) -> int:
    for key, value in dagster_environment(settings).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line like every other error of the command."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"ragline: error: {printable(message)} (see {self.prog} --help)\n")


def _count(low: int, high: int | None = None):
    """An argparse type: an integer from low to high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: '{printable(text, 40)}'") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high:,}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got '{printable(text, 40)}'")
    return value


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ragline", description=__doc__)
    p.add_argument("--config", help="ragline.yaml to use (default: $RAGLINE_CONFIG or ./ragline.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    url = db.add_parser("url", help="print the database URL (starts the embedded server if needed)")
    url.add_argument("--dagster", action="store_true", help="as dagster-postgres needs it (psycopg2)")
    db.add_parser("start", help="start the embedded PostgreSQL (reuses a running one)")
    db.add_parser("stop", help="stop the embedded PostgreSQL")
    db.add_parser("migrate", help="apply pending migrations, refresh views, create the Dagster tables")
    m = sub.add_parser("materialize", help="run the whole pipeline in-process through Dagster")
    m.add_argument("--source", help="only this source (default: every source)")
    m.add_argument("--date", help="the quality assets' daily partition, YYYY-MM-DD (default: today, UTC)")
    s = sub.add_parser("status", help="per asset and source: last run, row counts, check results")
    output = s.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument(
        "--html", metavar="FILE", help="write the on-call health board, one self-contained page"
    )
    s.add_argument(
        "--dagster-url",
        help="the Dagster UI the board links to (default: $RAGLINE_DAGSTER_URL or http://127.0.0.1:3000)",
    )
    sub.add_parser("env", help="print shell exports for the Dagster instance (used by make dev)")
    cost = sub.add_parser("cost", help="model calls' tokens and USD from llm_calls, rolled up")
    cost.add_argument("--by", choices=ROLLUPS, default="model", help="group by (default: model)")
    cost.add_argument("--since", metavar="DATE", help="from this UTC day, YYYY-MM-DD (default: today)")
    cost.add_argument("--json", action="store_true")
    pub = sub.add_parser("publish", help="what each source serves: roll back, release, accept a mass change")
    action = pub.add_mutually_exclusive_group(required=True)
    action.add_argument("--rollback", metavar="SOURCE", help="serve the previous generation and hold there")
    action.add_argument("--release", metavar="SOURCE", help="let automated publishes of a held source go on")
    action.add_argument(
        "--accept-change", metavar="SOURCE", help="accept the next publish even if it is a mass change"
    )
    gc = sub.add_parser(
        "gc",
        help="remove what no retained generation uses, and answer cache entries that can never hit",
    )
    gc.add_argument("--dry-run", action="store_true", help="count what would be freed, change nothing")
    drift = sub.add_parser("drift", help="drift monitoring").add_subparsers(
        dest="drift_command", required=True
    )
    pin = drift.add_parser("pin", help="pin the current corpus vectors as the drift baseline")
    pin.add_argument(
        "--per-source", type=_count(1), default=2000, help="vectors sampled per source (as drift_metrics)"
    )
    serve = sub.add_parser("serve", help="serve the HTTP API (search, context, health, metrics)")
    serve.add_argument("--host", help="address to bind (default: serve.host, 127.0.0.1)")
    serve.add_argument("--port", type=_count(0, 65535), help="port (default: serve.port, 8000)")
    serve.add_argument("--workers", type=_count(1, 64), help="worker processes (default: serve.workers, 1)")
    serve.add_argument(
        "--no-auth", action="store_true", help="serve /v1 without API keys (loopback addresses only)"
    )
    keys = sub.add_parser("keys", help="API keys of the HTTP API").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--rate-per-minute", type=_count(1), help="requests per minute (default: no limit)")
    create.add_argument("--token-budget", type=_count(1), help="model tokens in all (default: no budget)")
    key_list = keys.add_parser("list", help="every key's name, limits and spending (never the key)")
    key_list.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="revoke a key: its requests answer 403")
    revoke.add_argument("name")
    label = sub.add_parser("label", help="label queued answers in the terminal; Label Studio; promotion")
    label.add_argument("--annotator", help="your name (default: the login name)")
    label_sub = label.add_subparsers(dest="label_command")
    export = label_sub.add_parser("export", help="every queued item and its labels as Label Studio tasks")
    export.add_argument("--label-studio", metavar="FILE", required=True, help="the JSON file to write")
    imported = label_sub.add_parser("import", help="labels from a Label Studio export into human_labels")
    imported.add_argument("--label-studio", metavar="FILE", required=True, help="the JSON file to read")
    promote = label_sub.add_parser("promote", help="append approved answers to the golden set file")
    promote.add_argument("--item", type=_count(1), action="append", help="only this item id (repeatable)")
    promote.add_argument("--path", help="the golden JSONL file (default: annotation.golden_path)")
    for name, help_text in (
        ("search", "retrieve the best chunks for a question"),
        ("context", "assemble a token-budgeted, cited prompt context for a question"),
        ("answer", "answer a question from the published documents, with citations (needs the llm block)"),
    ):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("question")
        default_k = {"search": 10, "context": 20, "answer": None}[name]
        q.add_argument(
            "--k", type=_count(1, MAX_K), default=default_k, help="chunks to retrieve (answer: retrieval.k)"
        )
        q.add_argument("--strategy", choices=RETRIEVAL_STRATEGIES, help="default: retrieval.strategy")
        q.add_argument("--source", action="append", help="only this source (repeatable)")
        q.add_argument("--where", action="append", help="document metadata key=value (repeatable)")
        q.add_argument(
            "--mmr", type=_fraction, metavar="LAMBDA", help="MMR diversity, 0 (diverse) to 1 (relevant)"
        )
        q.add_argument("--rerank", choices=(*RERANKERS, "none"), help="default: retrieval.rerank")
        q.add_argument("--variant", help="use an evaluation variant's chunks, model and settings")
        q.add_argument("--no-log", action="store_true", help="do not record the query in ragline.query_log")
        q.add_argument("--json", action="store_true")
        if name == "context":
            q.add_argument("--budget", type=_count(1), default=2000, help="tokens of the target model")
            q.add_argument(
                "--tokenizer", default="cl100k_base", choices=TOKENIZERS, help="the target model's"
            )
            q.add_argument("--neighbours", action="store_true", help="add the chunks around each hit")
            q.add_argument("--order", choices=("long_context", "rank"), default="long_context")
        if name == "answer":
            q.add_argument("--stream", action="store_true", help="print the answer's tokens as they come")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    ledger = None
    try:
        settings = _settings(args.config)
        ledger = _CliLedger(settings)
        with calls_recorded_by(ledger):
            return _dispatch(args, settings)
    except (
        ConfigError,
        DatabaseError,
        SourceError,
        RetrievalError,
        PublishError,
        EmbeddingError,
        LLMError,
        AnswerError,
    ) as exc:
        print(f"ragline: error: {printable(str(exc).strip())}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`ragline search ... | head`): stop quietly, as other tools do. Python
        # flushes stdout again at exit, so point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command a pipe cut short
    finally:
        if ledger is not None:
            ledger.close()


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run the command (errors are turned into messages by main)."""
    if args.command == "db":
        return _cmd_db(args, settings)
    if args.command == "env":
        return _cmd_env(args, settings)
    if args.command == "drift":
        return _cmd_drift(args, settings)
    if args.command == "publish":
        return _cmd_publish(args, settings)
    if args.command == "gc":
        return _cmd_gc(args, settings)
    if args.command == "search":
        return _cmd_search(args, settings)
    if args.command == "context":
        return _cmd_context(args, settings)
    if args.command == "answer":
        return _cmd_answer(args, settings)
    if args.command == "serve":
        return _cmd_serve(args, settings)
    if args.command == "keys":
        return _cmd_keys(args, settings)
    if args.command == "cost":
        return _cmd_cost(args, settings)
    if args.command == "label":
        return _cmd_label(args, settings)
    return _cmd_orchestrated(args, settings)


if __name__ == "__main__":
    sys.exit(main())
