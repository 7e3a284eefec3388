"""Field-level permission classes. Each asks models/access.py, never checks rows ad hoc."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, ClassVar

from strawberry.extensions.field_extension import AsyncExtensionResolver, FieldExtension
from strawberry.permission import BasePermission, PermissionExtension

from api.context import Info
from api.errors import Forbidden, Unauthenticated
from models.catalogue import AppScope
from resolvers.audit import record_access


def guard(*permissions: BasePermission, fail_silently: bool = False) -> list[FieldExtension]:
    """The `extensions=` of a guarded field or operation; `fail_silently` answers null (a
    nullable field) rather than an error."""
    return [PermissionExtension(permissions=list(permissions), fail_silently=fail_silently)]


def guard_read(*permissions: BasePermission) -> list[FieldExtension]:
    """A guarded field of a Patient whose reading is an access event (see RecordsRead)."""
    return [*guard(*permissions), RecordsRead()]


class RecordsRead(FieldExtension):
    """Serving this Patient field is a read of the space: an access event for anyone but the
    holder (one per request and action, however many fields). It wraps the permission, so
    a denied field writes nothing."""

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        result = next_(source, info, **kwargs)
        if inspect.isawaitable(result):  # `await_maybe`, without a coroutine of its own
            result = await result
        relation = await info.context.loaders.relation.load(source.pk)
        await record_access(info, relation)
        return result


class _FieldGuard(BasePermission):
    message = "You are not allowed to read this field."
    error_extensions = {"code": "FORBIDDEN"}
    # True where `has_permission` is synchronous and reads the operation alone (its
    # context), not the object the field is read on: a compiled plan then asks it once per
    # operation and field, not once per object (api/plans/plan.py, `hoisted_permission`).
    decided_by_operation: ClassVar[bool] = False


class ManagesPatient(_FieldGuard):
    """The holder of the space or a legal representative of the minor."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        relation = await info.context.loaders.relation.load(source.pk)
        return relation.manages


class ReadsDossier(_FieldGuard):
    """The holder, a representative, or a professional with a basis (consent, médecin
    traitant, emergency) who is not blocked; a partner app granted `scope`, the part of
    the dossier the field is."""

    def __init__(self, scope: AppScope) -> None:
        self.scope = scope

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        relation = await info.context.loaders.relation.load(source.pk)
        return relation.reads(self.scope)


class SeesIdentity(_FieldGuard):
    """Names, birth date and sex of a space: whoever sees the space, but a partner app only
    under IDENTITY_READ. Decided from the actor alone (no statement): an app sees one space,
    and only its identity fields come through here."""

    decided_by_operation = True

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        actor = info.context.actor
        return actor.app_id is None or AppScope.IDENTITY_READ in actor.scopes


class SeesReferencedDocument(_FieldGuard):
    """A reference to a document (an access event's): readable when the document itself is,
    by the rule of every list. Guard it with `fail_silently`: one the viewer may not read is
    null, exactly as one that no longer exists, so the answer tells nothing of it."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        from resolvers.dossier import visible_documents

        pk = source.document_id
        return pk is None or pk in await visible_documents(info, [pk])


class IsThisProfessional(_FieldGuard):
    """A professional's own lists (the dashboard): that professional only."""

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return bool(info.context.actor.professional_id == source.pk)


class IsThisProfessionalOrOperator(_FieldGuard):
    """A professional's own memberships: that professional, and the operators who make them."""

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        actor = info.context.actor
        return actor.is_operator or bool(actor.professional_id == source.pk)


class IsEstablishmentMember(_FieldGuard):
    """An establishment's shared inbox: its members only (models/access.py, membership)."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return bool(await info.context.loaders.membership.load(source.pk))


class IsEstablishmentMemberOrOperator(_FieldGuard):
    """An establishment's member list: its members, and the operators who manage it."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if info.context.actor.is_operator:
            return True
        return bool(await info.context.loaders.membership.load(source.pk))


class HolderOnly(_FieldGuard):
    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        relation = await info.context.loaders.relation.load(source.pk)
        return relation.holder


class _RoleGuard(BasePermission):
    """For operations: anonymous callers get UNAUTHENTICATED, other roles FORBIDDEN."""

    def allowed(self, info: Info) -> bool:
        raise NotImplementedError

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        actor = info.context.actor
        if actor.anonymous:
            raise Unauthenticated()
        if not self.allowed(info):
            raise Forbidden()
        return True


class IsAuthenticated(_RoleGuard):
    def allowed(self, info: Info) -> bool:
        return True


class IsOperator(_RoleGuard):
    def allowed(self, info: Info) -> bool:
        return info.context.actor.is_operator


class IsPatient(_RoleGuard):
    def allowed(self, info: Info) -> bool:
        return info.context.actor.is_patient


class IsProfessional(_RoleGuard):
    def allowed(self, info: Info) -> bool:
        return info.context.actor.is_professional


class IsProfessionalOrOperator(_RoleGuard):
    def allowed(self, info: Info) -> bool:
        return info.context.actor.is_professional or info.context.actor.is_operator


# Each guard lands in `schema.graphql` as a directive on the fields it guards (`@holderOnly`…);
# its description is the rule, as a client reads it.
_DENIED = " Anyone else reads null, with FORBIDDEN on its path."
_ROLE = " Anonymous callers get UNAUTHENTICATED, other roles FORBIDDEN."
RULES: dict[type[BasePermission], str] = {
    ManagesPatient: "The holder of the space, or a legal representative of the minor." + _DENIED,
    ReadsDossier: (
        "Whoever reads the dossier: the holder, a legal representative, a professional with "
        "a basis (consent, médecin traitant, emergency access) who is not blocked, or a "
        "partner app granted the scope of that part of the dossier." + _DENIED
    ),
    SeesIdentity: ("Whoever sees the space; a partner app only under IDENTITY_READ." + _DENIED),
    SeesReferencedDocument: (
        "Readable when the document it refers to is (the rule of every document list); "
        "otherwise null without an error, as a document that no longer exists."
    ),
    IsThisProfessional: "That professional only (their own dashboard)." + _DENIED,
    IsThisProfessionalOrOperator: "That professional, and operators." + _DENIED,
    IsEstablishmentMember: "The members of that establishment only." + _DENIED,
    IsEstablishmentMemberOrOperator: (
        "The members of that establishment, and operators." + _DENIED
    ),
    HolderOnly: (
        "The holder of the space only: not a legal representative, a professional or an "
        "app." + _DENIED
    ),
    IsAuthenticated: "Any logged-in caller." + _ROLE,
    IsOperator: "OPERATOR only." + _ROLE,
    IsPatient: "A logged-in patient (a holder, or a legal representative)." + _ROLE,
    IsProfessional: "PROFESSIONAL only." + _ROLE,
    IsProfessionalOrOperator: "PROFESSIONAL or OPERATOR." + _ROLE,
}


def _describe_directives() -> None:
    for permission, rule in RULES.items():
        directive = type(permission._auto_schema_directive)
        definition = directive.__strawberry_directive__  # type: ignore[attr-defined]
        directive.__strawberry_directive__ = dataclasses.replace(  # type: ignore[attr-defined]
            definition, description=rule
        )


_describe_directives()
