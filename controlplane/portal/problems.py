"""Domain errors and form validation in the user's language.

The services' problem details are English sentences for API clients; a page never shows them.
Each problem type (its slug) and its structured members (``field``, ``node``, ``resource``,
``headroom``, ``current_state``, ...) map to a message here, written in English as a gettext
msgid and translated in the zh_CN catalogue, so English mode shows English and zh-CN shows
Chinese. A type or field this table does not know gets its class's generic message, never the
service's English text. ``facts`` are what the user sent (form values) for messages that name
it back; they are user data, escaped by the templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.errors import DomainError
from controlplane.portal.i18n import LABELS, N_

Gettext = Callable[[str], str]


@dataclass(frozen=True)
class Shown:
    """One message, on the form field it is about (``None``: about the whole form or action)."""

    field: str | None
    text: str


# service/API field names -> the portal form's field names
FORM_FIELDS: dict[str, str] = {
    "name": "new_system.name",
    "mlps_level": "new_system.mlps_level",
    "filing_ref": "new_system.filing_ref",
    "system.filing_ref": "new_system.filing_ref",
}
_DECLARATION = re.compile(r"^declaration(?:\.items(?:\[\d+\])?)?(?:\.(\w+))?$")


def form_field(field: object) -> str | None:
    """The form field a service's ``field`` member (or a pydantic location) names."""
    if not isinstance(field, str) or not field:
        return None
    if field in FORM_FIELDS:
        return FORM_FIELDS[field]
    if field.startswith("spec.limits"):
        return "spec.resource"
    found = _DECLARATION.match(field)
    if found:
        return f"decl.{found.group(1) or 'name'}"
    return field


class _Args(dict[str, Any]):
    """Format arguments where a member the error did not carry shows as empty, never a KeyError."""

    def __missing__(self, key: str) -> str:
        return ""


def _fmt(gettext: Gettext, message: str, values: Mapping[str, Any]) -> str:
    return gettext(message) % _Args(values)


def duration(seconds: int, gettext: Gettext) -> str:
    """``4 h``, ``2 h 5 min``, ``45 minutes``, ``8 d 17 h``: RPOs and seeding times as people say them."""
    seconds = max(int(seconds), 0)
    hours, minutes = seconds // 3600, -(-(seconds % 3600) // 60)
    if minutes == 60:
        hours, minutes = hours + 1, 0
    if hours >= 48:  # seeding times: days and hours are enough
        return gettext("%(days)s d %(hours)s h") % {"days": hours // 24, "hours": hours % 24}
    if hours and not minutes:
        return gettext("%(hours)s h") % {"hours": hours}
    if hours:
        return gettext("%(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes}
    return gettext("%(minutes)s minutes") % {"minutes": max(minutes, 1)}


# --- form validation (the API's own pydantic models), by pydantic error type -----------------

REQUIRED = N_("This field is required.")
PYDANTIC: dict[str, str] = {
    "missing": REQUIRED,
    "int_parsing": N_("Enter a whole number."),
    "int_type": N_("Enter a whole number."),
    "int_from_float": N_("Enter a whole number."),
    "float_parsing": N_("Enter a number."),
    "greater_than_equal": N_("Must be at least %(limit)s."),
    "greater_than": N_("Must be more than %(limit)s."),
    "less_than_equal": N_("Must be at most %(limit)s."),
    "less_than": N_("Must be less than %(limit)s."),
    "string_too_long": N_("At most %(limit)s characters."),
    "string_too_short": N_("At least %(limit)s characters."),
    "too_short": N_("Give at least %(limit)s."),
    "too_long": N_("At most %(limit)s entries."),
    "literal_error": N_("Choose one of the offered values."),
    "enum": N_("Choose one of the offered values."),
    "uuid_parsing": N_("Choose one of the offered values."),
    "string_pattern_mismatch": N_("Not in the expected format."),
    "bool_parsing": N_("Choose yes or no."),
}
# a field whose format has a name people know
PATTERNS: dict[str, str] = {
    "tenant": N_("Choose a tenant from the list."),
    "cloud": N_("Choose one of the offered values."),
    "region": N_("Choose one of the offered values."),
    "spec.target_region": N_("Choose one of the offered values."),
    "spec.name": N_("Lower-case letters, digits and dashes"),
    "spec.tenant": N_("A tenant path: codes joined by dots, e.g. hubei.wuhan.jiangan"),
}
VALUE_ERRORS: dict[str, str] = {
    "spec.schedule": N_("Not a cron schedule: five fields, for example 0 2 * * *."),
    "spec.paths": N_("Give absolute paths without '..'."),
}


def pydantic_message(field: str, error: Mapping[str, Any], gettext: Gettext) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch" and field in PATTERNS:
        return gettext(PATTERNS[field])
    if kind == "value_error":
        return gettext(VALUE_ERRORS.get(field, N_("This value is not valid.")))
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return gettext(REQUIRED)
    limit = next((ctx[k] for k in ("ge", "gt", "le", "lt", "max_length", "min_length") if k in ctx), "")
    return gettext(PYDANTIC.get(kind, N_("This value is not valid."))) % {"limit": limit}


# --- the province's rules (requests.rules), by the field each problem names ------------------

RULES: dict[str, str] = {
    "decl.name": N_("Name the data resource."),
    "decl.sharing": N_("Choose a sharing class."),
    "decl.catalogue_ref": N_("The data catalogue reference is required."),
    "decl.legal_basis": N_("No sharing needs the law or regulation that forbids sharing."),
    "decl.owner": N_("Conditional sharing needs the data owner (a tenant path) to countersign."),
    "new_system.filing_ref": N_("A level-3 or level-4 system needs its MLPS filing reference."),
    "region": N_("Region %(region)s is not assessed for systems of MLPS level %(level)s."),
    "system": N_("A level-%(level)s system needs a remote backup enrolment before its first resource request."),
}
DECLARATION_MISSING = N_("A data-sharing declaration is required: name the data resource and its sharing class.")


def rule_problem(problem: str, gettext: Gettext, facts: Mapping[str, str]) -> Shown:
    """One of ``rules.declaration_problems``/``mlps_problems`` (``'<field>: <English>'``)."""
    where = problem.split(":", 1)[0].strip()
    field = form_field(where)
    if where in ("declaration", "declaration.items"):
        return Shown("decl.name", gettext(DECLARATION_MISSING))
    message = RULES.get(field or "", N_("This value is not valid."))
    return Shown(
        field, _fmt(gettext, message, {"region": facts.get("region", ""), "level": facts.get("mlps_level", "")})
    )


# --- domain errors, by problem type and members ------------------------------------------------

GENERIC: dict[str, str] = {
    "not-found": N_("This page or object does not exist, or you may not see it."),
    "conflict": N_("This conflicts with the current state: reload the page and try again."),
    "validation-failed": N_("This value is not valid."),
    "policy-violation": N_("Refused by the province's rules."),
    "forbidden": N_("Your roles do not allow this here."),
    "unauthenticated": N_("Log in again: your session has ended."),
    "backend-unavailable": N_("A backend service is unavailable right now; try again in a minute."),
    "domain-error": N_("This could not be done."),
}
VALIDATION: dict[str, str] = {
    "tenant": N_("Choose a tenant from the list."),
    "cloud": N_("This themed cloud does not exist."),
    "region": N_("This themed cloud is not offered in region %(region)s."),
    "system": N_("Choose one existing system of this tenant and themed cloud, or propose a new system."),
    "new_system.filing_ref": RULES["new_system.filing_ref"],
    "spec.flavor": N_("Flavor %(flavor)s is not offered in this themed cloud."),
    "spec.image": N_("Image %(image)s is not offered in region %(region)s."),
    "spec.network_zone": N_("The tenant sits in another network zone."),
    "spec.storage": N_("This themed cloud does not offer storage class %(storage)s."),
    "spec.kind": N_("This themed cloud does not offer this kind of resource."),
    "spec.target_region": N_("Choose a DR site in another region than the source."),
    "spec.resource": N_("Unknown resource: choose one the ledger keeps."),
    "reason": N_("Rejecting or returning needs a reason: write it in the reason field."),
}
CONFLICTS: dict[str, str] = {
    "tenant": N_("The tenant is %(state)s: it cannot ask for anything now."),
    "new_system.name": N_("The tenant already has an information system with this name."),
    "spec.name": N_("The tenant already has a backup policy with this name."),
    "owner": N_("Someone else changed this at the same moment; please try again."),
}
FORBIDDEN: dict[str, str] = {
    "requests.approve": N_("None of this request's approval steps is yours to decide now."),
    "requests.reject": N_("None of this request's approval steps is yours to decide now."),
    "requests.return": N_("None of this request's approval steps is yours to decide now."),
    "quotas.set-limit": N_(
        "Limits below a city or department are set by operators or by a tenant administrator above it."
    ),
}
NOT_ALLOWED_NOW = N_("Not possible while the request is %(state)s: reload the page to see what changed.")
CANNOT_EDIT = N_("A request that is %(state)s cannot be edited.")
QUOTA = N_("Over quota at %(node)s: %(resource)s needs %(requested)s, only %(headroom)s left there.")
ALLOCATION = N_(
    "No quota allocation exists for %(node)s yet: a tenant administrator or an operator must allocate "
    "quota there before anything can be requested."
)
ALLOCATION_INACTIVE = N_("The quota allocation at %(node)s is not active.")
ABOVE_PARENT = N_("Refused: %(parent)s holds only %(parent_limit)s of %(resource)s.")
BELOW_CONSUMPTION = N_("The limit %(limit)s for %(resource)s at %(node)s is below what it consumes (%(consumption)s).")
MLPS_CEILING = N_("The MLPS level is above what this tenant may host (its MLPS ceiling).")
RPO_LEVEL = N_("This system's MLPS level allows an RPO of at most %(max)s.")
NO_DR_LINK = N_("The tenant has no DR link recorded: no RPO can be promised. Ask an operator to record the link.")
RPO_INFEASIBLE = N_(
    "The %(link)s Mbit/s DR link cannot meet an RPO of %(requested)s: the best it can meet is %(achievable)s."
)
RPO_NO_LINK_CAPACITY = N_("The %(link)s Mbit/s DR link cannot even carry the daily change: no RPO can be met.")
RPO_NEEDS = N_("Meeting %(requested)s needs a link of %(required)s Mbit/s.")
RPO_SEEDING = N_("The first full copy takes %(seeding)s.")


def _state(value: object, gettext: Gettext) -> str:
    return gettext(LABELS.get(str(value), str(value)))


def _rpo(fields: Mapping[str, Any], gettext: Gettext) -> list[Shown]:
    where = form_field(fields.get("field"))
    link = f"{float(fields.get('link_mbps') or 0):g}"
    if link == "0":
        return [Shown(where, gettext(NO_DR_LINK))]
    requested = duration(int(fields.get("requested_rpo_s") or 0), gettext)
    achievable = fields.get("achievable_rpo_s")
    texts = [
        _fmt(gettext, RPO_NO_LINK_CAPACITY, {"link": link})
        if achievable is None
        else gettext(RPO_INFEASIBLE)
        % {"link": link, "requested": requested, "achievable": duration(int(achievable), gettext)}
    ]
    if fields.get("required_link_mbps") is not None:
        texts.append(_fmt(gettext, RPO_NEEDS, {"requested": requested, "required": fields["required_link_mbps"]}))
    if fields.get("seeding_s") is not None:
        texts.append(_fmt(gettext, RPO_SEEDING, {"seeding": duration(int(fields["seeding_s"]), gettext)}))
    return [Shown(where, " ".join(texts))]


# types whose message is their members, formatted
BY_TYPE: dict[str, str] = {
    "quota-exceeded": QUOTA,
    "allocation-missing": ALLOCATION,
    "limit-above-parent": ABOVE_PARENT,
    "limit-below-consumption": BELOW_CONSUMPTION,
}


def describe(  # noqa: PLR0911 - one return per problem type reads best
    exc: DomainError, gettext: Gettext, facts: Mapping[str, str] | None = None
) -> list[Shown]:
    """What to show for ``exc``, in the caller's language (one message, or one per rule broken)."""
    facts = facts or {}
    fields = exc.fields
    where = form_field(fields.get("field"))
    state = {"state": _state(fields.get("current_state"), gettext)}
    if exc.slug in BY_TYPE:
        named = {**fields, "resource": _state(fields.get("resource"), gettext)}
        return [Shown(None, _fmt(gettext, BY_TYPE[exc.slug], named))]
    if exc.slug == "rpo-infeasible":
        return _rpo(fields, gettext)
    if exc.slug == "invalid-transition":
        return [Shown(None, _fmt(gettext, NOT_ALLOWED_NOW, state))]
    if exc.slug == "validation-failed" and where in VALIDATION:
        values = {**fields, "region": facts.get("region", "")}
        values |= {k.removeprefix("spec."): v for k, v in facts.items() if k.startswith("spec.")}
        return [Shown(where, _fmt(gettext, VALIDATION[where], values))]
    if exc.slug == "policy-violation":
        return _policy(exc, where, gettext, facts)
    if exc.slug == "conflict" and where in CONFLICTS:
        return [Shown(where, _fmt(gettext, CONFLICTS[where], state))]
    if exc.slug == "conflict" and "current_state" in fields:
        return [Shown(None, _fmt(gettext, CANNOT_EDIT, state))]
    if exc.slug == "conflict" and "node" in fields:
        return [Shown(None, _fmt(gettext, ALLOCATION_INACTIVE, fields))]
    if exc.slug == "forbidden" and str(fields.get("permission")) in FORBIDDEN:
        return [Shown(None, gettext(FORBIDDEN[str(fields["permission"])]))]
    return [Shown(where, gettext(_generic(exc)))]


def _policy(exc: DomainError, where: str | None, gettext: Gettext, facts: Mapping[str, str]) -> list[Shown]:
    missing = exc.fields.get("missing")
    if isinstance(missing, list) and missing:
        return [rule_problem(str(p), gettext, facts) for p in missing]
    if "max_rpo_s" in exc.fields:
        return [Shown(where, _fmt(gettext, RPO_LEVEL, {"max": duration(int(exc.fields["max_rpo_s"]), gettext)}))]
    if where == "new_system.mlps_level":
        return [Shown(where, gettext(MLPS_CEILING))]
    return [Shown(where, gettext(_generic(exc)))]


def _generic(exc: DomainError) -> str:
    """The message of the nearest error class this table knows (a new subclass is never English)."""
    for cls in type(exc).__mro__:
        slug = getattr(cls, "slug", None)
        if slug in GENERIC:
            return GENERIC[slug]
    return GENERIC["domain-error"]


def no_node(gettext: Gettext) -> Shown:
    """A tenant path, themed cloud or region that cannot name a ledger node at all."""
    return Shown(None, gettext(N_("Choose an existing tenant path, themed cloud and region.")))


def texts(shown: Iterable[Shown]) -> list[str]:
    return [s.text for s in shown]
