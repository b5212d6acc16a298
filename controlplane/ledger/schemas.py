"""Ledger API shapes: inputs validated at the edge (known resources, integer amounts within
bounds), outputs built from rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from controlplane.auth.principal import Principal
from controlplane.ledger import access
from controlplane.ledger.chain import Chain
from controlplane.ledger.models import Allocation, AllocationMode, AllocationStatus, QuotaNode, UsageReport
from controlplane.ledger.verify import LedgerCheck
from controlplane.site_config import RESOURCES
from quotas import NodeKey, Refused

MAX_AMOUNT = 10**12
"""No resource in any data centre comes near this; larger inputs are typos or attacks."""


def _known_resource(name: str) -> str:
    if name not in RESOURCES:
        raise ValueError(f"unknown resource '{name}'; known: {', '.join(RESOURCES)}")
    return name


Resource = Annotated[str, AfterValidator(_known_resource)]
Amount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsUpdate(_In):
    limits: Annotated[
        dict[Resource, Amount | None],
        Field(min_length=1, description="Per resource: the new limit, or null for unlimited; others are kept"),
    ]
    force: StrictBool = Field(default=False, description="Allow a limit below the node's current consumption")


class DryRunRequest(_In):
    delta: Annotated[dict[Resource, Amount], Field(min_length=1, description="Resources to add at the node")]


class Resolution(StrEnum):
    APPLY = "apply"
    DISMISS = "dismiss"


class ResolveRequest(_In):
    resolution: Resolution
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class NodePublic(BaseModel):
    """A ledger node. Ancestors outside the caller's scope show only their headroom."""

    node: str
    region: str
    cloud: str | None
    tenant: str | None
    mode: str
    visible: bool
    limits: dict[str, int] | None = None
    used: dict[str, int] | None = None
    reserved: dict[str, int] | None = None
    consumption: dict[str, int] | None = None
    headroom: dict[str, int]
    over_limit: list[str]
    limits_source: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: QuotaNode, key: NodeKey, *, visible: bool = True) -> NodePublic:
        headroom = {r: max(0, int(limit) - int(row.consumption.get(r, 0))) for r, limit in sorted(row.limits.items())}
        detail: dict[str, Any] = {}
        if visible:
            detail = {
                "limits": dict(row.limits),
                "used": dict(row.used),
                "reserved": dict(row.reserved),
                "consumption": dict(row.consumption),
                "limits_source": row.limits_source,
                "updated_at": row.updated_at,
            }
        return cls(
            node=str(key),
            region=key.region,
            cloud=key.cloud,
            tenant=key.tenant,
            mode=row.mode,
            visible=visible,
            headroom=headroom,
            over_limit=list(row.over_limit),
            **detail,
        )


def chain_public(chain: Chain, principal: Principal) -> list[NodePublic]:
    return [
        NodePublic.from_row(row, key, visible=i == 0 or access.can_see(principal, key))
        for i, (row, key) in enumerate(zip(chain.rows, chain.keys, strict=True))
    ]


class NodeView(BaseModel):
    node: NodePublic
    chain: list[NodePublic] = Field(description="The nodes above, parent first, up to the region")

    @classmethod
    def build(cls, chain: Chain, principal: Principal) -> NodeView:
        nodes = chain_public(chain, principal)
        return cls(node=nodes[0], chain=nodes[1:])


class RefusalPublic(BaseModel):
    node: str
    resource: str
    requested: int
    headroom: int
    shortfall: int

    @classmethod
    def from_refusal(cls, refusal: Refused) -> RefusalPublic:
        return cls(
            node=str(refusal.node),
            resource=refusal.resource,
            requested=refusal.requested,
            headroom=refusal.headroom,
            shortfall=max(0, refusal.requested - refusal.headroom),
        )


class DryRunPublic(BaseModel):
    fits: bool
    refused: RefusalPublic | None = Field(description="Where the delta stops (lowest node) and by how much")
    chain: list[NodePublic]


class AllocationPublic(BaseModel):
    id: uuid.UUID
    tenant: str
    cloud: str
    region: str
    node: str
    mode: AllocationMode
    direct_access: bool
    status: AllocationStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Allocation, path: str) -> AllocationPublic:
        return cls(
            id=row.id,
            tenant=path,
            cloud=row.cloud,
            region=row.region,
            node=str(NodeKey(path, row.cloud, row.region)),
            mode=AllocationMode(row.mode),
            direct_access=row.direct_access,
            status=AllocationStatus(row.status),
            status_reason=row.status_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class DriftPublic(BaseModel):
    """A backend's measurement that disagrees with the ledger's used (measured - used = drift)."""

    id: uuid.UUID
    kind: str = "usage-drift"
    allocation_id: uuid.UUID
    node: str
    source: str
    measured: dict[str, int]
    ledger_used: dict[str, int]
    drift: dict[str, int]
    status: str
    first_seen_at: datetime
    reported_at: datetime

    @classmethod
    def from_rows(cls, report: UsageReport, allocation: Allocation, path: str) -> DriftPublic:
        return cls(
            id=report.id,
            allocation_id=allocation.id,
            node=str(NodeKey(path, allocation.cloud, allocation.region)),
            source=report.source,
            measured=dict(report.measured),
            ledger_used=dict(report.ledger_used),
            drift=dict(report.drift),
            status=report.status,
            first_seen_at=report.first_seen_at,
            reported_at=report.reported_at,
        )


class LedgerProblemPublic(BaseModel):
    node: str
    kind: str
    stored: dict[str, Any]
    expected: dict[str, Any]


class LedgerCheckPublic(BaseModel):
    """The stored ledger against its definition (only for callers who see the whole tree)."""

    nodes_checked: int
    problems: list[LedgerProblemPublic]

    @classmethod
    def from_check(cls, check: LedgerCheck) -> LedgerCheckPublic:
        return cls(
            nodes_checked=check.nodes,
            problems=[LedgerProblemPublic(**p.__dict__) for p in check.problems],
        )


class InconsistencyReport(BaseModel):
    items: list[DriftPublic]
    next: str | None = None
    ledger: LedgerCheckPublic | None = None
