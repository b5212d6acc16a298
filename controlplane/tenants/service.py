"""Tenant tree use cases. Services take the unit of work and never commit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, func, literal, or_, select
from sqlalchemy import update as sql_update
from sqlmodel import Session, col

from controlplane.audit.record import AuditRecord
from controlplane.auth.models import Role
from controlplane.auth.policy import authorize, can
from controlplane.auth.principal import Principal, Scope
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, Forbidden, NotFound, PolicyViolation, ValidationFailed
from controlplane.site_config import NetworkZone
from controlplane.tenants.models import ALLOWED_PARENTS, Tenant, TenantKind, TenantStatus
from controlplane.tenants.schemas import TenantCreate, TenantPublic, TenantUpdate
from controlplane.tenants.states import transition

# Other domains register checks here instead of this module importing them:
# each returns a reason when `tenant`'s subtree still has something live (blocks retirement)
# or when its code is pinned (allocations exist outside the database under that name).
LiveCheck = Callable[[Session, Tenant], str | None]
LIVE_DEPENDENT_CHECKS: list[LiveCheck] = []
CODE_PIN_CHECKS: list[LiveCheck] = []


@dataclass(frozen=True)
class TenantFilter:
    parent: str | None = None
    subtree: str | None = None
    kind: TenantKind | None = None
    status: TenantStatus | None = None
    q: str | None = None
    code: str | None = None


def subtree_clause(path: str) -> Any:
    """Rows at `path` or below it: a range scan on the unique path index, never a tree walk."""
    return or_(col(Tenant.path) == path, col(Tenant.path).startswith(path + ".", autoescape=True))


def scope_clause(scope: Scope) -> Any:
    if scope.roots is None:
        return True
    if not scope.roots:
        return False
    return or_(*(subtree_clause(root) for root in scope.roots))


def get(uow: UnitOfWork, scope: Scope, path: str, *, for_update: bool = False) -> Tenant:
    """Outside the caller's scope is indistinguishable from absent: 404, never 403."""
    stmt = select(Tenant).where(Tenant.path == path)
    if for_update:
        stmt = stmt.with_for_update()
    row = uow.session.scalars(stmt).first()
    if row is None or not scope.allows(row.path):
        raise NotFound(f"tenant '{path}' not found", tenant=path)
    return row


def list_tenants(
    uow: UnitOfWork, scope: Scope, flt: TenantFilter, *, after: str | None, limit: int
) -> tuple[Sequence[Tenant], str | None]:
    stmt = select(Tenant).where(scope_clause(scope))
    if flt.parent is not None:
        stmt = stmt.where(col(Tenant.path).startswith(flt.parent + ".", autoescape=True)).where(
            Tenant.depth == flt.parent.count(".") + 1
        )
    if flt.subtree is not None:
        stmt = stmt.where(subtree_clause(flt.subtree))
    if flt.kind is not None:
        stmt = stmt.where(Tenant.kind == flt.kind.value)
    if flt.status is not None:
        stmt = stmt.where(Tenant.status == flt.status.value)
    if flt.code is not None:
        stmt = stmt.where(Tenant.code == flt.code)
    if flt.q:
        like = f"%{flt.q.lower()}%"
        stmt = stmt.where(
            or_(func.lower(Tenant.name_en).like(like), col(Tenant.name_zh).contains(flt.q, autoescape=True))
        )
    if after is not None:
        stmt = stmt.where(Tenant.path > after)
    rows = list(uow.session.scalars(stmt.order_by(Tenant.path).limit(limit + 1)))
    next_after = rows[limit - 1].path if len(rows) > limit else None
    return rows[:limit], next_after


def ancestors(uow: UnitOfWork, scope: Scope, path: str) -> list[Tenant]:
    """Root first; one query over the path's prefixes. Ancestors outside scope are omitted."""
    get(uow, scope, path)
    parts = path.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    if not prefixes:
        return []
    rows = uow.session.scalars(select(Tenant).where(col(Tenant.path).in_(prefixes)).order_by(Tenant.depth))
    return [r for r in rows if scope.allows(r.path)]


def snapshot(row: Tenant) -> dict[str, Any]:
    return TenantPublic.from_row(row).model_dump(mode="json", exclude={"created_at", "updated_at"})


def create(uow: UnitOfWork, who: Principal, data: TenantCreate) -> Tenant:
    authorize(who, "tenants.create", data.parent, what="tenant")
    parent = get(uow, who.scope, data.parent, for_update=True)
    if parent.status != TenantStatus.ACTIVE:
        raise Conflict(f"parent '{parent.path}' is {parent.status}", field="parent", current_state=parent.status)
    if TenantKind(parent.kind) not in ALLOWED_PARENTS[data.kind]:
        allowed = sorted(k.value for k in ALLOWED_PARENTS[data.kind]) or ["none: only the root"]
        raise ValidationFailed(
            f"a {data.kind.value} cannot sit under a {parent.kind}; allowed parents: {', '.join(allowed)}",
            field="kind",
        )
    mlps = data.mlps_ceiling if data.mlps_ceiling is not None else parent.mlps_ceiling
    if mlps > parent.mlps_ceiling:
        raise PolicyViolation(
            f"MLPS ceiling {mlps} exceeds the parent's ceiling {parent.mlps_ceiling}", field="mlps_ceiling"
        )
    path = f"{parent.path}.{data.code}"
    _ensure_unique(uow, path=path, credit_code=data.credit_code)
    now = uow.now()
    row = Tenant(
        parent_id=parent.id,
        code=data.code,
        path=path,
        depth=parent.depth + 1,
        name_zh=data.name_zh,
        name_en=data.name_en,
        kind=data.kind.value,
        credit_code=data.credit_code,
        mlps_ceiling=mlps,
        network_zone=(data.network_zone or NetworkZone(parent.network_zone)).value,
        dr_link_mbps=data.dr_link_mbps,
        status=TenantStatus.ACTIVE.value,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(row)
    uow.session.flush()
    uow.audit(AuditRecord("tenant.create", "tenant", path, tenant_path=path, after=snapshot(row)))
    return row


def _ensure_unique(uow: UnitOfWork, *, path: str | None = None, credit_code: str | None = None) -> None:
    """Friendly 409s naming the field; the unique constraints remain the real guard."""
    if path and uow.session.scalars(select(Tenant.id).where(Tenant.path == path)).first():
        raise Conflict(f"a tenant with path '{path}' already exists", field="code")
    if credit_code and uow.session.scalars(select(Tenant.id).where(Tenant.credit_code == credit_code)).first():
        raise Conflict("another tenant already has this unified social credit code", field="credit_code")


def _authorize_change(who: Principal, path: str) -> None:
    """Operators anywhere in their subtree; a tenant-admin only strictly below its own node."""
    authorize(who, "tenants.update", path, what="tenant")
    if can(who, "tenants.status", path):
        return
    if not any(role == Role.TENANT_ADMIN and path.startswith(bound + ".") for role, bound in who.bindings):
        raise Forbidden(
            "a tenant-admin may change the tenants below its own node, not the node itself",
            permission="tenants.update",
        )


def update(uow: UnitOfWork, who: Principal, path: str, data: TenantUpdate, *, if_version: int | None) -> Tenant:
    _authorize_change(who, path)
    row = get(uow, who.scope, path, for_update=True)
    if if_version is not None and row.version != if_version:
        raise Conflict(
            f"tenant '{path}' changed since version {if_version} (now {row.version})",
            current_version=row.version,
        )
    if row.status == TenantStatus.RETIRED:
        raise Conflict(f"tenant '{path}' is retired", current_state=row.status)
    before = snapshot(row)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "mlps_ceiling" in changes:
        _check_mlps(uow, row, changes["mlps_ceiling"])
    if "credit_code" in changes and changes["credit_code"] != row.credit_code:
        _ensure_unique(uow, credit_code=changes["credit_code"])
    new_code = changes.pop("code", row.code)
    for key, value in changes.items():
        setattr(row, key, value.value if hasattr(value, "value") else value)
    if new_code != row.code:
        _rename(uow, row, new_code)
    row.updated_at = uow.now()
    row.version += 1
    uow.session.flush()
    uow.audit(
        AuditRecord("tenant.update", "tenant", row.path, tenant_path=row.path, before=before, after=snapshot(row))
    )
    return row


def _check_mlps(uow: UnitOfWork, row: Tenant, level: int) -> None:
    if row.parent_id is not None:
        parent = uow.session.get(Tenant, row.parent_id)
        if parent is not None and level > parent.mlps_ceiling:
            raise PolicyViolation(
                f"MLPS ceiling {level} exceeds the parent's ceiling {parent.mlps_ceiling}",
                field="mlps_ceiling",
            )
    higher = uow.session.scalars(
        select(Tenant.path)
        .where(col(Tenant.path).startswith(row.path + ".", autoescape=True), Tenant.mlps_ceiling > level)
        .order_by(Tenant.path)
        .limit(1)
    ).first()
    if higher:
        raise PolicyViolation(
            f"tenant '{higher}' below has a higher MLPS ceiling; lower it first",
            field="mlps_ceiling",
            tenant=higher,
        )


def _rename(uow: UnitOfWork, row: Tenant, new_code: str) -> None:
    if row.parent_id is None:
        raise PolicyViolation("the province's code cannot change", field="code")
    for check in CODE_PIN_CHECKS:
        reason = check(uow.session, row)
        if reason:
            raise Conflict(f"code of '{row.path}' is immutable: {reason}", field="code")
    old = row.path
    new = old.rsplit(".", 1)[0] + "." + new_code
    _ensure_unique(uow, path=new)
    uow.session.flush()
    # Rewrite the whole subtree's paths in one statement, then forget stale loaded copies.
    uow.session.execute(
        sql_update(Tenant)
        .where(col(Tenant.path).startswith(old + ".", autoescape=True))
        .values(path=literal(new, String) + func.substr(Tenant.path, len(old) + 1))
        .execution_options(synchronize_session=False)
    )
    uow.session.expire_all()
    row.code = new_code
    row.path = new


def change_status(uow: UnitOfWork, who: Principal, path: str, target: TenantStatus, reason: str) -> Tenant:
    authorize(who, "tenants.status", path, what="tenant")
    row = get(uow, who.scope, path, for_update=True)
    if row.parent_id is None:
        raise PolicyViolation("the province itself cannot be suspended or retired", field="path")
    current = TenantStatus(row.status)
    transition(current, target)
    if target == TenantStatus.RETIRED:
        _ensure_nothing_live_below(uow, row)
    before = snapshot(row)
    row.status = target.value
    row.status_reason = reason
    row.updated_at = uow.now()
    row.version += 1
    uow.session.flush()
    uow.audit(
        AuditRecord(
            f"tenant.{_verb(target)}",
            "tenant",
            row.path,
            tenant_path=row.path,
            before=before,
            after=snapshot(row),
            extra={"reason": reason},
        )
    )
    return row


def _verb(target: TenantStatus) -> str:
    return {
        TenantStatus.ACTIVE: "reactivate",
        TenantStatus.SUSPENDED: "suspend",
        TenantStatus.RETIRED: "retire",
    }[target]


def _ensure_nothing_live_below(uow: UnitOfWork, row: Tenant) -> None:
    live_child = uow.session.scalars(
        select(Tenant.path)
        .where(
            col(Tenant.path).startswith(row.path + ".", autoescape=True),
            Tenant.status != TenantStatus.RETIRED,
        )
        .order_by(Tenant.path)
        .limit(1)
    ).first()
    if live_child:
        raise Conflict(f"'{live_child}' below is not retired", field="path", blocking=live_child)
    for check in LIVE_DEPENDENT_CHECKS:
        reason = check(uow.session, row)
        if reason:
            raise Conflict(f"'{row.path}' still has {reason}", field="path", blocking=reason)
