"""`chutian backup run POLICY` and `chutian backup status`: the operator's view on this host.

`run` creates a manual run exactly as the API does and executes it in this process with the
worker's code (claim, restic with a progress bar, DR-side verification); exit 1 unless the
run ends verified. POLICY is `<tenant path>/<slug>` or the policy's id.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from controlplane.cli.main import JsonOpt, _settings, _with_uow, app, err, out

backup_app = typer.Typer(no_args_is_help=True, help="Remote disaster-recovery backup (远程灾备)")
app.add_typer(backup_app, name="backup")


def _policy_id(uow: Any, ref: str) -> uuid.UUID:
    from sqlalchemy import select

    from controlplane.backup.models import BackupPolicy
    from controlplane.errors import NotFound
    from controlplane.tenants.models import Tenant

    try:
        return uuid.UUID(ref)
    except ValueError:
        pass
    path, _, slug = ref.rpartition("/")
    found = uow.session.scalar(
        select(BackupPolicy.id)
        .join(Tenant, Tenant.id == BackupPolicy.tenant_id)
        .where(Tenant.path == path, BackupPolicy.slug == slug)
    )
    if found is None:
        raise NotFound(f"no backup policy '{ref}' (use <tenant path>/<slug> or the id)")
    return uuid.UUID(str(found))


@backup_app.command("run")
def backup_run(
    policy: Annotated[str, typer.Argument(help="<tenant path>/<slug>, e.g. hubei.wuhan.jiangan/payroll, or the id")],
    json_out: JsonOpt = False,
) -> None:
    """Back a policy up now, showing restic's progress; exit 0 only when the run is verified."""
    from controlplane.auth.principal import system_principal
    from controlplane.backup import runner, service
    from controlplane.backup.models import BackupRun
    from controlplane.backup.schemas import RunPublic
    from controlplane.db.engine import make_engine
    from controlplane.db.uow import run_in_unit
    from controlplane.site_config import load_site
    from controlplane.worker.runtime import WorkerContext

    def start(uow: Any) -> uuid.UUID:
        uow.principal = system_principal("cli")
        run, _ = service.run_now(uow, uow.principal, _policy_id(uow, policy))
        return uuid.UUID(str(run.id))

    run_id = _with_uow(start)
    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        ctx = WorkerContext(settings=settings, engine=engine, site=load_site(settings.site_file))
        columns = (TextColumn("[bold]backup[/bold]"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, disable=json_out, transient=True) as bar:
            task = bar.add_task("backup", total=None)

            def show(doc: dict[str, Any]) -> None:
                bar.update(task, total=doc.get("total_bytes") or None, completed=doc.get("bytes_done", 0))

            state = runner.execute_run(ctx, run_id, on_progress=show)
        row, path = run_in_unit(
            engine, lambda uow: service.get_visible(uow, system_principal("cli"), BackupRun, run_id, "backup run")
        )
        public = RunPublic.from_row(row, path)
    finally:
        engine.dispose()
    if json_out:
        sys.stdout.write(public.model_dump_json() + "\n")
    else:
        colour = "green" if state == "verified" else "red"
        out.print(f"run {run_id}: [{colour}]{state}[/{colour}]", highlight=False)
        if public.snapshot_id:
            out.print(f"  snapshot {public.snapshot_id[:8]}, {public.bytes_uploaded} bytes uploaded", highlight=False)
        if public.reason:
            out.print(f"  reason: {public.reason}", markup=False, highlight=False)
    raise typer.Exit(0 if state == "verified" else 1)


@backup_app.command("status")
def backup_status(
    tenant: Annotated[str | None, typer.Option(help="Only this subtree, e.g. hubei.wuhan")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every policy: RPO target and achieved, compliance, newest verified point, last drill."""
    from controlplane.auth.principal import system_principal
    from controlplane.backup import service

    def work(uow: Any) -> list[dict[str, Any]]:
        rows, _ = service.list_policies(uow, system_principal("cli"), tenant=tenant, after=None, limit=100_000)
        return [
            {
                "tenant": st.tenant_path,
                "policy": st.policy.slug,
                "source_region": st.policy.source_region,
                "target_region": st.policy.target_region,
                "rpo_target_s": st.policy.rpo_target_s,
                "rpo_achieved_s": None if st.rpo.achieved is None else st.rpo.achieved.total_seconds(),
                "compliant": st.rpo.compliant,
                "newest_verified": None if st.rpo.newest_verified is None else st.rpo.newest_verified.time.isoformat(),
                "last_drill": st.last_drill_state,
                "runs": st.runs,
            }
            for st in service.statuses(uow.session, rows, uow.now())
        ]

    items = _with_uow(work)
    if json_out:
        sys.stdout.write(json.dumps(items, ensure_ascii=False) + "\n")
        return
    table = Table("tenant", "policy", "route", "RPO target", "achieved", "ok", "newest verified", "drill")
    for item in items:
        achieved = "-" if item["rpo_achieved_s"] is None else f"{item['rpo_achieved_s'] / 3600:.1f} h"
        table.add_row(
            item["tenant"],
            item["policy"],
            f"{item['source_region']}→{item['target_region']}",
            f"{item['rpo_target_s'] / 3600:.1f} h",
            achieved,
            "[green]yes[/green]" if item["compliant"] else "[red]no[/red]",
            item["newest_verified"] or "-",
            item["last_drill"] or "-",
        )
    out.print(table)
