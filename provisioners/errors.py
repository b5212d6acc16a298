"""The provisioner error hierarchy: every adapter maps its backend's errors into these, so
the application decides retry / failed / errored in one place without knowing the SDKs."""

from __future__ import annotations


class ProvisionerError(Exception):
    """Base class; `backend` names the adapter for metrics (chutian_backend_errors_total)."""

    kind = "error"

    def __init__(self, message: str, *, backend: str = "unknown") -> None:
        super().__init__(message)
        self.backend = backend


class TransientBackendError(ProvisionerError):
    """Busy, rate-limited, 5xx, connection reset, a first timeout: retry later."""

    kind = "transient"


class BackendQuotaExceeded(ProvisionerError):
    """The backend's own quota refused it: the tenant must act (request → failed)."""

    kind = "quota"


class BackendAuthError(ProvisionerError):
    """Our credentials were refused: an operator must act (errored)."""

    kind = "auth"


class CapacityExhausted(ProvisionerError):
    """No valid host / no space: an operator must act (errored)."""

    kind = "capacity"


class InvalidSpec(ProvisionerError):
    """Refused before any call: names, labels or quantities the backend would reject."""

    kind = "invalid"


class BackendTimeout(TransientBackendError):
    """A wait ran out of time: retry once (the resource may still finish), then errored."""

    kind = "timeout"


class BackendNotFound(ProvisionerError):
    """Something we referred to by id is gone from the backend."""

    kind = "not_found"


class ResourceConflict(ProvisionerError):
    """The name or tag is taken by something we did not make, or made differently."""

    kind = "conflict"


class BackendMisconfigured(ProvisionerError):
    """The region's configuration is wrong (service missing from the catalog, bad options)."""

    kind = "config"


class BackendResourceFailed(ProvisionerError):
    """A resource went to an error state for a reason we cannot classify: an operator looks."""

    kind = "resource"


class InvalidField(InvalidSpec):
    """An `InvalidSpec` that names the offending input (`field`: `k8s_cpu_m`, `labels[key]`, `groups[0]`)."""

    def __init__(self, field: str, message: str, *, backend: str = "unknown") -> None:
        super().__init__(f"{field}: {message}", backend=backend)
        self.field = field


class RepositoryLocked(TransientBackendError):
    """A backup repository is in use (a live run, or another host's recent lock): retry later."""

    kind = "locked"


class SourceMissing(InvalidSpec):
    """A path to back up does not exist: the tenant must fix the source (run → failed)."""

    kind = "source_missing"


class RepositoryDamaged(BackendResourceFailed):
    """An integrity check found errors in a backup repository (a pack no longer matches its hash)."""

    kind = "damaged"


class PermissionDenied(BackendAuthError):
    """The server understood and refused (403), e.g. a deletion through an append-only gateway."""

    kind = "forbidden"
