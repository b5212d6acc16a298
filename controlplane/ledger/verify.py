"""Checking the stored ledger against its definition, node by node.

For every node, consumption must equal own used + reserved + Σ slice children
max(limit, consumption) + Σ shared children consumption (``quotas.consumption_of``, over the
children's stored consumption, so each node is checked locally and the whole tree by
induction); reserved must equal the sum of its reservations; and a consumption above a limit
is an oversubscription unless a forced change marked the node over-limit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from controlplane.ledger.chain import as_json, node_key, over_limit, vector
from controlplane.ledger.models import QuotaNode, Reservation
from controlplane.tenants.models import Tenant
from quotas import NodeKey, NodeMode, ResourceVector, consumption_of


@dataclass(frozen=True)
class LedgerProblem:
    node: str
    kind: str  # consumption | reserved | over-limit-flag | oversubscribed
    stored: dict[str, Any]
    expected: dict[str, Any]


@dataclass
class LedgerCheck:
    nodes: int = 0
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def oversubscribed(self) -> list[LedgerProblem]:
        return [p for p in self.problems if p.kind == "oversubscribed"]


def _parent_key(key: NodeKey) -> NodeKey | None:
    if key.is_region:
        return None
    assert key.tenant is not None
    if "." not in key.tenant:
        return NodeKey.for_region(key.region)
    return NodeKey(key.tenant.rsplit(".", 1)[0], key.cloud, key.region)


def check_ledger(session: Session) -> LedgerCheck:
    rows = session.execute(select(QuotaNode, Tenant.path).outerjoin(Tenant, col(Tenant.id) == col(QuotaNode.tenant_id)))
    nodes: dict[NodeKey, QuotaNode] = {}
    ids: dict[uuid.UUID, NodeKey] = {}
    for row, path in rows:
        key = node_key(row, path)
        nodes[key], ids[row.id] = row, key
    held: dict[NodeKey, ResourceVector] = defaultdict(ResourceVector)
    for node_id, amounts in session.execute(select(Reservation.node_id, Reservation.amounts)):
        held[ids[node_id]] = held[ids[node_id]] + vector(amounts)
    slices: dict[NodeKey, list[tuple[dict[str, Any], ResourceVector]]] = defaultdict(list)
    shared: dict[NodeKey, list[ResourceVector]] = defaultdict(list)
    result = LedgerCheck(nodes=len(nodes))
    for key, row in nodes.items():
        parent = _parent_key(key)
        if parent is None:
            continue
        if parent not in nodes:
            result.problems.append(LedgerProblem(str(key), "orphan", {}, {"parent": str(parent)}))
        elif row.mode == NodeMode.SLICE:
            slices[parent].append((dict(row.limits), vector(row.consumption)))
        else:
            shared[parent].append(vector(row.consumption))
    for key in sorted(nodes, key=str):
        result.problems += _node_problems(key, nodes[key], held[key], slices[key], shared[key])
    return result


def _node_problems(
    key: NodeKey,
    row: QuotaNode,
    held: ResourceVector,
    slices: list[tuple[dict[str, Any], ResourceVector]],
    shared: list[ResourceVector],
) -> list[LedgerProblem]:
    problems = []
    stored = vector(row.consumption)
    expected = consumption_of(vector(row.used) + vector(row.reserved), slices, shared)
    if stored != expected:
        problems.append(LedgerProblem(str(key), "consumption", as_json(stored), as_json(expected)))
    if vector(row.reserved) != held:
        problems.append(LedgerProblem(str(key), "reserved", dict(row.reserved), as_json(held)))
    over = over_limit(row.limits, expected)
    if sorted(row.over_limit) != over:
        problems.append(
            LedgerProblem(str(key), "over-limit-flag", {"over_limit": list(row.over_limit)}, {"over_limit": over})
        )
    for resource in over:
        if resource not in row.over_limit:
            stored_amount = {resource: expected.get(resource, 0)}
            problems.append(LedgerProblem(str(key), "oversubscribed", stored_amount, {resource: row.limits[resource]}))
    return problems
