"""`chutian serve`: the API under uvicorn, supervising a child Celery worker with embedded beat.

Embedded mode uses kombu's SQLAlchemy transport on a SQLite file under the data dir, so
the worker is a real Celery worker in its own process (a crash there never takes the API
down, and a task visibly runs in another pid). The child is restarted if it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import start_http_server

from controlplane.api.app import create_app
from controlplane.bootstrap import ensure_embedded_admin, prepare
from controlplane.settings import Settings

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if serve dies without cleaning up (e.g. SIGKILL)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after shutdown, killing the process before any
    `finally` of ours runs; stop the worker inside its signal-capture block instead."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._on_exit()


class WorkerSupervisor:
    """Keeps one `python -m controlplane.worker --beat` child alive while serve runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-supervisor", daemon=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["CHUTIAN_DATA_DIR"] = str(self.settings.data_dir)
        env.setdefault("CHUTIAN_DATABASE_URL", self.settings.resolved_database_url)
        cmd = [
            sys.executable,
            "-m",
            "controlplane.worker",
            "--beat",
            "--pool=solo",
            f"--loglevel={self.settings.log_level}",
            "--hostname=embedded@%h",
        ]
        log.info("starting embedded worker: %s", " ".join(cmd))
        return subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509

    def start(self) -> None:
        self.proc = self._spawn()
        self._thread.start()

    def _loop(self) -> None:
        backoff = 1.0
        while not self._stop.wait(1.0):
            if self.proc is not None and self.proc.poll() is not None:
                log.warning("embedded worker exited with %s; restarting in %.0f s", self.proc.returncode, backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
                self.proc = self._spawn()

    def stop(self) -> None:
        self._stop.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def run_serve(settings: Settings, *, host: str, port: int, with_worker: bool) -> None:
    started = time.monotonic()
    site = prepare(settings, seed=True)
    token_file = ensure_embedded_admin(settings)
    if token_file is not None:
        log.info(
            "platform-admin token for 'admin' is in %s (mode 0600): "
            'curl -H "Authorization: Bearer $(cat %s)" http://%s:%d/v1/tenants',
            token_file,
            token_file,
            host,
            port,
        )
    if settings.embedded and settings.demo_data:
        from controlplane.db.engine import make_engine
        from controlplane.portal.demo import seed_portal_demo

        demo_engine = make_engine(settings.resolved_database_url)
        try:
            seed_portal_demo(demo_engine)
        finally:
            demo_engine.dispose()
    app = create_app(settings, site=site)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=app.state.ctx.registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    supervisor = WorkerSupervisor(settings) if with_worker and settings.embedded else None
    if supervisor is not None:
        supervisor.start()
    log.info("prepared in %.1f s; portal on http://%s:%d/ (API under /v1)", time.monotonic() - started, host, port)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(), access_log=False)
    server = _Server(config, on_exit=supervisor.stop if supervisor else lambda: None)
    try:
        server.run()
    finally:
        if supervisor is not None:
            supervisor.stop()
