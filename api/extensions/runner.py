"""strawberry's extension hooks, run without its per-request machinery.

For each phase of each request, strawberry inspects every extension's hook anew, wraps each
in a fresh `contextlib` context manager (a decorated function built per call) and enters
them on an exit stack: about 5 % of the CPU of the dossier read went there. `HookRunner`
runs the same hooks in the same order with the same semantics:

- a hook that raises while the phase is entered stops the entering; the hooks already
  entered are not resumed (as with strawberry's), only closed once dropped;
- an exception of the phase is thrown into each entered hook, last entered first, and what
  a hook raises instead is what the next one sees;
- a hook that swallows an exception spares it the hooks left but does not stop it
  (strawberry's context managers never suppress).

What kind each hook function is (generator, async generator, plain or coroutine function)
is found once per function.
"""

from __future__ import annotations

import functools
import inspect
from asyncio import iscoroutinefunction
from collections.abc import AsyncGenerator, Callable, Generator
from types import TracebackType
from typing import Any, Literal

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

Kind = Literal["generator", "async generator", "function", "coroutine function"]
_ASYNC_KINDS = ("async generator", "coroutine function")


@functools.lru_cache(maxsize=256)
def _kind(hook: Callable[..., Any]) -> Kind:
    """The kind of a hook function, tested in the order strawberry's `get_hook` tests it."""
    if inspect.isgeneratorfunction(hook):
        return "generator"
    if inspect.isasyncgenfunction(hook):
        return "async generator"
    if iscoroutinefunction(hook):
        return "coroutine function"
    return "function"


def _hooks(
    extensions: list[SchemaExtension], name: str
) -> list[tuple[SchemaExtension, Callable[..., Any], Kind]]:
    """The extensions overriding hook `name`, read from their class as strawberry reads it
    (a hook patched on a class is seen at the next request)."""
    default = getattr(SchemaExtension, name)
    hooks = []
    for extension in extensions:
        hook = getattr(type(extension), name)
        if hook is default or not hook:
            continue
        if not callable(hook):
            raise ValueError(f"Hook {name} on {extension} must be callable, received {hook!r}")
        hooks.append((extension, hook, _kind(hook)))
    return hooks


def _left(generator: Generator[Any, None, None], error: BaseException | None) -> bool:
    """`contextlib.contextmanager`'s exit: resumes the hook, or throws `error` into it;
    True when the hook swallowed the error."""
    if error is None:
        try:
            next(generator)
        except StopIteration:
            return False
        generator.close()
        raise RuntimeError("generator didn't stop")
    traceback = error.__traceback__
    try:
        generator.throw(error)
    except StopIteration as stop:
        return stop is not error
    except BaseException as raised:
        if raised is error or (
            isinstance(raised, RuntimeError)
            and isinstance(error, StopIteration | StopAsyncIteration)
            and raised.__cause__ is error
        ):
            error.__traceback__ = traceback
            return False
        raise
    generator.close()
    raise RuntimeError("generator didn't stop after throw()")


async def _left_async(generator: AsyncGenerator[Any, None], error: BaseException | None) -> bool:
    """As `_left`, for an async generator (`contextlib.asynccontextmanager`'s exit)."""
    if error is None:
        try:
            await anext(generator)
        except StopAsyncIteration:
            return False
        await generator.aclose()
        raise RuntimeError("generator didn't stop")
    traceback = error.__traceback__
    try:
        await generator.athrow(error)
    except StopAsyncIteration as stop:
        return stop is not error
    except BaseException as raised:
        if raised is error or (
            isinstance(raised, RuntimeError)
            and isinstance(error, StopIteration | StopAsyncIteration)
            and raised.__cause__ is error
        ):
            error.__traceback__ = traceback
            return False
        raise
    await generator.aclose()
    raise RuntimeError("generator didn't stop after athrow()")


class HookPhase:
    """One phase's hooks for one request: `with` or `async with`, as strawberry's."""

    __slots__ = ("entered", "hooks", "name")

    def __init__(self, extensions: list[SchemaExtension], name: str) -> None:
        self.name = name
        self.hooks = _hooks(extensions, name)
        # The generators entered, and whether each is async.
        self.entered: list[tuple[Any, bool]] = []

    def __enter__(self) -> None:
        for extension, hook, kind in self.hooks:
            if kind in _ASYNC_KINDS:
                raise RuntimeError(
                    f"SchemaExtension hook {extension}.{self.name} failed to complete "
                    "synchronously."
                )
            self._enter_sync(extension, hook, kind)

    async def __aenter__(self) -> None:
        for extension, hook, kind in self.hooks:
            if kind == "async generator":
                generator = hook(extension)
                try:
                    await anext(generator)
                except StopAsyncIteration:
                    raise RuntimeError("generator didn't yield") from None
                self.entered.append((generator, True))
            elif kind == "coroutine function":
                await hook(extension)
            else:
                self._enter_sync(extension, hook, kind)

    def _enter_sync(self, extension: SchemaExtension, hook: Callable[..., Any], kind: Kind) -> None:
        if kind == "function":
            hook(extension)
            return
        generator = hook(extension)
        try:
            next(generator)
        except StopIteration:
            raise RuntimeError("generator didn't yield") from None
        self.entered.append((generator, False))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        error = _instance(exc_type, exc_val)
        raised = False
        while self.entered:
            generator, _ = self.entered.pop()
            try:
                if _left(generator, error):
                    raised, error = False, None
            except BaseException as new:  # what a hook raises goes on to the next
                raised, error = True, new
        if raised:
            _reraise(error)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        error = _instance(exc_type, exc_val)
        raised = False
        while self.entered:
            generator, is_async = self.entered.pop()
            try:
                swallowed = (
                    await _left_async(generator, error) if is_async else _left(generator, error)
                )
                if swallowed:
                    raised, error = False, None
            except BaseException as new:  # what a hook raises goes on to the next
                raised, error = True, new
        if raised:
            _reraise(error)


def _instance(
    exc_type: type[BaseException] | None, exc_val: BaseException | None
) -> BaseException | None:
    if exc_type is None:
        return None
    return exc_val if exc_val is not None else exc_type()


def _reraise(error: BaseException | None) -> None:
    """Raises what a hook raised, its context as the hook left it (as `ExitStack` does)."""
    assert error is not None
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context


class HookRunner(SchemaExtensionsRunner):
    """strawberry's runner, its four phases run by `HookPhase`."""

    def operation(self) -> OperationContextManager:
        return HookPhase(self.extensions, "on_operation")  # type: ignore[return-value]

    def validation(self) -> ValidationContextManager:
        return HookPhase(self.extensions, "on_validate")  # type: ignore[return-value]

    def parsing(self) -> ParsingContextManager:
        return HookPhase(self.extensions, "on_parse")  # type: ignore[return-value]

    def executing(self) -> ExecutingContextManager:
        return HookPhase(self.extensions, "on_execute")  # type: ignore[return-value]

    async def get_extensions_results(self, ctx: ExecutionContext) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for extension in self.extensions:
            if type(extension).get_results is not SchemaExtension.get_results:
                results = extension.get_results()
                data.update(await results if inspect.isawaitable(results) else results)
        data.update(ctx.extensions_results)
        return data


__all__ = ["HookPhase", "HookRunner"]
