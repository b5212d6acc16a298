"""The Ansible provisioner running the real playbooks with the real ansible-runner.

Targets are real Debian roots: a `debootstrap --variant=minbase bookworm` tree with the
packages the playbooks manage, cached as a tarball outside the clone by
`scripts/test-assets` (called here when missing; about a minute once, then an untar of
under a second per test). The playbooks reach it through the `community.general.chroot`
connection, and the results are checked with the validators inside the root (`sshd -t`,
`sshd -T`, `nft -c`, `chronyd -p`, `restic`). One test starts an SSH test host: a network
namespace joined to this one by a veth pair, running that root's own sshd with a fresh host
key and an authorized key, and drives a playbook over real SSH with the key handed to the
runner's ssh-agent. Needs root (chroot, ip netns), as in CI.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioners.ansible import (
    AnsibleRunner,
    Host,
    PlaybookResult,
    Progress,
    SecretValue,
    baseline_vars,
)
from provisioners.errors import (
    BackendResourceFailed,
    BackendTimeout,
    InvalidField,
    TransientBackendError,
)
from tests.debian_root import COLLECTIONS

RESTIC_PASSWORD = "correct-horse-" + secrets.token_hex(8)
BACKEND_SECRET = "swift-app-cred-" + secrets.token_hex(8)


@pytest.fixture
def private_dirs() -> list[Path]:
    return []


@pytest.fixture
def runner(assets: None, tmp_path: Path, private_dirs: list[Path]) -> AnsibleRunner:
    def keep_artifacts(private: Path) -> None:
        """Copy what the runner leaves behind before the adapter removes the private dir."""
        copy = tmp_path / f"private-{len(private_dirs)}"
        shutil.copytree(private, copy, symlinks=True, ignore=shutil.ignore_patterns("ssh_key_data", "cp"))
        private_dirs.append(private)
        private_dirs.append(copy)

    return AnsibleRunner(collections_path=COLLECTIONS, inspect_private_dir=keep_artifacts)


def in_root(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *command], check=False, capture_output=True, text=True, timeout=60)


def chroot_host(root: Path, name: str = "vm-1") -> list[Host]:
    return [Host(name, str(root), {"ansible_connection": "community.general.chroot"})]


def sshd_effective(root: Path) -> dict[str, str]:
    out = in_root(root, "/usr/sbin/sshd", "-T")
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def succeeded(result: PlaybookResult) -> PlaybookResult:
    assert result.status == "successful", result.failures
    return result.raise_for_status()


# --- baseline.yml -------------------------------------------------------------------------


def test_baseline_mlps2_hardens_a_debian_root_and_a_second_run_changes_nothing(
    runner: AnsibleRunner, debian_root: Path
) -> None:
    events: list[Progress] = []

    first = succeeded(
        runner.baseline(
            chroot_host(debian_root), mlps_level=2, tcp_ports=[22, 443], udp_ports=[514], progress=events.append
        )
    )

    assert first.hosts["vm-1"].changed > 0 and first.hosts["vm-1"].failed == 0
    # SSH: the drop-in is valid and is what sshd actually uses.
    assert in_root(debian_root, "/usr/sbin/sshd", "-t").returncode == 0
    sshd = sshd_effective(debian_root)
    assert sshd["permitrootlogin"] == "without-password"  # no root password login
    assert sshd["permitemptypasswords"] == "no"
    assert sshd["maxauthtries"] == "4"
    assert sshd["x11forwarding"] == "no"
    assert "cbc" not in sshd["ciphers"] and "chacha20-poly1305@openssh.com" in sshd["ciphers"]
    assert (debian_root / "etc/ssh/sshd_config.d/10-chutian-mlps.conf").stat().st_mode & 0o777 == 0o600
    # Time: only the data centre's servers, and chrony accepts the configuration.
    sources = (debian_root / "etc/chrony/sources.d/chutian.sources").read_text()
    assert "server ntp1.chutian.hubei.gov.cn iburst" in sources
    chrony_conf = (debian_root / "etc/chrony/chrony.conf").read_text()
    assert "\npool " not in chrony_conf and "# pool 2.debian.pool.ntp.org" in chrony_conf
    assert in_root(debian_root, "chronyd", "-p").returncode == 0
    # Audit rules, without the level-3 lock.
    rules = (debian_root / "etc/audit/rules.d/50-chutian-mlps.rules").read_text()
    assert "-w /etc/shadow -p wa -k identity" in rules and "time-change" in rules
    assert "privileged-exec" not in rules
    assert not (debian_root / "etc/audit/rules.d/99-chutian-finalize.rules").exists()
    # Password policy.
    login_defs = (debian_root / "etc/login.defs").read_text()
    assert "\nPASS_MAX_DAYS\t90\n" in login_defs and "\nUMASK\t022\n" in login_defs
    assert "minlen = 8" in (debian_root / "etc/security/pwquality.conf.d/50-chutian.conf").read_text()
    # Firewall: default deny plus the tenant's ports, and nft accepts the ruleset.
    ruleset = (debian_root / "etc/nftables.conf").read_text()
    assert "policy drop;" in ruleset
    assert "tcp dport { 22, 443 } accept" in ruleset and "udp dport { 514 } accept" in ruleset
    check = in_root(debian_root, "/usr/sbin/nft", "-c", "-f", "/etc/nftables.conf")
    assert check.returncode == 0, check.stderr
    # The event stream became progress: task names, then per-host counts.
    assert "SSH hardening drop-in" in [e.task for e in events if e.host is None]
    assert events[-1].changed == first.changed and events[-1].failed == 0

    second = succeeded(runner.baseline(chroot_host(debian_root), mlps_level=2, tcp_ports=[22, 443], udp_ports=[514]))
    assert second.hosts["vm-1"].changed == 0
    assert second.hosts["vm-1"].ok == first.hosts["vm-1"].ok


def test_baseline_mlps3_adds_the_stricter_settings_idempotently(runner: AnsibleRunner, debian_root: Path) -> None:
    succeeded(runner.baseline(chroot_host(debian_root), mlps_level=3))

    sshd = sshd_effective(debian_root)
    assert sshd["maxauthtries"] == "3"
    assert sshd["passwordauthentication"] == "no"
    assert sshd["allowtcpforwarding"] == "no"
    assert sshd["banner"] == "/etc/issue.net" and (debian_root / "etc/issue.net").is_file()
    assert (debian_root / "etc/audit/rules.d/99-chutian-finalize.rules").read_text().strip().endswith("-e 2")
    assert "privileged-exec" in (debian_root / "etc/audit/rules.d/50-chutian-mlps.rules").read_text()
    assert "max_log_file_action = keep_logs" in (debian_root / "etc/audit/auditd.conf").read_text()
    pwquality = (debian_root / "etc/security/pwquality.conf.d/50-chutian.conf").read_text()
    assert "minlen = 12" in pwquality and "enforce_for_root" in pwquality
    assert "\nUMASK\t027\n" in (debian_root / "etc/login.defs").read_text()
    assert "cmdport 0" in (debian_root / "etc/chrony/conf.d/chutian.conf").read_text()
    assert in_root(debian_root, "chronyd", "-p").returncode == 0
    assert in_root(debian_root, "/usr/sbin/nft", "-c", "-f", "/etc/nftables.conf").returncode == 0
    assert "tcp dport { 22 } accept" in (debian_root / "etc/nftables.conf").read_text()

    again = succeeded(runner.baseline(chroot_host(debian_root), mlps_level=3))
    assert again.hosts["vm-1"].changed == 0


def test_bad_baseline_input_fails_the_run_with_the_reason(runner: AnsibleRunner, debian_root: Path) -> None:
    result = runner.run("baseline.yml", chroot_host(debian_root), extra_vars=baseline_vars(2, tcp_ports=[70000]))

    assert result.status == "failed" and result.hosts["vm-1"].failed == 1
    assert any("ports integers in 1-65535" in failure for failure in result.failures)
    with pytest.raises(BackendResourceFailed, match=r"baseline\.yml"):
        result.raise_for_status()


# --- backup-agent.yml ---------------------------------------------------------------------


def scheduler_files(root: Path) -> set[str]:
    places = ["etc/cron.d", "etc/cron.daily", "etc/cron.hourly", "etc/systemd/system", "var/spool/cron"]
    found = set()
    for place in places:
        base = root / place
        if base.exists():
            found |= {str(p.relative_to(root)) for p in base.rglob("*")}
    return found


def backup_agent(runner: AnsibleRunner, hosts: list[Host], **options: object) -> PlaybookResult:
    return runner.backup_agent(
        hosts,
        policy="pol-wuhan-1",
        repository="/srv/backup/pol-wuhan-1",
        password=RESTIC_PASSWORD,
        backend_env={"OS_APPLICATION_CREDENTIAL_SECRET": BACKEND_SECRET},
        **options,
    )


def backup_secrets() -> dict[str, SecretValue]:
    return {
        "restic_password": RESTIC_PASSWORD,
        "restic_backend_env": {"OS_APPLICATION_CREDENTIAL_SECRET": BACKEND_SECRET},
    }


def assert_no_secret_left(private_dirs: list[Path]) -> None:
    """The private dir is gone, and nothing the runner wrote (argv, env, stdout) holds a secret."""
    removed, copies = private_dirs[0::2], private_dirs[1::2]
    assert removed and not any(p.exists() for p in removed)
    for copy in copies:
        artifacts = list((copy / "artifacts").rglob("*"))
        assert any(p.name == "stdout" for p in artifacts) and any(p.name == "command" for p in artifacts)
        for path in artifacts:
            if path.is_file():
                text = path.read_text(errors="replace")
                assert RESTIC_PASSWORD not in text and BACKEND_SECRET not in text, path
        assert (copy / "env" / "extravars").stat().st_mode & 0o777 == 0o600  # the one place they were


def test_backup_agent_writes_the_credentials_for_root_only_and_no_timer(
    runner: AnsibleRunner, debian_root: Path, private_dirs: list[Path]
) -> None:
    schedulers_before = scheduler_files(debian_root)

    first = succeeded(backup_agent(runner, chroot_host(debian_root)))

    assert first.changed > 0
    password = debian_root / "etc/chutian/backup/pol-wuhan-1.password"
    env = debian_root / "etc/chutian/backup/pol-wuhan-1.env"
    for path in (password, env):
        info = path.stat()
        assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o600, 0, 0)
    assert (debian_root / "etc/chutian/backup").stat().st_mode & 0o777 == 0o700
    assert password.read_text() == RESTIC_PASSWORD + "\n"
    env_text = env.read_text()
    assert "RESTIC_REPOSITORY=/srv/backup/pol-wuhan-1\n" in env_text
    assert "RESTIC_PASSWORD_FILE=/etc/chutian/backup/pol-wuhan-1.password\n" in env_text
    assert f"OS_APPLICATION_CREDENTIAL_SECRET={BACKEND_SECRET}\n" in env_text
    assert scheduler_files(debian_root) == schedulers_before  # no timer, no cron job
    # restic itself accepts the written configuration: init and back up a file.
    restic = in_root(
        debian_root,
        "sh",
        "-c",
        "set -a; . /etc/chutian/backup/pol-wuhan-1.env; restic init && restic backup /etc/hostname",
    )
    assert restic.returncode == 0, restic.stderr
    assert "snapshot" in restic.stdout and "saved" in restic.stdout
    assert_no_secret_left(private_dirs)

    second = succeeded(backup_agent(runner, chroot_host(debian_root)))
    assert second.changed == 0


def test_a_failing_secret_task_does_not_leak_the_secret(
    runner: AnsibleRunner, debian_root: Path, private_dirs: list[Path]
) -> None:
    result = runner.run(
        "backup-agent.yml",
        chroot_host(debian_root),
        extra_vars={"backup_policy": "Not_A_Policy", "restic_repository": "/srv/backup/x"},
        secrets=backup_secrets(),
    )

    assert result.status == "failed"
    assert result.failures and all(RESTIC_PASSWORD not in f and BACKEND_SECRET not in f for f in result.failures)
    assert_no_secret_left(private_dirs)


# --- the adapter's own checks and failure modes ----------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "field"),
    [
        ([], "hosts"),
        ([Host("vm 1", "10.0.0.5")], "hosts[0].name"),
        ([Host("vm-1", "")], "hosts[0].address"),
        ([Host("vm-1", "10.0.0.5", {"ansible_password": "hunter2"})], "hosts[0].vars.ansible_password"),
        ([Host("vm-1", "10.0.0.5"), Host("vm-1", "10.0.0.6")], "hosts[1].name"),
    ],
)
def test_bad_inventories_are_refused_before_running(runner: AnsibleRunner, hosts: list[Host], field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        runner.run("reachability.yml", hosts)
    assert refused.value.field == field


def test_an_unreachable_host_is_transient(runner: AnsibleRunner) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = Host("vm-gone", "127.0.0.1", {"ansible_port": port, "ansible_user": "root"})

    result = runner.run("reachability.yml", [host], timeout_s=60)

    assert result.status == "unreachable" and result.hosts["vm-gone"].unreachable == 1
    with pytest.raises(TransientBackendError, match="unreachable"):
        result.raise_for_status()


def test_a_run_past_its_timeout_is_stopped(assets: None, tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    (books / "slow.yml").write_text(
        "- name: Slow\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Wait\n      ansible.builtin.command: sleep 15\n      changed_when: false\n"
    )
    runner = AnsibleRunner(playbooks_dir=books, collections_path=COLLECTIONS)
    started = time.monotonic()

    local = Host("local", "127.0.0.1", {"ansible_connection": "local", "ansible_python_interpreter": sys.executable})

    result = runner.run("slow.yml", [local], timeout_s=3)

    assert result.status == "timeout"
    assert time.monotonic() - started < 30
    with pytest.raises(BackendTimeout):
        result.raise_for_status()


# --- over real SSH to a network-namespace test host -------------------------------------------


@pytest.fixture
def ssh_host(debian_root: Path, tmp_path: Path) -> Iterator[tuple[Host, str, str]]:
    """A test host: `debian_root`'s sshd in a fresh network namespace, reached over a veth pair.

    Yields the inventory host, the client's private key and the known_hosts line."""
    tag = secrets.token_hex(3)
    netns, host_if, guest_if = f"chutian-t{tag}", f"cht{tag}h", f"cht{tag}g"
    subnet = 16 + secrets.randbelow(200)
    host_ip, guest_ip = f"10.254.{subnet}.1", f"10.254.{subnet}.2"
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    shutil.copy(keys / "host", debian_root / "etc/ssh/chutian_test_host_key")
    (debian_root / "etc/ssh/chutian_test_host_key").chmod(0o600)
    ssh_dir = debian_root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((keys / "client.pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    (debian_root / "run/sshd").mkdir(parents=True, exist_ok=True)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    sshd: subprocess.Popen[bytes] | None = None
    ip("netns", "add", netns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", guest_if)
        ip("link", "set", guest_if, "netns", netns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", netns, "addr", "add", f"{guest_ip}/30", "dev", guest_if)
        ip("-n", netns, "link", "set", guest_if, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        log = (tmp_path / "sshd.log").open("wb")
        sshd = subprocess.Popen(
            ["ip", "netns", "exec", netns, "chroot", str(debian_root), "/usr/sbin/sshd", "-D", "-e",
             "-o", "HostKey=/etc/ssh/chutian_test_host_key", "-o", f"ListenAddress={guest_ip}",
             "-o", "PasswordAuthentication=no", "-o", "PidFile=none"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while b"Server listening" not in (tmp_path / "sshd.log").read_bytes():
            assert sshd.poll() is None and time.monotonic() < deadline, (tmp_path / "sshd.log").read_text()
            time.sleep(0.1)
        public = (keys / "host.pub").read_text().split()
        yield (
            Host("vm-ssh", guest_ip, {"ansible_user": "root"}),
            (keys / "client").read_text(),
            f"{guest_ip} {public[0]} {public[1]}\n",
        )
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)  # gone with the netns


def test_playbooks_over_real_ssh_with_the_key_from_the_runner(
    runner: AnsibleRunner, ssh_host: tuple[Host, str, str], debian_root: Path, private_dirs: list[Path]
) -> None:
    host, private_key, known_hosts = ssh_host
    events: list[Progress] = []

    reach = succeeded(
        runner.run(
            "reachability.yml", [host], ssh_private_key=private_key, known_hosts=known_hosts, progress=events.append
        )
    )
    assert reach.hosts["vm-ssh"].ok == 3 and reach.changed == 0
    assert {e.host for e in events if e.host} == {"vm-ssh"}

    agent = succeeded(backup_agent(runner, [host], ssh_private_key=private_key, known_hosts=known_hosts))
    assert agent.changed > 0
    assert (debian_root / "etc/chutian/backup/pol-wuhan-1.password").read_text() == RESTIC_PASSWORD + "\n"
    assert_no_secret_left(private_dirs)
    for copy in private_dirs[1::2]:  # the key went through ssh-agent, never into a file the runner kept
        for path in copy.rglob("*"):
            if path.is_file():
                assert "OPENSSH PRIVATE KEY" not in path.read_text(errors="replace"), path


def test_a_wrong_host_key_is_refused(runner: AnsibleRunner, ssh_host: tuple[Host, str, str], tmp_path: Path) -> None:
    host, private_key, _ = ssh_host
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")], check=True)
    kind, key = (tmp_path / "impostor.pub").read_text().split()[:2]

    result = runner.run(
        "reachability.yml", [host], ssh_private_key=private_key, known_hosts=f"{host.address} {kind} {key}\n"
    )

    assert result.status == "unreachable"
    assert any("REMOTE HOST IDENTIFICATION HAS CHANGED" in failure for failure in result.failures)


def test_the_baseline_refuses_to_close_the_ssh_port_it_came_through(
    runner: AnsibleRunner, ssh_host: tuple[Host, str, str], debian_root: Path
) -> None:
    host, private_key, known_hosts = ssh_host

    result = runner.baseline(
        [host], mlps_level=2, tcp_ports=[443], ssh_private_key=private_key, known_hosts=known_hosts
    )

    assert result.status == "failed"
    assert any("must include the SSH port 22" in failure for failure in result.failures)
    assert not (debian_root / "etc/ssh/sshd_config.d/10-chutian-mlps.conf").exists()  # stopped before any change
