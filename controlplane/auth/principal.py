"""Who is asking, and which part of the tenant tree they may see.

The identity issue replaces `loopback_principal` with token/OIDC authentication and role
bindings; services already take a `Scope` so collection filtering is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scope:
    """Tenant subtrees visible to a principal; `None` means the whole tree."""

    roots: tuple[str, ...] | None = None

    def allows(self, path: str) -> bool:
        if self.roots is None:
            return True
        return any(path == root or path.startswith(root + ".") for root in self.roots)


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str = "user"
    scope: Scope = field(default_factory=Scope)


def loopback_principal() -> Principal:
    """Until authentication lands the API listens on loopback only and acts as this."""
    return Principal(name="loopback", kind="system")
