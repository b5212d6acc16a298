"""A VM-sourced backup policy end to end: the backup agent (`playbooks/backup-agent.yml`, real
ansible-runner) installs the policy's credentials on the "VM" and runs restic there, writing
through the append-only gateway into the single-node Swift; the DR side judges; a restore is
byte-identical.

The VM is the throwaway Debian root of the baseline tests (restic installed in it) reached
through the chroot connection: no VM with an address can run here, so the test replaces only
the host lookup (`extras["baseline_hosts"]`, as the MLPS baseline test does). The chroot shares
this machine's network, so restic inside it reaches the gateway on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from controlplane.backup import drills, runner
from controlplane.backup.enrolment import sealer
from controlplane.backup.models import BackupPolicy
from controlplane.backup.store import DrStore
from controlplane.db.uow import unit_of_work
from controlplane.settings import Settings
from controlplane.site_config import Site
from provisioners.ansible import AnsibleRunner, Host
from tests.conftest import CREATED_SECRETS
from tests.controlplane.helpers import assert_problem
from tests.controlplane.requests.conftest import COUNTY, World, make_world
from tests.controlplane.requests.test_backup_enrolment import _enrol
from tests.debian_root import COLLECTIONS
from tests.integration.dr.conftest import tree_digests, write_random
from tests.integration.dr.test_dr_control_plane import dr_store  # noqa: F401  (fixture)

pytestmark = pytest.mark.dr
MIB = 2**20
DATA = "srv/payroll"  # inside the VM
PARTS = 12


def _vm_request(world: World) -> str:
    req = world.create({"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10", "count": 1})
    assert world.verb(world.requester, req["id"], "submit").status_code == 200
    final = world.approve_all(req["id"])
    assert world.run_operation(final["operation"]) == "succeeded"
    return str(req["id"])


@pytest.fixture
def vm_world(
    api_as: Callable[..., TestClient],
    engine: Engine,
    settings: Settings,
    site: Site,
    dr_store: DrStore,  # noqa: F811
    debian_root: Path,
    tmp_path: Path,
) -> Iterator[tuple[World, list[Path]]]:
    world = make_world(api_as, engine, settings, site)
    world.worker.extras["dr_store"] = dr_store
    private: list[Path] = []

    def keep(directory: Path) -> None:  # what ansible-runner wrote, before the adapter removes it
        copy = tmp_path / f"ansible-{len(private)}"
        shutil.copytree(directory, copy, symlinks=True, ignore=shutil.ignore_patterns("ssh_key_data", "cp"))
        private.append(copy)

    world.worker.extras["ansible"] = AnsibleRunner(collections_path=COLLECTIONS, inspect_private_dir=keep)
    world.worker.extras["baseline_hosts"] = lambda req, tags: [
        Host(tag, str(debian_root), {"ansible_connection": "community.general.chroot"}) for tag in tags
    ]
    yield world, private
    _wait_for_chrooted_processes(debian_root)


def _wait_for_chrooted_processes(root: Path, limit_s: float = 15.0) -> None:
    """Ansible's async watchdog checks its job every 5 s, so it may outlive the run by that much
    inside the root: let it go before the root is unmounted (else the umount is EBUSY)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        inside = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if os.readlink(proc / "root") == str(root):
                    inside.append(proc.name)
        if not inside:
            return
        time.sleep(0.2)


def test_a_vm_policy_backs_up_through_the_agent_and_restores_byte_identical(
    vm_world: tuple[World, list[Path]], api_as: Callable[..., TestClient], debian_root: Path
) -> None:
    world, private = vm_world
    data = debian_root / DATA
    for i in range(PARTS):  # large enough that restic runs for a few of the agent's 1 s polls
        write_random(data / f"part{i}.bin", 8 * MIB, seed=i)
    (data / "ledger.csv").write_text("id,amount\n1,100\n")
    vm_id = _vm_request(world)

    # `vm` must name a succeeded VM request of the tenant
    bad = world.create(
        {
            "kind": "backup-enrolment",
            "name": "bad",
            "paths": ["/srv"],
            "target_region": "yichang",
            "size_gb": 1,
            "vm": str(uuid.uuid4()),
        },
        cloud="health",
    )
    problem = assert_problem(world.verb(world.requester, bad["id"], "submit"), 422)
    assert "no VM request" in problem["detail"]

    request = _enrol(world, api_as, Path(f"/{DATA}"), vm=vm_id)
    assert request["state"] == "succeeded", request
    admin = api_as("tenant-admin", COUNTY)
    policy = admin.get("/v1/backup-policies").json()["items"][0]
    assert policy["source_kind"] == "vm" and policy["source_vm"] == vm_id
    with unit_of_work(world.engine) as uow:
        row = uow.session.scalars(select(BackupPolicy)).one()
        password = sealer(world.worker).open(row.password_sealed)
    CREATED_SECRETS.append(password)  # the suite fails if it ever reaches a log line

    started = admin.post(f"/v1/backup-policies/{policy['id']}:run").json()
    streamed: list[dict[str, Any]] = []
    assert runner.execute_run(world.worker, uuid.UUID(started["id"]), on_progress=streamed.append) == "verified"
    run = admin.get(f"/v1/backup-runs/{started['id']}").json()
    assert run["state"] == "verified", run
    assert run["files_new"] == PARTS + 1 and run["bytes_uploaded"] >= PARTS * 8 * MIB
    # restic's --json status lines came back while it ran (the agent polls every second; how many
    # a run yields depends on how long restic takes against the playbook's own steps on this
    # loaded machine, so the test asks for at least one parsed status line, not a count)
    assert streamed, run["progress"]
    assert all(0.0 <= d["percent_done"] <= 1.0 and d["total_files"] <= PARTS + 1 for d in streamed), streamed
    # judged at the DR side; the sample was hashed on the VM and matches what the DR side lists
    assert run["manifest"]["verification"]["listed_at_dr"] is True
    assert run["manifest"]["files"] == PARTS + 1 and run["manifest"]["sampled_sha256"] == PARTS + 1
    assert run["progress"]["timing"]["engine_s"] > 0

    # the agent's credentials: root-only files on the VM; nothing the runner wrote holds a secret
    for suffix in ("env", "password"):
        info = (debian_root / f"etc/chutian/backup/payroll.{suffix}").stat()
        assert (info.st_mode & 0o777, info.st_uid) == (0o600, 0)
    assert private
    for copy in private:
        for path in (copy / "artifacts").rglob("*"):
            if path.is_file():
                assert password not in path.read_text(errors="replace"), path
    assert password not in str(run)

    # an incremental run uploads only the changed file
    write_random(data / "part3.bin", 8 * MIB, seed=99)
    second = admin.post(f"/v1/backup-policies/{policy['id']}:run").json()
    runner.execute_run(world.worker, uuid.UUID(second["id"]))
    second = admin.get(f"/v1/backup-runs/{second['id']}").json()
    assert second["state"] == "verified", second
    assert second["files_changed"] == 1 and 8 * MIB <= second["bytes_uploaded"] < 9 * MIB

    # restore at the DR side: byte-identical to the VM's files
    restore = admin.post(f"/v1/backup-policies/{policy['id']}:restore", json={"name": "vm-restore"}).json()
    assert drills.execute_drill(world.worker, uuid.UUID(restore["id"])) == "passed"
    restored = Path(admin.get(f"/v1/backup-drills/{restore['id']}").json()["target"]) / DATA
    assert tree_digests(restored) == tree_digests(data)


def test_a_vm_the_agent_cannot_reach_fails_the_run_with_the_reason(
    vm_world: tuple[World, list[Path]], api_as: Callable[..., TestClient], debian_root: Path
) -> None:
    world, _ = vm_world
    (debian_root / DATA).mkdir(parents=True)
    vm_id = _vm_request(world)
    _enrol(world, api_as, Path(f"/{DATA}"), vm=vm_id)
    admin = api_as("tenant-admin", COUNTY)
    policy = admin.get("/v1/backup-policies").json()["items"][0]
    world.worker.extras["baseline_hosts"] = lambda req, tags: [
        Host(tag, str(debian_root / "no-such-root"), {"ansible_connection": "community.general.chroot"}) for tag in tags
    ]

    started = admin.post(f"/v1/backup-policies/{policy['id']}:run").json()
    assert runner.execute_run(world.worker, uuid.UUID(started["id"])) == "failed"
    run = admin.get(f"/v1/backup-runs/{started['id']}").json()
    assert "backup-agent.yml" in run["reason"], run
