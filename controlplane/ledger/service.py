"""Ledger use cases: reserve, commit, release, set used, set limits, dry run, read.

Every function takes the caller's unit of work, never commits, and decides *before* it
writes anything: a refusal leaves the session untouched, so a caller that catches it may
go on and commit its own changes. Lock order: reservation (by owner) -> chain (root to
leaf, see ``chain``) -> audit head (appended at commit).

Owners are ``<kind>:<id>`` strings, e.g. ``operation:<uuid>`` or ``request:<uuid>``: the
reservation reaper asks the registered owner checks (``owners``) whether the owner still
lives. Other services call::

    reserve(uow, owner, key, delta, expires_at=None) -> Reservation   # idempotent by owner
    commit(uow, owner, part=None) -> Reservation                      # reserved -> used
    release(uow, owner) -> ResourceVector                             # what was still reserved
    release_used(uow, key, amount, reason=...)                        # resources deleted
    set_used(uow, key, used, reason=...)                              # usage sync (forced)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from controlplane.audit.record import AuditRecord
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, ValidationFailed
from controlplane.ledger import access, fastpath
from controlplane.ledger.chain import Chain, apply_changes, as_json, load_chain, node_key, snapshot, vector, write_nodes
from controlplane.ledger.errors import LimitAboveParent, LimitBelowConsumption, QuotaRefused, ReservationMissing
from controlplane.ledger.models import AllocationStatus, LimitSource, QuotaNode, Reservation
from controlplane.tenants.models import Tenant
from quotas import (
    ZERO,
    Admitted,
    BelowConsumption,
    LedgerNode,
    Limit,
    NodeKey,
    Refused,
    ResourceVector,
    admit,
    apply_release,
    check_set_limit,
    sync_used,
)

OWNER_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}:[A-Za-z0-9._:-]{1,99}$")


def refused(refusal: Refused, *, what: str = "the request") -> QuotaRefused:
    return QuotaRefused(str(refusal.node), refusal.resource, refusal.requested, refusal.headroom, what=what)


def checked_vector(name: str, amounts: Mapping[str, int]) -> ResourceVector:
    """A non-negative vector, or a 422 naming the field (services may be called without the API's schemas)."""
    try:
        result = ResourceVector(dict(amounts))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"{name}: {exc}", field=name) from None
    for resource, amount in result.items():
        if amount < 0:
            raise ValidationFailed(f"{name}.{resource} must not be negative", field=f"{name}.{resource}")
    return result


def checked_limits(limits: Mapping[str, Limit]) -> None:
    for resource, limit in limits.items():
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValidationFailed(
                f"limits.{resource} must be a non-negative integer or null", field=f"limits.{resource}"
            )


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not OWNER_PATTERN.match(owner):
        raise ValidationFailed("owner must look like '<kind>:<id>', e.g. 'operation:<uuid>'", field="owner")


def _combine(*changes: Mapping[NodeKey, ResourceVector]) -> dict[NodeKey, ResourceVector]:
    total: dict[NodeKey, ResourceVector] = {}
    for change in changes:
        for key, delta in change.items():
            total[key] = total.get(key, ZERO) + delta
    return total


def _advance(
    nodes: Sequence[LedgerNode], changes: Mapping[NodeKey, ResourceVector], *, reserved: ResourceVector
) -> list[LedgerNode]:
    """The chain as it would be after ``changes`` (in memory only), the leaf holding ``reserved``."""
    return [
        LedgerNode(
            n.key,
            n.mode,
            n.limits,
            n.used,
            reserved if i == 0 else n.reserved,
            n.consumption + changes.get(n.key, ZERO),
        )
        for i, n in enumerate(nodes)
    ]


_LOCK_RESERVATION = (
    select(Reservation)
    .where(col(Reservation.owner) == bindparam("owner"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


def _lock_reservation(uow: UnitOfWork, owner: str) -> Reservation | None:
    return uow.session.scalars(_LOCK_RESERVATION, {"owner": owner}).first()


_TABLE = Reservation.__table__  # type: ignore[attr-defined]
# ON CONFLICT DO NOTHING RETURNING: the owner check and the insert in one round trip.
_INSERTS = {
    "postgresql": pg_insert(_TABLE).on_conflict_do_nothing(index_elements=["owner"]).returning(_TABLE.c.id),
    "sqlite": sqlite_insert(_TABLE).on_conflict_do_nothing(index_elements=["owner"]).returning(_TABLE.c.id),
}
_UPDATES: dict[tuple[str, ...], Any] = {}


def _update_statement(names: tuple[str, ...]) -> Any:
    if names not in _UPDATES:
        values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in names}
        _UPDATES[names] = update(_TABLE).where(_TABLE.c.id == bindparam("v_id")).values(values)
    return _UPDATES[names]


def _save_reservation(uow: UnitOfWork, reservation: Reservation, *, new: bool, **values: Any) -> Reservation:
    """Core statements (the ORM's flush would run inside the chain's locks); the object follows."""
    values["updated_at"] = uow.now()
    if new:
        for name, value in values.items():
            setattr(reservation, name, value)
        dialect = uow.session.get_bind().dialect.name
        inserted = uow.session.execute(
            _INSERTS[dialect], {c.name: getattr(reservation, c.name) for c in _TABLE.columns}
        ).first()
        if inserted is None:
            # Another reserve for the same owner committed while we waited for the chain. Locking
            # its row now would invert the reservation-then-chain lock order: a clean 409 instead.
            owner = reservation.owner
            raise Conflict(f"a concurrent reservation for '{owner}' got in first; retry", owner=owner, field="owner")
        return reservation
    for name, value in values.items():
        set_committed_value(reservation, name, value)
    names = tuple(sorted(values))
    params = {f"v_{name}": values[name] for name in names} | {"v_id": reservation.id}
    uow.session.execute(_update_statement(names), params)
    return reservation


def _drop_reservation(uow: UnitOfWork, reservation: Reservation) -> None:
    uow.session.execute(delete(_TABLE).where(_TABLE.c.id == reservation.id))
    uow.session.expunge(reservation)


_LOCK_LEAF = (
    select(QuotaNode, Tenant.path)
    .outerjoin(Tenant, col(Tenant.id) == col(QuotaNode.tenant_id))
    .where(col(QuotaNode.id) == bindparam("node_id"))
    .with_for_update(of=QuotaNode)
    .execution_options(populate_existing=True)
)


def _locked_leaf(uow: UnitOfWork, node_id: object) -> tuple[QuotaNode, NodeKey]:
    """Only the leaf row, for changes that leave every consumption alone (commit)."""
    row, path = uow.session.execute(_LOCK_LEAF, {"node_id": node_id}).one()
    return row, node_key(row, path)


def _key_of_node(uow: UnitOfWork, node_id: object) -> NodeKey:
    row = uow.session.execute(
        select(QuotaNode.tenant_id, QuotaNode.cloud, QuotaNode.region, Tenant.path)
        .outerjoin(Tenant, col(Tenant.id) == col(QuotaNode.tenant_id))
        .where(col(QuotaNode.id) == node_id)
    ).one()
    return NodeKey.for_region(row.region) if row.tenant_id is None else NodeKey(row.path, row.cloud, row.region)


def _audit(uow: UnitOfWork, action: str, key: NodeKey, **fields: object) -> None:
    before = fields.pop("before", None)
    after = fields.pop("after", None)
    uow.audit(
        AuditRecord(
            action,
            "quota_node",
            str(key),
            tenant_path=key.tenant,
            before=before,
            after=after,
            extra=dict(fields),
        )
    )


# --- reservations -------------------------------------------------------------------------------


def reserve(
    uow: UnitOfWork,
    owner: str,
    key: NodeKey,
    delta: Mapping[str, int],
    *,
    expires_at: datetime | None = None,
) -> Reservation:
    """Hold ``delta`` at ``key`` for ``owner``; a second call replaces the first amount.

    Raises ``QuotaRefused`` naming the lowest node on the chain that cannot take it,
    ``AllocationMissing`` when the node does not exist. Nothing is written on refusal.
    """
    principal = access.principal_of(uow)
    access.authorize_read(principal, key)
    _check_owner(owner)
    new = checked_vector("delta", delta)
    fast = _reserve_fast(uow, principal.name, owner, key, new, expires_at)
    if fast is not None:
        return fast
    existing = _lock_reservation(uow, owner)
    chain = load_chain(uow, key, lock=True)
    if chain.allocation_status != AllocationStatus.ACTIVE:
        raise Conflict(f"the allocation of {key} is {chain.allocation_status}", node=str(key))
    if existing is not None and existing.node_id != chain.leaf.id:
        raise Conflict(
            f"'{owner}' already holds a reservation at {_key_of_node(uow, existing.node_id)}",
            owner=owner,
            field="owner",
        )
    old = vector(existing.amounts) if existing is not None else ZERO
    nodes = chain.nodes()
    freed = apply_release(nodes, (old - new).positive_part())
    leaf_reserved = nodes[0].reserved - (old - new).positive_part()
    outcome = admit(_advance(nodes, freed, reserved=leaf_reserved), (new - old).positive_part())
    if isinstance(outcome, Refused):
        raise refused(outcome)
    assert isinstance(outcome, Admitted)
    # The reservation is written first: a new one whose owner another reserve took while we
    # waited for the chain is refused by the unique owner before anything else is written.
    if existing is None:
        fresh = Reservation(owner=owner, node_id=chain.leaf.id, created_by=principal.name, created_at=uow.now())
        existing = _save_reservation(uow, fresh, new=True, amounts=dict(new), committed={}, expires_at=expires_at)
    else:
        _save_reservation(uow, existing, new=False, amounts=dict(new), expires_at=expires_at)
    apply_changes(uow, chain, _combine(freed, outcome.changes), reserved=nodes[0].reserved - old + new)
    _audit(uow, "quota.reserve", key, owner=owner, before={"reserved": dict(old)}, after={"reserved": dict(new)})
    return existing


FAST_PATH = True  # PostgreSQL only; tests switch it off to drive the general path there too


def _reserve_fast(
    uow: UnitOfWork, created_by: str, owner: str, key: NodeKey, new: ResourceVector, expires_at: datetime | None
) -> Reservation | None:
    """A new reservation on PostgreSQL in one statement (see ``fastpath``); None: take the
    general path (SQLite, an owner that already holds one, a premise that no longer held)."""
    if not FAST_PATH or uow.session.get_bind().dialect.name != "postgresql":
        return None
    if not new or any(a < 0 for a in new.values()) or (expires_at is not None and expires_at.tzinfo is None):
        return None
    chain = load_chain(uow, key, lock=False)
    if chain.allocation_status != AllocationStatus.ACTIVE:
        return None
    nodes = chain.nodes()
    outcome = admit(nodes, new)
    if isinstance(outcome, Refused):
        return None  # the owner may hold a reservation this one replaces: decided under the locks
    reservation = fastpath.try_reserve(
        uow, chain, nodes, outcome, owner=owner, delta=new, created_by=created_by, expires_at=expires_at
    )
    if reservation is not None:
        _audit(uow, "quota.reserve", key, owner=owner, before={"reserved": {}}, after={"reserved": dict(new)})
    return reservation


def get_reservation(uow: UnitOfWork, owner: str) -> Reservation | None:
    return uow.session.scalars(select(Reservation).where(col(Reservation.owner) == owner)).first()


def commit(uow: UnitOfWork, owner: str, part: Mapping[str, int] | None = None) -> Reservation:
    """Move ``part`` (default: all that is still reserved) of ``owner``'s reservation to used.

    Consumption does not change (it counts both). The reservation row stays, with what is
    left, until ``release`` (or the reaper, once the owner is terminal) removes it.
    """
    principal = access.principal_of(uow)
    _check_owner(owner)
    fast = _commit_fast(uow, principal, owner, part)
    if fast is not None:
        return fast
    reservation = _lock_reservation(uow, owner)
    if reservation is None:
        raise ReservationMissing(owner)
    # Consumption counts used and reserved alike, so nothing above the leaf changes
    # (``quotas.commit`` returns no changes): only the leaf row is locked.
    leaf, key = _locked_leaf(uow, reservation.node_id)
    access.authorize_read(principal, key)
    held = vector(reservation.amounts)
    amount = held if part is None else checked_vector("part", part)
    if not amount.fits_within(held):
        raise ValidationFailed(f"cannot commit {dict(amount)}: '{owner}' holds {dict(held)}", field="part")
    if not amount:
        return reservation
    if not amount.fits_within(vector(leaf.reserved)):
        raise Conflict(f"{key} holds less in reserve than '{owner}' commits", node=str(key))
    write_nodes(
        uow,
        [leaf],
        [
            {
                "used": as_json(vector(leaf.used) + amount),
                "reserved": as_json(vector(leaf.reserved) - amount),
                "updated_at": uow.now(),
            }
        ],
    )
    _save_reservation(
        uow,
        reservation,
        new=False,
        amounts=as_json(held - amount),
        committed=as_json(vector(reservation.committed) + amount),
    )
    _audit(uow, "quota.commit", key, owner=owner, committed=dict(amount), left=dict(held - amount))
    return reservation


def _commit_fast(
    uow: UnitOfWork, principal: Principal, owner: str, part: Mapping[str, int] | None
) -> Reservation | None:
    """``commit`` on PostgreSQL in one statement (see ``fastpath.try_commit``); None: take
    the general path, which also gives every refusal."""
    if not FAST_PATH or uow.session.get_bind().dialect.name != "postgresql":
        return None
    row = fastpath.read_reservation(uow, owner)
    if row is None:
        return None
    key = NodeKey.for_region(row.region) if row.path is None else NodeKey(row.path, row.cloud, row.region)
    access.authorize_read(principal, key)
    held, committed = vector(row.amounts), vector(row.committed)
    amount = held if part is None else checked_vector("part", part)
    if not amount or not amount.fits_within(held):
        return None
    if not fastpath.try_commit(uow, owner, row.node_id, held, committed, amount):
        return None
    _audit(uow, "quota.commit", key, owner=owner, committed=dict(amount), left=dict(held - amount))
    values = {name: getattr(row, name) for name in ("id", "owner", "node_id", "expires_at", "created_by", "created_at")}
    return Reservation(
        **values, amounts=as_json(held - amount), committed=as_json(committed + amount), updated_at=uow.now()
    )


def release(uow: UnitOfWork, owner: str, *, reason: str = "released") -> ResourceVector:
    """Give back what ``owner`` still holds and drop its reservation; idempotent (ZERO if none)."""
    principal = access.principal_of(uow)
    _check_owner(owner)
    reservation = _lock_reservation(uow, owner)
    if reservation is None:
        return ZERO
    key = _key_of_node(uow, reservation.node_id)
    access.authorize_read(principal, key)
    held = vector(reservation.amounts)
    if held:
        chain = load_chain(uow, key, lock=True)
        nodes = chain.nodes()
        apply_changes(uow, chain, apply_release(nodes, held), reserved=nodes[0].reserved - held)
    _drop_reservation(uow, reservation)
    _audit(uow, "quota.release", key, owner=owner, released=dict(held), reason=reason)
    return held


def release_used(uow: UnitOfWork, key: NodeKey, amount: Mapping[str, int], *, reason: str) -> QuotaNode:
    """Resources counted as used at ``key`` were deleted: give ``amount`` back up the chain."""
    access.authorize_read(access.principal_of(uow), key)
    freed = checked_vector("amount", amount)
    chain = load_chain(uow, key, lock=True)
    nodes = chain.nodes()
    if not freed.fits_within(nodes[0].used):
        raise ValidationFailed(f"cannot free {dict(freed)}: {key} uses {dict(nodes[0].used)}", field="amount")
    before = snapshot(chain.leaf)
    apply_changes(uow, chain, apply_release(nodes, freed), used=nodes[0].used - freed)
    _audit(uow, "quota.release-used", key, before=before, after=snapshot(chain.leaf), reason=reason)
    return chain.leaf


def set_used(uow: UnitOfWork, key: NodeKey, used: Mapping[str, int], *, reason: str) -> QuotaNode:
    """Make ``key``'s used what was measured (complete: missing resources are 0), regardless
    of limits; nodes that end over a limit are marked and admit no more of it until back under."""
    access.authorize_set_limit(access.principal_of(uow), key.tenant)
    measured = checked_vector("used", used)
    chain = load_chain(uow, key, lock=True)
    nodes = chain.nodes()
    forced = sync_used(nodes, measured)
    before = snapshot(chain.leaf)
    apply_changes(uow, chain, forced.changes, used=measured)
    over = [f"{o.node}:{o.resource}" for o in forced.over_limit]
    _audit(uow, "quota.set-used", key, before=before, after=snapshot(chain.leaf), reason=reason, over_limit=over)
    return chain.leaf


# --- limits -------------------------------------------------------------------------------------


def _cap_by_parent(chain: Chain, limits: Mapping[str, Limit]) -> None:
    if len(chain.rows) < 2:
        return
    parent, parent_key = chain.rows[1], chain.keys[1]
    for resource, limit in sorted(limits.items()):
        parent_limit = parent.limits.get(resource)
        if parent_limit is not None and (limit is None or limit > parent_limit):
            raise LimitAboveParent(str(chain.key), resource, limit, str(parent_key), int(parent_limit))


def set_limits(
    uow: UnitOfWork,
    key: NodeKey,
    limits: Mapping[str, Limit],
    *,
    force: bool = False,
    source: LimitSource = LimitSource.OPERATOR,
) -> QuotaNode:
    """Change ``key``'s limits for the resources given (``None`` removes a limit).

    Below consumption needs ``force`` (the node is then marked over-limit); a slice that
    would take more than its ancestors can give is refused naming where, with the headroom.
    """
    principal = access.principal_of(uow)
    access.authorize_set_limit(principal, key.tenant)
    checked_limits(limits)
    chain = load_chain(uow, key, lock=True)
    if not access.is_top_setter(principal, key.tenant):
        _cap_by_parent(chain, limits)
    return _apply_limits(uow, chain, limits, force=force, source=source)


def _apply_limits(
    uow: UnitOfWork, chain: Chain, limits: Mapping[str, Limit], *, force: bool, source: LimitSource
) -> QuotaNode:
    outcome = check_set_limit(chain.nodes(), limits, force=force)
    if isinstance(outcome, Refused):
        raise refused(outcome, what=f"the new limits of {chain.key}")
    if isinstance(outcome, BelowConsumption):
        raise LimitBelowConsumption(str(outcome.node), outcome.resource, outcome.consumption, outcome.limit)
    before = snapshot(chain.leaf)
    apply_changes(uow, chain, outcome.changes, limits=outcome.limits, limits_source=source.value)
    over = [o.resource for o in outcome.over_limit]
    _audit(uow, "quota.set-limit", chain.key, before=before, after=snapshot(chain.leaf), force=force, over_limit=over)
    return chain.leaf


def set_region_limits(
    uow: UnitOfWork, region: str, limits: Mapping[str, Limit], *, source: LimitSource = LimitSource.MEASURED
) -> QuotaNode:
    """Capacity x overcommit of a region (measured by the provisioner, or from the site file).

    Always applied: capacity is a fact. A region below its consumption is marked over-limit.
    """
    access.authorize_set_limit(access.principal_of(uow), None)
    return apply_region_limits(uow, region, limits, source=source)


def apply_region_limits(uow: UnitOfWork, region: str, limits: Mapping[str, Limit], *, source: LimitSource) -> QuotaNode:
    """Unauthorised core of ``set_region_limits`` for trusted callers (seeding)."""
    chain = load_chain(uow, NodeKey.for_region(region), lock=True)
    complete = {r: None for r in chain.leaf.limits} | dict(limits)
    return _apply_limits(uow, chain, complete, force=True, source=source)


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    fits: bool
    refusal: Refused | None
    chain: Chain


def dry_run(uow: UnitOfWork, key: NodeKey, delta: Mapping[str, int]) -> DryRun:
    """Would ``delta`` fit at ``key`` now, and if not, where does it stop and by how much."""
    access.authorize_read(access.principal_of(uow), key)
    wanted = checked_vector("delta", delta)
    chain = load_chain(uow, key, lock=False)
    outcome = admit(chain.nodes(), wanted)
    refusal = outcome if isinstance(outcome, Refused) else None
    return DryRun(fits=refusal is None, refusal=refusal, chain=chain)


def read_chain(uow: UnitOfWork, key: NodeKey) -> Chain:
    access.authorize_read(access.principal_of(uow), key)
    return load_chain(uow, key, lock=False)
