"""Quota refusals as domain errors (the problem mapping handles them by their base class)."""

from __future__ import annotations

from controlplane.errors import Conflict


class QuotaRefused(Conflict):
    """``node`` has only ``headroom`` of ``resource`` left where ``requested`` more was asked."""

    slug = "quota-exceeded"
    title = "Quota exceeded"

    def __init__(self, node: str, resource: str, requested: int, headroom: int, *, what: str = "the request") -> None:
        super().__init__(
            f"{what} does not fit at {node}: {resource} needs {requested} more, headroom is {headroom}",
            node=node,
            resource=resource,
            requested=requested,
            headroom=headroom,
            shortfall=max(0, requested - headroom),
        )


class AllocationMissing(Conflict):
    """A request or allocation names a ledger node that does not exist (yet)."""

    slug = "allocation-missing"
    title = "No allocation for this tenant, themed cloud and region"

    def __init__(self, node: str, detail: str | None = None, **fields: object) -> None:
        super().__init__(detail or f"no allocation exists for {node}", node=node, **fields)


class LimitBelowConsumption(Conflict):
    slug = "limit-below-consumption"
    title = "Limit below current consumption"

    def __init__(self, node: str, resource: str, consumption: int, limit: int) -> None:
        super().__init__(
            f"limit {limit} for {resource} at {node} is below its consumption {consumption}; "
            "set force=true to apply it anyway (the node then admits nothing more of it until back under)",
            node=node,
            resource=resource,
            consumption=consumption,
            limit=limit,
            field=f"limits.{resource}",
        )


class LimitAboveParent(Conflict):
    """A tenant-admin tried to give a node more than its parent itself may consume."""

    slug = "limit-above-parent"
    title = "Limit above what the parent holds"

    def __init__(self, node: str, resource: str, limit: int | None, parent: str, parent_limit: int) -> None:
        shown = "unlimited" if limit is None else str(limit)
        super().__init__(
            f"limit {shown} for {resource} at {node} exceeds what {parent} holds ({parent_limit})",
            node=node,
            resource=resource,
            limit=limit,
            parent=parent,
            parent_limit=parent_limit,
            field=f"limits.{resource}",
        )


class ReservationMissing(Conflict):
    slug = "reservation-missing"
    title = "No such reservation"

    def __init__(self, owner: str) -> None:
        super().__init__(f"no reservation is held by '{owner}'", owner=owner)
