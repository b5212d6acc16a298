"""Pure parts of the OpenStack adapter: names, ledger limits as quotas, connection settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioners.base import ProjectTags
from provisioners.errors import BackendMisconfigured, InvalidSpec
from provisioners.openstack import CloudConfig, build_connection, domain_name, project_name, quotas_from_limits
from quotas import UNLIMITED


@pytest.mark.parametrize(
    ("path", "domain"),
    [
        ("hubei.wuhan", "hubei.wuhan"),  # the city itself
        ("hubei.wuhan.jiangan", "hubei.wuhan"),  # a county or district lands in its city's domain
        ("hubei.wuhan.jiangan.street-1", "hubei.wuhan"),
        ("hubei.zwb", "hubei.zwb"),  # a provincial department has its own
    ],
)
def test_domain_is_the_city_or_department(path: str, domain: str) -> None:
    assert domain_name(path) == domain


@pytest.mark.parametrize("path", ["hubei", "", "hubei..x"])
def test_a_path_without_city_or_department_is_refused(path: str) -> None:
    with pytest.raises(InvalidSpec):
        domain_name(path)


def test_project_name_joins_tenant_path_and_cloud() -> None:
    assert project_name("hubei.wuhan.jiangan", "education") == "hubei.wuhan.jiangan--education"


def test_project_tags_name_tenant_cloud_and_mlps() -> None:
    assert ProjectTags("hubei.wuhan.jiangan", "education", 3).as_tags() == (
        "tenant:hubei.wuhan.jiangan",
        "cloud:education",
        "mlps:3",
    )


def test_slice_limits_become_nova_and_cinder_quotas() -> None:
    quotas = quotas_from_limits(
        {"vcpus": 16, "ram_mb": 32768, "instances": UNLIMITED, "volume_gb": 500, "volumes": 10, "object_gb": 100}
    )
    assert dict(quotas.compute) == {"cores": 16, "ram": 32768, "instances": -1}
    assert dict(quotas.volume) == {"gigabytes": 500, "volumes": 10}
    assert dict(quotas.network) == {}


@pytest.mark.parametrize(
    "config",
    [
        CloudConfig(region="wuhan"),
        CloudConfig(region="wuhan", clouds_yaml=Path("/nonexistent/clouds.yaml")),
        CloudConfig(region="wuhan", clouds_yaml=Path("/x.yaml"), cloud="c", auth={"auth_url": "http://x"}),
    ],
)
def test_connection_needs_exactly_one_source_of_credentials(config: CloudConfig) -> None:
    with pytest.raises(BackendMisconfigured):
        build_connection(config)


def test_explicit_auth_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_AUTH_URL", "http://elsewhere.invalid:5000/v3")
    monkeypatch.setenv("OS_REGION_NAME", "elsewhere")
    conn = build_connection(
        CloudConfig(region="wuhan", auth={"auth_url": "http://127.0.0.1:15000/v3", "username": "u", "password": "p"})
    )
    try:
        assert conn.config.get_region_name() == "wuhan"
        assert conn.config.config["auth"]["auth_url"] == "http://127.0.0.1:15000/v3"
    finally:
        conn.close()


def test_credentials_stay_out_of_repr() -> None:
    config = CloudConfig(region="wuhan", auth={"auth_url": "http://x", "password": "s3cret"})
    assert "s3cret" not in repr(config)
