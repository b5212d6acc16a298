"""Typed refusals.

The ledger functions *return* refusals (frozen dataclasses) rather than raising, so
callers can branch on them without try/except; ``as_error()`` turns one into the
matching exception for code paths that prefer to raise.  Exceptions keep their
fields in ``args`` so they survive pickling (task queues pickle exceptions).
"""

from __future__ import annotations

from dataclasses import dataclass

from quotas.nodes import NodeKey


class QuotaError(Exception):
    """Base class of quota refusals."""


class QuotaExceeded(QuotaError):
    """A node on the chain would exceed its limit."""

    def __init__(self, node: NodeKey, resource: str, requested: int, headroom: int) -> None:
        super().__init__(node, resource, requested, headroom)
        self.node = node
        self.resource = resource
        self.requested = requested
        self.headroom = headroom

    def __str__(self) -> str:
        return f"quota exceeded at {self.node}: {self.resource} requested {self.requested}, headroom {self.headroom}"


class LimitBelowConsumption(QuotaError):
    """A limit was lowered below the node's consumption without ``force``."""

    def __init__(self, node: NodeKey, resource: str, consumption: int, limit: int) -> None:
        super().__init__(node, resource, consumption, limit)
        self.node = node
        self.resource = resource
        self.consumption = consumption
        self.limit = limit

    def __str__(self) -> str:
        return (
            f"limit {self.limit} for {self.resource} at {self.node} is below its consumption "
            f"{self.consumption} (use force to set it anyway)"
        )


@dataclass(frozen=True)
class Refused:
    """Refused at ``node``: ``requested`` more of ``resource`` there, only ``headroom`` left."""

    node: NodeKey
    resource: str
    requested: int
    headroom: int

    def as_error(self) -> QuotaExceeded:
        return QuotaExceeded(self.node, self.resource, self.requested, self.headroom)


@dataclass(frozen=True)
class BelowConsumption:
    """Setting ``limit`` for ``resource`` at ``node`` would put it under its ``consumption``."""

    node: NodeKey
    resource: str
    consumption: int
    limit: int

    def as_error(self) -> LimitBelowConsumption:
        return LimitBelowConsumption(self.node, self.resource, self.consumption, self.limit)
