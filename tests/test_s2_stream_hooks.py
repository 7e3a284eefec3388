"""`_subscription_stream` (api/extensions/subscriptions.py) runs the `on_stream_result` hooks
only for an event's result with errors: of the light extension set, only SubscriptionGuard
hooks a result, and it reads the result's errors alone. If another hook joins the set, this
fails, and the stream must run the hooks for every result again."""

from __future__ import annotations

from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from api.extensions.subscriptions import SubscriptionGuard, subscription_extensions


def test_only_the_guard_hooks_a_stream_result() -> None:
    hooking = [
        type(extension)
        for extension in subscription_extensions()
        if type(extension).on_stream_result is not SchemaExtension.on_stream_result
    ]
    assert hooking == [SubscriptionGuard]


def test_the_guard_leaves_a_result_without_errors_as_it_is() -> None:
    guard = SubscriptionGuard()
    data = {"messageReceived": {"id": "TWVzc2FnZTox", "body": "m1"}}
    result = ExecutionResult(data=data, errors=None, extensions={"k": 1})
    hook = guard.on_stream_result(result)
    next(hook)
    assert list(hook) == []
    assert result == ExecutionResult(
        data={"messageReceived": {"id": "TWVzc2FnZTox", "body": "m1"}},
        errors=None,
        extensions={"k": 1},
    )
