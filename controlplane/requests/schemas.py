"""Request and information-system API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane.requests.models import ApprovalStep, InformationSystem, Request, RequestTransition
from controlplane.requests.specs import Spec
from controlplane.requests.states import RequestState, allowed_verbs
from controlplane.tenants.schemas import TenantPath

Code = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DeclarationItem(_In):
    name: Annotated[str, Field(max_length=200)] = ""
    sharing: Annotated[str, Field(max_length=20)] = ""
    catalogue_ref: Annotated[str, Field(max_length=100)] = ""
    legal_basis: Annotated[str, Field(max_length=500)] = ""
    owner: Annotated[str, Field(max_length=400)] = ""


class Declaration(_In):
    items: Annotated[list[DeclarationItem], Field(max_length=200)] = Field(default_factory=list)


class SystemCreate(_In):
    tenant: TenantPath
    cloud: Code
    name: Annotated[str, Field(min_length=1, max_length=100)]
    mlps_level: Annotated[int, Field(ge=2, le=4)]
    filing_ref: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="等保备案号; required for level 3/4"
    )
    declaration: Declaration | None = None
    dr_required: bool = False


class NewSystem(_In):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    mlps_level: Annotated[int, Field(ge=2, le=4)]
    filing_ref: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    dr_required: bool = False


class RequestCreate(_In):
    tenant: TenantPath
    cloud: Code
    region: Code
    system: uuid.UUID | None = Field(default=None, description="An existing information system")
    new_system: NewSystem | None = Field(default=None, description="Or propose a new one with this request")
    spec: Spec
    declaration: Declaration | None = None
    title: Annotated[str, Field(max_length=200)] | None = None


class RequestUpdate(_In):
    spec: Spec | None = None
    declaration: Declaration | None = None
    title: Annotated[str, Field(max_length=200)] | None = None


class VerbBody(_In):
    reason: Reason | None = None


class SystemPublic(BaseModel):
    id: uuid.UUID
    tenant: str
    cloud: str
    name: str
    mlps_level: int
    filing_ref: str | None
    declaration: dict[str, Any] | None
    dr_required: bool
    status: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: InformationSystem, path: str) -> SystemPublic:
        return cls(
            id=row.id,
            tenant=path,
            cloud=row.cloud,
            name=row.name,
            mlps_level=row.mlps_level,
            filing_ref=row.filing_ref,
            declaration=row.declaration,
            dr_required=row.dr_required,
            status=row.status,
            created_at=row.created_at,
        )


class StepPublic(BaseModel):
    round: int
    order: int
    group: str
    role: str
    node: str
    decision: str
    actor: str | None
    reason: str | None
    decided_at: datetime | None

    @classmethod
    def from_row(cls, row: ApprovalStep) -> StepPublic:
        return cls(
            round=row.round,
            order=row.order,
            group=row.group,
            role=row.role,
            node=row.node_path,
            decision=row.decision,
            actor=row.actor,
            reason=row.reason,
            decided_at=row.decided_at,
        )


class TransitionPublic(BaseModel):
    from_state: str
    to_state: str
    actor: str
    reason: str | None
    at: datetime

    @classmethod
    def from_row(cls, row: RequestTransition) -> TransitionPublic:
        return cls(from_state=row.from_state, to_state=row.to_state, actor=row.actor, reason=row.reason, at=row.at)


class RequestPublic(BaseModel):
    id: uuid.UUID
    tenant: str
    system: uuid.UUID
    kind: str
    cloud: str
    region: str
    spec: dict[str, Any]
    delta: dict[str, int]
    declaration: dict[str, Any] | None
    state: RequestState
    verbs: list[str]
    round: int
    title: str | None
    duplicate_of: uuid.UUID | None
    auto_rule: str | None
    operation: uuid.UUID | None
    target: uuid.UUID | None = Field(default=None, description="The request a volume backup or deletion acts on")
    last_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    version: int
    steps: list[StepPublic] = Field(default_factory=list)
    transitions: list[TransitionPublic] = Field(default_factory=list)

    @classmethod
    def from_row(
        cls,
        row: Request,
        path: str,
        *,
        steps: list[ApprovalStep] | None = None,
        transitions: list[RequestTransition] | None = None,
    ) -> RequestPublic:
        state = RequestState(row.state)
        return cls(
            id=row.id,
            tenant=path,
            system=row.system_id,
            kind=row.kind,
            cloud=row.cloud,
            region=row.region,
            spec=row.spec,
            delta=row.delta,
            declaration=row.declaration,
            state=state,
            verbs=allowed_verbs(state),
            round=row.round,
            title=row.title,
            duplicate_of=row.duplicate_of,
            auto_rule=row.auto_rule,
            operation=row.operation_id,
            target=row.target_id,
            last_reason=row.last_reason,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
            steps=[StepPublic.from_row(s) for s in steps or []],
            transitions=[TransitionPublic.from_row(t) for t in transitions or []],
        )
