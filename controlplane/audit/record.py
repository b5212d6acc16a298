"""What a change says about itself; the audit chain (identity issue) persists these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AuditRecord:
    action: str  # e.g. "tenant.create"
    target_type: str
    target: str  # a path or code, never a secret
    tenant_path: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
