"""PostgreSQL fast path for a new reservation: one statement locks, checks and writes.

Why: every admission in a region ends at the same few rows (region, province, city). The
general path (``service.reserve``) locks the chain, then computes in Python and writes in
three more round trips, so the hot rows stay locked across four client wake-ups; with 32
client processes on two cores the lock holder is mostly waiting for a CPU and throughput
*fell* as clients were added (102/s with 32 clients against 136/s for one).

Here the arithmetic is still ``quotas.admit`` (pure, property-tested), run on an unlocked
read of the chain. What it concluded is then applied by ONE statement that is only valid
while its premises hold, and the statement checks them itself under the row locks:

* every node whose consumption grows is locked (``FOR UPDATE``, leaf first, the same
  order as ``chain.load_chain``) and re-checked against its *current* limit and
  consumption: ``consumption + delta <= limit`` for each resource that grows;
* a slice child's carry upward, max(L, c+δ) - max(L, c), is, for an admitted increase
  (c+δ <= L), 0 where it has a limit L and δ where it has none: whether it has one must
  still be as read;
* the leaf's allocation must still be active;
* the reservation's owner must be new: none in the statement's snapshot, checked before any
  row is locked (an existing one goes the general path, which locks the reservation before
  the chain), and ``ON CONFLICT DO NOTHING`` for one inserted meanwhile.

Only if all hold is the reservation inserted, and each node's consumption (and the leaf's
reserved) is *added to* in place, so concurrent admissions on shared ancestors compose
without re-reading. If any premise fails nothing is written and the caller falls back to
the general path, which locks first and gives the exact refusal. The statement's row locks
are held from its execution to the unit's commit, one client round trip instead of four.

Nodes above a zero carry (a slice child staying inside its slice) are neither locked nor
written, as in the general path's arithmetic.
"""

# ruff: noqa: S608 -- the SQL is built from node indices and resource names that match _NAME
# (checked in try_reserve before any statement is built); every value is a bound parameter.
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from controlplane.db.uow import UnitOfWork
from controlplane.ledger.chain import Chain, as_json
from controlplane.ledger.models import AllocationStatus, Reservation
from quotas import Admitted, LedgerNode, NodeMode, ResourceVector

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# (is leaf, is a slice child (its carry depends on which limits it has), resources that grow)
_Shape = tuple[tuple[bool, bool, tuple[str, ...]], ...]


def _num(column: str, resource: str) -> str:
    return f"COALESCE((q.{column} ->> '{resource}')::bigint, 0)"


def _guard(index: int, leaf: bool, pinned: bool, resources: tuple[str, ...]) -> str:
    terms = [
        f"(NOT (q.limits ? '{r}') OR {_num('consumption', r)} + :d{index}_{r} <= (q.limits ->> '{r}')::bigint)"
        for r in resources
    ]
    if pinned:  # a slice child's carry: δ where it has no limit of its own, else 0
        terms += [f"(q.limits ? '{r}') = :l{index}_{r}" for r in resources]
    if leaf:
        terms.append(
            "EXISTS (SELECT 1 FROM allocations a WHERE a.id = q.allocation_id"
            f" AND a.status = '{AllocationStatus.ACTIVE.value}')"
        )
    return " AND ".join(terms)


def _added(column: str, index: int, resources: tuple[str, ...]) -> str:
    pairs = ", ".join(f"'{r}', {_num(column, r)} + :d{index}_{r}" for r in resources)
    return f"q.{column} || jsonb_build_object({pairs})"


# An owner that exists (even one being released right now) takes the general path, which
# locks the reservation before the chain. Checked before any row is locked: the general path
# runs in the same transaction afterwards, and locks kept from here would invert its order.
_OWNED = "SELECT 1 FROM quota_reservations r WHERE r.owner = CAST(:owner AS varchar)"


@lru_cache(maxsize=256)
def _statement(shape: _Shape) -> TextClause:
    """Built once per shape; resource names come from ``checked_vector`` (a-z, 0-9, _)."""
    cases = " ".join(f"WHEN :n{i} THEN ({_guard(i, *node)})" for i, node in enumerate(shape))
    ids = ", ".join(f":n{i}" for i in range(len(shape)))
    parts = [
        f"lk AS (SELECT q.id, CASE q.id {cases} END AS ok FROM quota_nodes q"
        f" WHERE q.id IN ({ids}) AND NOT EXISTS ({_OWNED}) ORDER BY q.depth DESC FOR UPDATE OF q)",
        "ins AS (INSERT INTO quota_reservations"
        " (id, owner, node_id, amounts, committed, expires_at, created_by, created_at, updated_at)"
        " SELECT :rid, CAST(:owner AS varchar), :n0, CAST(:amounts AS jsonb), CAST('{}' AS jsonb),"
        " CAST(:expires_at AS timestamptz), CAST(:created_by AS varchar), :now, :now"
        f" WHERE (SELECT count(*) = {len(shape)} AND bool_and(ok) FROM lk)"
        " ON CONFLICT (owner) DO NOTHING RETURNING id)",
    ]
    for i, (leaf, _, resources) in enumerate(shape):
        sets = [f"consumption = {_added('consumption', i, resources)}", "updated_at = :now"]
        if leaf:
            sets.append(f"reserved = {_added('reserved', i, resources)}")
        parts.append(
            f"u{i} AS (UPDATE quota_nodes q SET {', '.join(sets)}"
            f" WHERE q.id = :n{i} AND EXISTS (SELECT 1 FROM ins) RETURNING q.id)"
        )
    counted = " + ".join(f"(SELECT count(*) FROM u{i})" for i in range(len(shape)))
    return text(f"WITH {', '.join(parts)} SELECT (SELECT id FROM ins) AS id, {counted} AS written")


def try_reserve(
    uow: UnitOfWork,
    chain: Chain,
    nodes: Sequence[LedgerNode],
    outcome: Admitted,
    *,
    owner: str,
    delta: ResourceVector,
    created_by: str,
    expires_at: datetime | None,
) -> Reservation | None:
    """Apply ``outcome`` (computed from the unlocked ``chain``) if its premises still hold.

    None: nothing was written; the caller takes the general path."""
    shape: list[tuple[bool, bool, tuple[str, ...]]] = []
    params: dict[str, Any] = {}
    for i, (row, node) in enumerate(zip(chain.rows, nodes, strict=True)):
        change = outcome.changes.get(node.key)
        grows = tuple(sorted(r for r, a in (change or {}).items() if a > 0))
        if not grows:
            break  # nothing carried further up: the nodes above are left alone
        if any(a < 0 for a in (change or {}).values()):
            return None
        pinned = node.mode is NodeMode.SLICE
        shape.append((i == 0, pinned, grows))
        params[f"n{i}"] = row.id
        for r in grows:
            params[f"d{i}_{r}"] = int(change[r])  # type: ignore[index]
            if pinned:
                params[f"l{i}_{r}"] = node.limit(r) is not None
    if not all(_NAME.match(r) for _, _, grows in shape for r in grows):
        return None
    if not shape or not shape[0][0] or set(shape[0][2]) != {r for r, a in delta.items() if a}:
        return None  # a zero delta, or one the leaf does not simply add: the general path
    now = uow.now()
    reservation = Reservation(
        id=uuid.uuid4(),
        owner=owner,
        node_id=chain.leaf.id,
        amounts=as_json(delta),
        committed={},
        expires_at=expires_at,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    params |= {
        "rid": reservation.id,
        "owner": owner,
        "amounts": json.dumps(reservation.amounts),
        "expires_at": expires_at,
        "created_by": created_by,
        "now": now,
    }
    result = uow.session.execute(_statement(tuple(shape)), params).one()
    if result.id is None:
        return None
    if result.written != len(shape):  # cannot happen while the rows are locked; never commit half
        raise RuntimeError(f"ledger fast path wrote {result.written} of {len(shape)} nodes")
    for loaded in chain.rows:  # read before the statement: reload on next access
        uow.session.expire(loaded)
    return reservation


# --- commit: reserved -> used at the leaf -------------------------------------------------------

_READ_RESERVATION = text(
    "SELECT r.id, r.owner, r.node_id, r.amounts, r.committed, r.expires_at, r.created_by, r.created_at,"
    " r.updated_at, q.cloud, q.region, t.path FROM quota_reservations r"
    " JOIN quota_nodes q ON q.id = r.node_id LEFT JOIN tenants t ON t.id = q.tenant_id"
    " WHERE r.owner = CAST(:owner AS varchar)"
)


def read_reservation(uow: UnitOfWork, owner: str) -> Any | None:
    """The reservation's columns and its node's cloud, region and tenant path, as committed; no lock."""
    return uow.session.execute(_READ_RESERVATION, {"owner": owner}).first()


def _sparse(expression: str) -> str:
    """Zero entries dropped, as ``chain.as_json`` stores vectors."""
    return (
        f"(SELECT COALESCE(jsonb_object_agg(e.key, e.value), '{{}}')"
        f" FROM jsonb_each({expression}) e WHERE e.value <> '0')"
    )


@lru_cache(maxsize=64)
def _commit_statement(resources: tuple[str, ...]) -> TextClause:
    used = ", ".join(f"'{r}', {_num('used', r)} + :a_{r}" for r in resources)
    reserved = ", ".join(f"'{r}', {_num('reserved', r)} - :a_{r}" for r in resources)
    enough = " AND ".join(f"{_num('reserved', r)} >= :a_{r}" for r in resources)
    return text(
        "WITH r AS (UPDATE quota_reservations SET amounts = CAST(:left AS jsonb),"
        " committed = CAST(:committed AS jsonb), updated_at = :now"
        " WHERE owner = CAST(:owner AS varchar) AND node_id = :node"
        " AND amounts = CAST(:held AS jsonb) AND committed = CAST(:before AS jsonb) RETURNING id),"
        f" u AS (UPDATE quota_nodes q SET used = q.used || jsonb_build_object({used}),"
        f" reserved = {_sparse(f'q.reserved || jsonb_build_object({reserved})')}, updated_at = :now"
        f" WHERE q.id = :node AND {enough} AND EXISTS (SELECT 1 FROM r) RETURNING q.id)"
        " SELECT (SELECT count(*) FROM r) AS reservations, (SELECT count(*) FROM u) AS nodes"
    )


def try_commit(
    uow: UnitOfWork,
    owner: str,
    node_id: object,
    held: ResourceVector,
    committed: ResourceVector,
    amount: ResourceVector,
) -> bool:
    """Move ``amount`` of ``owner``'s reservation to used in one statement, locking the
    reservation and then the leaf (the general path's order), if the reservation still holds
    what was read. False: nothing was written; the caller takes the general path."""
    resources = tuple(sorted(r for r, a in amount.items() if a))
    if not resources or any(amount[r] < 0 for r in resources) or not all(_NAME.match(r) for r in resources):
        return False
    params: dict[str, Any] = {f"a_{r}": int(amount[r]) for r in resources}
    params |= {
        "owner": owner,
        "node": node_id,
        "held": json.dumps(as_json(held)),
        "before": json.dumps(as_json(committed)),
        "left": json.dumps(as_json(held - amount)),
        "committed": json.dumps(as_json(committed + amount)),
        "now": uow.now(),
    }
    result = uow.session.execute(_commit_statement(resources), params).one()
    if result.reservations == 0:
        return False
    if result.nodes != 1:  # the leaf holds less in reserve than its reservations: never half-commit
        raise RuntimeError(f"ledger fast path: the leaf of '{owner}' holds less in reserve than it commits")
    return True
