"""Onboarding tenants through the control plane against the `openstack` CLI and a bare
sequential openstacksdk script doing the same Keystone/Nova/Cinder/Neutron steps, on the box.

The same work each way: a domain, a project, a group with `reader` on the project, compute
and volume quotas, and the default network (network, subnet, router with the zone's external
gateway and an interface, security group). Baselines run in the same run on the same box.
Targets: <= 0.1x the CLI's time per tenant; <= 1.2x the bare script for one tenant; >= 2x
the bare script's throughput for 20 tenants submitted at once (the control plane runs them
on a pool of worker threads, the script one after another).

    CHUTIAN_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/onboarding.py [--smoke] [--tenants 20] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

# The repository, not this folder, first: benchmarks/requests.py would shadow the `requests`
# package that keystoneauth imports.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent
]

from benchmarks._box import (
    BOX_CLOUD,
    BOX_DIR,
    CLOUD,
    REGION,
    ControlPlane,
    control_plane,
    onboarding_body,
    scoped_as_admin,
)
from provisioners.base import ProjectRef
from provisioners.openstack import CloudConfig, OpenStackProvisioner, domain_name, project_name

REQUIRES_OPENSTACK_BOX = True
EXTERNAL = "ext-egov"  # the box's network zone egov-extranet
QUOTAS = {"cores": 20, "ram": 40960, "instances": 10}


def bare_script(cp: ControlPlane, name: str) -> ProjectRef:
    """What an operator would write with openstacksdk: each call once, in order."""
    admin = cp.admin
    domain = admin.identity.create_domain(name=name)
    project = admin.identity.create_project(name=name, domain_id=domain.id, tags=[f"tenant:{name}", f"cloud:{CLOUD}"])
    group = admin.identity.create_group(name=f"{name}--users", domain_id=domain.id)
    admin.identity.assign_project_role_to_group(project, group, admin.identity.find_role("reader"))
    admin.compute.update_quota_set(project.id, **QUOTAS)
    admin.block_storage.update_quota_set(project.id, gigabytes=100, volumes=10)
    conn = scoped_as_admin(admin, project)
    external = admin.network.find_network(EXTERNAL)
    network = conn.network.create_network(name="default")
    subnet = conn.network.create_subnet(name="default", network_id=network.id, ip_version=4, cidr="10.20.0.0/24")
    router = conn.network.create_router(name="default", external_gateway_info={"network_id": external.id})
    conn.network.add_interface_to_router(router, subnet=subnet.id)
    conn.network.create_security_group(name="default-zone")
    return ProjectRef(id=project.id, name=project.name, domain_id=domain.id)


def cli_script(name: str) -> None:
    """The same steps with the `openstack` command-line client, one command each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env |= {"OS_CLIENT_CONFIG_FILE": str(BOX_DIR / "clouds.yaml"), "OS_CLOUD": BOX_CLOUD}
    cli = str(Path(sys.executable).with_name("openstack"))

    def osc(*args: str) -> str:
        done = subprocess.run(
            [cli, *args, "-f", "value", "-c", "id"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"openstack {' '.join(args)}: {done.stderr.strip()[-400:]}")
        return done.stdout.strip()

    def run(*args: str) -> None:
        done = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"openstack {' '.join(args)}: {done.stderr.strip()[-400:]}")

    osc("domain", "create", name)
    project = osc("project", "create", "--domain", name, "--tag", f"tenant:{name}", name)
    osc("group", "create", "--domain", name, f"{name}--users")
    run("role", "add", "--group", f"{name}--users", "--group-domain", name, "--project", project, "reader")
    run(
        "quota",
        "set",
        "--cores",
        "20",
        "--ram",
        "40960",
        "--instances",
        "10",
        "--gigabytes",
        "100",
        "--volumes",
        "10",
        project,
    )
    network = osc("network", "create", "--project", project, "default")
    subnet = osc(
        "subnet", "create", "--project", project, "--network", network, "--subnet-range", "10.20.0.0/24", "default"
    )
    router = osc("router", "create", "--project", project, "default")
    run("router", "set", "--external-gateway", EXTERNAL, router)
    run("router", "add", "subnet", router, subnet)
    osc("security", "group", "create", "--project", project, "default-zone")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tenant each way and 4 at once, for CI")
    parser.add_argument("--tenants", type=int, default=20, help="tenants submitted at once")
    parser.add_argument("--workers", type=int, default=8, help="worker threads running operations")
    args = parser.parse_args()
    many = min(args.tenants, 4) if args.smoke else args.tenants
    base_url = os.environ.get("CHUTIAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    run = uuid.uuid4().hex[:6]
    t0 = time.perf_counter()
    made: list[ProjectRef] = []
    with control_plane(base_url) as cp:
        provisioner = OpenStackProvisioner.from_config(
            CloudConfig(region=REGION, clouds_yaml=BOX_DIR / "clouds.yaml", cloud=BOX_CLOUD)
        )
        counties = [cp.tenant(f"ob{run}{i}") for i in range(many + 1)]  # made before timing
        try:
            start = time.perf_counter()
            cli_script(f"bench-cli-{run}")
            cli = time.perf_counter() - start
            made.append(provisioner.find_project(f"bench-cli-{run}", f"bench-cli-{run}"))
            start = time.perf_counter()
            made.append(bare_script(cp, f"bench-sdk-{run}"))
            bare_one = time.perf_counter() - start
            start = time.perf_counter()
            for i in range(many):
                made.append(bare_script(cp, f"bench-sdk-{run}-{i}"))
            bare_many = time.perf_counter() - start

            start = time.perf_counter()
            cp.run_all([cp.approved(onboarding_body(counties[0], f"ob-{run}"))["operation"]], 1)
            ours_one = time.perf_counter() - start
            start = time.perf_counter()
            requests = [cp.approved(onboarding_body(c, f"ob-{run}-{i}")) for i, c in enumerate(counties[1:])]
            cp.run_all([r["operation"] for r in requests], args.workers)
            ours_many = time.perf_counter() - start

            print(f"openstack CLI, 1 tenant:             {cli:7.2f} s")
            print(f"bare openstacksdk, 1 tenant:         {bare_one:7.2f} s")
            print(f"control plane, 1 tenant:             {ours_one:7.2f} s")
            print(
                f"  x{ours_one / cli:.3f} the CLI (target <= 0.1), x{ours_one / bare_one:.2f} the bare script (<= 1.2)"
            )
            print(f"bare openstacksdk, {many} tenants in turn: {bare_many:7.2f} s  ({many / bare_many:5.2f} tenants/s)")
            print(
                f"control plane, {many} at once ({args.workers} workers): {ours_many:7.2f} s  ({many / ours_many:5.2f} "
                f"tenants/s), x{bare_many / ours_many:.2f} the bare script's throughput (target >= 2)"
            )
            domains = {domain_name(c) for c in counties}
            projects = [provisioner.find_project(domain_name(c), project_name(c, CLOUD)) for c in counties]
            found = sum(p is not None for p in projects)
            print(f"check: {found} of {len(counties)} projects in Keystone ({len(domains)} domain)")
            made.extend(p for p in projects if p is not None)
            if not all(projects):
                return 1
        finally:
            for ref in made:
                if ref is not None:
                    provisioner.retire_project(ref)
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
