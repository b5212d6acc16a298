"""Fixtures for tests against the local OpenStack box (scripts/openstack-box).

The box must be running: these tests FAIL (never skip) when it isn't, so a CI
run that forgot to start it can't pass by running nothing.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import openstack.connection
import pytest
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
