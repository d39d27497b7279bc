"""A study on a real PostgreSQL server (the storage several machines share).

The fixture starts a throwaway server in a temporary folder, listening on a free port of
127.0.0.1 (and a unix socket in that folder), and stops it afterwards. The study's URL is the
one docs/search.md shows, ``postgresql://user:password@host:port/db``, with the driver that
``darec[postgres]`` installs (psycopg 3). PostgreSQL refuses to run as root, so as root the
server runs as the ``postgres`` system user (through ``runuser``). The test is skipped, with the
reason, when the binaries (``initdb``, ``pg_ctl``; ``DAREC_PG_BIN`` names their folder), the
``psycopg`` driver or a way to start the server is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from darec.search import load_study, open_storage, run_search, write_report
from tests.test_search import search_cfg


def _pg_bin() -> Path | None:
    candidates = [Path(os.environ["DAREC_PG_BIN"])] if os.environ.get("DAREC_PG_BIN") else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if found := shutil.which("initdb"):
        candidates.append(Path(found).parent)
    return next(
        (c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None
    )


def _as_server_user() -> tuple[list[str], int | None]:
    """Command prefix and uid that run the server: ourselves, or ``postgres`` when root."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
    if runuser is None:
        pytest.skip("running as root and runuser is missing (PostgreSQL refuses to run as root)")
    return [runuser, "-u", "postgres", "--"], uid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip(
        "psycopg", reason="the PostgreSQL driver psycopg (darec[postgres]) is missing"
    )
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; set DAREC_PG_BIN")
    prefix, uid = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="darec-pg-"))
    if uid is not None:
        os.chown(root, uid, -1)
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run(  # noqa: E731
        [*prefix, *map(str, cmd)], capture_output=True, text=True, timeout=60
    )
    init = run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -F"
    start = run(bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start")
    if start.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {(start.stderr + log).strip()[-300:]}")
    try:
        # as documented; trust authentication takes any password
        yield f"postgresql://postgres:secret@127.0.0.1:{port}/postgres"
    finally:
        run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_study_on_postgresql_resumes_and_reports(
    postgres_url: str,
    tiny_data: Path,
    tmp_path: Path,
    tiny_llm_dir: Path,
) -> None:
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=2")
    study = run_search(cfg, "pg", postgres_url, tmp_path / "search")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2

    # a second worker (here: the same command again) adds trials to the same study
    more = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=3")
    run_search(more, "pg", postgres_url, tmp_path / "search")
    study = load_study("pg", open_storage(postgres_url))
    assert len(study.trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert study.trials[0].user_attrs["known_layout"] == "DARec_base"
    assert "## Per-layer layout" in write_report(study, tmp_path / "search").read_text()
