"""The scan's "is the open file inside the root" check: ragline's one readlink of the descriptor
(`ragline.ingest.sources._opened_path`) against the named alternative it replaced,
`os.path.realpath("/proc/self/fd/N")`, which lstat()s every component of the path again.

Two trees, each read in full by both, order alternating per trial: the seeded synthetic corpus of
benchmarks/ingest_throughput.py (folders two deep), and real files that are already on the machine,
the installed packages' .py files (deeper paths). Each file is opened as `_read` opens it, checked and
closed; both must give the same path for every file. Results: benchmarks/results/scan_path_check.{json,md}.

    uv run --frozen python benchmarks/scan_path_check.py [--files 5000] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from benchmarks.ingest_throughput import generate_corpus  # noqa: E402
from ragline.ingest.sources import _opened_path  # noqa: E402


def realpath_of_fd(fd: int, path: Path) -> Path:
    if not os.path.exists("/proc/self/fd"):
        return path.resolve()
    return Path(os.path.realpath(f"/proc/self/fd/{fd}"))


def check_all(files: list[Path], root: Path, where) -> tuple[float, list[Path]]:
    seen = []
    t0 = time.perf_counter()
    for path in files:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            real = where(fd, path)
            if not real.is_relative_to(root):
                raise AssertionError(f"{path} resolved outside {root}: {real}")
            seen.append(real)
        finally:
            os.close(fd)
    return time.perf_counter() - t0, seen


def measure(name: str, root: Path, files: list[Path], trials: int) -> dict:
    ways = {"realpath": realpath_of_fd, "ragline": _opened_path}
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    for trial in range(trials):
        order = list(ways) if trial % 2 == 0 else list(reversed(ways))
        results = {}
        for way in order:
            took, results[way] = check_all(files, root, ways[way])
            seconds[way].append(took)
        if results["realpath"] != results["ragline"]:
            raise AssertionError(f"{name}: the two checks disagree on a path")
    median = {w: statistics.median(s) for w, s in seconds.items()}
    return {
        "tree": name,
        "files": len(files),
        "seconds": seconds,
        "median_seconds": median,
        "ratio_ragline_to_realpath": median["ragline"] / median["realpath"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp).resolve() / "corpus"
        generate_corpus(synthetic, args.files, 20261128)
        runs.append(measure("synthetic corpus", synthetic, sorted(synthetic.rglob("*.md")), args.trials))
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    installed = sorted(site.rglob("*.py"))[: args.files]
    runs.append(measure("installed packages' .py files", site, installed, args.trials))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "scan_path_check.json").write_text(json.dumps(runs, indent=2) + "\n")
    lines = [
        "# The scan's path check: one readlink against realpath of /proc/self/fd/N",
        "",
        f"{args.trials} trials, order alternating; open + check + close per file; the same paths both ways.",
        "",
        "| tree | files | realpath s (median) | ragline s (median) | ragline / realpath |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        m = r["median_seconds"]
        lines.append(
            f"| {r['tree']} | {r['files']:,} | {m['realpath']:.3f} | {m['ragline']:.3f} | "
            f"{r['ratio_ragline_to_realpath']:.2f} |"
        )
    (args.results_dir / "scan_path_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
