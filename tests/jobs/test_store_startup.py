"""Several processes opening one fresh job store at once (`serve` beside `book`, two servers)."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from barkserve.db import Base, make_db_engine
from support import missing

TRIALS = 20
# Each child opens the store named by every line it reads, then answers "ok" or the error.
CHILD = """
import sys
from barkserve.jobs.store import JobStore
print("ready", flush=True)
for line in sys.stdin:
    try:
        JobStore(line.strip()).db.dispose()
        print("ok", flush=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}".replace("\\n", " "), flush=True)
"""


@pytest.fixture()
def children(request: pytest.FixtureRequest) -> Iterator[list[subprocess.Popen]]:
    """`request.param` processes that have imported the store and wait for a database URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(request.param)
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * len(procs)  # type: ignore[union-attr]
        yield procs
    finally:
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(timeout=60)


def fresh_database(kind: str, tmp_path: Path, trial: int) -> str:
    """A new SQLite file, or the test PostgreSQL database without barkserve's tables."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'jobs-{trial}.db'}"
    url = os.environ.get("BARKSERVE_TEST_DATABASE_URL", "")
    if not url:
        missing("set BARKSERVE_TEST_DATABASE_URL to test on PostgreSQL (.ci/postgres.sh starts one)")
    engine = make_db_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("children", [2, 3], indirect=True, ids=["2-processes", "3-processes"])
def test_processes_starting_together_all_open_the_store(
    kind: str, children: list[subprocess.Popen], tmp_path: Path
) -> None:
    failures = []
    for trial in range(TRIALS):
        url = fresh_database(kind, tmp_path, trial)
        for p in children:  # each child is blocked on its stdin: they start within microseconds
            p.stdin.write(url + "\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        answers = [p.stdout.readline().strip() for p in children]  # type: ignore[union-attr]
        failures += [f"trial {trial}: {a}" for a in answers if a != "ok"]
    assert failures == []
