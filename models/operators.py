"""Operators are created from the CLI only."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from models.account import Account, Operator, Role
from models.errors import Conflict, Invalid
from models.identifiers import normalize_email
from models.passwords import hash_password


async def create_operator(email: str, password: str) -> Operator:
    email = normalize_email(email)
    if len(password) < 12:
        raise Invalid("A password has at least 12 characters.", field="password")
    if await Account.exists(email=email):
        raise Conflict("This e-mail address is already in use.")
    password_hash = await hash_password(password)
    async with in_transaction() as conn:
        operator = await Operator.create(email=email, using_db=conn)
        await Account.create(
            email=email,
            password_hash=password_hash,
            role=Role.OPERATOR,
            operator_id=operator.id,
            using_db=conn,
        )
    return operator
