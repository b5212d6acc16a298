"""Languages: zh-CN by default, English on request (remembered in a cookie).

Messages are written in English in the code and templates (gettext msgids); the zh_CN
catalogue (``locale/zh_CN/LC_MESSAGES/messages.po``, compiled to ``.mo`` next to it)
translates them. English therefore needs no catalogue and can show no Chinese besides
user data and the names the site file gives in both languages.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from pathlib import Path

from babel.support import NullTranslations, Translations
from fastapi import Request

LOCALE_DIR = Path(__file__).parent / "locale"
LANGS = ("zh-CN", "en")
DEFAULT = "zh-CN"
COOKIE = "chutian_lang"


def N_(message: str) -> str:  # noqa: N802 - the gettext convention extractors look for
    """Marks a message for extraction; translated where it is shown."""
    return message


# Labels for stored values (states, kinds, levels): the value stays English in the database
# and the API; the page shows its translated label.
LABELS: dict[str, str] = {
    "draft": N_("Draft"),
    "submitted": N_("Submitted"),
    "pending_approval": N_("Pending approval"),
    "approved": N_("Approved"),
    "provisioning": N_("Provisioning"),
    "succeeded": N_("Succeeded"),
    "failed": N_("Failed"),
    "errored": N_("Errored"),
    "returned": N_("Returned for revision"),
    "rejected": N_("Rejected"),
    "cancelled": N_("Cancelled"),
    "retired": N_("Deleted"),
    "pending": N_("Pending"),
    "superseded": N_("Superseded"),
    "queued": N_("Queued"),
    "running": N_("Running"),
    "vm": N_("Virtual machines"),
    "volume": N_("Block volume"),
    "bucket": N_("Object storage bucket"),
    "k8s-namespace": N_("Kubernetes namespace"),
    "backup-enrolment": N_("Remote backup enrolment"),
    "quota-change": N_("Quota change"),
    "tenant-onboarding": N_("Tenant onboarding"),
    "volume-backup": N_("Volume backup"),
    "deletion": N_("Resource deletion"),
    "allocation-retirement": N_("Allocation retirement"),
    "province": N_("Province"),
    "department": N_("Department"),
    "city": N_("City"),
    "county": N_("County"),
    "district": N_("District"),
    "unit": N_("Unit"),
    "tenant": N_("Tenant"),
    "region": N_("Region capacity"),
    "tenant-admin": N_("Tenant administrator"),
    "tenant-member": N_("Tenant member"),
    "approver": N_("Approver"),
    "operator": N_("Operator"),
    "security-officer": N_("Security officer"),
    "auditor": N_("Auditor"),
    "platform-admin": N_("Platform administrator"),
    "unconditional": N_("Unconditional sharing"),
    "conditional": N_("Conditional sharing"),
    "none": N_("No sharing"),
    "egov-extranet": N_("E-government extranet"),
    "shared": N_("Shares the parent's pool"),
    "slice": N_("Own slice"),
    "root": N_("Region capacity"),
    "vcpus": N_("vCPU"),
    "ram_mb": N_("RAM (MB)"),
    "instances": N_("Instances"),
    "volume_gb": N_("Block storage (GB)"),
    "volumes": N_("Volumes"),
    "object_gb": N_("Object storage (GB)"),
    "k8s_cpu_m": N_("Kubernetes CPU (millicores)"),
    "k8s_memory_mb": N_("Kubernetes memory (MB)"),
    "backup_gb": N_("Backup storage (GB)"),
    "egov-intranet": N_("E-government intranet"),
    "internet": N_("Internet zone"),
    "inbox": N_("Waiting for me"),
    "decided": N_("Decided by me"),
    "mine": N_("My requests"),
    "all": N_("All I can see"),
    "newest": N_("Newest first"),
    "oldest": N_("Oldest first"),
    "updated": N_("Recently updated"),
    "Home": N_("Home"),
    "Catalogue": N_("Catalogue"),
    "Requests": N_("Requests"),
    "Quotas": N_("Quotas"),
    "Backup compliance": N_("Backup compliance"),
    "Operator console": N_("Operator console"),
    "Audit log": N_("Audit log"),
}


def lang_of(request: Request) -> str:
    chosen = request.cookies.get(COOKIE)
    return chosen if chosen in LANGS else DEFAULT


@lru_cache(maxsize=4)
def translations(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), ["zh_CN"], domain="messages")
