"""Who is asking, and which part of the tenant tree they may see."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scope:
    """Tenant subtrees visible to a principal; `None` means the whole tree (system use only)."""

    roots: tuple[str, ...] | None = None

    def allows(self, path: str) -> bool:
        if self.roots is None:
            return True
        return any(path == root or path.startswith(root + ".") for root in self.roots)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its subject name and its (role, tenant path) bindings."""

    name: str
    kind: str = "user"
    bindings: tuple[tuple[str, str], ...] = ()
    token_id: str | None = None
    via: str = "token"  # token | oidc | system
    scope: Scope = field(default_factory=Scope)

    @classmethod
    def with_bindings(cls, name: str, bindings: tuple[tuple[str, str], ...], **kwargs: object) -> Principal:
        roots = _minimal_roots(path for _, path in bindings)
        return cls(name=name, bindings=bindings, scope=Scope(roots), **kwargs)


def _minimal_roots(paths: object) -> tuple[str, ...]:
    unique = sorted(set(paths))
    roots: list[str] = []
    for path in unique:
        if not any(path == r or path.startswith(r + ".") for r in roots):
            roots.append(path)
    return tuple(roots)


def system_principal(name: str = "system") -> Principal:
    """For the CLI and workers acting on the operator's behalf: sees the whole tree."""
    return Principal(name=name, kind="system", via="system", bindings=(("platform-admin", "hubei"),), scope=Scope(None))
