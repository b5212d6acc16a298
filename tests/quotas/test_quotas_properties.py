"""Property tests: the ledger invariant over random trees and random operation sequences.

``Tree`` is the reference model: an in-memory ledger that stores consumption and
updates it only with the changes the functions under test return, exactly as the
persistence layer will.  Independently it recomputes every consumption from scratch
with ``consumption_of``, which serves both as drift check and as the oracle that
decides whether an admission or a limit change should have been accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from quotas import (
    ZERO,
    Admitted,
    BelowConsumption,
    LedgerNode,
    Limit,
    LimitSet,
    NodeKey,
    NodeMode,
    Refused,
    ResourceVector,
    admit,
    apply_release,
    check_set_limit,
    commit,
    consumption_of,
    sync_used,
)

RESOURCES = ("vcpus", "gpu.a100")  # a standard and an extension resource
REGION = "hubei.wuhan"
MAX_DEPTH = 4  # tenant levels below the region node
SLICE, SHARED, ROOT = NodeMode.SLICE, NodeMode.SHARED, NodeMode.ROOT


class Tree:
    """Node 0 is the region; every other node hangs below it, at most MAX_DEPTH deep."""

    def __init__(self, shape: Sequence[tuple[int, NodeMode]], region_limits: Mapping[str, Limit]) -> None:
        self.parent: list[int | None] = [None]
        self.mode = [ROOT]
        self.keys = [NodeKey.for_region(REGION)]
        depth = [0]
        for pick, mode in shape:
            candidates = [i for i, d in enumerate(depth) if d < MAX_DEPTH]
            parent = candidates[pick % len(candidates)]
            i = len(self.parent)
            # every province starts its own themed cloud; descendants inherit it
            cloud = f"cloud{i}" if parent == 0 else self.keys[parent].cloud
            self.parent.append(parent)
            self.mode.append(mode)
            self.keys.append(NodeKey(f"t{i}", cloud, REGION))
            depth.append(depth[parent] + 1)
        n = len(self.parent)
        self.limits: list[dict[str, Limit]] = [dict(region_limits)] + [{} for _ in range(n - 1)]
        self.used = [ZERO] * n
        self.reserved = [ZERO] * n
        self.consumption = [ZERO] * n  # stored: changed only through returned changes

    def __len__(self) -> int:
        return len(self.parent)

    def children(self, i: int) -> list[int]:
        return [j for j, p in enumerate(self.parent) if p == i]

    def path(self, i: int) -> list[int]:
        path = [i]
        while (p := self.parent[path[-1]]) is not None:
            path.append(p)
        return path

    def node(self, i: int) -> LedgerNode:
        return LedgerNode(
            self.keys[i], self.mode[i], self.limits[i], self.used[i], self.reserved[i], self.consumption[i]
        )

    def chain(self, i: int) -> list[LedgerNode]:
        return [self.node(j) for j in self.path(i)]

    def apply(self, i: int, changes: Mapping[NodeKey, ResourceVector]) -> None:
        path = self.path(i)
        assert list(changes) == [self.keys[j] for j in path]  # every chain node, in chain order
        for j in path:
            self.consumption[j] += changes[self.keys[j]]

    def recompute(self, limits: Sequence[Mapping[str, Limit]] | None = None) -> list[ResourceVector]:
        """Every consumption from scratch, by the definition (optionally with other limits)."""
        limits = limits or self.limits
        result = [ZERO] * len(self)

        def visit(i: int) -> ResourceVector:
            kids = self.children(i)
            for j in kids:
                visit(j)
            result[i] = consumption_of(
                self.used[i] + self.reserved[i],
                [(limits[j], result[j]) for j in kids if self.mode[j] is SLICE],
                [result[j] for j in kids if self.mode[j] is SHARED],
            )
            return result[i]

        visit(0)
        return result


def expected_refusal(
    tree: Tree, i: int, before: Sequence[ResourceVector], after: Sequence[ResourceVector]
) -> Refused | None:
    """Oracle: the lowest chain node, first resource, whose consumption grows past its limit."""
    for j in tree.path(i):
        growth = after[j] - before[j]
        for r, amount in growth.items():
            limit = tree.limits[j].get(r)
            if amount > 0 and limit is not None and after[j].get(r, 0) > limit:
                return Refused(tree.keys[j], r, amount, max(0, limit - before[j].get(r, 0)))
    return None


def reserve(tree: Tree, i: int, delta: ResourceVector) -> Admitted | Refused:
    before = tree.recompute()
    tree.reserved[i] += delta
    after = tree.recompute()
    tree.reserved[i] -= delta
    result = admit(tree.chain(i), delta)
    assert result == (expected_refusal(tree, i, before, after) or result)
    if isinstance(result, Admitted):
        assert all(result.changes[tree.keys[j]] == after[j] - before[j] for j in tree.path(i))
        tree.reserved[i] += delta
        tree.apply(i, result.changes)
    return result


def set_limit(tree: Tree, i: int, resource: str, limit: Limit, *, force: bool = False) -> object:
    result = check_set_limit(tree.chain(i), {resource: limit}, force=force)
    consumption = tree.consumption[i].get(resource, 0)
    if limit is not None and limit < consumption and not force:
        assert result == BelowConsumption(tree.keys[i], resource, consumption, limit)
        return result
    new_limits = [dict(lim) for lim in tree.limits]
    new_limits[i][resource] = limit
    before, after = tree.recompute(), tree.recompute(new_limits)
    assert result == (expected_refusal(tree, i, before, after) or result)
    if isinstance(result, LimitSet):
        assert dict(result.limits) == new_limits[i]
        tree.limits[i] = dict(result.limits)
        tree.apply(i, result.changes)
    return result


def release(tree: Tree, i: int, resource: str, amount: int, *, from_used: bool) -> None:
    bucket = tree.used if from_used else tree.reserved
    delta = ResourceVector({resource: min(amount, bucket[i].get(resource, 0))})
    changes = apply_release(tree.chain(i), delta)
    bucket[i] -= delta
    tree.apply(i, changes)


def do_commit(tree: Tree, i: int, resource: str, amount: int) -> None:
    delta = ResourceVector({resource: min(amount, tree.reserved[i].get(resource, 0))})
    changes = commit(tree.chain(i), delta)
    tree.reserved[i] -= delta
    tree.used[i] += delta
    tree.apply(i, changes)


def check_invariant(tree: Tree, *, forced: bool) -> None:
    assert tree.consumption == tree.recompute(), "stored consumption drifted from the definition"
    if forced:
        return  # forced changes may leave nodes over their limits, by design
    for i in range(len(tree)):
        node = tree.node(i)
        assert node.over_limit() == (), f"{node.key} over its limit"
        if node.mode is not SLICE:
            continue
        for r, limit in node.limits.items():
            room = None if limit is None else limit - node.consumption.get(r, 0)
            if room:  # the slice can always grow to its limit, whatever its siblings did
                assert isinstance(admit(tree.chain(i), {r: room}), Admitted), f"{node.key} lost its slice"


@dataclass(frozen=True)
class Op:
    kind: str
    pick: int
    resource: str
    amount: int
    flag: bool


limit_values = st.one_of(st.none(), st.integers(0, 40))
shapes = st.lists(st.tuples(st.integers(0, 64), st.sampled_from([SLICE, SHARED])), min_size=1, max_size=9)
region_limit_maps = st.fixed_dictionaries({r: limit_values for r in RESOURCES})


def ops(kinds: Sequence[str]) -> st.SearchStrategy[list[Op]]:
    op = st.builds(
        Op,
        st.sampled_from(kinds),
        st.integers(0, 64),
        st.sampled_from(RESOURCES),
        st.integers(0, 30),
        st.booleans(),
    )
    return st.lists(op, max_size=40)


def run(tree: Tree, setup: Sequence[tuple[int, str, Limit]], script: Sequence[Op], *, forced: bool) -> None:
    for pick, resource, limit in setup:  # random limits, every one through the checked path
        set_limit(tree, 1 + pick % (len(tree) - 1), resource, limit)
    check_invariant(tree, forced=forced)
    for op in script:
        tenant = 1 + op.pick % (len(tree) - 1)  # the region itself holds no usage
        if op.kind == "reserve":
            reserve(tree, tenant, ResourceVector({op.resource: op.amount}))
        elif op.kind == "commit":
            do_commit(tree, tenant, op.resource, op.amount)
        elif op.kind == "release":
            release(tree, tenant, op.resource, op.amount, from_used=op.flag)
        elif op.kind == "limit":
            limit = None if op.flag and op.amount % 3 == 0 else op.amount
            set_limit(tree, op.pick % len(tree), op.resource, limit, force=forced and op.flag)
        else:  # "sync": usage measured, applied whatever the limits say
            used = tree.used[tenant] - {op.resource: tree.used[tenant].get(op.resource, 0)}
            result = sync_used(tree.chain(tenant), used + {op.resource: op.amount})
            tree.used[tenant] = used + {op.resource: op.amount}
            tree.apply(tenant, result.changes)
            after = tree.recompute()
            assert {(o.node, o.resource) for o in result.over_limit} == {
                (tree.keys[j], r)
                for j in tree.path(tenant)
                for r, lim in tree.limits[j].items()
                if lim is not None and after[j].get(r, 0) > lim
            }
        check_invariant(tree, forced=forced)


setups = st.lists(st.tuples(st.integers(0, 64), st.sampled_from(RESOURCES), limit_values), max_size=12)


@settings(max_examples=800, deadline=None, database=None)
@given(shapes, region_limit_maps, setups, ops(["reserve", "reserve", "commit", "release", "limit"]))
def test_invariant_holds_under_unforced_operations(
    shape: list[tuple[int, NodeMode]],
    region_limits: dict[str, Limit],
    setup: list[tuple[int, str, Limit]],
    script: list[Op],
) -> None:
    run(Tree(shape, region_limits), setup, script, forced=False)


@settings(max_examples=400, deadline=None, database=None)
@given(shapes, region_limit_maps, setups, ops(["reserve", "release", "limit", "sync"]))
def test_forced_changes_never_drift_and_agree_with_the_definition(
    shape: list[tuple[int, NodeMode]],
    region_limits: dict[str, Limit],
    setup: list[tuple[int, str, Limit]],
    script: list[Op],
) -> None:
    run(Tree(shape, region_limits), setup, script, forced=True)


def test_sibling_slice_survives_a_shared_sibling_exhausting_the_city() -> None:
    # region -> province (shared) -> city (shared, limit 100) -> county A (slice 40), county B (shared)
    tree = Tree([(0, SHARED), (1, SHARED), (2, SLICE), (2, SHARED)], {"vcpus": None})
    province, city, county_a, county_b = 1, 2, 3, 4
    assert isinstance(set_limit(tree, city, "vcpus", 100), LimitSet)
    assert isinstance(set_limit(tree, county_a, "vcpus", 40), LimitSet)  # city: 0 + max(40, 0) = 40
    for _ in range(6):  # B takes the remaining 60, 10 at a time
        assert isinstance(reserve(tree, county_b, ResourceVector(vcpus=10)), Admitted)
    assert reserve(tree, county_b, ResourceVector(vcpus=10)) == Refused(tree.keys[city], "vcpus", 10, 0)
    # A's slice is untouched: all 40 admitted, and the city's consumption stays at 100
    assert isinstance(reserve(tree, county_a, ResourceVector(vcpus=40)), Admitted)
    assert tree.consumption[city] == tree.consumption[province] == ResourceVector(vcpus=100)
    assert reserve(tree, county_a, ResourceVector(vcpus=1)) == Refused(tree.keys[county_a], "vcpus", 1, 0)
    # nor can A's slice be grown while B holds the rest of the city
    assert check_set_limit(tree.chain(county_a), {"vcpus": 41}) == Refused(tree.keys[city], "vcpus", 1, 0)
    check_invariant(tree, forced=False)
