"""Role bindings: granted only by someone who may manage bindings there and holds the role."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from controlplane.audit.record import AuditRecord
from controlplane.auth.models import Role, RoleBinding
from controlplane.auth.policy import authorize, holds
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, Forbidden, NotFound
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant


def _check_grant(who: Principal, role: Role, path: str) -> None:
    authorize(who, "bindings.manage", path, what="tenant")
    if not holds(who, role, path):
        raise Forbidden(f"you do not hold '{role.value}' over '{path}', so you cannot grant it", field="role")
    if role == Role.PLATFORM_ADMIN and "." in path:
        raise Forbidden("platform-admin can only be bound at the province", field="role")


def grant(uow: UnitOfWork, who: Principal, *, subject: str, role: Role, tenant_path: str) -> tuple[RoleBinding, str]:
    tenant = tenants.get(uow, who.scope, tenant_path)
    _check_grant(who, role, tenant.path)
    existing = uow.session.scalars(
        select(RoleBinding).where(
            RoleBinding.subject == subject, RoleBinding.role == role.value, RoleBinding.tenant_id == tenant.id
        )
    ).first()
    if existing is not None:
        raise Conflict(f"'{subject}' already holds '{role.value}' at '{tenant.path}'", binding=str(existing.id))
    row = RoleBinding(subject=subject, role=role.value, tenant_id=tenant.id, created_by=who.name, created_at=uow.now())
    uow.session.add(row)
    uow.session.flush()
    uow.audit(
        AuditRecord(
            "role-binding.create",
            "role_binding",
            str(row.id),
            tenant_path=tenant.path,
            after={"subject": subject, "role": role.value, "tenant": tenant.path},
        )
    )
    return row, tenant.path


def listed(
    uow: UnitOfWork,
    who: Principal,
    *,
    tenant_path: str | None,
    subject: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[tuple[RoleBinding, str]], str | None]:
    stmt = select(RoleBinding, Tenant.path).join(Tenant, Tenant.id == RoleBinding.tenant_id)
    stmt = stmt.where(tenants.scope_clause(who.scope))
    if tenant_path is not None:
        stmt = stmt.where(tenants.subtree_clause(tenant_path))
    if subject is not None:
        stmt = stmt.where(RoleBinding.subject == subject)
    if after is not None:
        stmt = stmt.where(RoleBinding.id > uuid.UUID(after))
    rows = [(b, p) for b, p in uow.session.execute(stmt.order_by(RoleBinding.id).limit(limit * 4 + 1))]
    # Own bindings are always visible; others' only where the caller may read bindings.
    from controlplane.auth.policy import can

    visible = [(b, p) for b, p in rows if b.subject == who.name or can(who, "bindings.read", p)]
    page = visible[:limit]
    more = len(visible) > limit or len(rows) > limit * 4
    return page, (str(page[-1][0].id) if more and page else None)


def get(uow: UnitOfWork, who: Principal, binding_id: uuid.UUID) -> tuple[RoleBinding, str]:
    found = uow.session.execute(
        select(RoleBinding, Tenant.path)
        .join(Tenant, Tenant.id == RoleBinding.tenant_id)
        .where(RoleBinding.id == binding_id)
    ).first()
    if found is None or not who.scope.allows(found[1]):
        raise NotFound("role binding not found")
    binding, path = found
    if binding.subject != who.name:
        authorize(who, "bindings.read", path, what="role binding")
    return binding, path


def revoke(uow: UnitOfWork, who: Principal, binding_id: uuid.UUID) -> None:
    binding, path = get(uow, who, binding_id)
    _check_grant(who, Role(binding.role), path)
    uow.session.delete(binding)
    uow.session.flush()
    uow.audit(
        AuditRecord(
            "role-binding.delete",
            "role_binding",
            str(binding_id),
            tenant_path=path,
            before={"subject": binding.subject, "role": binding.role, "tenant": path},
        )
    )


def ensure_platform_admin(uow: UnitOfWork, subject: str, *, created_by: str) -> None:
    """For `chutian bootstrap-admin`: bind platform-admin at the province if missing."""
    root = uow.session.scalars(select(Tenant).where(Tenant.parent_id.is_(None))).one()  # type: ignore[union-attr]
    exists = uow.session.scalars(
        select(RoleBinding).where(
            RoleBinding.subject == subject,
            RoleBinding.role == Role.PLATFORM_ADMIN.value,
            RoleBinding.tenant_id == root.id,
        )
    ).first()
    if exists is None:
        uow.session.add(
            RoleBinding(
                subject=subject,
                role=Role.PLATFORM_ADMIN.value,
                tenant_id=root.id,
                created_by=created_by,
                created_at=uow.now(),
            )
        )
        uow.session.flush()
        uow.audit(
            AuditRecord(
                "role-binding.create",
                "role_binding",
                subject,
                tenant_path=root.path,
                after={"subject": subject, "role": Role.PLATFORM_ADMIN.value, "tenant": root.path},
            )
        )


def admin_token(uow: UnitOfWork, subject: str, *, label: str, created_by: str, ttl: timedelta) -> str:
    """`subject` becomes platform-admin at the province and gets a fresh token (returned once)."""
    from controlplane.auth import tokens
    from controlplane.auth.models import PrincipalKind

    ensure_platform_admin(uow, subject, created_by=created_by)
    _, secret = tokens.mint(uow, subject=subject, name=label, kind=PrincipalKind.USER, created_by=created_by, ttl=ttl)
    return secret
