"""Table-driven tests of the ledger arithmetic on a Wuhan chain.

Chain: county (Jiang'an) -> city (Wuhan) -> province (Hubei) -> region hubei.wuhan.
Single resource (vcpus) unless stated; "c" is a node's stored consumption.
"""

import pickle

import pytest

from quotas import (
    VCPUS,
    ZERO,
    Admitted,
    BelowConsumption,
    LedgerNode,
    LimitBelowConsumption,
    LimitSet,
    NodeKey,
    NodeMode,
    Overage,
    QuotaExceeded,
    Refused,
    ResourceVector,
    admit,
    apply_forced,
    apply_release,
    carried,
    check_set_limit,
    commit,
    consumption_of,
    sync_used,
)

REGION = "hubei.wuhan"
SLICE, SHARED, ROOT = NodeMode.SLICE, NodeMode.SHARED, NodeMode.ROOT


def key(tenant: str | None) -> NodeKey:
    return NodeKey.for_region(REGION) if tenant is None else NodeKey(tenant, "industry", REGION)


COUNTY, CITY, PROVINCE, REGION_KEY = key("jiangan"), key("wuhan"), key("hubei"), key(None)


def node(
    tenant: str | None,
    mode: NodeMode = SHARED,
    limit: int | None = None,
    *,
    used: int = 0,
    reserved: int = 0,
    consumption: int | None = None,
) -> LedgerNode:
    """A single-resource (vcpus) node; consumption defaults to its own used + reserved."""
    return LedgerNode(
        key(tenant),
        ROOT if tenant is None else mode,
        {} if limit is None else {VCPUS: limit},
        ResourceVector(vcpus=used),
        ResourceVector(vcpus=reserved),
        ResourceVector(vcpus=used + reserved if consumption is None else consumption),
    )


def vcpus(n: int) -> ResourceVector:
    return ResourceVector(vcpus=n)


# --- the two formulas ---------------------------------------------------------------------------


def test_consumption_formula() -> None:
    # own 5 + slice max(30, 10) + unlimited slice 7 + slice max(5, 8) + shared 4 = 54
    total = consumption_of(
        {VCPUS: 5},
        [({VCPUS: 30}, {VCPUS: 10}), ({}, {VCPUS: 7}), ({VCPUS: 5}, {VCPUS: 8})],
        [{VCPUS: 4}],
    )
    assert total == vcpus(54)
    # a slice with a limit but nothing consumed still counts its whole slice
    assert consumption_of({}, [({VCPUS: 30, "ram_mb": None}, {})]) == vcpus(30)


@pytest.mark.parametrize(
    ("mode", "limit", "c", "delta", "passed"),
    [
        (SLICE, 30, 10, 5, 0),  # max(30, 15) - max(30, 10) = 0: inside the slice
        (SLICE, 30, 10, 20, 0),  # exactly fills the slice
        (SLICE, 30, 10, 25, 5),  # max(30, 35) - 30 = 5 spills over
        (SLICE, 30, 40, 5, 5),  # already over (forced): every unit spills
        (SLICE, None, 10, 5, 5),  # unlimited slice passes everything
        (SLICE, 30, 10, -5, 0),  # release inside the slice: parent unchanged
        (SLICE, 30, 40, -5, -5),  # max(30, 35) - max(30, 40) = -5
        (SLICE, 30, 40, -15, -10),  # max(30, 25) - 40 = -10: only the part above the line
        (SHARED, 30, 10, 25, 25),  # shared passes unchanged
        (SHARED, None, 10, -5, -5),
    ],
)
def test_carried(mode: NodeMode, limit: int | None, c: int, delta: int, passed: int) -> None:
    assert carried(node("jiangan", mode, limit, used=c), vcpus(delta)) == vcpus(passed)


def test_root_carries_nothing() -> None:
    assert carried(node(None, limit=10), vcpus(5)) == ZERO


# --- admission ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("city_limit", "county_used", "delta", "admitted"),
    [
        (100, 90, 10, True),  # 90 + 10 = 100: exactly fills the city
        (100, 90, 11, False),  # 101 > 100: refused at the city, not the county
        (100, 100, 0, True),  # nothing asked, nothing refused
        (None, 90, 500, True),  # unlimited city, province and region (limit 1000) bind nothing
    ],
)
def test_city_limit_binds_county_requests(city_limit: int | None, county_used: int, delta: int, admitted: bool) -> None:
    chain = [
        node("jiangan", SHARED, used=county_used),
        node("wuhan", SHARED, city_limit, consumption=county_used),
        node("hubei", SHARED, consumption=county_used),
        node(None, limit=1000, consumption=county_used),
    ]
    result = admit(chain, vcpus(delta))
    if admitted:
        assert result == Admitted({k: vcpus(delta) for k in (COUNTY, CITY, PROVINCE, REGION_KEY)})
    else:
        assert result == Refused(CITY, VCPUS, requested=delta, headroom=100 - county_used)


@pytest.mark.parametrize(
    ("slice_limit", "county_c", "city_c", "delta", "expected"),
    [
        # city limit 100; its consumption already counts max(slice_limit, county_c)
        (30, 10, 100, 20, None),  # 10 + 20 = 30 fits the slice: city sees 0, though the city is full
        (30, 10, 100, 21, (COUNTY, 21, 20)),  # 31 > 30: refused at the county, headroom 30 - 10
        (None, 10, 95, 5, None),  # unlimited slice: city sees 5, 95 + 5 = 100
        (None, 10, 95, 6, (CITY, 6, 5)),  # 95 + 6 > 100: refused at the city
    ],
)
def test_slice_is_guaranteed_to_its_holder(
    slice_limit: int | None, county_c: int, city_c: int, delta: int, expected: tuple[NodeKey, int, int] | None
) -> None:
    chain = [
        node("jiangan", SLICE, slice_limit, used=county_c),
        node("wuhan", SHARED, 100, consumption=city_c),
        node("hubei", SHARED, consumption=city_c),
        node(None, consumption=city_c),
    ]
    result = admit(chain, vcpus(delta))
    if expected is None:
        assert isinstance(result, Admitted)
        assert result.changes[COUNTY] == vcpus(delta)
        passed = delta if slice_limit is None else 0
        assert result.changes[CITY] == result.changes[REGION_KEY] == vcpus(passed)
    else:
        at, requested, headroom = expected
        assert result == Refused(at, VCPUS, requested, headroom)


def test_refusal_names_the_lowest_node_then_first_resource_and_floors_headroom() -> None:
    own, above = ResourceVector(ram_mb=4, vcpus=1), ResourceVector(ram_mb=4, vcpus=9)
    chain = [
        LedgerNode(COUNTY, SHARED, {"ram_mb": 10, VCPUS: 2}, used=own, consumption=own),
        LedgerNode(CITY, SHARED, {VCPUS: 5}, consumption=above),  # forced over: 9 > 5
        LedgerNode(PROVINCE, SHARED, consumption=above),
        LedgerNode(REGION_KEY, ROOT, consumption=above),
    ]
    # at the county ram 4 + 7 > 10 while vcpus 1 + 1 <= 2; the city (vcpus 9 + 1 > 5) is never reached
    assert admit(chain, {"ram_mb": 7, VCPUS: 1}) == Refused(COUNTY, "ram_mb", 7, 6)
    # at the over-limit city: headroom is max(0, 5 - 9) = 0
    assert admit(chain, {VCPUS: 1}) == Refused(CITY, VCPUS, 1, 0)
    # ram alone is unaffected by the city's vcpus overage
    assert isinstance(admit(chain, {"ram_mb": 6}), Admitted)


def test_over_limit_parent_still_honours_the_slice_already_counted() -> None:
    # city forced down to 20 while the county's slice of 30 counts for max(30, 10) = 30 in it
    chain = [
        node("jiangan", SLICE, 30, used=10),
        node("wuhan", SHARED, 20, consumption=30),
        node("hubei", consumption=30),
        node(None, consumption=30),
    ]
    assert isinstance(admit(chain, vcpus(20)), Admitted)  # 10 + 20 <= 30: city sees 0
    assert admit(chain, vcpus(21)) == Refused(COUNTY, VCPUS, 21, 20)


def test_admit_rejects_negative_requests() -> None:
    with pytest.raises(ValueError):
        admit([node("jiangan", used=5), node(None, consumption=5)], vcpus(-1))


# --- release, commit, forced changes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("slice_limit", "county_used", "release", "city_change"),
    [
        (30, 40, 5, -5),  # max(30, 35) - max(30, 40)
        (30, 40, 15, -10),  # max(30, 25) - 40: the slice line stops the decrease
        (30, 20, 20, 0),  # inside the slice the city keeps counting 30
        (None, 20, 20, -20),
    ],
)
def test_release_carries_down_symmetrically(
    slice_limit: int | None, county_used: int, release: int, city_change: int
) -> None:
    city_c = max(slice_limit or 0, county_used)
    chain = [
        node("jiangan", SLICE, slice_limit, used=county_used),
        node("wuhan", SHARED, consumption=city_c),
        node(None, consumption=city_c),
    ]
    changes = apply_release(chain, vcpus(release))
    assert list(changes) == [COUNTY, CITY, REGION_KEY]
    assert changes[COUNTY] == vcpus(-release)
    assert changes[CITY] == changes[REGION_KEY] == vcpus(city_change)


@pytest.mark.parametrize("amount", [-1, 11])
def test_release_must_be_covered_by_own_used_and_reserved(amount: int) -> None:
    chain = [node("jiangan", used=6, reserved=4), node(None, consumption=10)]
    with pytest.raises(ValueError):
        apply_release(chain, vcpus(amount))


def test_commit_changes_no_consumption_but_checks_the_reservation() -> None:
    chain = [node("jiangan", used=6, reserved=4), node(None, consumption=10)]
    assert commit(chain, vcpus(4)) == {COUNTY: ZERO, REGION_KEY: ZERO}
    with pytest.raises(ValueError):
        commit(chain, vcpus(5))  # only 4 reserved


def test_usage_sync_is_applied_over_limits_and_reports_overages() -> None:
    # county slice 30 (used 25), city limit 40 with c = 38 (30 for the slice + 8 other)
    chain = [
        node("jiangan", SLICE, 30, used=25),
        node("wuhan", SHARED, 40, consumption=38),
        node(None, limit=45, consumption=38),
    ]
    result = sync_used(chain, vcpus(36))  # +11: county 36 > 30, spills max(30, 36) - 30 = 6
    assert result.changes == {COUNTY: vcpus(11), CITY: vcpus(6), REGION_KEY: vcpus(6)}
    assert result.over_limit == (
        Overage(COUNTY, VCPUS, 36, 30),
        Overage(CITY, VCPUS, 44, 40),
    )  # the region: 38 + 6 = 44 <= 45
    assert sync_used(chain, vcpus(25)).changes == {COUNTY: ZERO, CITY: ZERO, REGION_KEY: ZERO}
    down = sync_used(chain, {})  # usage gone: -25, inside the slice
    assert down.changes == {COUNTY: vcpus(-25), CITY: ZERO, REGION_KEY: ZERO}
    assert down.over_limit == ()


def test_forced_change_cannot_make_own_usage_negative() -> None:
    chain = [node("jiangan", used=3), node(None, consumption=3)]
    with pytest.raises(ValueError):
        apply_forced(chain, vcpus(-4))
    with pytest.raises(ValueError):
        sync_used(chain, vcpus(-1))


# --- set-limit ----------------------------------------------------------------------------------


def _slice_chain(county_c: int, city_c: int, province_limit: int | None = None) -> list[LedgerNode]:
    """County: slice of 30 in the city (limit 100); the city is shared in the province."""
    return [
        node("jiangan", SLICE, 30, used=county_c),
        node("wuhan", SHARED, 100, consumption=city_c),
        node("hubei", SHARED, province_limit, consumption=city_c),
        node(None, consumption=city_c),
    ]


@pytest.mark.parametrize(
    ("new_limit", "county_c", "outcome", "city_change"),
    [
        # the city is at 80, counting the county as max(30, county_c)
        (50, 10, "ok", 20),  # max(50, 10) - max(30, 10) = 20; 80 + 20 = 100
        (51, 10, "refused", 21),  # 80 + 21 > 100: refused at the city, headroom 20
        (20, 10, "ok", -10),  # lowering frees max(20, 10) - 30 = -10 in the city
        (20, 25, "below", 0),  # 20 < consumption 25 needs force
        (None, 10, "ok", -20),  # unlimited: counts as its consumption, 10 - 30
        (30, 10, "ok", 0),  # unchanged
    ],
)
def test_slice_limit_change_is_carried_to_the_ancestors(
    new_limit: int | None, county_c: int, outcome: str, city_change: int
) -> None:
    chain = _slice_chain(county_c, 80)
    result = check_set_limit(chain, {VCPUS: new_limit})
    if outcome == "ok":
        assert isinstance(result, LimitSet)
        assert result.limits == {VCPUS: new_limit}
        assert result.changes == {
            COUNTY: ZERO,
            CITY: vcpus(city_change),
            PROVINCE: vcpus(city_change),
            REGION_KEY: vcpus(city_change),
        }
        assert result.over_limit == ()
    elif outcome == "refused":
        assert result == Refused(CITY, VCPUS, city_change, 20)
    else:
        assert new_limit is not None
        assert result == BelowConsumption(COUNTY, VCPUS, county_c, new_limit)


def test_slice_growth_is_checked_beyond_shared_ancestors() -> None:
    # 80 + 15 fits the city's 100 but not the province's 90
    chain = _slice_chain(10, 80, province_limit=90)
    assert check_set_limit(chain, {VCPUS: 45}) == Refused(PROVINCE, VCPUS, 15, 10)


def test_forced_lowering_leaves_the_node_over_limit_and_admitting_nothing() -> None:
    chain = _slice_chain(25, 80)
    result = check_set_limit(chain, {VCPUS: 20, "ram_mb": 0}, force=True)
    assert isinstance(result, LimitSet)
    # the slice counts max(20, 25) - max(30, 25) = -5 in the city
    assert result.changes[CITY] == vcpus(-5)
    assert result.over_limit == (Overage(COUNTY, VCPUS, 25, 20),)
    lowered = [LedgerNode(COUNTY, SLICE, result.limits, used=vcpus(25), consumption=vcpus(25))]
    assert admit([*lowered, *chain[1:]], vcpus(1)) == Refused(COUNTY, VCPUS, 1, 0)


def test_force_does_not_override_ancestors() -> None:
    assert isinstance(check_set_limit(_slice_chain(10, 80), {VCPUS: 60}, force=True), Refused)


def test_shared_limit_change_concerns_only_the_node() -> None:
    chain = [node("wuhan", SHARED, 100, consumption=80), node(None, limit=90, consumption=80)]
    result = check_set_limit(chain, {VCPUS: 10_000})
    assert isinstance(result, LimitSet)
    assert result.changes == {CITY: ZERO, REGION_KEY: ZERO}
    assert check_set_limit(chain, {VCPUS: 79}) == BelowConsumption(CITY, VCPUS, 80, 79)


def test_region_capacity_update() -> None:
    region = [node(None, limit=100, consumption=80)]
    assert isinstance(check_set_limit(region, {VCPUS: 80, "gpu": None}), LimitSet)
    forced = check_set_limit(region, {VCPUS: 70}, force=True)
    assert isinstance(forced, LimitSet)
    assert forced.over_limit == (Overage(REGION_KEY, VCPUS, 80, 70),)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_set_limit_rejects_malformed_limits(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        check_set_limit([node(None)], {VCPUS: bad})  # type: ignore[dict-item]


# --- validation and errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chain",
    [
        [],
        [node("jiangan")],  # does not end at the region
        [node("jiangan"), node(None), node(None)],  # region in the middle
        [node("jiangan"), LedgerNode(NodeKey("x", "other-cloud", REGION), SHARED), node(None)],
        [node("jiangan"), LedgerNode(NodeKey.for_region("hubei.yichang"), ROOT)],
        [node("jiangan"), node("jiangan"), node(None)],
    ],
)
def test_malformed_chains_are_rejected(chain: list[LedgerNode]) -> None:
    with pytest.raises(ValueError):
        admit(chain, vcpus(1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: LedgerNode(COUNTY, ROOT),  # a tenant node cannot be a root
        lambda: LedgerNode(REGION_KEY, SHARED),  # a region node must be
        lambda: LedgerNode(COUNTY, SHARED, used=vcpus(-1)),
        lambda: LedgerNode(COUNTY, SHARED, {VCPUS: -1}),
        lambda: LedgerNode(COUNTY, SHARED, used=vcpus(5), consumption=vcpus(4)),  # drift
    ],
)
def test_malformed_nodes_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_node_helpers() -> None:
    n = LedgerNode(
        COUNTY,
        SLICE,
        {VCPUS: 10, "ram_mb": None, "gpu": 1},
        used=vcpus(4),
        reserved=vcpus(3),
        consumption=ResourceVector(vcpus=12, gpu=2),  # own 7 + 5 in children
    )
    assert n.limits == {VCPUS: 10, "ram_mb": None, "gpu": 1}
    assert n.own == vcpus(7)
    assert n.headroom(VCPUS) == 0  # floored: 10 - 12
    assert n.headroom("ram_mb") is None
    assert n.over_limit() == ("gpu", VCPUS)


def test_refusals_become_picklable_exceptions() -> None:
    exc = Refused(CITY, VCPUS, 11, 10).as_error()
    assert isinstance(exc, QuotaExceeded)
    assert (exc.node, exc.resource, exc.requested, exc.headroom) == (CITY, VCPUS, 11, 10)
    assert str(exc) == "quota exceeded at wuhan/industry/hubei.wuhan: vcpus requested 11, headroom 10"
    again = pickle.loads(pickle.dumps(exc))  # noqa: S301 -- our own bytes
    assert (again.node, again.headroom) == (CITY, 10)

    below = BelowConsumption(COUNTY, VCPUS, 25, 20).as_error()
    assert isinstance(below, LimitBelowConsumption)
    assert (below.node, below.resource, below.consumption, below.limit) == (COUNTY, VCPUS, 25, 20)
    assert "below its consumption 25" in str(below)
    assert pickle.loads(pickle.dumps(below)).limit == 20  # noqa: S301
