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
