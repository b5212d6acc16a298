"""Who may read and change which ledger nodes.

Reading needs ``quotas.read`` over the node's tenant (region nodes: at the root of the tree).
Setting limits: operators for the province, departments and cities (``quotas.set-limit-top``);
below that, operators or a tenant-admin holding the role *strictly above* the node (a city's
tenant-admin for its counties), who may never give a node more than its parent holds.
"""

from __future__ import annotations

from controlplane.auth.models import Role
from controlplane.auth.policy import authorize, can, holds
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Forbidden, Unauthenticated
from quotas import NodeKey

WHAT = "quota node"


def principal_of(uow: UnitOfWork) -> Principal:
    principal = uow.principal
    if not isinstance(principal, Principal):
        raise Unauthenticated("the ledger needs an authenticated principal")
    return principal


def authorize_read(principal: Principal, key: NodeKey) -> None:
    authorize(principal, "quotas.read", key.tenant, what=WHAT)


def is_top_setter(principal: Principal, path: str | None) -> bool:
    return can(principal, "quotas.set-limit-top", path)


def authorize_set_limit(principal: Principal, path: str | None) -> None:
    """Raise NotFound/Forbidden unless ``principal`` may set limits of the node at ``path``."""
    authorize(principal, "quotas.read", path, what=WHAT)
    if path is None or path.count(".") <= 1:  # region, province, departments and cities
        authorize(principal, "quotas.set-limit-top", path, what=WHAT)
        return
    if is_top_setter(principal, path):
        return
    parent = path.rsplit(".", 1)[0]
    if can(principal, "quotas.set-limit", path) and holds(principal, Role.TENANT_ADMIN, parent):
        return
    raise Forbidden(
        "limits below a city or department are set by operators or by a tenant-admin of a tenant above the node",
        permission="quotas.set-limit",
    )


def authorize_report(principal: Principal, path: str | None) -> None:
    authorize(principal, "quotas.report", path, what=WHAT)


def can_see(principal: Principal, key: NodeKey) -> bool:
    """Tenant nodes inside the caller's scope; region nodes for those who see the whole tree."""
    roots = principal.scope.roots
    if key.tenant is None:
        return roots is None or any("." not in root for root in roots)
    return principal.scope.allows(key.tenant)
