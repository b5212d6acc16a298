"""Authorisation in one place: which roles allow which permission, over which subtree.

Services call `authorize(principal, permission, path)` before touching an object. A caller
that holds no role over `path` gets NotFound (the object's existence is not confirmed);
one who can see it but lacks the permission gets Forbidden. Collections filter with
`principal.scope` (every subtree the caller holds any role over).
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.auth.models import Role
from controlplane.auth.principal import Principal
from controlplane.errors import Forbidden, NotFound

ALL_ROLES = frozenset(Role)
ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.OPERATOR})

# permission -> roles that grant it (over the subtree the role is bound to)
PERMISSIONS: Mapping[str, frozenset[Role]] = {
    "tenants.read": ALL_ROLES,
    "tenants.create": ADMINS | {Role.TENANT_ADMIN},
    "tenants.update": ADMINS | {Role.TENANT_ADMIN},
    "tenants.status": ADMINS,
    "catalogue.read": ALL_ROLES,
    "catalogue.write": ADMINS,
    "operations.read": ALL_ROLES,
    "system.selftest": ADMINS,
    "bindings.read": ADMINS | {Role.TENANT_ADMIN, Role.AUDITOR, Role.SECURITY_OFFICER},
    "bindings.manage": frozenset({Role.PLATFORM_ADMIN, Role.TENANT_ADMIN}),
    "tokens.manage-others": frozenset({Role.PLATFORM_ADMIN}),
    "audit.read": frozenset({Role.PLATFORM_ADMIN, Role.AUDITOR}),
    # information systems and requests
    "requests.read": ALL_ROLES,
    "requests.create": ADMINS | {Role.TENANT_ADMIN, Role.TENANT_MEMBER},
    "requests.retry-errored": ADMINS,
    # remote backup (DR)
    "backup.read": ALL_ROLES,
    "backup.operate": ADMINS | {Role.TENANT_ADMIN},
    # quota ledger
    "quotas.read": ALL_ROLES,
    "quotas.set-limit": ADMINS | {Role.TENANT_ADMIN},
    "quotas.set-limit-top": ADMINS,  # departments, cities and the province itself
    "quotas.report": ADMINS | {Role.AUDITOR},
}


def within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + ".")


# A role also confers the roles it implies (a tenant-admin is also a tenant-member there).
IMPLIES: Mapping[Role, frozenset[Role]] = {
    Role.PLATFORM_ADMIN: ALL_ROLES,
    Role.TENANT_ADMIN: frozenset({Role.TENANT_ADMIN, Role.TENANT_MEMBER}),
}


def holds(principal: Principal, role: Role, path: str) -> bool:
    """`principal` holds `role` over `path`: bound at it or above, directly or by implication."""
    return any(
        within(path, bound) and role in IMPLIES.get(Role(r), frozenset({Role(r)})) for r, bound in principal.bindings
    )


def can(principal: Principal, permission: str, path: str | None) -> bool:
    """`path=None` means a global object (catalogue, system): judged at the root of the tree."""
    roles = PERMISSIONS[permission]
    return any(
        Role(r) in roles and ((path is None and "." not in bound) or (path is not None and within(path, bound)))
        for r, bound in principal.bindings
    )


def authorize(principal: Principal, permission: str, path: str | None, *, what: str = "object") -> None:
    """Raise NotFound if the caller cannot see `path` at all, Forbidden if it may not do this."""
    if path is not None and not principal.scope.allows(path):
        raise NotFound(f"{what} not found")
    if not can(principal, permission, path):
        raise Forbidden(f"your roles do not allow '{permission}' here", permission=permission)
