"""API shapes of policies, runs, drills and compliance. The repository password never leaves
the worker; manifests and drill checksums are summarised, not dumped."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane.backup.models import BackupDrill, BackupPolicy, BackupRun


class PolicyPublic(BaseModel):
    id: uuid.UUID
    tenant: str
    slug: str
    system_id: uuid.UUID
    request_id: uuid.UUID | None
    source_kind: str
    source_paths: list[str]
    source_vm: str | None
    schedule: str
    drill_schedule: str
    rpo_target_s: int
    retention: dict[str, int]
    source_region: str
    target_region: str
    repository_url: str
    state: str
    next_due_at: datetime | None
    drill_next_due_at: datetime | None
    drill_deferred_reason: str | None = Field(
        description="Why the due drill waits (no verified recovery point yet); null when it does not"
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: BackupPolicy, path: str) -> PolicyPublic:
        data = {k: getattr(row, k) for k in cls.model_fields if k != "tenant"}
        return cls(tenant=path, **data)


class RunPublic(BaseModel):
    id: uuid.UUID
    policy_id: uuid.UUID
    tenant: str
    state: str
    trigger: str
    scheduled_for: datetime
    started_at: datetime | None
    uploaded_at: datetime | None
    finished_at: datetime | None
    bytes_uploaded: int
    files_new: int
    files_changed: int
    snapshot_id: str | None
    snapshot_time: datetime | None
    reason: str | None
    progress: dict[str, Any]
    manifest: dict[str, Any] | None = Field(description="files, bytes, sampled SHA-256 count, verification")

    @classmethod
    def from_row(cls, row: BackupRun, path: str) -> RunPublic:
        data = {k: getattr(row, k) for k in cls.model_fields if k not in ("tenant", "manifest")}
        manifest = None
        if row.manifest:
            manifest = {
                "files": row.manifest.get("files"),
                "bytes": row.manifest.get("bytes"),
                "sampled_sha256": len(row.manifest.get("sampled_sha256") or {}),
                "verification": row.manifest.get("verification"),
            }
        return cls(tenant=path, manifest=manifest, **data)


class DrillPublic(BaseModel):
    id: uuid.UUID
    policy_id: uuid.UUID
    run_id: uuid.UUID | None
    tenant: str
    purpose: str
    trigger: str
    state: str
    snapshot_id: str | None
    target: str | None
    scheduled_for: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rto_s: float | None
    reason: str | None
    evidence: dict[str, Any]

    @classmethod
    def from_row(cls, row: BackupDrill, path: str) -> DrillPublic:
        data = {k: getattr(row, k) for k in cls.model_fields if k not in ("tenant", "evidence")}
        evidence = {k: v for k, v in row.evidence.items() if k != "checksums"}
        evidence["checksums"] = len(row.evidence.get("checksums") or {})
        return cls(tenant=path, evidence=evidence, **data)


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=63, description="New directory in the tenant's restore area")]


class TenantCompliance(BaseModel):
    tenant: str
    policies: int
    compliant: int
    worst_rpo_s: float | None = Field(description="Largest achieved RPO; null when a policy has no verified point")
    non_compliant: list[str]
