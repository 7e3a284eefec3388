"""api/extensions/runner.py runs the extensions' hooks as strawberry's runner does.

Each scenario runs one schema with strawberry's runner and the same schema with ours, and
asserts the same answer (data, errors, extensions) and the same order of hook calls, with
the exceptions each hook saw: hooks entered and left in order, a hook raising on entry,
on exit, replacing or swallowing an exception, and every kind of hook function.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

from api.extensions.runner import HookRunner
from api.schema import schema as api_schema


class Boom(Exception):
    pass


class Replaced(Exception):
    pass


def _log(extension: SchemaExtension, entry: str) -> None:
    extension.execution_context.context["log"].append(entry)


def _fails(extension: SchemaExtension, where: str) -> bool:
    return bool(extension.execution_context.context.get("fail") == where)


class Outer(SchemaExtension):
    """Generator hooks; replaces a Boom escaping the operation, or swallows it if asked."""

    def on_operation(self) -> Iterator[None]:
        _log(self, "outer operation in")
        try:
            yield
        except Boom as exc:
            _log(self, f"outer operation saw {exc!r}")
            if _fails(self, "swallow"):
                return
            raise Replaced("replaced") from None
        _log(self, "outer operation out")

    def on_parse(self) -> Iterator[None]:
        _log(self, "outer parse in")
        yield
        _log(self, "outer parse out")

    def on_execute(self) -> Iterator[None]:
        _log(self, "outer execute in")
        try:
            yield
        except Exception as exc:
            _log(self, f"outer execute saw {exc!r}")
            raise
        _log(self, "outer execute out")

    def get_results(self) -> dict[str, Any]:
        return {"outer": 1}


class Middle(SchemaExtension):
    """Async generator hooks, raising where the scenario says."""

    async def on_validate(self) -> AsyncIterator[None]:
        _log(self, "middle validate in")
        if _fails(self, "validate entry"):
            raise Boom("validate entry")
        yield
        _log(self, "middle validate out")

    async def on_execute(self) -> AsyncIterator[None]:
        _log(self, "middle execute in")
        if _fails(self, "execute entry") or _fails(self, "swallow"):
            raise Boom("execute entry")
        try:
            yield
        except Exception as exc:
            _log(self, f"middle execute saw {exc!r}")
            raise
        _log(self, "middle execute out")
        if _fails(self, "execute exit"):
            raise Boom("execute exit")

    async def get_results(self) -> dict[str, Any]:
        return {"middle": 2}


class Inner(SchemaExtension):
    """A plain function and a coroutine function as hooks."""

    def on_validate(self) -> None:  # type: ignore[override]
        _log(self, "inner validate")

    async def on_execute(self) -> None:  # type: ignore[override]
        _log(self, "inner execute")
        if _fails(self, "coroutine"):
            raise Boom("coroutine")


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, info: strawberry.Info) -> str:
        if info.context.get("fail") == "resolver":
            raise Boom("resolver")
        return "world"


class HookRunnerSchema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return HookRunner(execution_context=execution_context, extensions=extensions)


EXTENSIONS = [Outer, Middle, Inner]
STRAWBERRY = strawberry.Schema(Query, extensions=EXTENSIONS)
OURS = HookRunnerSchema(Query, extensions=EXTENSIONS)


async def _run(schema: strawberry.Schema, query: str, fail: str | None) -> tuple[Any, ...]:
    context: dict[str, Any] = {"log": [], "fail": fail}
    result = await schema.execute(query, context_value=context)
    errors = [(e.message, e.path, e.extensions) for e in result.errors or ()]
    return result.data, errors, result.extensions, context["log"]


@pytest.mark.parametrize(
    "fail",
    [
        None,
        "resolver",
        "validate entry",
        "execute entry",
        "execute exit",
        "coroutine",
        "swallow",
    ],
)
@pytest.mark.parametrize("query", ["{ hello }", "{ hello(", "{ nope }"])
async def test_hooks_run_as_strawberrys_runner_runs_them(query: str, fail: str | None) -> None:
    ours = await _run(OURS, query, fail)

    assert ours == await _run(STRAWBERRY, query, fail)
    assert ours[3][0] == "outer operation in"


async def test_a_hook_patched_on_its_class_is_used_from_the_next_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def patched(self: SchemaExtension) -> Iterator[None]:
        _log(self, "patched parse")
        yield

    monkeypatch.setattr(Outer, "on_parse", patched)

    *_, log = await _run(OURS, "{ hello }", None)

    assert "patched parse" in log
    assert "outer parse in" not in log


def test_sync_execution_refuses_async_hooks_as_strawberry_does() -> None:
    def run(schema: strawberry.Schema) -> tuple[Any, ...]:
        context: dict[str, Any] = {"log": [], "fail": None}
        with pytest.raises(RuntimeError) as raised:
            schema.execute_sync("{ hello }", context_value=context)
        # The message of its context names the extension object: its address differs.
        context_message = re.sub(r" at 0x[0-9a-f]+", "", str(raised.value.__context__))
        return str(raised.value), context_message, context["log"]

    ours = run(OURS)

    assert ours == run(STRAWBERRY)
    assert "failed to complete synchronously" in ours[1]


def test_the_api_schema_runs_its_hooks_with_the_hook_runner() -> None:
    runner = api_schema.create_extensions_runner(
        api_schema._create_execution_context("{ __typename }", ()), []
    )

    assert isinstance(runner, HookRunner)
