"""Typer CLI. Exit codes: 0 ok, 1 operation failed, 2 usage or configuration error."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from controlplane.errors import ConfigurationError, DomainError
from controlplane.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Chutian Cloud (楚天云) control plane")
tenants_app = typer.Typer(no_args_is_help=True, help="The organisation tree")
app.add_typer(tenants_app, name="tenants")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail")
app.add_typer(audit_app, name="audit")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:
        err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail_config(exc: ConfigurationError) -> None:
    err.print("[red]invalid configuration:[/red]")
    for problem in exc.problems:
        err.print(f"  - {problem}", markup=False, highlight=False)
    raise typer.Exit(2)


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("check-config")
def check_config_cmd(json_out: JsonOpt = False) -> None:
    """Validate settings, the site file and the secret keys; report every problem at once."""
    from controlplane.bootstrap import check_config

    settings = _settings()
    site, problems = check_config(settings)
    if json_out:
        out.print_json(json.dumps({"ok": not problems, "problems": problems}))
    elif problems:
        err.print("[red]invalid configuration:[/red]")
        for problem in problems:
            err.print(f"  - {problem}", markup=False, highlight=False)
    else:
        assert site is not None
        out.print(
            f"[green]configuration ok[/green]: {len(site.regions)} regions, "
            f"{len(site.clouds)} themed clouds, "
            f"{len(site.flavors)} flavors; database {settings.resolved_database_url.split('@')[-1]}"
        )
    raise typer.Exit(2 if problems else 0)


@app.command()
def migrate(
    seed: Annotated[bool, typer.Option(help="Seed the organisation tree when empty")] = True,
    check: Annotated[bool, typer.Option("--check", help="Only verify models and migrations agree")] = False,
) -> None:
    """Bring the database schema to the newest revision (Alembic) and seed the catalogue."""
    from controlplane.bootstrap import prepare
    from controlplane.db.migrate import check as alembic_check

    settings = _settings()
    _logging(settings)
    try:
        if check:
            alembic_check(settings.resolved_database_url)
            out.print("models and migrations agree")
            return
        prepare(settings, seed=seed)
    except ConfigurationError as exc:
        _fail_config(exc)
    except Exception as exc:
        err.print(f"[red]migration failed:[/red] {exc}", markup=True)
        raise typer.Exit(1) from None
    out.print("database is at the newest revision")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port")] = 8000,
    worker: Annotated[bool, typer.Option(help="Supervise an embedded Celery worker + beat")] = True,
) -> None:
    """Run everything on embedded defaults: API, a real Celery worker and beat, metrics."""
    from controlplane.cli.serve import run_serve

    settings = _settings()
    _logging(settings)
    try:
        run_serve(settings, host=host, port=port, with_worker=worker)
    except ConfigurationError as exc:
        _fail_config(exc)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes")] = 2,
    pool: Annotated[str, typer.Option(help="prefork, solo or threads")] = "prefork",
    beat: Annotated[bool, typer.Option(help="Also run beat in this process")] = False,
) -> None:
    """Run a Celery worker against CHUTIAN_BROKER_URL (Redis or RabbitMQ)."""
    from controlplane.bootstrap import check_config
    from controlplane.worker.__main__ import main as worker_main

    settings = _settings()
    _, problems = check_config(settings)
    if problems:
        _fail_config(ConfigurationError(problems))
    _logging(settings)
    worker_main([f"--pool={pool}", f"--concurrency={concurrency}", *(["--beat"] if beat else [])])


@app.command()
def scheduler() -> None:
    """Run Celery beat alone (one per deployment is enough; two are safe)."""
    from controlplane.worker.celery_app import create_celery

    settings = _settings()
    _logging(settings)
    create_celery(settings).start(argv=["beat", f"--loglevel={settings.log_level}"])


@app.command()
def metrics(
    host: Annotated[str | None, typer.Option(help="Listen address (default CHUTIAN_METRICS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default CHUTIAN_METRICS_PORT)")] = None,
) -> None:
    """Serve only the DB-derived gauges: one per deployment, so API replicas need not (the chart)."""
    import signal
    import threading

    from prometheus_client import start_http_server

    from controlplane.db.engine import make_engine
    from controlplane.metrics import build_registry

    settings = _settings()
    _logging(settings)
    registry, _ = build_registry(make_engine(settings.resolved_database_url), domain=True)
    listen = (host or settings.metrics_host, port if port is not None else settings.metrics_port)
    start_http_server(listen[1], addr=listen[0], registry=registry)
    out.print(f"metrics on http://{listen[0]}:{listen[1]}/metrics")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


@app.command("secret-key")
def secret_key() -> None:
    """Print a new Fernet key (append it to CHUTIAN_SECRET_KEYS_FILE)."""
    from cryptography.fernet import Fernet

    sys.stdout.write(Fernet.generate_key().decode() + "\n")


def _tenant_rows(items: list[Any]) -> Table:
    table = Table("path", "名称", "name", "kind", "MLPS", "zone", "status")
    for t in items:
        table.add_row(
            t.path,
            t.name_zh,
            t.name_en,
            t.kind.value,
            str(t.mlps_ceiling),
            t.network_zone.value,
            t.status.value,
        )
    return table


def _with_uow(fn: Any) -> Any:
    from controlplane.db.engine import make_engine
    from controlplane.db.uow import run_in_unit

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        return run_in_unit(engine, fn)
    except DomainError as exc:
        err.print(f"[red]{exc.title}:[/red] {exc.detail}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@tenants_app.command("list")
def tenants_list(
    subtree: Annotated[str | None, typer.Option(help="Only this subtree, e.g. hubei.wuhan")] = None,
    kind: Annotated[str | None, typer.Option(help="province, department, city, county, district, unit")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List tenants (root first, by path)."""
    from controlplane.auth.principal import Scope
    from controlplane.tenants import service
    from controlplane.tenants.models import TenantKind
    from controlplane.tenants.schemas import TenantPublic

    try:
        kind_enum = TenantKind(kind) if kind else None
    except ValueError:
        err.print(f"unknown kind '{kind}'")
        raise typer.Exit(2) from None

    def work(uow: Any) -> list[TenantPublic]:
        flt = service.TenantFilter(subtree=subtree, kind=kind_enum)
        rows, _ = service.list_tenants(uow, Scope(), flt, after=None, limit=100_000)
        return [TenantPublic.from_row(r) for r in rows]

    items = _with_uow(work)
    if json_out:
        sys.stdout.write(json.dumps([i.model_dump(mode="json") for i in items], ensure_ascii=False) + "\n")
    else:
        out.print(_tenant_rows(items))


@tenants_app.command("show")
def tenants_show(path: str, json_out: JsonOpt = False) -> None:
    """Show one tenant by path."""
    from controlplane.auth.principal import Scope
    from controlplane.tenants import service
    from controlplane.tenants.schemas import TenantPublic

    item = _with_uow(lambda uow: TenantPublic.from_row(service.get(uow, Scope(), path)))
    if json_out:
        sys.stdout.write(item.model_dump_json() + "\n")
    else:
        out.print(_tenant_rows([item]))


@tenants_app.command("create")
def tenants_create(
    parent: Annotated[str, typer.Option(help="Parent path, e.g. hubei.wuhan")],
    code: Annotated[str, typer.Option(help="Short code [a-z0-9-], at most 20 characters")],
    name_zh: Annotated[str, typer.Option("--name-zh")],
    name_en: Annotated[str, typer.Option("--name-en")],
    kind: Annotated[str, typer.Option(help="department, city, county, district or unit")],
    credit_code: Annotated[str, typer.Option("--credit-code", help="统一社会信用代码")],
    mlps_ceiling: Annotated[int | None, typer.Option("--mlps-ceiling")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a tenant below PARENT."""
    from pydantic import ValidationError

    from controlplane.auth.principal import system_principal
    from controlplane.tenants import service
    from controlplane.tenants.schemas import TenantCreate, TenantPublic

    try:
        body = TenantCreate(
            parent=parent,
            code=code,
            name_zh=name_zh,
            name_en=name_en,
            kind=kind,
            credit_code=credit_code,
            mlps_ceiling=mlps_ceiling,
        )
    except ValidationError as exc:
        for e in exc.errors():
            err.print(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}", markup=False)
        raise typer.Exit(2) from None
    item = _with_uow(lambda uow: TenantPublic.from_row(service.create(uow, system_principal("cli"), body)))
    if json_out:
        sys.stdout.write(item.model_dump_json() + "\n")
    else:
        out.print(_tenant_rows([item]))


@app.command("bootstrap-admin")
def bootstrap_admin(
    name: Annotated[str, typer.Option(help="Subject name of the platform admin", min=1)],
    days: Annotated[int, typer.Option(help="Token lifetime in days", min=1, max=3650)] = 30,
) -> None:
    """Create a platform-admin binding for NAME and print a new token for it (stdout: the token only)."""
    from datetime import timedelta

    from controlplane.audit.chain import append_hook
    from controlplane.auth import bindings
    from controlplane.auth.principal import system_principal
    from controlplane.auth.schemas import TokenCreate
    from controlplane.bootstrap import prepare
    from controlplane.db.engine import make_engine
    from controlplane.db.uow import run_in_unit

    settings = _settings()
    try:
        TokenCreate(name="bootstrap", subject=name)
    except Exception:
        err.print("--name: use letters, digits and . _ @ : + - only")
        raise typer.Exit(2) from None
    try:
        prepare(settings, seed=True)
    except ConfigurationError as exc:
        _fail_config(exc)
    engine = make_engine(settings.resolved_database_url)

    def work(uow: Any) -> str:
        return bindings.admin_token(
            uow, name, label="bootstrap", created_by="bootstrap-admin", ttl=timedelta(days=days)
        )

    try:
        secret = run_in_unit(engine, work, principal=system_principal("bootstrap-admin"), before_commit=[append_hook])
    finally:
        engine.dispose()
    sys.stdout.write(secret + "\n")


@audit_app.command("verify")
def audit_verify(json_out: JsonOpt = False) -> None:
    """Check the whole chain; exit 1 naming the first broken event."""
    from controlplane.audit.chain import verify
    from controlplane.db.engine import make_engine
    from controlplane.db.uow import unit_of_work

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        with unit_of_work(engine, readonly=True) as uow:
            result = verify(uow.session)
    finally:
        engine.dispose()
    if json_out:
        sys.stdout.write(json.dumps(result.__dict__) + "\n")
    elif result.ok:
        queued = f", {result.pending} queued to be chained" if result.pending else ""
        out.print(f"[green]audit chain intact[/green]: {result.checked} events, head {result.head_seq}{queued}")
    else:
        err.print(f"[red]audit chain broken[/red]: {result.problem}", markup=True, highlight=False)
    raise typer.Exit(0 if result.ok else 1)
