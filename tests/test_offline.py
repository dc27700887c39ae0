"""Every documented command runs with the network unreachable: nothing downloads at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ragline.retrieval.context import TOKENIZERS, tokenizer_for
from ragline.storage.db import stop_embedded
from tests.conftest import EXAMPLES

# Used only where a process cannot get a network namespace of its own: every connection but a
# unix socket or loopback is refused, and every name but localhost fails to resolve.
_GUARD = """
import ipaddress, socket

def _local(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in (None, "localhost")

def _guarded(real):
    def call(self, address):
        if self.family != socket.AF_UNIX and not _local(address[0]):
            raise OSError(101, f"network is unreachable (offline test): {address!r}")
        return real(self, address)
    return call

def _resolve(real):
    def call(host, *args, **kwargs):
        if not _local(host):
            raise socket.gaierror(socket.EAI_NONAME, f"no name resolution (offline test): {host!r}")
        return real(host, *args, **kwargs)
    return call

socket.socket.connect = _guarded(socket.socket.connect)
socket.socket.connect_ex = _guarded(socket.socket.connect_ex)
socket.getaddrinfo = _resolve(socket.getaddrinfo)
"""


def _offline(tmp_path: Path) -> tuple[list[str], dict[str, str], str]:
    """How to run a command offline: a new network namespace (no interface but a loopback that
    is down) where this machine allows one, else the socket guard above on PYTHONPATH."""
    unshare = shutil.which("unshare")
    for flags in (["--net"], ["--net", "--map-root-user"]):
        if unshare and subprocess.run([unshare, *flags, "true"], capture_output=True).returncode == 0:
            return [unshare, *flags], {}, "network namespace"
    guard = tmp_path / "offline-guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_GUARD)
    return (
        [],
        {"PYTHONPATH": os.pathsep.join(filter(None, [str(guard), os.environ.get("PYTHONPATH")]))},
        ("socket guard"),
    )


def test_every_documented_command_runs_offline(tmp_path, capsys):
    # A tiny project beside (not in) the working directory, so that only --config can find it.
    project = tmp_path / "project"
    (project / "corpus").mkdir(parents=True)
    shutil.copy(EXAMPLES / "handbook" / "expenses-and-travel.md", project / "corpus")
    config = {
        "data_dir": "data",
        "embedding": {"provider": "local", "model": "all-MiniLM-L6-v2"},
        "index": {"recall_sample": 20},
        "sources": [{"name": "docs", "root": "corpus", "glob": "*.md", "chunking": {"strategy": "markdown"}}],
    }
    (project / "ragline.yaml").write_text(yaml.safe_dump(config))
    prefix, extra_env, how = _offline(tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "RAGLINE_CONFIG") and not k.startswith(("DAGSTER_", "RAGLINE_DAGSTER_"))
    }
    # No tiktoken cache to lean on: an encoding that is not shipped would have to be downloaded.
    env |= {"TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"), **extra_env}
    script = Path(sys.executable).with_name("ragline")
    ragline = [str(script)] if script.exists() else [sys.executable, "-m", "ragline.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *ragline, "--config", "project/ragline.yaml", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    question = "hotel cap per night"
    # README's CLI section, each command once (publish --rollback needs two generations).
    commands = [
        ["db", "start"],
        ["db", "url"],
        ["db", "url", "--dagster"],
        ["db", "migrate"],
        ["materialize"],
        ["status"],  # exit 0: healthy, every asset materialized and every check passed
        ["search", question, "--k", "3"],
        ["search", question, "--json", "--where", "k=NaN"],
        *[["context", question, "--budget", "300", "--tokenizer", t] for t in TOKENIZERS],
        ["publish", "--accept-change", "docs"],
        ["publish", "--release", "docs"],
        ["gc", "--dry-run"],
        ["drift", "pin"],
        ["env"],
        ["db", "stop"],
    ]
    outcomes = []
    try:
        for args in commands:
            started = time.perf_counter()
            result = run(*args)
            shown = " ".join(a for a in args if a != question)
            outcomes.append(f"{shown}: {result.returncode} ({time.perf_counter() - started:.0f} s)")
            assert "Traceback" not in result.stderr, (args, result.stderr)
            assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
            if args[0] == "context":
                assert f"tokens ({tokenizer_for(args[-1]).name})" in result.stdout
            if "--json" in args:
                assert json.loads(result.stdout)["hits"] == []  # no document has k = "NaN"
    finally:
        stop_embedded(project / "data")
        shutil.rmtree(project / "data", ignore_errors=True)
    with capsys.disabled():
        print(f"\noffline ({how}): " + ", ".join(outcomes))
    # The namespace really had no network: no interface but the loopback.
    if prefix:
        probe = "import socket; print(socket.if_nameindex())"
        shown = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True, text=True).stdout
        assert shown.strip() == "[(1, 'lo')]"


@pytest.mark.parametrize(
    ("name", "ids"), [("cl100k_base", [15339, 1917]), ("o200k_base", [24912, 2375]), ("minilm", [7592, 2088])]
)
def test_each_offered_tokenizer_is_the_published_one(name, ids):
    assert tokenizer_for(name).encode("hello world") == ids
