"""`python -m controlplane.worker [--embedded] [--beat]`: the worker entry `serve` supervises."""

from __future__ import annotations

import argparse
import socket

from controlplane.settings import Settings
from controlplane.worker.celery_app import DEFAULT_QUEUE, create_celery


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m controlplane.worker")
    parser.add_argument("--beat", action="store_true", help="embed Celery beat (-B)")
    parser.add_argument("--pool", default="solo")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--queues", default=DEFAULT_QUEUE)
    parser.add_argument("--hostname", default=f"chutian@{socket.gethostname()}")
    args = parser.parse_args(argv)
    settings = Settings()
    app = create_celery(settings)
    worker_argv = [
        "worker",
        f"--pool={args.pool}",
        f"--concurrency={args.concurrency}",
        f"--loglevel={args.loglevel}",
        f"--queues={args.queues}",
        f"--hostname={args.hostname}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.beat:
        worker_argv += ["--beat"]
    app.worker_main(argv=worker_argv)


if __name__ == "__main__":
    main()
