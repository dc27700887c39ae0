"""The `ragline` command as a user runs it: database commands, materialize and status."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys

import dagster as dg
import psutil
import pytest

from ragline.cli import main
from ragline.storage.db import migrations, stop_embedded
from tests.conftest import REPO, TEST_DATA_DIR, run, write_project


def test_db_commands_against_the_embedded_server(tmp_path, server_url, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = write_project(tmp_path, [{"name": "docs", "root": "."}], data_dir=str(TEST_DATA_DIR))
    config = str(settings.path)

    assert main(["--config", config, "db", "start"]) == 0
    first = capsys.readouterr().out
    assert main(["--config", config, "db", "start"]) == 0  # reuses the running server
    assert capsys.readouterr().out == first
    assert "embedded PostgreSQL running (pid" in first

    assert main(["--config", config, "db", "url"]) == 0
    assert capsys.readouterr().out.strip() == server_url
    assert main(["--config", config, "db", "url", "--dagster"]) == 0
    assert capsys.readouterr().out.startswith("postgresql+psycopg2://postgres:@/ragline?host=")
    assert main(["--config", config, "db", "migrate"]) == 0
    applied = "applied: " + ", ".join(m.name for m in migrations())
    assert capsys.readouterr().out.strip() in (applied, "schema is up to date")


def test_db_stop_stops_the_server_and_start_brings_it_back(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    data_dir = REPO / ".ragline" / f"test-stop-{tmp_path.name}"
    settings = write_project(tmp_path, [{"name": "docs", "root": "."}], data_dir=str(data_dir))
    config = str(settings.path)
    try:
        assert main(["--config", config, "db", "start"]) == 0
        pid = int(capsys.readouterr().out.split("(pid ")[1].split(")")[0])
        assert main(["--config", config, "db", "stop"]) == 0
        assert capsys.readouterr().out.strip() == "embedded PostgreSQL stopped"
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()
        # Started from this process, the postmaster may linger as a zombie until reaped.
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert main(["--config", config, "db", "stop"]) == 0
        assert capsys.readouterr().out.strip() == "embedded PostgreSQL was not running"
    finally:
        main(["--config", config, "db", "stop"])
        shutil.rmtree(data_dir, ignore_errors=True)


def test_external_database_url_is_used(tmp_path, db_url, capsys):
    settings = write_project(tmp_path, [{"name": "docs", "root": "."}])
    assert main(["--config", str(settings.path), "db", "url"]) == 0
    assert capsys.readouterr().out.strip() == db_url
    assert main(["--config", str(settings.path), "db", "start"]) == 0
    assert "DATABASE_URL is set" in capsys.readouterr().out
    assert not (tmp_path / ".ragline" / "pgdata").exists()  # nothing embedded was started


def instance_in_project(tmp_path, monkeypatch) -> None:
    """The repository's dagster.yaml (runs stored in Postgres) and benefits.md under corpus/."""
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    # `ragline` exports the instance's variables into its own environment; undo that afterwards.
    for name in (
        "RAGLINE_CONFIG",
        "DAGSTER_HOME",
        "DAGSTER_PG_URL",
        "RAGLINE_DAGSTER_STORAGE",
        "RAGLINE_DAGSTER_COMPUTE_LOGS",
    ):
        monkeypatch.setenv(name, "")
    monkeypatch.delenv("DAGSTER_HOME")
    (tmp_path / "corpus").mkdir()
    shutil.copy(REPO / "examples/corpus/handbook/benefits.md", tmp_path / "corpus")


def test_materialize_then_status_with_runs_stored_in_postgres(tmp_path, db_url, monkeypatch, capsys):
    instance_in_project(tmp_path, monkeypatch)
    (tmp_path / "corpus" / "bad.txt").write_bytes(b"\xff\xfe")
    settings = write_project(tmp_path, [{"name": "docs", "root": "corpus"}])
    config = str(settings.path)

    assert main(["--config", config, "materialize", "--source", "docs"]) == 0
    out = capsys.readouterr().out
    assert "source docs: ok" in out and "search index: ok" in out and "quality " in out
    # No eval set and no earlier day: the gate could not test; said so, and not a failure (exit 0).
    assert "check retrieval_scores.ndcg_at_10_has_not_regressed warn (not tested: compared 0" in out

    assert main(["--config", config, "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is True and report["failing_checks"] == []
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert f"retrieval_scores[{today}].ndcg_at_10_has_not_regressed" in report["untested_checks"]
    rows = {(a["asset"], a["partition"]): a for a in report["assets"]}
    assert set(rows) == {
        ("raw_documents", "docs"),
        ("chunks", "docs"),
        ("embeddings", "docs"),
        ("serving_chunks", "docs"),
        ("search_index", None),
        ("eval_set", None),
        ("variant_corpora", None),
        ("retrieval_scores", today),
        ("variant_comparison", today),
        ("drift_metrics", today),
        ("answer_scores", today),
        ("annotation_queue", today),
    }
    assert {a["freshness"] for a in report["assets"]} == {"pass"}
    # No eval set configured: nothing to score, and drift pinned its baseline on this first run.
    assert rows[("retrieval_scores", today)]["rows"] == 0
    assert rows[("drift_metrics", today)]["metadata"]["baseline_pinned_this_run"] is True
    assert {(d["scope"], d["subject"]) for d in report["quality"]["drift"]} >= {
        ("corpus_vs_baseline", "docs")
    }
    docs = rows[("raw_documents", "docs")]
    assert docs["rows"] == 1 and docs["metadata"]["quarantined"] == 1
    assert docs["checks"] == {"documents_have_text": "passed", "source_change_within_limit": "passed"}
    assert rows[("chunks", "docs")]["rows"] == rows[("embeddings", "docs")]["rows"] > 3
    assert all(a["materialized_at"] for a in report["assets"])

    # The runs live in the same Postgres: dagster-postgres made its tables there.
    import psycopg

    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 3

    assert main(["--config", config, "status"]) == 0
    text = capsys.readouterr().out
    assert "raw_documents       docs" in text
    untested = len(report["untested_checks"])
    # Healthy, but the checks that tested nothing are counted and shown as warnings, not passes.
    assert text.splitlines()[-1].startswith(f"healthy, {untested} checks could not test: ")
    assert "ndcg_at_10_has_not_regressed=warn (not tested: compared 0: no variant and eval set" in text
    assert "drift (" in text and "corpus_vs_baseline" in text
    # The corpus compared with the baseline this very run pinned tested nothing: not an "ok".
    corpus_lines = [line for line in text.splitlines() if line.startswith("  corpus_vs_baseline")]
    assert corpus_lines, text
    for line in corpus_lines:
        assert line.endswith("not tested: baseline pinned by this run") or "not tested:" in line, line

    # A quiet source's checks are those of the run that materialized it, however many evaluations
    # of the same checks came since (a bounded check history once lost them: "not run", exit 1).
    with dg.DagsterInstance.get() as instance:
        for i in range(120):
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey("chunks"),
                    check_name="chunk_spans_cover_document",
                    passed=True,
                    partition=f"elsewhere-{i}",
                )
            )
    assert main(["--config", config, "status", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    [chunks] = [a for a in again["assets"] if a["asset"] == "chunks"]
    assert chunks["checks"]["chunk_spans_cover_document"] == "passed" and again["healthy"] is True


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("sources: []", "'sources' must be a non-empty list"),
        ("sources: [{name: Bad-Name, root: .}]", "must match"),
        ("sources: [{name: a, root: ., chunking: {strategy: words}}]", "strategy must be one of"),
        ("sources: [{name: a, root: ., chunking: {chunk_size: 100, chunk_overlap: 100}}]", "chunk_overlap"),
        ("sources: [{name: a, root: .}, {name: a, root: .}]", "repeated: ['a']"),
        ("sources: [{name: a, root: ., colour: red}]", "unknown keys ['colour']"),
        ("embedding: {provider: magic}\nsources: [{name: a, root: .}]", "embedding.provider"),
        ("retrieval: {rerank: llm}\nsources: [{name: a, root: .}]", "no llm.model is configured"),
        ("variants: [{name: v, strategy: fuzzy}]\nsources: [{name: a, root: .}]", "strategy must be one of"),
        ("variants: [{name: default}]\nsources: [{name: a, root: .}]", "not be 'default'"),
        ("eval_sets: [{name: g, kind: golden}]\nsources: [{name: a, root: .}]", "needs a path"),
        ("eval_sets: [{name: b, kind: beir, source: nope}]\nsources: [{name: a, root: .}]", "unknown source"),
        ("evaluation: {baseline: yesterday}\nsources: [{name: a, root: .}]", "not a YYYY-MM-DD date"),
        ("drift: {alpha: 2}\nsources: [{name: a, root: .}]", "drift.alpha"),
        ("drift: {min_effect: 0.05}\nsources: [{name: a, root: .}]", "drift.min_new_share"),
        ("drift: {min_new_share: 1.5}\nsources: [{name: a, root: .}]", "drift.min_new_share"),
        ("index: {build_memory_mb: 0.5}\nsources: [{name: a, root: .}]", "index.build_memory_mb must be"),
        ("index: {build_memory_mb: 0}\nsources: [{name: a, root: .}]", "index.build_memory_mb must be"),
        # Types, from the settings' own annotations, for every block built from the file.
        ("index: {hnsw_m: '16'}\nsources: [{name: a, root: .}]", "hnsw_m must be a whole number, got '16'"),
        ("index: {ef_search: true}\nsources: [{name: a, root: .}]", "index.ef_search must be a whole number"),
        ("index: {min_recall: 9e-1}\nsources: [{name: a, root: .}]", "write 1.0e-3, not 1e-3"),
        ("embedding: {revision: 1.10}\nsources: [{name: a, root: .}]", "revision must be text or null"),
        ("sources: [{name: a, root: ., follow_symlinks: 'no'}]", "follow_symlinks must be true or false"),
        ("sources: [{name: a, root: ., chunking: {chunk_size: 2.5}}]", "chunk_size must be a whole number"),
        ("sources: [{name: a, root: ., max_file_bytes: 10MB}]", "[0].max_file_bytes must be a whole"),
        ("defaults: {max_file_bytes: 1.5}\nsources: [{name: a, root: .}]", "defaults.max_file_bytes must be"),
        ("defaults: {chunking: {chunk_size: '200'}}\nsources: [{name: a, root: .}]", "defaults.chunking."),
        ("index: {min_recall: '0.95'}\nsources: [{name: a, root: .}]", "got '0.95' (remove the quotes)"),
        ("llm: {model: }\nsources: [{name: a, root: .}]", "llm.model must be text, but it is empty"),
        # pgvector's bounds, which the HNSW build would otherwise hit after the whole embedding run.
        ("index: {hnsw_m: 1}\nsources: [{name: a, root: .}]", "index.hnsw_m must be from 2 to 100"),
        ("index: {hnsw_m: 48}\nsources: [{name: a, root: .}]", "at least twice index.hnsw_m"),
        ("index: {ef_search: 1001}\nsources: [{name: a, root: .}]", "index.ef_search must be from 1 to 1000"),
        # No query to measure recall with: the check would pass having tested nothing.
        ("index: {recall_sample: 0}\nsources: [{name: a, root: .}]", "recall_sample must be at least 1"),
        ("index: {min_real_queries: 0}\nsources: [{name: a, root: .}]", "min_real_queries must be at least"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, capsys, yaml_text, message):
    (tmp_path / "ragline.yaml").write_text(yaml_text)
    assert main(["--config", str(tmp_path / "ragline.yaml"), "db", "url"]) == 2
    assert message in capsys.readouterr().err


def test_materialize_holds_what_reads_an_eval_set_whose_blocking_check_failed(
    tmp_path, db_url, monkeypatch, capsys
):
    """Two equal questions: eval_set's blocking check fails at ERROR in the index run, so the
    quality run leaves out the assets that read the eval set (no scores over the bad set), still
    tests drift, names what it held and why, and materialize exits 1."""
    import psycopg

    instance_in_project(tmp_path, monkeypatch)
    question = {"question": "Does the company pay for a gym?", "relevant_documents": ["docs:benefits.md"]}
    (tmp_path / "golden.jsonl").write_text("".join(json.dumps({"id": q, **question}) + "\n" for q in "ab"))
    settings = write_project(
        tmp_path,
        [{"name": "docs", "root": "corpus"}],
        eval_sets=[{"name": "golden", "kind": "golden", "path": "golden.jsonl"}],
    )

    assert main(["--config", str(settings.path), "materialize", "--source", "docs"]) == 1
    with psycopg.connect(db_url) as conn:  # a new database: no day was scored over the bad set
        assert conn.execute("SELECT count(*) FROM ragline.retrieval_scores").fetchone()[0] == 0
    with dg.DagsterInstance.get() as instance:
        [quality] = instance.get_runs(dg.RunsFilter(job_name="quality_pipeline"))
        assert quality.asset_selection == {dg.AssetKey("drift_metrics")}  # what the UI shows
        # Only the job's own checks of it: not the freshness checks, which their sensor runs.
        assert {c.name for c in quality.asset_check_selection} == {
            "corpus_has_not_drifted",
            "queries_have_not_drifted",
        }
        held_tag = "retrieval_scores,variant_comparison,answer_scores,annotation_queue"
        assert quality.tags["ragline/held"] == held_tag
        assert instance.get_latest_materialization_event(dg.AssetKey("retrieval_scores")) is None
        drift = instance.get_latest_materialization_event(dg.AssetKey("drift_metrics"))
        assert drift is not None and drift.run_id == quality.run_id
    out = capsys.readouterr().out
    assert "search index: FAILED" in out and "check eval_set.eval_questions_are_unique failed" in out
    held = "retrieval_scores, variant_comparison, answer_scores, annotation_queue"
    assert f"\n  held: {held} (eval_set.eval_questions_are_unique failed); once the check passes" in out
    assert "`ragline materialize --date " in out
    # Not "ok": what ran passed, but the day was not scored.
    assert re.search(r"^quality \S+: partial \(run", out, re.M), out


def test_unknown_source_is_a_clear_error(tmp_path, db_url, capsys):
    settings = write_project(tmp_path, [{"name": "docs", "root": "."}])
    assert main(["--config", str(settings.path), "materialize", "--source", "nope"]) == 2
    assert "unknown source 'nope'; configured sources: docs" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "ragline.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "materialize" in out.stdout and "status" in out.stdout


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "q", "--where", "k=1e999"], "--where k: the number 1e999 is out of range"),
        (["search", "q", "--where", "k=" + "9" * 5000], "--where k: the number 9999"),
        (["search", "q", "--where", "k=" + "[" * 100_000], "--where k: the value is nested too deeply"),
        (["search", "q", "--where", 'k="\\u0000"'], "--where k: NUL characters cannot be matched"),
        (["search", "q", "--where", 'k="\\ud800"'], "--where k: not valid UTF-8 text"),
        (["search", "q", "--where", "=1"], "--where needs a key before '='"),
        (["search", "q", "--k", "0"], "argument --k: must be from 1 to 10,000, got 0"),
        (["search", "q", "--k", "-1"], "argument --k: must be from 1 to 10,000, got -1"),
        (["search", "q", "--k", str(10**12)], "argument --k: must be from 1 to 10,000"),
        (["search", "q", "--k", "ten"], "argument --k: not a whole number: 'ten'"),
        (["search", "q", "--mmr", "nan"], "argument --mmr: must be a number from 0 to 1, got 'nan'"),
        (["context", "q", "--budget", "0"], "argument --budget: must be at least 1, got 0"),
        (["context", "q", "--tokenizer", "p50k_base"], "argument --tokenizer: invalid choice: 'p50k_base'"),
        (["search", "q", "--variant", "nope"], "unknown variant 'nope'"),
        (["search", "q", "--source", "nope"], "unknown source 'nope'"),
        (["search", "  "], "the question is empty"),
        (["search", "a\x00b"], "the question holds a NUL character"),
        (["search", "caf\udcc3"], "the question is not valid UTF-8 text"),  # a byte argv could not decode
        (["materialize", "--date", "\x1b[2J"], "--date takes a day as YYYY-MM-DD, got '\\x1b[2J'"),
        (["materialize", "--date", "2020-01-01"], "--date must be from "),
        (["drift", "pin", "--per-source", "0"], "argument --per-source: must be at least 1, got 0"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, monkeypatch, capsys, args, message):
    # None of these may reach the database: it points at a server that is not there.
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@/nowhere?host={tmp_path}")
    settings = write_project(tmp_path, [{"name": "docs", "root": "."}])
    code, out, err = _cli(["--config", str(settings.path), *args], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("ragline: error: ") and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"sources: [\n  {name: a, root: .\n", "not valid YAML"),  # yaml's message spans lines
        (b'sources: [{name: a, root: "\xff"}]', "not UTF-8 text (invalid start byte at byte 27)"),
        (b"a: " + b"[" * 100_000, "nested too deeply"),
        (b'sources: [{name: a, root: "x\\0y"}]', "embedded null byte"),
    ],
)
def test_a_bad_config_file_is_a_one_line_error(tmp_path, capsys, text, message):
    (tmp_path / "ragline.yaml").write_bytes(text)
    code, _out, err = _cli(["--config", str(tmp_path / "ragline.yaml"), "db", "url"], capsys)
    assert code == 2 and err.startswith("ragline: error: ") and err.count("\n") == 1
    assert message in err, err


@pytest.mark.parametrize("command", [["status"], ["search", "q"], ["env"], ["db", "migrate"]])
@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql://postgres:secret@/nowhere?host={tmp}",
        # libpq quotes the part of a malformed URL it cannot parse: here, the password
        "postgresql://postgres:secret%zz@/nowhere?host={tmp}",
    ],
)
def test_an_unusable_database_url_is_a_one_line_error(tmp_path, monkeypatch, capsys, command, url):
    monkeypatch.setenv("DATABASE_URL", url.format(tmp=tmp_path))
    settings = write_project(tmp_path, [{"name": "docs", "root": "."}])
    code, out, err = _cli(["--config", str(settings.path), *command], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1 and "secret" not in err
    assert err.startswith("ragline: error: cannot connect to ")


def test_search_and_context_show_outside_text_escaped(project, capsys):
    settings = project({"docs": ["handbook/benefits.md"]})
    evil = (
        "# Hotel caps\x1b]0;owned\x07\n\n"
        "The hotel cap in Lisbon is 180 euros a night.\x1b[2J\x1b[31m Book it through the travel desk "
        "and keep the receipt for your expense report.\x1b[0m\x08\x08 Late check-out\tis not covered.\n"
    )
    (settings.source("docs").root / "hotels.md").write_text(evil, encoding="utf-8")
    run(settings, quality=False)
    config = str(settings.path)

    for command in (["search", "--k", "3"], ["context", "--tokenizer", "o200k_base"]):
        code, out, _err = _cli(["--config", config, *command, "hotel cap in Lisbon"], capsys)
        assert code == 0
        assert not any(c in out for c in "\x1b\x07\x08"), out
        assert "\\x1b[2J\\x1b[31m" in out
    assert "\n\n[2] " in out and "check-out\tis" in out  # context keeps line breaks and tabs

    code, out, _err = _cli(["--config", config, "search", "hotel cap in Lisbon", "--json"], capsys)
    assert code == 0 and "\x1b" not in out and "\\u001b[2J" in out
    assert "\x1b[2J" in json.loads(out)["hits"][0]["text"]  # --json keeps the exact text

    # Not JSON (NaN is Python's extension), so the text "NaN", which no document has.
    code, out, err = _cli(["--config", config, "search", "hotel", "--where", "k=NaN"], capsys)
    assert (code, err) == (0, "") and out.startswith("0 results")


def test_an_embedding_endpoint_gone_down_is_a_one_line_error_naming_it(project, capsys):
    from tests.conftest import local_embedder
    from tests.openai_server import EmbeddingsServer

    with EmbeddingsServer(local_embedder()) as server:
        url = server.base_url
        embedding = {"provider": "openai", "model": "m", "base_url": url, "max_retries": 0}
        settings = project({"docs": ["handbook/benefits.md"]}, embedding=embedding)
        run(settings, quality=False)
    capsys.readouterr()  # the runs' own logs
    # The server is gone: the query cannot be embedded.
    code, out, err = _cli(["--config", str(settings.path), "search", "hotel", "--strategy", "dense"], capsys)

    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert err.startswith("ragline: error: ") and url in err


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`ragline ... | head` whose reader has gone: exit 141 (as a shell reports SIGPIPE), no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    config = tmp_path / "ragline.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nsources: [{{name: a, root: .}}]\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes anything
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("ragline")), "--config", str(config), "env"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
        stop_embedded(tmp_path / "data")  # `ragline env` started the project's embedded server
    assert (done.returncode, done.stderr) == (141, "")
