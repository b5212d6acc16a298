"""The province's rules as pure functions: data-sharing declaration, MLPS placement, the
approval route and auto-approval. Each takes facts and returns a decision or refusals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Sharing(StrEnum):
    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NONE = "none"  # 不予共享


DATA_BEARING_KINDS = frozenset({"volume", "volume-backup", "bucket", "backup-enrolment", "k8s-namespace", "vm"})
# Kinds that only take away: no data goes anywhere, so no declaration or placement rule applies.
REMOVAL_KINDS = frozenset({"deletion", "allocation-retirement"})


def declaration_problems(declaration: Mapping[str, Any] | None, *, field_name: str = "declaration") -> list[str]:
    """What is missing from a data-sharing declaration (数据共享申报), field by field."""
    if not declaration:
        return [f"{field_name}: a data-sharing declaration (数据共享申报) is required"]
    items = declaration.get("items")
    if not isinstance(items, list) or not items:
        return [f"{field_name}.items: list each data resource with its sharing class"]
    problems: list[str] = []
    for i, item in enumerate(items):
        where = f"{field_name}.items[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        if not item.get("name"):
            problems.append(f"{where}.name: name the data resource")
        sharing = item.get("sharing")
        if sharing not in {s.value for s in Sharing}:
            problems.append(
                f"{where}.sharing: one of unconditional (无条件共享), conditional (有条件共享), none (不予共享)"
            )
        if not item.get("catalogue_ref"):
            problems.append(f"{where}.catalogue_ref: the data catalogue reference (目录编号) is required")
        if sharing == Sharing.NONE and not item.get("legal_basis"):
            problems.append(f"{where}.legal_basis: 不予共享 needs the law or regulation that forbids sharing")
        if sharing == Sharing.CONDITIONAL and not item.get("owner"):
            problems.append(f"{where}.owner: 有条件共享 needs the data owner (a tenant path) to countersign")
    return problems


def conditional_owners(declaration: Mapping[str, Any] | None) -> list[str]:
    items = (declaration or {}).get("items") or []
    return sorted(
        {
            i["owner"]
            for i in items
            if isinstance(i, Mapping) and i.get("sharing") == Sharing.CONDITIONAL and i.get("owner")
        }
    )


# The longest RPO (seconds) a remote-backup enrolment may promise, by MLPS level: level 3
# calls for remote backup close to real time (GB/T 22239-2019), so 4 h; level 4, 1 h. Checked
# at submit and at the last approval (``backup.enrolment.check_feasible``); the portal offers
# only what fits.
MAX_RPO_S: Mapping[int, int] = {2: 86400, 3: 4 * 3600, 4: 3600}


def max_rpo_s(level: int) -> int:
    return MAX_RPO_S.get(level, min(MAX_RPO_S.values()))


def mlps_problems(*, level: int, region: str, assessed: Sequence[int], has_backup: bool, kind: str) -> list[str]:
    """Level-3/4 systems: only in assessed regions, and not without remote backup. Removals
    place nothing, so neither rule holds them back."""
    problems: list[str] = []
    if kind in REMOVAL_KINDS:
        return problems
    if level >= 3 and level not in assessed:
        problems.append(
            f"region: '{region}' is assessed for MLPS levels {sorted(assessed)} only, not for a level-{level} system"
        )
    if level >= 3 and kind != "backup-enrolment" and not has_backup:
        problems.append(
            f"system: a level-{level} system needs a backup-enrolment (远程灾备) before its first resource request"
        )
    return problems


@dataclass(frozen=True)
class StepPlan:
    order: int
    role: str
    node: str  # tenant path whose role-holders may decide
    group: str


@dataclass(frozen=True)
class RouteFacts:
    tenant_path: str
    province: str
    lead_department: str  # tenant code under the province
    delta: Mapping[str, int]
    operator_threshold: Mapping[str, int]
    mlps_level: int
    declaration: Mapping[str, Any] | None = None
    auto_rules: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    kind: str = "vm"


def removal_route(facts: RouteFacts) -> list[StepPlan]:
    """Deleting is the data owner's call: the tenant's own tenant-admin decides. The lead
    department approves what enters its themed cloud, not what leaves it, and a removal frees
    quota, so no operator threshold applies. Retiring an allocation deletes a whole project and
    ends the tenant's footprint in the cloud, so a provincial operator (who runs the cloud and
    answers for what is left behind) confirms it. Destroying data of an MLPS 3/4 system needs
    the security officer's countersignature (controlled destruction of graded data)."""
    steps = [StepPlan(1, "tenant-admin", facts.tenant_path, "tenant")]
    if facts.kind == "allocation-retirement":
        steps.append(StepPlan(2, "operator", facts.province, "operator"))
    if facts.mlps_level >= 3:
        steps.append(StepPlan(len(steps) + 1, "security-officer", facts.province, "security"))
    return steps


def route(facts: RouteFacts) -> list[StepPlan]:
    """tenant-admin of the tenant → approver of the cloud's lead department → operator above
    the threshold → in parallel: each conditional data owner's approver and, for MLPS 3/4, a
    security-officer. Removals take `removal_route`."""
    if facts.kind in REMOVAL_KINDS:
        return removal_route(facts)
    steps = [
        StepPlan(1, "tenant-admin", facts.tenant_path, "tenant"),
        StepPlan(2, "approver", f"{facts.province}.{facts.lead_department}", "lead-department"),
    ]
    order = 3
    if any(facts.delta.get(r, 0) > limit for r, limit in facts.operator_threshold.items()):
        steps.append(StepPlan(order, "operator", facts.province, "operator"))
        order += 1
    final = [StepPlan(order, "approver", owner, "data-owner") for owner in conditional_owners(facts.declaration)]
    if facts.mlps_level >= 3:
        final.append(StepPlan(order, "security-officer", facts.province, "security"))
    return steps + final


def auto_rule(facts: RouteFacts) -> str | None:
    """The first auto-approval rule that covers this request, by name; None if none does."""
    for rule in facts.auto_rules:
        kinds = rule.get("kinds") or []
        if facts.kind not in kinds or facts.mlps_level > int(rule.get("mlps_max", 2)):
            continue
        maximum: Mapping[str, int] = rule.get("max") or {}
        if all(facts.delta.get(r, 0) <= maximum.get(r, 0) for r in facts.delta if facts.delta.get(r, 0)):
            return str(rule["name"])
    return None
