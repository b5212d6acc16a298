"""What scripts/openstack-box and scripts/swift-box share: console lines, running commands into
logs, finding Python 3.11, Debian packages, install hashes. Standard library only: the boxes run
this on the machine's Python before their own virtualenvs exist."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path


class BoxError(Exception):
    pass


class Console:
    """`say` to stderr for people; `out`/`timing` to stdout, one greppable line each for CI."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def say(self, msg: str) -> None:
        sys.stderr.write(f"{self.prefix}: {msg}\n")
        sys.stderr.flush()

    def out(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def timing(self, what: str, seconds: float) -> None:
        self.out(f"{self.prefix}: TIMING {what} {seconds:.1f}s")


def run(cmd: list[str], log: Path | None = None, env: dict[str, str] | None = None, check: bool = True) -> int:
    """Run a command; its output goes to ``log`` (appended) or to our stderr."""
    full_env = {**os.environ, **(env or {})}
    if log is None:
        proc = subprocess.run(cmd, env=full_env, stdout=sys.stderr, stdin=subprocess.DEVNULL, check=False)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"\n$ {shlex.join(cmd)}\n")
            fh.flush()
            proc = subprocess.run(
                cmd, env=full_env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
            )
    if check and proc.returncode != 0:
        where = f" (see {log})" if log else ""
        raise BoxError(f"command failed with exit {proc.returncode}: {shlex.join(cmd)}{where}")
    return proc.returncode


def python311(why: str) -> str:
    """The Python 3.11 the box's constraints are pinned for."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found:
        return found
    for cand in sorted(Path("/root/.pyenv/versions").glob("3.11*/bin/python3.11")):
        return str(cand)
    raise BoxError(f"python3.11 not found ({why})")


def install_hash(python: str, box_version: str, files: Iterable[Path], extra: Iterable[str] = ()) -> str:
    """Changes whenever the box version, the interpreter, `extra` or the pinned files change."""
    digest = hashlib.sha256()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    for part in (box_version, version, *extra):
        digest.update(part.encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def missing_apt(packages: Iterable[str]) -> list[str]:
    missing = []
    for pkg in packages:
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False
        ).stdout
        if "install ok installed" not in res:
            missing.append(pkg)
    return missing


def apt_install(packages: Iterable[str], log: Path, say: Callable[[str], None]) -> None:
    missing = missing_apt(packages)
    if not missing:
        return
    say(f"apt-get install {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"], log, env)
    run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", "--no-install-recommends", *missing],
        log,
        env,
    )


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
