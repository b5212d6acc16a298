"""The `chutian` command: run, migrate, check and inspect the control plane."""

from controlplane.cli.main import app

__all__ = ["app"]
