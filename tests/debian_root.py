"""A throwaway Debian root (debootstrap minbase, cached as a tarball by ``scripts/test-assets``)
for running the real playbooks through the chroot connection; a pytest plugin so the
provisioner tests and the control-plane tests share one unpacked copy per session."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CHUTIAN_ASSET_CACHE", "/var/cache/chutian"))
TARBALL = CACHE / "debootstrap-bookworm-minbase.tar.zst"
COLLECTIONS = CACHE / "ansible-collections"
CHROOT_PLUGIN = COLLECTIONS / "ansible_collections/community/general/plugins/connection/chroot.py"


@pytest.fixture(scope="session")
def assets() -> None:
    if not (TARBALL.is_file() and CHROOT_PLUGIN.is_file()):
        subprocess.run([str(REPO / "scripts/test-assets")], check=True, timeout=900)


@pytest.fixture(scope="session")
def pristine_root(assets: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cached root, unpacked once per session; tests write to an overlay on top of it."""
    root = tmp_path_factory.mktemp("debootstrap") / "root"
    root.mkdir()
    subprocess.run(["tar", "--zstd", "-xpf", str(TARBALL), "-C", str(root)], check=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # ~220 MB: don't leave it to pytest's basetemp rotation


@pytest.fixture
def debian_root(pristine_root: Path, tmp_path: Path) -> Iterator[Path]:
    """A throwaway Debian root: an overlay (upper dir per test) on the pristine one, or a copy."""
    upper, work, root = tmp_path / "upper", tmp_path / "work", tmp_path / "root"
    for path in (upper, work, root):
        path.mkdir()
    options = f"lowerdir={pristine_root},upperdir={upper},workdir={work}"
    mounted = (
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(root)], check=False, capture_output=True
        ).returncode
        == 0
    )
    if not mounted:  # no overlayfs here: pay for a full copy
        subprocess.run(["tar", "--zstd", "-xpf", str(TARBALL), "-C", str(root)], check=True)
    yield root
    if mounted:
        subprocess.run(["umount", str(root)], check=False, capture_output=True)
    shutil.rmtree(tmp_path, ignore_errors=True)
