"""`seed-demo` is all or nothing: a user who stops the first `./scripts/demo` half-way (Ctrl-C
while the world loads) finds nothing half-made, and the next run loads the whole world."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

from tests.e2e.live_support import command, server_env

DEMO_ACCOUNTS = 9  # the logins `seed-demo` prints
SEED_TIMEOUT = 180.0


def accounts(database: Path) -> int | None:
    """Demo accounts a reader sees now; None while the database or its tables are not there
    or the writer holds them."""
    if not database.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0)) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM account WHERE email LIKE '%@demo.espace-sante.localhost'"
            ).fetchone()
    except sqlite3.OperationalError:  # no table yet, or locked
        return None
    return int(count)


def seed(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("seed-demo"),
        env=server_env(data_dir, f"sqlite://{data_dir / 'espace-sante.sqlite3'}", "memory://"),
        capture_output=True,
        text=True,
        timeout=SEED_TIMEOUT,
        check=False,
    )


def test_a_seed_stopped_half_way_leaves_nothing_and_the_next_loads_it_all(
    tmp_path: Path,
) -> None:
    database = tmp_path / "espace-sante.sqlite3"
    env = server_env(tmp_path, f"sqlite://{database}", "memory://")
    first = subprocess.Popen(
        command("seed-demo"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    seen: list[int] = []
    try:
        deadline = time.monotonic() + SEED_TIMEOUT
        # Watch the database as another connection would; at the first demo account seen
        # while the seed still runs, stop it as Ctrl-C does.
        while first.poll() is None and time.monotonic() < deadline:
            count = accounts(database)
            if count:
                seen.append(count)
                first.send_signal(signal.SIGINT)
                break
            time.sleep(0.01)
        first.wait(SEED_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    # What another connection saw: nothing, or every account (the world committed at once).
    assert all(count == DEMO_ACCOUNTS for count in seen), seen
    assert accounts(database) in (0, DEMO_ACCOUNTS)

    second = seed(tmp_path)

    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0] in ("demo data loaded", "demo data already loaded")
    assert accounts(database) == DEMO_ACCOUNTS
    assert seed(tmp_path).stdout.splitlines()[0] == "demo data already loaded"
