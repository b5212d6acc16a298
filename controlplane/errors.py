"""Domain errors: no HTTP codes here; `controlplane.api.problems` maps them to responses.

Each error carries a stable `type` slug (the last segment of its problem type URI) and
optional domain fields that end up as problem+json extension members.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a user or operator is meant to read."""

    slug = "domain-error"
    title = "Request could not be completed"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


class NotFound(DomainError):
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    slug = "conflict"
    title = "Conflict with the current state"


class InvalidTransition(Conflict):
    slug = "invalid-transition"
    title = "Not allowed in the current state"

    def __init__(self, current: str, target: str, *, what: str = "object") -> None:
        super().__init__(
            f"cannot move {what} from '{current}' to '{target}'", current_state=current, target_state=target
        )


class ValidationFailed(DomainError):
    """Input that is well-formed JSON but breaks a domain rule; names the field."""

    slug = "validation-failed"
    title = "Invalid input"

    def __init__(self, detail: str, *, field: str, **fields: Any) -> None:
        super().__init__(detail, field=field, **fields)


class PolicyViolation(DomainError):
    slug = "policy-violation"
    title = "Refused by policy"


class Unauthenticated(DomainError):
    slug = "unauthenticated"
    title = "Authentication required"


class Forbidden(DomainError):
    slug = "forbidden"
    title = "Not allowed"


class BackendUnavailable(DomainError):
    slug = "backend-unavailable"
    title = "A backend service is unavailable"


class ConfigurationError(Exception):
    """Bad configuration, reported all at once before anything starts."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
