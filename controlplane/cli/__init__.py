"""The `chutian` command: run, migrate, check and inspect the control plane."""

from controlplane.cli import backup as _backup  # noqa: F401  (registers `chutian backup`)
from controlplane.cli.main import app

__all__ = ["app"]
