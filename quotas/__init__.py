"""Pure hierarchical quota arithmetic for the Chutian Cloud control plane.

No I/O and no framework: the persistence layer locks a chain (leaf -> ... -> province
-> region), loads its ``LedgerNode`` rows, calls one function here and writes back
the consumption changes it returns.
"""

from quotas.capacity import region_limits
from quotas.errors import (
    BelowConsumption,
    LimitBelowConsumption,
    QuotaError,
    QuotaExceeded,
    Refused,
)
from quotas.ledger import (
    Admitted,
    Changes,
    Forced,
    LimitSet,
    Overage,
    admit,
    apply_forced,
    apply_release,
    check_set_limit,
    commit,
    sync_used,
)
from quotas.nodes import (
    LedgerNode,
    NodeKey,
    NodeMode,
    carried,
    chain_keys,
    consumption_of,
    contribution,
    effective,
)
from quotas.vector import (
    BACKUP_GB,
    INSTANCES,
    K8S_CPU_M,
    K8S_MEMORY_MB,
    OBJECT_GB,
    RAM_MB,
    STANDARD_RESOURCES,
    UNLIMITED,
    VCPUS,
    VOLUME_GB,
    VOLUMES,
    ZERO,
    Limit,
    Limits,
    ResourceVector,
)

__all__ = [
    "BACKUP_GB",
    "INSTANCES",
    "K8S_CPU_M",
    "K8S_MEMORY_MB",
    "OBJECT_GB",
    "RAM_MB",
    "STANDARD_RESOURCES",
    "UNLIMITED",
    "VCPUS",
    "VOLUMES",
    "VOLUME_GB",
    "ZERO",
    "Admitted",
    "BelowConsumption",
    "Changes",
    "Forced",
    "LedgerNode",
    "Limit",
    "LimitBelowConsumption",
    "LimitSet",
    "Limits",
    "NodeKey",
    "NodeMode",
    "Overage",
    "QuotaError",
    "QuotaExceeded",
    "Refused",
    "ResourceVector",
    "admit",
    "apply_forced",
    "apply_release",
    "carried",
    "chain_keys",
    "check_set_limit",
    "commit",
    "consumption_of",
    "contribution",
    "effective",
    "region_limits",
    "sync_used",
]
