"""Request forms: which fields each kind shows, and form data turned into the API's bodies.

The body is validated by the API's own pydantic models (``RequestCreate``/``RequestUpdate``),
so a form can send nothing the API would not accept; errors come back per field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from controlplane.portal.problems import Gettext, Shown, form_field, pydantic_message, rule_problem
from controlplane.requests import rules
from controlplane.requests.specs import RequestKind

KINDS: tuple[str, ...] = tuple(k.value for k in RequestKind)
# Kinds that act on what other requests made are API-only for now: listed and shown, no form.
FORM_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k not in ("volume-backup", "deletion", "allocation-retirement"))
SHARING = tuple(s.value for s in rules.Sharing)
RPO_CHOICES_S = (3600, 4 * 3600, 12 * 3600, 86400)
# the ledger resources each kind asks for (the columns of the remaining-quota table)
RESOURCES_OF: dict[str, tuple[str, ...]] = {
    "vm": ("vcpus", "ram_mb", "instances"),
    "volume": ("volume_gb", "volumes"),
    "bucket": ("object_gb",),
    "k8s-namespace": ("k8s_cpu_m", "k8s_memory_mb"),
    "backup-enrolment": ("backup_gb",),
}


# the fields each kind's form shows (an error about another field is shown above the form)
SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    "vm": ("spec.flavor", "spec.image", "spec.count", "spec.tcp_ports"),
    "volume": ("spec.size_gb", "spec.storage"),
    "bucket": ("spec.size_gb",),
    "k8s-namespace": ("spec.cpu_m", "spec.memory_mb"),
    "backup-enrolment": (
        "spec.name",
        "spec.paths",
        "spec.target_region",
        "spec.rpo_target_s",
        "spec.size_gb",
        "spec.schedule",
    ),
    "quota-change": ("spec.resource", "spec.limit"),
    "tenant-onboarding": ("spec.tenant", "spec.mode"),
}
WHERE_FIELDS = ("tenant", "cloud", "region", "system", "new_system.name", "new_system.mlps_level")
DECLARATION_FIELDS = tuple(f"decl.{k}" for k in ("name", "sharing", "catalogue_ref", "legal_basis", "owner"))


def fields_of(kind: str, *, create: bool) -> frozenset[str]:
    where = (*WHERE_FIELDS, "new_system.filing_ref") if create else ()
    return frozenset((*where, "title", *SPEC_FIELDS.get(kind, ()), *DECLARATION_FIELDS))


@dataclass
class FormErrors:
    """Messages (already in the user's language) by form field, and about the whole form."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    on_form: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def add(self, shown: Iterable[Shown]) -> FormErrors:
        for item in shown:
            if item.field in self.on_form:
                self.fields.setdefault(item.field, item.text)
            elif item.text not in self.general:
                self.general.append(item.text)
        return self


def rpo_choices(level: int) -> list[int]:
    """The RPO targets an enrolment may choose for a system of this MLPS level."""
    return [s for s in RPO_CHOICES_S if s <= rules.max_rpo_s(level)]


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def spec_of(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """The spec dict for ``kind`` from the form's ``spec.*`` fields (typed by the API's model)."""
    get = form.get
    if kind == "vm":
        vm: dict[str, Any] = {
            "kind": kind,
            "flavor": get("spec.flavor", ""),
            "image": get("spec.image", ""),
            "count": get("spec.count"),
        }
        ports = [p for p in get("spec.tcp_ports", "").replace(",", " ").split() if p]
        if ports:  # typed (and refused, naming the field) by the API's model; empty: the default [22]
            vm["tcp_ports"] = ports
        return vm
    if kind in ("volume", "bucket"):
        spec: dict[str, Any] = {"kind": kind, "size_gb": get("spec.size_gb")}
        if kind == "volume":
            spec["storage"] = get("spec.storage") or "ssd"
        return spec
    if kind == "k8s-namespace":
        return {"kind": kind, "cpu_m": get("spec.cpu_m"), "memory_mb": get("spec.memory_mb")}
    if kind == "backup-enrolment":
        paths = [p.strip() for p in get("spec.paths", "").splitlines() if p.strip()]
        return {
            "kind": kind,
            "name": get("spec.name", ""),
            "paths": paths,
            "schedule": get("spec.schedule") or "0 2 * * *",
            "rpo_target_s": get("spec.rpo_target_s"),
            "target_region": get("spec.target_region", ""),
            "size_gb": get("spec.size_gb"),
        }
    if kind == "quota-change":
        resource, amount = get("spec.resource", ""), _int(get("spec.limit"))
        return {"kind": kind, "limits": {resource: amount} if resource else {}}
    return {
        "kind": kind,
        "tenant": get("spec.tenant") or None,
        "mode": get("spec.mode") or "shared",
        "limits": {},
        "direct_access": get("spec.direct_access") == "on",
    }


def declaration_of(form: dict[str, str]) -> dict[str, Any] | None:
    item = {k: form.get(f"decl.{k}", "").strip() for k in ("name", "sharing", "catalogue_ref", "legal_basis", "owner")}
    if not any(item.values()):
        return None
    return {"items": [item]}


def create_body(kind: str, form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant": form.get("tenant", ""),
        "cloud": form.get("cloud", ""),
        "region": form.get("region", ""),
        "spec": spec_of(kind, form),
        "title": form.get("title") or None,
    }
    if form.get("system"):
        body["system"] = form["system"]
    else:
        body["new_system"] = {
            "name": form.get("new_system.name", ""),
            "mlps_level": form.get("new_system.mlps_level") or 2,
            "filing_ref": form.get("new_system.filing_ref") or None,
        }
    declaration = declaration_of(form)
    if declaration is not None:
        body["declaration"] = declaration
    return body


def pydantic_errors(exc: ValidationError, gettext: Gettext, on_form: frozenset[str]) -> FormErrors:
    """The API model's complaints, per form field, in the user's language (never pydantic's English)."""
    shown = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()) if not isinstance(p, int) and p not in KINDS)
        name = form_field(loc) or ""
        shown.append(Shown(name, pydantic_message(name, error, gettext)))
    return FormErrors(on_form=on_form).add(shown)


def declaration_form_problems(form: dict[str, str], gettext: Gettext, on_form: frozenset[str]) -> FormErrors:
    """The declaration's own rules (rules.declaration_problems), mapped to the form's fields so
    they show before submitting; submit checks them again in the service."""
    errors = FormErrors(on_form=on_form)
    declaration = declaration_of(form)
    if declaration is None:
        return errors
    return errors.add(rule_problem(problem, gettext, form) for problem in rules.declaration_problems(declaration))
