"""login, verifyLogin (two-factor), logout; exchangeLoginTicket and endProviderSession
(FranceConnect: api/franceconnect.py, models/franceconnect.py)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.context import Info
from api.errors import Unauthenticated
from api.franceconnect import franceconnect_of
from models import franceconnect, session
from models.account import Account
from models.crypto import new_token
from resolvers import ids
from resolvers.people import Viewer, viewer_of
from subscriptions.channels import publish_revoked


@strawberry.type(description="A pending two-factor step: a one-time code went out by e-mail.")
class LoginChallenge:
    id: strawberry.ID = strawberry.field(description="Send it back with the code to `verifyLogin`.")
    expires_at: datetime = strawberry.field(description="When the code stops working (10 minutes).")


@strawberry.input
class LoginInput:
    email: str = strawberry.field(description="The login e-mail.")
    password: str = strawberry.field(description="The password.")


@strawberry.input
class ExchangeLoginTicketInput:
    ticket: str = strawberry.field(
        description="The `ticket` FranceConnect's callback put in the front end's URL: single "
        "use, valid 60 seconds."
    )


@strawberry.input
class VerifyLoginInput:
    challenge_id: strawberry.ID = strawberry.field(description="The `challenge.id` of `login`.")
    code: str = strawberry.field(description="The 6-digit code received by e-mail.")


@strawberry.type
class LoginPayload:
    token: str | None = strawberry.field(
        description="The bearer token; null while a two-factor challenge is pending."
    )
    expires_at: datetime | None = strawberry.field(
        description="When the token expires; null while a challenge is pending."
    )
    challenge: LoginChallenge | None = strawberry.field(
        description="The two-factor step to complete with `verifyLogin`; null once logged in."
    )
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
        await franceconnect.forget_session(actor.session_id)
        if actor.account_id is not None:
            await publish_revoked(info.context.services.bus, accounts=[actor.account_id])
        return True

    @strawberry.mutation(
        description=(
            "Complete a FranceConnect login: the single-use ticket (valid 60 s) the callback "
            "put in FRONTEND_URL's `?ticket=` gives the session a password login gives (no "
            "e-mail code: the provider was the second factor). A used, expired or unknown "
            "ticket answers UNAUTHENTICATED."
        )
    )
    async def exchange_login_ticket(
        self, info: Info, input: ExchangeLoginTicketInput
    ) -> LoginPayload:
        ctx = info.context
        result = await franceconnect.exchange_ticket(
            input.ticket, vault=ctx.vault, ttl=ctx.settings.session_ttl, now=ctx.now
        )
        return _payload(result)

    @strawberry.mutation(
        description=(
            "Log out (as `logout` does) and answer where to send the browser so that the "
            "FranceConnect session ends too: the provider's end-session URL with "
            "`id_token_hint`, coming back to FRONTEND_URL. Null for a session that did not "
            "come from FranceConnect."
        )
    )
    async def end_provider_session(self, info: Info) -> str | None:
        ctx = info.context
        actor = ctx.actor
        if actor.session_id is None:
            raise Unauthenticated()
        id_token = await franceconnect.end_session(actor.session_id, vault=ctx.vault, now=ctx.now)
        if actor.account_id is not None:
            await publish_revoked(ctx.services.bus, accounts=[actor.account_id])
        client = franceconnect_of(ctx.request)
        if id_token is None or client is None:
            return None
        return await client.end_session_url(id_token, state=new_token())
