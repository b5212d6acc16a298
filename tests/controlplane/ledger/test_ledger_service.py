"""The persistent ledger through its services: what an operator or a caller would observe."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from controlplane.auth.principal import Principal
from controlplane.bootstrap import seed_database
from controlplane.db.uow import unit_of_work
from controlplane.errors import Conflict, Forbidden, NotFound, ValidationFailed
from controlplane.ledger import service
from controlplane.ledger.allocations import create_allocation
from controlplane.ledger.errors import (
    AllocationMissing,
    LimitAboveParent,
    LimitBelowConsumption,
    QuotaRefused,
    ReservationMissing,
)
from controlplane.ledger.models import AllocationMode, Reservation
from controlplane.ledger.seed import seed_ledger
from controlplane.ledger.verify import check_ledger
from controlplane.site_config import Site
from controlplane.tenants import service as tenants
from controlplane.tenants.models import TenantStatus
from controlplane.tenants.schemas import TenantUpdate
from quotas import NodeKey
from tests.controlplane.ledger.helpers import (
    CITY,
    COUNTY,
    SIBLING,
    allocate,
    assert_consistent,
    city_and_counties,
    key,
    node,
    run,
)


def reserve(engine: Engine, owner: str, path: str, **delta: int) -> None:
    run(engine, lambda uow: service.reserve(uow, owner, key(path), delta))


def refusal(engine: Engine, owner: str, path: str, **delta: int) -> QuotaRefused:
    with pytest.raises(QuotaRefused) as caught:
        reserve(engine, owner, path, **delta)
    return caught.value


# --- seeding ------------------------------------------------------------------------------------


def test_regions_are_limited_by_capacity_times_overcommit_and_unknown_capacity_is_unlimited(engine: Engine) -> None:
    wuhan = node(engine, None, region="wuhan")
    assert wuhan["limits"]["vcpus"] == 20000 * 4 and wuhan["limits"]["ram_mb"] == 81920000 * 12 // 10
    assert "backup_gb" not in wuhan["limits"], "no backup capacity in Wuhan: unlimited, not a magic number"
    assert node(engine, None, region="yichang")["limits"]["backup_gb"] == 3000000


def test_the_province_is_allocated_in_every_region_of_every_cloud(engine: Engine, site: Site) -> None:
    for cloud in site.clouds:
        for region in cloud.regions:
            assert node(engine, "hubei", cloud.code, region)["limits"] == {}
    with pytest.raises(AllocationMissing):  # sunshine is not offered in Xiangyang
        node(engine, "hubei", "sunshine", "xiangyang")


def test_seeding_again_changes_nothing(engine: Engine, site: Site) -> None:
    with unit_of_work(engine, readonly=True) as uow:
        before = uow.session.scalar(text("SELECT count(*) FROM quota_nodes"))
    seed_database(engine, site)
    with unit_of_work(engine) as uow:
        assert seed_ledger(uow) == {"regions": 0, "region_limits": 0, "allocations": 0}
        assert uow.session.scalar(text("SELECT count(*) FROM quota_nodes")) == before


# --- allocations --------------------------------------------------------------------------------


def test_an_allocation_needs_its_parents_allocation(engine: Engine) -> None:
    with pytest.raises(AllocationMissing) as caught:
        allocate(engine, COUNTY)
    assert caught.value.slug == "allocation-missing"
    assert caught.value.fields["node"] == "hubei.wuhan/egov/wuhan", "the error names the missing parent"
    allocate(engine, CITY)
    allocate(engine, COUNTY)
    assert node(engine, COUNTY)["consumption"] == {}


def test_a_slice_beyond_what_the_city_can_give_is_refused_with_the_headroom(engine: Engine) -> None:
    allocate(engine, CITY, "shared", {"vcpus": 100})
    allocate(engine, SIBLING, "shared")
    reserve(engine, "request:sibling", SIBLING, vcpus=70)
    with pytest.raises(QuotaRefused) as caught:
        allocate(engine, COUNTY, "slice", {"vcpus": 31})
    assert (
        caught.value.fields.items() >= {"node": "hubei.wuhan/egov/wuhan", "resource": "vcpus", "headroom": 30}.items()
    )
    with pytest.raises(AllocationMissing):
        node(engine, COUNTY)  # nothing was left behind
    allocate(engine, COUNTY, "slice", {"vcpus": 30})
    assert node(engine, CITY)["consumption"] == {"vcpus": 100}
    assert_consistent(engine)


def test_raising_a_slice_beyond_the_city_is_refused_with_the_headroom(engine: Engine) -> None:
    allocate(engine, CITY, "shared", {"vcpus": 100})
    allocate(engine, COUNTY, "slice", {"vcpus": 40})
    with pytest.raises(QuotaRefused) as caught:
        run(engine, lambda uow: service.set_limits(uow, key(COUNTY), {"vcpus": 101}))
    assert caught.value.fields["node"] == "hubei.wuhan/egov/wuhan"
    assert caught.value.fields["headroom"] == 60 and caught.value.fields["requested"] == 61
    assert node(engine, COUNTY)["limits"] == {"vcpus": 40}


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"mode": "shared", "direct_access": True}, ValidationFailed, "direct_access"),
        ({"cloud": "nosuch"}, ValidationFailed, "cloud"),
        ({"cloud": "sunshine", "region": "xiangyang"}, ValidationFailed, "region"),
        ({"limits": {"vcpus": -1}}, ValidationFailed, "limits.vcpus"),
    ],
)
def test_allocation_input_is_checked(engine: Engine, kwargs: dict, error: type, field: str) -> None:
    args = {"cloud": "egov", "region": "wuhan", "mode": "slice", "limits": {}, "direct_access": False} | kwargs
    with pytest.raises(error) as caught:
        run(
            engine,
            lambda uow: create_allocation(
                uow,
                CITY,
                args["cloud"],
                args["region"],
                AllocationMode(args["mode"]),
                args["limits"],
                args["direct_access"],
            ),
        )
    assert caught.value.fields["field"] == field


def test_a_live_allocation_blocks_retirement_and_pins_the_code(engine: Engine) -> None:
    allocate(engine, CITY)
    allocate(engine, COUNTY)
    with pytest.raises(Conflict, match=r"hubei\.wuhan\.jiangan/egov/wuhan"):
        run(engine, lambda uow: tenants.change_status(uow, uow.principal, COUNTY, TenantStatus.RETIRED, "closing"))
    with pytest.raises(Conflict, match="immutable"):
        run(
            engine,
            lambda uow: tenants.update(uow, uow.principal, COUNTY, TenantUpdate(code="jiangan2"), if_version=None),
        )
    # a sibling without allocations is still free to change
    run(
        engine,
        lambda uow: tenants.update(uow, uow.principal, "hubei.wuhan.qiaokou", TenantUpdate(code="qk"), if_version=None),
    )


# --- reservations -------------------------------------------------------------------------------


def test_reserve_commit_release_keep_the_chain_exact(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=100)
    reserve(engine, "operation:a", COUNTY, vcpus=30, ram_mb=4096)
    run(engine, lambda uow: service.commit(uow, "operation:a", {"vcpus": 10}))
    county = node(engine, COUNTY)
    assert county["used"] == {"vcpus": 10} and county["reserved"] == {"vcpus": 20, "ram_mb": 4096}
    assert node(engine, CITY)["consumption"] == {"vcpus": 30, "ram_mb": 4096}
    assert node(engine, None)["consumption"] == {"vcpus": 30, "ram_mb": 4096}
    released = run(engine, lambda uow: service.release(uow, "operation:a"))
    assert released == {"vcpus": 20, "ram_mb": 4096}
    assert node(engine, CITY)["consumption"] == {"vcpus": 10}, "the committed part stays"
    assert run(engine, lambda uow: service.release(uow, "operation:a")) == {}, "release is idempotent"
    run(engine, lambda uow: service.release_used(uow, key(COUNTY), {"vcpus": 10}, reason="server deleted"))
    assert node(engine, None)["consumption"] == {}
    assert_consistent(engine)


def test_reserve_again_replaces_the_amount(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=100)
    reserve(engine, "request:r1", COUNTY, vcpus=60)
    reserve(engine, "request:r1", COUNTY, vcpus=90)  # fits only because the first 60 is replaced
    assert node(engine, CITY)["consumption"] == {"vcpus": 90}
    reserve(engine, "request:r1", COUNTY, vcpus=5, volume_gb=10)
    assert node(engine, COUNTY)["reserved"] == {"vcpus": 5, "volume_gb": 10}
    reserve(engine, "request:r1", COUNTY, vcpus=5, volume_gb=10)  # a retry changes nothing
    assert node(engine, CITY)["consumption"] == {"vcpus": 5, "volume_gb": 10}
    with pytest.raises(Conflict, match="already holds"):
        reserve(engine, "request:r1", SIBLING, vcpus=1)
    assert_consistent(engine)


def test_a_refusal_names_the_lowest_binding_node_and_writes_nothing(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=90, county_vcpus=50)
    reserve(engine, "request:a", COUNTY, vcpus=30)
    county_refusal = refusal(engine, "request:b", COUNTY, vcpus=21)
    assert county_refusal.fields == {
        "node": "hubei.wuhan.jiangan/egov/wuhan",
        "resource": "vcpus",
        "requested": 21,
        "headroom": 20,
        "shortfall": 1,
    }
    reserve(engine, "request:c", SIBLING, vcpus=50)
    city_refusal = refusal(engine, "request:d", COUNTY, vcpus=15)
    assert city_refusal.fields["node"] == "hubei.wuhan/egov/wuhan" and city_refusal.fields["headroom"] == 10

    def refused_then_carry_on(uow: object) -> None:
        with pytest.raises(QuotaRefused):
            service.reserve(uow, "request:e", key(COUNTY), {"vcpus": 11})  # type: ignore[arg-type]

    run(engine, refused_then_carry_on)  # the caller commits its own unit after catching the refusal
    with unit_of_work(engine, readonly=True) as uow:
        assert uow.session.scalars(select(Reservation.owner).order_by(Reservation.owner)).all() == [
            "request:a",
            "request:c",
        ]
    assert_consistent(engine)


def test_a_slice_absorbs_its_own_use_and_stays_available(engine: Engine) -> None:
    allocate(engine, CITY, "shared", {"vcpus": 100})
    allocate(engine, COUNTY, "shared")
    allocate(engine, SIBLING, "slice", {"vcpus": 30})
    reserve(engine, "request:shared", COUNTY, vcpus=70)
    assert refusal(engine, "request:more", COUNTY, vcpus=1).fields["node"] == "hubei.wuhan/egov/wuhan"
    reserve(engine, "request:slice", SIBLING, vcpus=30)  # its slice was kept for it
    assert node(engine, CITY)["consumption"] == {"vcpus": 100}
    assert refusal(engine, "request:over", SIBLING, vcpus=1).fields["node"] == "hubei.wuhan.jianghan/egov/wuhan"
    assert_consistent(engine)


def test_backup_is_charged_to_the_target_regions_chain(engine: Engine) -> None:
    allocate(engine, CITY, region="yichang")
    run(engine, lambda uow: service.reserve(uow, "request:dr", key(CITY, region="yichang"), {"backup_gb": 3000000}))
    with pytest.raises(QuotaRefused) as caught:
        run(engine, lambda uow: service.reserve(uow, "request:dr2", key(CITY, region="yichang"), {"backup_gb": 1}))
    assert caught.value.fields["node"] == "yichang"
    assert node(engine, None, region="wuhan")["consumption"] == {}


def test_commit_and_owner_errors(engine: Engine) -> None:
    city_and_counties(engine)
    reserve(engine, "operation:x", COUNTY, vcpus=5)
    with pytest.raises(ValidationFailed) as too_much:
        run(engine, lambda uow: service.commit(uow, "operation:x", {"vcpus": 6}))
    assert too_much.value.fields["field"] == "part"
    with pytest.raises(ReservationMissing):
        run(engine, lambda uow: service.commit(uow, "operation:nobody"))
    with pytest.raises(ValidationFailed) as bad_owner:
        reserve(engine, "no kind here", COUNTY, vcpus=1)
    assert bad_owner.value.fields["field"] == "owner"
    with pytest.raises(ValidationFailed):
        run(engine, lambda uow: service.reserve(uow, "operation:y", key(COUNTY), {"vcpus": True}))  # type: ignore[dict-item]
    with pytest.raises(AllocationMissing) as missing:
        reserve(engine, "operation:z", "hubei.wuhan.qiaokou", vcpus=1)
    assert missing.value.fields["node"] == "hubei.wuhan.qiaokou/egov/wuhan"
    run(engine, lambda uow: service.commit(uow, "operation:x"))
    run(engine, lambda uow: service.commit(uow, "operation:x"))  # nothing left: a retried commit is a no-op
    assert node(engine, COUNTY)["used"] == {"vcpus": 5}


# --- limits and forced changes ------------------------------------------------------------------


def test_lowering_below_consumption_needs_force_then_admits_nothing_more_of_it(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=100)
    reserve(engine, "request:a", COUNTY, vcpus=60, ram_mb=100)
    with pytest.raises(LimitBelowConsumption) as caught:
        run(engine, lambda uow: service.set_limits(uow, key(CITY), {"vcpus": 50}))
    assert caught.value.fields.items() >= {"consumption": 60, "limit": 50, "field": "limits.vcpus"}.items()
    run(engine, lambda uow: service.set_limits(uow, key(CITY), {"vcpus": 50}, force=True))
    assert node(engine, CITY)["over_limit"] == ["vcpus"]
    assert refusal(engine, "request:b", SIBLING, vcpus=1).fields["node"] == "hubei.wuhan/egov/wuhan"
    reserve(engine, "request:c", SIBLING, ram_mb=10)  # other resources are unaffected
    run(engine, lambda uow: service.release(uow, "request:a"))
    assert node(engine, CITY)["over_limit"] == []
    reserve(engine, "request:b", SIBLING, vcpus=50)
    assert_consistent(engine)


def test_set_used_records_reality_and_marks_over_limit(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=10)
    run(engine, lambda uow: service.set_used(uow, key(COUNTY), {"vcpus": 12}, reason="measured"))
    assert node(engine, CITY)["over_limit"] == ["vcpus"] and node(engine, COUNTY)["used"] == {"vcpus": 12}
    assert_consistent(engine)


def test_measured_capacity_replaces_the_site_figure(engine: Engine, site: Site) -> None:
    run(engine, lambda uow: service.set_region_limits(uow, "wuhan", {"vcpus": 1000}))
    assert node(engine, None)["limits"] == {"vcpus": 1000}
    seed_database(engine, site)
    assert node(engine, None)["limits"] == {"vcpus": 1000}, "a restart must not undo the measurement"


CITY_ADMIN = Principal.with_bindings("wuhan-admin", (("tenant-admin", CITY),))
COUNTY_ADMIN = Principal.with_bindings("jiangan-admin", (("tenant-admin", COUNTY),))
OTHER_ADMIN = Principal.with_bindings("yichang-admin", (("tenant-admin", "hubei.yichang"),))
PROVINCE_OPERATOR = Principal.with_bindings("ops", (("operator", "hubei"),))
MEMBER = Principal.with_bindings("clerk", (("tenant-member", COUNTY),))


@pytest.mark.parametrize(
    ("who", "path", "limits", "outcome"),
    [
        (PROVINCE_OPERATOR, CITY, {"vcpus": 500}, None),
        (CITY_ADMIN, COUNTY, {"vcpus": 80}, None),
        (CITY_ADMIN, COUNTY, {"vcpus": 101}, LimitAboveParent),  # never beyond what the city holds
        (CITY_ADMIN, COUNTY, {"vcpus": None}, LimitAboveParent),
        (CITY_ADMIN, CITY, {"vcpus": 500}, Forbidden),  # not its own node
        (COUNTY_ADMIN, COUNTY, {"vcpus": 10}, Forbidden),
        (MEMBER, COUNTY, {"vcpus": 10}, Forbidden),
        (OTHER_ADMIN, COUNTY, {"vcpus": 10}, NotFound),  # another city's node does not exist for it
    ],
)
def test_who_may_set_limits(
    engine: Engine, who: Principal, path: str, limits: dict, outcome: type[Exception] | None
) -> None:
    city_and_counties(engine, city_vcpus=100)
    if outcome is None:
        run(engine, lambda uow: service.set_limits(uow, key(path), limits), who)
        assert node(engine, path)["limits"] == limits
    else:
        with pytest.raises(outcome):
            run(engine, lambda uow: service.set_limits(uow, key(path), limits), who)


def test_the_ledger_check_finds_tampered_and_oversubscribed_nodes(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=100)
    reserve(engine, "request:a", COUNTY, vcpus=5)
    city_row = "depth = 2 AND cloud = 'egov' AND region = 'wuhan'"
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE quota_nodes SET consumption = :c WHERE {city_row}"), {"c": '{"vcpus": 50}'})
    with unit_of_work(engine, readonly=True) as uow:
        problems = {(p.node, p.kind): p for p in check_ledger(uow.session).problems}
    assert problems[("hubei.wuhan/egov/wuhan", "consumption")].expected == {"vcpus": 5}
    with engine.begin() as conn:  # used that bypassed admission: 105 > 100 at the city
        conn.execute(text(f"UPDATE quota_nodes SET used = :u WHERE {city_row}"), {"u": '{"vcpus": 100}'})
    with unit_of_work(engine, readonly=True) as uow:
        problems = {(p.node, p.kind): p for p in check_ledger(uow.session).problems}
    assert problems[("hubei.wuhan/egov/wuhan", "oversubscribed")].stored == {"vcpus": 105}


def test_dry_run_says_where_and_by_how_much(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=100, county_vcpus=80)
    reserve(engine, "request:a", SIBLING, vcpus=50)
    result = run(engine, lambda uow: service.dry_run(uow, key(COUNTY), {"vcpus": 60}))
    assert not result.fits and result.refusal is not None
    assert str(result.refusal.node) == "hubei.wuhan/egov/wuhan" and result.refusal.headroom == 50
    assert run(engine, lambda uow: service.dry_run(uow, key(COUNTY), {"vcpus": 50})).fits
    assert node(engine, COUNTY)["reserved"] == {}, "a dry run reserves nothing"


def test_region_nodes_need_a_province_wide_role(engine: Engine) -> None:
    with pytest.raises(Forbidden):
        run(engine, lambda uow: service.read_chain(uow, NodeKey.for_region("wuhan")), CITY_ADMIN)
    assert run(engine, lambda uow: service.read_chain(uow, NodeKey.for_region("wuhan")), PROVINCE_OPERATOR).leaf
