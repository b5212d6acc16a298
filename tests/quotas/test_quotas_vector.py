"""ResourceVector, region capacity and key printing."""

from fractions import Fraction

import pytest

from quotas import (
    STANDARD_RESOURCES,
    UNLIMITED,
    VCPUS,
    ZERO,
    NodeKey,
    ResourceVector,
    chain_keys,
    region_limits,
)


def test_zero_amounts_are_omitted_so_equal_meanings_compare_equal() -> None:
    v = ResourceVector({"vcpus": 0, "ram_mb": 512})
    assert dict(v) == {"ram_mb": 512}
    assert v == ResourceVector(ram_mb=512)
    assert hash(v) == hash(ResourceVector(ram_mb=512))
    assert len(v) == 1
    assert v.get("vcpus", 0) == 0
    assert not ZERO
    assert repr(v) == "ResourceVector({'ram_mb': 512})"


def test_iteration_is_sorted_for_deterministic_reports() -> None:
    assert list(ResourceVector(vcpus=1, backup_gb=2, ram_mb=3)) == ["backup_gb", "ram_mb", "vcpus"]


def test_arithmetic_is_componentwise_and_accepts_plain_mappings() -> None:
    a = ResourceVector(vcpus=4, ram_mb=100)
    assert a + {"vcpus": 1, "gpu.a100": 2} == ResourceVector(vcpus=5, ram_mb=100, **{"gpu.a100": 2})
    assert a - {"vcpus": 4} == ResourceVector(ram_mb=100)  # 4 - 4 = 0 disappears
    assert -a == ResourceVector(vcpus=-4, ram_mb=-100)
    assert a.maximum({"vcpus": 6, "volumes": -1}) == ResourceVector(vcpus=6, ram_mb=100)
    assert ResourceVector(vcpus=-2, ram_mb=3).positive_part() == ResourceVector(ram_mb=3)


def test_non_mapping_operands_are_not_supported() -> None:
    with pytest.raises(TypeError):
        ResourceVector(vcpus=1) + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        ResourceVector(vcpus=1) - 1  # type: ignore[operator]


@pytest.mark.parametrize(
    ("a", "b", "fits"),
    [
        ({"vcpus": 2}, {"vcpus": 2}, True),
        ({"vcpus": 3}, {"vcpus": 2}, False),
        ({"vcpus": 1}, {}, False),  # missing counts as 0
        ({}, {"vcpus": 1}, True),
        ({"vcpus": -1}, {}, True),
    ],
)
def test_fits_within(a: dict[str, int], b: dict[str, int], fits: bool) -> None:
    assert ResourceVector(a).fits_within(b) is fits


def test_sign_checks() -> None:
    assert ResourceVector(vcpus=1).is_nonnegative()
    assert not ResourceVector(vcpus=-1).is_nonnegative()


@pytest.mark.parametrize(
    ("amounts", "error"),
    [
        ({"vcpus": 1.5}, TypeError),
        ({"vcpus": True}, TypeError),  # bool is an int, but never an amount
        ({"": 1}, ValueError),
        ({3: 1}, ValueError),
    ],
)
def test_rejects_malformed_amounts(amounts: dict[object, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        ResourceVector(amounts)  # type: ignore[arg-type]


def test_region_limits_floor_capacity_times_overcommit_and_mark_unknown_unlimited() -> None:
    limits = region_limits(
        {"vcpus": 1000, "ram_mb": 4096, "object_gb": 7, "gpu.a100": 8},
        {"vcpus": 1.1, "ram_mb": Fraction(3, 2), "object_gb": 1.5},
    )
    assert limits["vcpus"] == 1100  # 1000 × 11/10 exactly, not 1100.0000000000002
    assert limits["ram_mb"] == 6144  # 4096 × 3/2
    assert limits["object_gb"] == 10  # floor(7 × 1.5 = 10.5)
    assert limits["gpu.a100"] == 8  # extra resource, overcommit defaults to 1
    assert limits["backup_gb"] is UNLIMITED  # no known capacity: explicitly unlimited
    assert set(STANDARD_RESOURCES) <= set(limits)


@pytest.mark.parametrize(
    ("capacity", "overcommit"),
    [({"vcpus": -1}, {}), ({"vcpus": 10}, {"vcpus": 0}), ({"vcpus": 10}, {"vcpus": float("nan")})],
)
def test_region_limits_reject_nonsense(capacity: dict[str, int], overcommit: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        region_limits(capacity, overcommit)


def test_keys_print_as_tenant_cloud_region() -> None:
    assert str(NodeKey("wuhan", "industry", "hubei.wuhan")) == "wuhan/industry/hubei.wuhan"
    assert str(NodeKey.for_region("hubei.wuhan")) == "hubei.wuhan"
    assert NodeKey.for_region("hubei.wuhan").is_region
    assert chain_keys(["jiangan", "wuhan", "hubei"], "industry", "hubei.wuhan") == (
        NodeKey("jiangan", "industry", "hubei.wuhan"),
        NodeKey("wuhan", "industry", "hubei.wuhan"),
        NodeKey("hubei", "industry", "hubei.wuhan"),
        NodeKey(None, None, "hubei.wuhan"),
    )
    assert VCPUS in STANDARD_RESOURCES


@pytest.mark.parametrize(
    ("tenant", "cloud", "region"),
    [("wuhan", None, "r"), (None, "industry", "r"), ("a/b", "c", "r"), ("t", "c", ""), ("t", "", "r")],
)
def test_malformed_keys_are_rejected(tenant: str | None, cloud: str | None, region: str) -> None:
    with pytest.raises(ValueError):
        NodeKey(tenant, cloud, region)
