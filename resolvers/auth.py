"""login, verifyLogin (two-factor), logout."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.context import Info
from api.errors import Unauthenticated
from models import session
from models.account import Account
from resolvers import ids
from resolvers.people import Viewer, viewer_of
from subscriptions.channels import publish_revoked


@strawberry.type(description="A pending two-factor step: a one-time code went out by e-mail.")
class LoginChallenge:
    id: strawberry.ID
    expires_at: datetime


@strawberry.input
class LoginInput:
    email: str
    password: str


@strawberry.input
class VerifyLoginInput:
    challenge_id: strawberry.ID
    code: str


@strawberry.type
class LoginPayload:
    token: str | None = strawberry.field(
        description="The bearer token; null while a two-factor challenge is pending."
    )
    expires_at: datetime | None
    challenge: LoginChallenge | None
    account: strawberry.Private[Account | None]

    @strawberry.field(description="Who logged in; null while a challenge is pending.")
    async def viewer(self, info: Info) -> Viewer | None:
        if self.account is None:
            return None
        account = self.account
        return await viewer_of(
            info,
            patient_id=account.patient_id,
            professional_id=account.professional_id,
            operator_id=account.operator_id,
        )


def _payload(result: session.LoginResult) -> LoginPayload:
    challenge = result.challenge
    return LoginPayload(
        token=result.token,
        expires_at=result.expires_at,
        challenge=LoginChallenge(
            id=strawberry.ID(ids.encode("LoginChallenge", challenge.id)),
            expires_at=challenge.expires_at,
        )
        if challenge
        else None,
        account=result.account if result.token else None,
    )


@strawberry.type
class AuthMutation:
    @strawberry.mutation(
        description=(
            "Log in with e-mail and password. With two-factor on, answers a challenge and no "
            "token; the one-time code goes by e-mail. Failures answer UNAUTHENTICATED."
        )
    )
    async def login(self, info: Info, input: LoginInput) -> LoginPayload:
        ctx = info.context
        result = await session.login(
            input.email,
            input.password,
            client=ctx.client,
            vault=ctx.vault,
            policy=ctx.settings.login_policy,
            now=ctx.now,
        )
        return _payload(result)

    @strawberry.mutation(description="Complete a two-factor login with the 6-digit code.")
    async def verify_login(self, info: Info, input: VerifyLoginInput) -> LoginPayload:
        ctx = info.context
        try:
            challenge_pk = ids.decode_as(str(input.challenge_id), "LoginChallenge")
        except Exception:
            challenge_pk = None
        result = await session.verify_login(
            challenge_pk,
            input.code,
            client=ctx.client,
            vault=ctx.vault,
            policy=ctx.settings.login_policy,
            now=ctx.now,
        )
        return _payload(result)

    @strawberry.mutation(description="End the current session; its token stops working at once.")
    async def logout(self, info: Info) -> bool:
        actor = info.context.actor
        if actor.session_id is None:
            raise Unauthenticated()
        await session.logout(actor.session_id, now=info.context.now)
        if actor.account_id is not None:
            await publish_revoked(info.context.services.bus, accounts=[actor.account_id])
        return True
