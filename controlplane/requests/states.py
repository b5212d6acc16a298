"""The request state machine: one table, read by the service, the API and the tests."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from controlplane.errors import InvalidTransition


class RequestState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    PROVISIONING = "provisioning"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the tenant must act
    ERRORED = "errored"  # an operator must act
    RETURNED = "returned"  # sent back for revision: editable, resubmittable
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    RETIRED = "retired"  # what it made was deleted (a `deletion` or an allocation retirement)


S = RequestState
TRANSITIONS: Mapping[RequestState, frozenset[RequestState]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.RETURNED: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.PENDING_APPROVAL, S.APPROVED, S.RETURNED, S.CANCELLED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.RETURNED, S.CANCELLED}),
    S.APPROVED: frozenset({S.PROVISIONING, S.CANCELLED}),
    S.PROVISIONING: frozenset({S.SUCCEEDED, S.FAILED, S.ERRORED}),
    S.FAILED: frozenset({S.PROVISIONING, S.CANCELLED}),
    S.ERRORED: frozenset({S.PROVISIONING, S.CANCELLED}),
    S.SUCCEEDED: frozenset({S.RETIRED}),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.RETIRED: frozenset(),
}

EDITABLE = frozenset({S.DRAFT, S.RETURNED})
OPEN = frozenset(
    {S.DRAFT, S.SUBMITTED, S.PENDING_APPROVAL, S.APPROVED, S.PROVISIONING, S.RETURNED, S.FAILED, S.ERRORED}
)
TERMINAL = frozenset(set(S) - OPEN)

# verb -> the states it may start from (the API lists the allowed verbs from this)
VERBS: Mapping[str, frozenset[RequestState]] = {
    "submit": frozenset({S.DRAFT, S.RETURNED}),
    "approve": frozenset({S.PENDING_APPROVAL}),
    "reject": frozenset({S.PENDING_APPROVAL}),
    "return": frozenset({S.SUBMITTED, S.PENDING_APPROVAL}),
    "cancel": frozenset({S.DRAFT, S.RETURNED, S.SUBMITTED, S.PENDING_APPROVAL, S.APPROVED, S.FAILED, S.ERRORED}),
    "retry": frozenset({S.FAILED, S.ERRORED}),
}


def transition(current: RequestState, target: RequestState) -> RequestState:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current.value, target.value, what="request")
    return target


def check_verb(verb: str, current: RequestState) -> None:
    if current not in VERBS[verb]:
        raise InvalidTransition(current.value, verb, what="request")


def allowed_verbs(current: RequestState) -> list[str]:
    return [verb for verb, starts in VERBS.items() if current in starts]
