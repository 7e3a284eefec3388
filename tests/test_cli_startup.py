"""`espace-sante --help`, and what `serve` says when its database or Redis cannot be used."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from api.cli import build_parser, main
from api.config import VARIABLES
from tests.conftest import free_port
from tests.e2e.live_support import command
from tests.test_cli import development_env

SUMMARIES = {
    "serve": "migrate, then serve the GraphQL API (HTTP and websocket)",
    "migrate": "create or upgrade the database schema",
    "create-operator": "create an operator account",
    "seed-demo": "load the demo world once and print its logins",
    "export-schema": "write the GraphQL schema (SDL) to a file",
    "run-jobs": "run the periodic jobs once (safe from cron)",
}
DESCRIPTIONS = {
    "serve": "Check that the database and the broadcast backend answer, apply the migrations "
    "(unless --no-migrate), then serve /graphql over HTTP and websocket.",
    "migrate": "Create or upgrade the database schema from models/migrations (a no-op when up "
    "to date).",
    "create-operator": "Create an operator account: operators enrol people and register "
    "professionals.",
    "seed-demo": "Migrate, load the demo world once (a family's year of care, fictitious "
    "people) and print its logins; running it again changes nothing.",
    "export-schema": "Write the GraphQL schema (SDL) to a file; needs no settings.",
    "run-jobs": "Run the periodic jobs once (spaces due, reminders, purges, mail delivery) and "
    "print a count per job; safe on several machines at once.",
}
START_TIMEOUT = 60  # a server that starts despite the error would run until killed here


def help_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def commands_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return found[0] if found else None


COMMANDS = commands_of(build_parser())
assert COMMANDS is not None
NAMES = list(COMMANDS.choices)


def test_help_says_what_each_command_does_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    out = help_of(capsys)

    assert out.startswith("usage: espace-sante [-h] COMMAND ...\n\nMon espace santé: ")
    listed = dict(re.findall(r"^    (\S+) +(\S.*)$", out, re.MULTILINE))
    assert COMMANDS is not None
    # Every command and its whole summary on one line of an 80-column terminal (the name
    # alone on a line, its summary below, would not be listed).
    assert listed == {action.dest: action.help for action in COMMANDS._choices_actions}
    assert max(map(len, out.splitlines())) <= 80
    assert {name: listed[name] for name in SUMMARIES} == SUMMARIES


@pytest.mark.parametrize("name", NAMES)
def test_every_command_help_describes_it_and_each_option(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert COMMANDS is not None
    parser = COMMANDS.choices[name]
    nested = commands_of(parser)

    out = help_of(capsys, name)

    description = out.split("\n\n")[1]
    if name in DESCRIPTIONS:
        assert " ".join(description.split()) == DESCRIPTIONS[name]
    assert description.strip()
    if nested is not None:  # its own commands, each summed up on one line
        listed = dict(re.findall(r"^    (\S+) +(\S.*)$", out, re.MULTILINE))
        assert listed == {action.dest: action.help for action in nested._choices_actions}
    for each in [parser, *(nested.choices.values() if nested else [])]:
        options = [a for a in each._actions if not isinstance(a, argparse._SubParsersAction)]
        assert [a.option_strings or a.dest for a in options if not a.help] == []


# --- start-up errors, one line each -------------------------------------------------------


def run(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    environment.update(
        DATA_DIR=str(data_dir),
        ENVIRONMENT="development",
        TWO_FACTOR="false",
        SCHEDULER_ENABLED="false",
        **env,
    )
    return subprocess.run(
        command(*args),
        env=environment,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


def serve(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run(data_dir, "serve", "--port", str(free_port()), **env)


def test_serve_with_an_unreachable_database_says_so_in_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there

    done = serve(tmp_path, DATABASE_URL=f"postgres://demo:s3cret-pw@127.0.0.1:{port}/espace")

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: cannot use the database DATABASE_URL=postgres://demo:***@127.0.0.1:{port}/espace:"
        f" [Errno 111] Connect call failed ('127.0.0.1', {port}) (ConnectionRefusedError)"
    ]
    assert "s3cret-pw" not in done.stdout + done.stderr


def test_serve_with_an_unknown_database_scheme_says_so_in_one_line(tmp_path: Path) -> None:
    done = serve(tmp_path, DATABASE_URL="pgsql://demo@127.0.0.1/espace")

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: cannot use the database DATABASE_URL=pgsql://demo@127.0.0.1/espace: "
        "Unknown DB scheme: pgsql (ConfigurationError)"
    ]


def test_serve_without_migrations_checks_the_database_too(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "espace-sante.sqlite3"

    done = run(tmp_path, "serve", "--no-migrate", DATABASE_URL=f"sqlite://{missing}")

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: cannot use the database DATABASE_URL=sqlite://{missing}: "
        f"the directory {missing.parent} does not exist"
    ]
    assert not missing.parent.exists()


def test_serve_with_an_unreachable_redis_says_so_in_one_line(tmp_path: Path) -> None:
    port = free_port()

    done = serve(tmp_path, BROADCAST_URL=f"redis://:s3cret-pw@127.0.0.1:{port}/0")

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: cannot reach the broadcast backend BROADCAST_URL=redis://:***@127.0.0.1:{port}/0:"
        f" Error 111 connecting to 127.0.0.1:{port}. Connect call failed ('127.0.0.1', {port})."
        " (ConnectionError)"
    ]
    assert not (tmp_path / "espace-sante.sqlite3").exists()  # checked before the database


def test_migrate_with_an_unreachable_database_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    development_env(monkeypatch, tmp_path)
    port = free_port()
    monkeypatch.setenv("DATABASE_URL", f"postgres://demo@127.0.0.1:{port}/espace")

    code = main(["migrate"])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: cannot use the database DATABASE_URL=postgres://demo@127.0.0.1:{port}/espace:"
        f" [Errno 111] Connect call failed ('127.0.0.1', {port}) (ConnectionRefusedError)"
    ]
