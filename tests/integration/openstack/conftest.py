"""Fixtures for tests against the local OpenStack box (scripts/openstack-box).

The box must be running: these tests FAIL (never skip) when it isn't, so a CI
run that forgot to start it can't pass by running nothing.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack.connection
import pytest
import yaml
from openstack.config import loader

BOX_DIR = Path(os.environ.get("OPENSTACK_BOX_DIR", "/var/tmp/chutian-openstack-box"))
CLOUD = "chutian-box"
HINT = (
    "start the local OpenStack box first: "
    "`scripts/openstack-box install && scripts/openstack-box init && scripts/openstack-box start` "
    "(see docs/openstack-box.md)"
)
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.openstack)


def _fail(reason: str) -> None:
    pytest.fail(f"OpenStack box not reachable: {reason}\n-> {HINT}", pytrace=False)


@pytest.fixture(scope="session")
def box_admin() -> Iterator[openstack.connection.Connection]:
    """Admin of the box (project admin, region wuhan), from $OPENSTACK_BOX_DIR/clouds.yaml."""
    clouds = BOX_DIR / "clouds.yaml"
    if not clouds.is_file():
        _fail(f"{clouds} does not exist")
    config = loader.OpenStackConfig(config_files=[str(clouds)], vendor_files=[], secure_files=[], load_envvars=False)
    region = config.get_one(cloud=CLOUD, api_timeout=60)
    auth_url = region.config["auth"]["auth_url"]
    try:
        with urllib.request.urlopen(auth_url, timeout=5):  # noqa: S310 (the box's own URL)
            pass
    except urllib.error.HTTPError:
        pass  # it answered
    except OSError as err:
        _fail(f"Keystone at {auth_url} does not answer ({err})")
    conn = openstack.connection.Connection(config=region)
    try:
        conn.authorize()
    except Exception as err:  # any failure here means the box is unusable
        _fail(f"cannot authenticate as the box admin at {auth_url} ({err})")
    yield conn
    conn.close()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Names unique to this run, so runs never collide with each other's leftovers."""
    run = uuid.uuid4().hex[:8]
    return lambda kind: f"chutian-test-{kind}-{run}"


@pytest.fixture
def cleanup() -> Iterator[Callable[[Callable[[], object]], None]]:
    """Register undo actions; they run last-in first-out even when the test fails."""
    actions: list[Callable[[], object]] = []
    yield actions.append
    errors = []
    for action in reversed(actions):
        try:
            action()
        except Exception as err:  # keep cleaning up, report at the end
            errors.append(f"{getattr(action, '__name__', action)}: {err}")
    if errors:
        pytest.fail("cleanup failed: " + "; ".join(errors), pytrace=False)


HINT = (
    "start Swift next to the box: `scripts/swift-box install && scripts/swift-box start --auth keystone` "
    "(docs/openstack-box.md, 'Object storage')"
)


class SwiftAdmin:
    """The box admin's view of any account (reseller admin), for reading back what was made."""

    def __init__(self, conn: openstack.connection.Connection) -> None:
        self.conn = conn
        self.base = conn.object_store.get_endpoint().rsplit("/", 1)[0]  # http://…/v1

    def url(self, project_id: str, *parts: str) -> str:
        return "/".join([self.base, f"AUTH_{project_id}", *(urllib.parse.quote(p, safe="") for p in parts)])

    def containers(self, project_id: str) -> list[str]:
        response = self.conn.object_store.get(self.url(project_id) + "?format=json", raise_exc=False)
        if response.status_code == 404:
            return []
        assert response.status_code in (200, 204), response.text
        return [c["name"] for c in response.json()] if response.status_code == 200 else []

    def head(self, project_id: str, container: str) -> Any:
        return self.conn.object_store.head(self.url(project_id, container), raise_exc=False)


@pytest.fixture(scope="module")
def swift(box_admin: openstack.connection.Connection) -> SwiftAdmin:
    """Fails (never skips) when the box's catalog has no object store or it does not answer."""
    if not box_admin.has_service("object-store"):
        pytest.fail(f"the box's Keystone lists no object-store endpoint\n-> {HINT}", pytrace=False)
    admin = SwiftAdmin(box_admin)
    try:
        answer = box_admin.object_store.head("", raise_exc=False)
    except Exception as err:  # any failure here means Swift is unusable
        pytest.fail(f"Swift at {admin.base} does not answer ({err})\n-> {HINT}", pytrace=False)
    if answer.status_code not in (200, 204):
        pytest.fail(f"Swift at {admin.base} answered {answer.status_code} to the admin\n-> {HINT}", pytrace=False)
    return admin


def box_site(settings: Any, tmp_path: Path) -> tuple[Any, Any]:
    """Settings and site with the wuhan region on the box (no MLPS baseline: the box's fake
    servers have no address to log in to)."""
    from controlplane.site_config import default_site_text, load_site

    site_data = yaml.safe_load(default_site_text())
    site_data["regions"][0]["openstack_cloud"] = CLOUD  # wuhan is the box
    site_data["regions"][0]["baseline"] = False
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site_data, allow_unicode=True))
    configured = settings.model_copy(update={"site_file": site_file, "clouds_yaml": BOX_DIR / "clouds.yaml"})
    return configured, load_site(site_file)
