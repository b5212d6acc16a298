"""Tenant status transitions: one table, read by the service, the API and the tests."""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.errors import InvalidTransition
from controlplane.tenants.models import TenantStatus

TRANSITIONS: Mapping[TenantStatus, frozenset[TenantStatus]] = {
    TenantStatus.ACTIVE: frozenset({TenantStatus.SUSPENDED, TenantStatus.RETIRED}),
    TenantStatus.SUSPENDED: frozenset({TenantStatus.ACTIVE, TenantStatus.RETIRED}),
    TenantStatus.RETIRED: frozenset(),
}


def transition(current: TenantStatus, target: TenantStatus) -> TenantStatus:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current.value, target.value, what="tenant")
    return target
