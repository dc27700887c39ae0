"""Cold start of the serving path and warm hybrid latency per phase, on the demo corpus.

In one run, against the demo's embedded PostgreSQL (`make demo` first):

1. import time (`python -X importtime`, the sum over top-level imports) of the serving entry points
   (ragline.cli, ragline.retrieval.search, ragline.retrieval.context), against the named
   alternative `import llama_index.core`, and both together (a serving path that carried the
   ingest stack, as `ragline search` did before issue 7);
2. wall and CPU time (user + sys of the process, from wait4) of a real `ragline search` process,
   hybrid and lexical, against the same command with `import llama_index.core` first; the runs
   alternate, so load from other work on the machine hits both alike. Bytecode is cached in
   benchmarks/.work/pycache (as an installed package has it); `--source-runs` more runs compile
   every module from source (PYTHONDONTWRITEBYTECODE with an empty cache, as in a sandbox that
   forbids writing bytecode);
3. warm hybrid search in-process, every golden question `--reps` times: concurrent (lexical on a
   second pooled connection while the query is embedded) against sequential, p50/p95 of the
   latency and of each phase in `SearchResult.timings_ms`.

Results: benchmarks/results/cold_start.{json,md}. `--baseline-python OTHER/.venv/bin/python`
measures another checkout (its `ragline` command and imports, alternating with this one's, and its
warm hybrid search) against the same demo database, in the same run.

    uv run --frozen python benchmarks/cold_start.py [--runs 5] [--reps 3] [--baseline-python ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SERVING_IMPORTS = "import ragline.cli, ragline.retrieval.search, ragline.retrieval.context"
ALTERNATIVE_IMPORT = "import llama_index.core"
QUERY = "how many vacation days do I get after two years"
FORBIDDEN = ("llama_index", "nltk", "great_expectations", "dagster", "pandas", "sqlalchemy")

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def child_env(bytecode: bool, empty_cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env.pop("DATABASE_URL", None)  # the demo's embedded server
    if bytecode:
        env["PYTHONPYCACHEPREFIX"] = str(BENCH_DIR / ".work" / "pycache")
    else:
        env["PYTHONPYCACHEPREFIX"] = empty_cache
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def import_seconds(python: str, code: str, env: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    """Sum of the cumulative import times of the top-level imports, and the slowest of them."""
    out = subprocess.run(
        [python, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    top: list[tuple[str, float]] = []
    for line in out.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m and len(m.group(2)) == 0:
            top.append((m.group(3), int(m.group(1)) / 1e6))
    return sum(s for _, s in top), sorted(top, key=lambda t: -t[1])[:8]


def timed_process(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys) of one process."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]}... exited {proc.returncode}: {err[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def cold_starts(config: str, runs: int, source_runs: int, baseline: str | None) -> dict[str, Any]:
    ragline = str(Path(sys.executable).parent / "ragline")
    code = f"{ALTERNATIVE_IMPORT}; import sys; from ragline.cli import main; sys.exit(main(sys.argv[1:]))"
    hybrid = ["--config", config, "search", QUERY, "--no-log"]
    lexical = [*hybrid, "--strategy", "lexical"]
    commands = {
        "ragline search (hybrid)": [ragline, *hybrid],
        "ragline search --strategy lexical": [ragline, *lexical],
        "llama_index.core + ragline search (hybrid)": [sys.executable, "-c", code, *hybrid],
    }
    if baseline:
        before = str(Path(baseline).parent / "ragline")
        commands["baseline: ragline search (hybrid)"] = [before, *hybrid]
        commands["baseline: ragline search --strategy lexical"] = [before, *lexical]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ragline-empty-pycache-") as empty:
        for mode, n, bytecode in (("bytecode", runs, True), ("source", source_runs, False)):
            if n == 0:
                continue
            env = child_env(bytecode, empty)
            for argv in commands.values():  # warm-up: bytecode written, page cache and server warm
                timed_process(argv, env)
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
            for _ in range(n):
                for name, argv in commands.items():
                    samples[name].append(timed_process(argv, env))
            sets = [
                ("ragline serving imports", sys.executable, SERVING_IMPORTS),
                ("import llama_index.core", sys.executable, ALTERNATIVE_IMPORT),
                (
                    "ragline serving imports + llama_index.core",
                    sys.executable,
                    f"{SERVING_IMPORTS}; {ALTERNATIVE_IMPORT}",
                ),
                *([("baseline: ragline serving imports", baseline, SERVING_IMPORTS)] if baseline else []),
            ]
            totals: dict[str, list[float]] = {name: [] for name, _, _ in sets}
            slowest: dict[str, list[tuple[str, float]]] = {}
            for _ in range(max(3, n)):  # alternating, like the processes
                for name, python, code in sets:
                    total, slowest[name] = import_seconds(python, code, env)
                    totals[name].append(total)
            imports = {name: {**summary(totals[name]), "slowest_top_level": slowest[name]} for name in totals}
            out[mode] = {
                "processes": {
                    name: {
                        "wall_s": summary([w for w, _ in s]),
                        "cpu_s": summary([c for _, c in s]),
                    }
                    for name, s in samples.items()
                },
                "imports_s": imports,
            }
    return out


def serving_modules(config: str) -> list[str]:
    """The forbidden top-level packages a real hybrid search and context load (should be none)."""
    code = (
        "import sys, contextlib, io\nfrom ragline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['--config', {config!r}, 'search', {QUERY!r}, '--no-log'])\n"
        f"    main(['--config', {config!r}, 'context', {QUERY!r}, '--no-log'])\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(FORBIDDEN)!r})))"
    )
    env = child_env(True, "")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def warm_hybrid(config: str, reps: int) -> dict[str, Any]:
    from ragline.config import load_settings
    from ragline.index.embedding import build_embedder
    from ragline.retrieval.search import build_retriever
    from ragline.storage.db import Database, database_url

    os.environ.pop("DATABASE_URL", None)
    settings = load_settings(config)
    questions = [
        json.loads(line)["question"]
        for line in (Path(config).parent / "examples/golden/questions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    db = Database(database_url(settings.data_dir), max_size=2)
    retriever = build_retriever(settings, db, build_embedder(settings.embedding))
    modes = (
        {"concurrent": True, "sequential": False}
        if hasattr(retriever, "concurrent")
        else {"sequential": None}
    )
    for q in questions[:5]:  # warm-up: model, connections, prepared statements, buffers
        for concurrent in modes.values():
            if concurrent is not None:
                retriever.concurrent = concurrent
            retriever.search(q, strategy="hybrid", log=False)
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(reps):
        for q in questions:
            for mode, concurrent in modes.items():
                if concurrent is not None:
                    retriever.concurrent = concurrent
                res = retriever.search(q, strategy="hybrid", log=False)
                samples[mode].append({**res.timings_ms, "latency": res.latency_ms})
    db.close()
    out: dict[str, Any] = {}
    for mode, rows in samples.items():
        keys = sorted({k for r in rows for k in r})
        out[mode] = {
            k: {
                "p50": percentile([r[k] for r in rows if k in r], 0.5),
                "p95": percentile([r[k] for r in rows if k in r], 0.95),
            }  # fmt: skip
            for k in keys
        }
        out[mode]["queries"] = len(rows)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Cold start of the serving path, and warm hybrid latency",
        "",
        f"{results['when']}, {results['machine']['cores']} cores usable, load average "
        f"{results['machine']['load_before']} before / {results['machine']['load_after']} after. "
        "Medians over alternating runs; timings on a shared machine are noisy, the ratios less so.",
        "",
        f"Forbidden packages loaded by a real `ragline search` + `ragline context`: "
        f"{results['serving_forbidden_modules'] or 'none'}.",
        "",
    ]
    for mode, block in results["cold"].items():
        label = "bytecode cached" if mode == "bytecode" else "compiled from source (no bytecode cache)"
        lines += [
            f"## Cold processes, {label}",
            "",
            "| command | wall s | CPU s | wall vs ragline | CPU vs ragline |",
            "|---|---:|---:|---:|---:|",
        ]
        ours = block["processes"]["ragline search (hybrid)"]
        for name, p in block["processes"].items():
            wall, cpu = p["wall_s"]["median"], p["cpu_s"]["median"]
            lines.append(
                f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / ours['wall_s']['median']:.2f} | "
                f"{cpu / ours['cpu_s']['median']:.2f} |"
            )
        lines += ["", "| imports (`-X importtime`, sum of top-level) | s |", "|---|---:|"]
        for name, i in block["imports_s"].items():
            lines.append(f"| {name} | {i['median']:.3f} |")
        lines.append("")
    lines += ["## Warm hybrid search (demo golden questions), ms", ""]
    phases = ["latency", "total", "embed", "dense", "lexical", "wait", "fuse"]
    lines += [
        "| mode | " + " | ".join(f"{p} p50" for p in phases) + " | latency p95 |",
        "|---" * (len(phases) + 2) + "|",
    ]
    for label, warm in (("", results["warm_hybrid"]), ("baseline: ", results.get("baseline_warm_hybrid"))):
        for mode, t in (warm or {}).items():
            cells = [f"{t[p]['p50']:.2f}" if p in t else "-" for p in phases]
            lines.append(f"| {label}{mode} | " + " | ".join(cells) + f" | {t['latency']['p95']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "ragline.yaml"))
    p.add_argument("--runs", type=int, default=5, help="cold processes per command, bytecode cached")
    p.add_argument("--source-runs", type=int, default=1, help="cold processes per command, no bytecode")
    p.add_argument("--reps", type=int, default=3, help="warm passes over the golden questions")
    p.add_argument("--results-dir", default=str(BENCH_DIR / "results"))
    p.add_argument("--baseline-python", help="the interpreter of another checkout's venv, measured alongside")
    p.add_argument("--warm-only", action="store_true", help=argparse.SUPPRESS)  # the baseline's warm part
    args = p.parse_args()
    if args.warm_only:
        print(json.dumps(warm_hybrid(args.config, args.reps)))
        return 0
    if shutil.which("ragline", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit(f"no ragline command next to {sys.executable}")
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.executable,
        "query": QUERY,
        "serving_forbidden_modules": serving_modules(args.config),
        "baseline_python": args.baseline_python,
        "cold": cold_starts(args.config, args.runs, args.source_runs, args.baseline_python),
        "warm_hybrid": warm_hybrid(args.config, args.reps),
    }
    if args.baseline_python:
        warm = subprocess.run(
            [
                args.baseline_python,
                __file__,
                "--warm-only",
                "--config",
                args.config,
                "--reps",
                str(args.reps),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results["baseline_warm_hybrid"] = json.loads(warm.stdout.strip().splitlines()[-1])
    results["machine"] = {
        "cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cold_start.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "cold_start.md").write_text(markdown(results))
    print((out / "cold_start.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
