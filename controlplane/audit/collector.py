"""chutian_audit_chain_verified and chutian_audit_head_sequence, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from controlplane.audit.chain import pending
from controlplane.audit.models import AuditCheckpoint, AuditHead
from controlplane.metrics import COLLECTOR_FACTORIES


class AuditCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        verified = GaugeMetricFamily(
            "chutian_audit_chain_verified", "1 if the newest periodic verification of the audit chain passed"
        )
        head_seq = GaugeMetricFamily("chutian_audit_head_sequence", "Sequence number of the audit chain head")
        queued = GaugeMetricFamily(
            "chutian_audit_queued_events", "Audit events committed but not chained yet (normally 0 within seconds)"
        )
        with Session(self.engine) as session:
            queued.add_metric([], float(pending(session)))
            head = session.scalars(select(AuditHead).where(AuditHead.id == 1)).first()
            last = session.scalars(
                select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)  # type: ignore[union-attr]
            ).first()
        if head is not None:
            head_seq.add_metric([], float(head.seq))
        if last is not None:
            verified.add_metric([], 1.0 if last.verified else 0.0)
        yield verified
        yield head_seq
        yield queued

    def describe(self) -> Iterable[Any]:
        return []


COLLECTOR_FACTORIES.append(AuditCollector)
