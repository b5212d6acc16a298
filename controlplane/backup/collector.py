"""DR metrics from rows at scrape time: a restart resets nothing and a deleted policy's series
vanish with it. Labels: tenant (code), policy (slug), source_region, target_region.
No verified point: the RPO gauge is +Inf and the policy is not compliant."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from backup.states import RunState
from controlplane.backup.models import BackupPolicy
from controlplane.backup.service import statuses
from controlplane.db.types import utcnow
from controlplane.metrics import COLLECTOR_FACTORIES
from controlplane.tenants.models import Tenant

LABELS = ["tenant", "policy", "source_region", "target_region"]


class DrCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        g = {
            name: GaugeMetricFamily(f"chutian_dr_{name}", text, labels=LABELS)
            for name, text in (
                ("last_recovery_point_timestamp_seconds", "Time of the newest verified recovery point at the DR site"),
                ("rpo_target_seconds", "The policy's RPO target"),
                ("rpo_achieved_seconds", "Now minus the newest verified recovery point (+Inf: none)"),
                ("compliant", "1 when the achieved RPO is within the target"),
                ("drill_rto_seconds", "RTO measured by the newest finished restore drill"),
                ("drill_last_success_timestamp_seconds", "When the newest passing drill finished"),
                ("drill_failed", "1 when the newest finished drill failed"),
            )
        }
        runs = CounterMetricFamily("chutian_dr_runs", "Backup runs by final result", labels=[*LABELS, "result"])
        sent = CounterMetricFamily("chutian_dr_bytes_uploaded", "Bytes restic added to the repository", labels=LABELS)
        with Session(self.engine) as session:
            rows = [
                (p, path)
                for p, path in session.execute(
                    select(BackupPolicy, Tenant.path).join(Tenant, Tenant.id == BackupPolicy.tenant_id)
                )
            ]
            found = statuses(session, rows, utcnow())
        for st in found:
            p = st.policy
            labels = [st.tenant_path.rsplit(".", 1)[-1], p.slug, p.source_region, p.target_region]
            newest = st.rpo.newest_verified
            if newest is not None:
                g["last_recovery_point_timestamp_seconds"].add_metric(labels, newest.time.timestamp())
            g["rpo_target_seconds"].add_metric(labels, float(p.rpo_target_s))
            g["rpo_achieved_seconds"].add_metric(labels, st.rpo.achieved_seconds)
            g["compliant"].add_metric(labels, 1.0 if st.rpo.compliant else 0.0)
            if st.last_drill_rto_s is not None:
                g["drill_rto_seconds"].add_metric(labels, st.last_drill_rto_s)
            if st.last_drill_success is not None:
                g["drill_last_success_timestamp_seconds"].add_metric(labels, st.last_drill_success.timestamp())
            if st.last_drill_state is not None:
                g["drill_failed"].add_metric(labels, 1.0 if st.last_drill_state == "failed" else 0.0)
            for result in (RunState.VERIFIED, RunState.PARTIALLY_FAILED, RunState.FAILED, RunState.MISSED):
                runs.add_metric([*labels, result.value], float(st.runs.get(result.value, 0)))
            sent.add_metric(labels, float(st.bytes_uploaded))
        yield from g.values()
        yield runs
        yield sent

    def describe(self) -> Iterable[Any]:
        return []


COLLECTOR_FACTORIES.append(DrCollector)
