"""N VMs through the control plane against a plain sequential openstacksdk loop, on the box.

Baseline (same run, same box, same flavor and image): an admin-made project, then
``create_server`` + ``wait_for_server`` one after another, as a script would.
Control plane: N one-VM requests through the API (create, submit, approve), then their
operations run by a pool of worker threads (find-or-create by tag, wait for ACTIVE, ledger
commit, audit), wall time from the first request to the last ACTIVE. Target: <= 0.5x the loop.

    CHUTIAN_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/vms.py [--smoke] [--n 50] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

# The repository, not this folder, first: benchmarks/requests.py would shadow the `requests`
# package that keystoneauth imports.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent
]

from benchmarks._box import CLOUD, REGION, ControlPlane, control_plane, onboarding_body, scoped_as_admin
from provisioners.base import ProjectRef
from provisioners.openstack import CloudConfig, OpenStackProvisioner, domain_name, project_name

REQUIRES_OPENSTACK_BOX = True
FLAVOR = "c1.small"


def bare_loop(cp: ControlPlane, n: int, run: str) -> tuple[float, ProjectRef]:
    """What an operator's script does: one server after another, each waited for."""
    admin = cp.admin
    domain = admin.identity.create_domain(name=f"bench-bare-{run}")
    project = admin.identity.create_project(name=f"bench-bare-{run}", domain_id=domain.id)
    admin.compute.update_quota_set(project.id, instances=n + 5, cores=4 * n + 20, ram=4096 * n + 20480)
    conn = scoped_as_admin(admin, project)
    flavor = conn.compute.find_flavor(FLAVOR)
    image = conn.image.find_image(cp.image)
    start = time.perf_counter()
    for i in range(n):
        server = conn.compute.create_server(name=f"bare-{i}", flavor_id=flavor.id, image_id=image.id, networks="none")
        conn.compute.wait_for_server(server, status="ACTIVE", interval=0.5, wait=300)
    wall = time.perf_counter() - start
    return wall, ProjectRef(id=project.id, name=project.name, domain_id=domain.id)


def through_control_plane(cp: ControlPlane, n: int, workers: int, county: str, system: str) -> tuple[float, float]:
    """(seconds in the API: create, submit, approvals; seconds provisioning once approved)."""
    body = {
        "tenant": county,
        "cloud": CLOUD,
        "region": REGION,
        "declaration": {"items": [{"name": "vm", "sharing": "unconditional", "catalogue_ref": "HB-1"}]},
        "system": system,
        "spec": {"kind": "vm", "flavor": FLAVOR, "image": cp.image, "count": 1},
    }
    start = time.perf_counter()
    operations = [cp.approved({**body, "spec": {**body["spec"], "name": f"cp-{i}"}})["operation"] for i in range(n)]
    approved = time.perf_counter()
    cp.run_all(operations, workers)
    return approved - start, time.perf_counter() - approved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few VMs, for CI")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8, help="worker threads running operations")
    args = parser.parse_args()
    n = min(args.n, 6) if args.smoke else args.n
    base_url = os.environ.get("CHUTIAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    run = uuid.uuid4().hex[:6]
    t0 = time.perf_counter()
    with control_plane(base_url) as cp:
        provisioner = OpenStackProvisioner.from_config(
            CloudConfig(region=REGION, clouds_yaml=cp.worker.settings.clouds_yaml, cloud="chutian-box")
        )
        county = cp.tenant(f"vm{run}")
        onboarded = cp.approved(onboarding_body(county, f"vms-{run}"))
        cp.run_all([onboarded["operation"]], 1)
        bare_project = None
        try:
            bare, bare_project = bare_loop(cp, n, run)
            print(f"plain openstacksdk loop: {n} VMs in {bare:6.2f} s ({bare / n:5.2f} s per VM)")
            api, provisioning = through_control_plane(cp, n, args.workers, county, onboarded["system"])
            ours = api + provisioning
            print(
                f"control plane ({args.workers} worker threads): {n} VMs in {ours:6.2f} s = {api:.2f} s of requests "
                f"(create, submit, approvals) + {provisioning:.2f} s provisioning"
            )
            alone = provisioning / bare
            print(f"  x{ours / bare:.2f} the loop's wall time (target <= 0.5); provisioning alone x{alone:.2f}")
            project = provisioner.find_project(domain_name(county), project_name(county, CLOUD))
            servers = list(cp.admin.compute.servers(all_projects=True, project_id=project.id))
            active = sum(s.status == "ACTIVE" for s in servers)
            print(f"check: {active} of {len(servers)} servers ACTIVE in the county's project (expected {n})")
            if active != n or len(servers) != n:
                return 1
        finally:
            ours_project = provisioner.find_project(domain_name(county), project_name(county, CLOUD))
            for ref in (bare_project, ours_project):
                if ref is not None:
                    provisioner.retire_project(ref)
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
