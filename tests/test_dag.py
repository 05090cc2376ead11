"""DAG logic: cycle detection, stable topological order, conditions, and the DagPlanner
(no wave barrier, skip propagation, diamonds)."""

from __future__ import annotations

import pytest

from petit.core.dag import DagPlanner, ancestors, condition_holds, find_cycle, topological_order
from petit.core.model import Condition, TaskStatus

OK, FAIL, SKIP = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED


def assert_is_cycle_of(cycle: list[str], graph: dict[str, list[str]], members: set[str]) -> None:
    """A cycle path [a, b, ..., a] whose every step is a real edge and whose nodes are `members`."""
    assert cycle[0] == cycle[-1]
    assert set(cycle) == members
    assert len(cycle) == len(members) + 1
    for node, upstream in zip(cycle, cycle[1:]):
        assert upstream in graph[node], f"{node} -> {upstream} is not an edge"


# --- find_cycle ----------------------------------------------------------------------------------

ACYCLIC = [
    ({}, "empty"),
    ({"a": []}, "single"),
    ({"a": [], "b": ["a"], "c": ["b"]}, "chain"),
    ({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, "diamond"),
    ({"a": ["outside"]}, "edge-to-unknown-node-ignored"),
]


@pytest.mark.parametrize("graph", [g for g, _ in ACYCLIC], ids=[i for _, i in ACYCLIC])
def test_find_cycle_none_for_acyclic(graph):
    assert find_cycle(graph) is None


CYCLIC = [
    ({"a": ["a"]}, {"a"}, "self-loop"),
    ({"a": ["b"], "b": ["a"]}, {"a", "b"}, "two"),
    ({"a": ["c"], "b": ["a"], "c": ["b"]}, {"a", "b", "c"}, "three"),
    (
        {"root": [], "x": ["root", "z"], "y": ["x"], "z": ["y"], "tail": ["x"]},
        {"x", "y", "z"},
        "cycle-off-a-root",
    ),
    (
        {"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"], "e": ["d"]},
        {"b", "c", "d"},
        "cycle-in-middle",
    ),
]


@pytest.mark.parametrize(
    "graph, members", [(g, m) for g, m, _ in CYCLIC], ids=[i for *_, i in CYCLIC]
)
def test_find_cycle_returns_the_cycle_path(graph, members):
    cycle = find_cycle(graph)
    assert cycle is not None
    assert_is_cycle_of(cycle, graph, members)


def test_find_cycle_handles_a_5000_node_chain_without_recursion():
    graph = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(5000)}
    assert find_cycle(graph) is None
    graph["t0"] = ["t4999"]  # close the chain into one big loop
    cycle = find_cycle(graph)
    assert cycle is not None
    assert_is_cycle_of(cycle, graph, set(graph))


def test_find_cycle_is_deterministic():
    graph = {"b": ["a"], "a": ["b"], "c": ["c"]}
    assert find_cycle(graph) == find_cycle(dict(reversed(list(graph.items()))))


# --- topological_order ---------------------------------------------------------------------------

ORDER_CASES = [
    (["a", "b", "c"], {}, ["a", "b", "c"], "independent-keep-declaration"),
    (["c", "b", "a"], {}, ["c", "b", "a"], "independent-reverse-declaration"),
    (["b", "a"], {"b": ["a"]}, ["a", "b"], "forward-reference"),
    (
        ["load", "transform", "extract"],
        {"load": ["transform"], "transform": ["extract"]},
        ["extract", "transform", "load"],
        "chain-declared-backwards",
    ),
    (["c", "a", "b"], {"c": ["b"]}, ["a", "b", "c"], "earliest-ready-first"),
    (["z", "x", "y"], {"z": ["y"], "x": []}, ["x", "y", "z"], "declared-first-waits-for-upstream"),
    (
        ["d", "c", "b", "a"],
        {"d": ["b", "c"], "b": ["a"], "c": ["a"]},
        ["a", "c", "b", "d"],
        "diamond-branches-in-declaration-order",
    ),
    (["a", "b"], {"b": ["a", "a"]}, ["a", "b"], "duplicate-edge"),
]


@pytest.mark.parametrize(
    "ids, deps, expected", [c[:3] for c in ORDER_CASES], ids=[c[3] for c in ORDER_CASES]
)
def test_topological_order(ids, deps, expected):
    assert topological_order(ids, deps) == expected


def test_topological_order_respects_every_edge_of_a_large_graph():
    ids = [f"t{i}" for i in range(2000)]
    # every task depends on the two tasks declared right AFTER it: the reverse of declaration
    deps = {f"t{i}": [f"t{j}" for j in (i + 1, i + 2) if j < 2000] for i in range(2000)}
    order = topological_order(ids, deps)
    assert sorted(order) == sorted(ids)
    index = {task_id: n for n, task_id in enumerate(order)}
    assert all(index[up] < index[task] for task, ups in deps.items() for up in ups)
    assert order == list(reversed(ids))


def test_topological_order_of_10000_independent_tasks_is_declaration_order():
    ids = [f"task-{i:05d}" for i in range(10_000)][::-1]  # declared in descending name order
    assert topological_order(ids, {}) == ids


# --- condition_holds -----------------------------------------------------------------------------

CONDITION_TABLE = [
    # upstream statuses, then the expected result for all_success, on_failure, all_done, always
    ([OK], (True, False, True, True)),
    ([FAIL], (False, True, True, True)),
    ([SKIP], (False, False, True, True)),
    ([OK, OK], (True, False, True, True)),
    ([OK, FAIL], (False, True, True, True)),
    ([OK, SKIP], (False, False, True, True)),
    ([FAIL, SKIP], (False, True, True, True)),
    ([SKIP, SKIP], (False, False, True, True)),
    ([FAIL, FAIL], (False, True, True, True)),
    ([OK, FAIL, SKIP], (False, True, True, True)),
]
CONDITIONS = [Condition.ALL_SUCCESS, Condition.ON_FAILURE, Condition.ALL_DONE, Condition.ALWAYS]
CONDITION_CASES = [
    (cond, ups, row[n]) for ups, row in CONDITION_TABLE for n, cond in enumerate(CONDITIONS)
]


@pytest.mark.parametrize(
    "condition, upstream, expected",
    CONDITION_CASES,
    ids=[f"{c.value}-{'+'.join(s.value for s in u)}" for c, u, _ in CONDITION_CASES],
)
def test_condition_holds(condition, upstream, expected):
    assert condition_holds(condition, upstream) is expected


def test_condition_holds_accepts_a_generator():
    assert condition_holds(Condition.ALL_SUCCESS, (s for s in [OK, OK])) is True
    assert condition_holds(Condition.ON_FAILURE, (s for s in [OK, FAIL])) is True


# --- DagPlanner ----------------------------------------------------------------------------------


def planner(
    deps: dict[str, list[str]], conditions: dict[str, Condition] | None = None
) -> DagPlanner:
    ids = list(deps)
    conditions = {
        task_id: (conditions or {}).get(task_id, Condition.ALL_SUCCESS) for task_id in ids
    }
    return DagPlanner(ids, deps, conditions)


def simulate(
    deps: dict[str, list[str]],
    conditions: dict[str, Condition] | None = None,
    failing: frozenset[str] = frozenset(),
) -> dict[str, TaskStatus]:
    """Run the planner to the end, finishing released tasks in FIFO order; tasks in `failing`
    fail."""
    plan = planner(deps, conditions)
    queue = plan.initial()
    final: dict[str, TaskStatus] = {}
    while queue:
        task_id = queue.pop(0)
        final[task_id] = FAIL if task_id in failing else OK
        released, skipped = plan.finished(task_id, final[task_id])
        final.update({s: SKIP for s in skipped})
        queue.extend(released)
    return final


def test_initial_releases_every_root_in_declaration_order():
    plan = planner({"c": [], "a": ["c"], "b": [], "d": ["a", "b"]})
    assert plan.initial() == ["c", "b"]


def test_no_wave_barrier_a_task_starts_when_its_own_upstream_finishes():
    # fast -> after_fast; slow -> after_slow. after_fast must not wait for slow.
    plan = planner({"fast": [], "slow": [], "after_fast": ["fast"], "after_slow": ["slow"]})
    assert plan.initial() == ["fast", "slow"]
    assert plan.finished("fast", OK) == (["after_fast"], [])
    assert plan.finished("after_fast", OK) == ([], [])  # slow still running: fine
    assert plan.finished("slow", OK) == (["after_slow"], [])


def test_deep_branch_progresses_while_a_sibling_is_still_running():
    plan = planner({"slow": [], "a1": [], "a2": ["a1"], "a3": ["a2"], "join": ["a3", "slow"]})
    assert plan.initial() == ["slow", "a1"]
    assert plan.finished("a1", OK) == (["a2"], [])
    assert plan.finished("a2", OK) == (["a3"], [])
    assert plan.finished("a3", OK) == ([], [])  # join still waits for slow
    assert plan.finished("slow", OK) == (["join"], [])


def test_task_waits_for_all_its_upstreams():
    plan = planner({"a": [], "b": [], "c": ["a", "b"]})
    assert plan.finished("a", OK) == ([], [])
    assert plan.finished("b", OK) == (["c"], [])


def test_duplicate_upstream_is_counted_once():
    plan = planner({"a": [], "b": ["a", "a"]})
    assert plan.finished("a", OK) == (["b"], [])


DIAMOND = {"top": [], "left": ["top"], "right": ["top"], "bottom": ["left", "right"]}

DIAMOND_CASES = [
    # (failing tasks, condition of bottom, expected final statuses)
    (set(), Condition.ALL_SUCCESS, {"top": OK, "left": OK, "right": OK, "bottom": OK}),
    ({"left"}, Condition.ALL_SUCCESS, {"top": OK, "left": FAIL, "right": OK, "bottom": SKIP}),
    ({"left"}, Condition.ON_FAILURE, {"top": OK, "left": FAIL, "right": OK, "bottom": OK}),
    (set(), Condition.ON_FAILURE, {"top": OK, "left": OK, "right": OK, "bottom": SKIP}),
    ({"left", "right"}, Condition.ALL_DONE, {"top": OK, "left": FAIL, "right": FAIL, "bottom": OK}),
    ({"top"}, Condition.ALL_SUCCESS, {"top": FAIL, "left": SKIP, "right": SKIP, "bottom": SKIP}),
    ({"top"}, Condition.ALL_DONE, {"top": FAIL, "left": SKIP, "right": SKIP, "bottom": OK}),
    ({"top"}, Condition.ALWAYS, {"top": FAIL, "left": SKIP, "right": SKIP, "bottom": OK}),
    ({"top"}, Condition.ON_FAILURE, {"top": FAIL, "left": SKIP, "right": SKIP, "bottom": SKIP}),
]


@pytest.mark.parametrize(
    "failing, condition, expected",
    DIAMOND_CASES,
    ids=[f"fail={'+'.join(sorted(f)) or 'none'}-bottom={c.value}" for f, c, _ in DIAMOND_CASES],
)
def test_diamond(failing, condition, expected):
    assert simulate(DIAMOND, {"bottom": condition}, frozenset(failing)) == expected


def test_diamond_bottom_released_once_after_both_branches():
    plan = planner(DIAMOND)
    assert plan.initial() == ["top"]
    assert plan.finished("top", OK) == (["left", "right"], [])
    assert plan.finished("right", OK) == ([], [])
    assert plan.finished("left", OK) == (["bottom"], [])


def test_skip_propagates_through_all_success_descendants():
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}
    plan = planner(deps)
    released, skipped = plan.finished("a", FAIL)
    assert released == []
    assert sorted(skipped) == ["b", "c", "d"]


def test_all_done_child_of_a_skipped_task_still_runs():
    deps = {"a": [], "b": ["a"], "cleanup": ["b"], "after_cleanup": ["cleanup"]}
    plan = planner(deps, {"cleanup": Condition.ALL_DONE})
    released, skipped = plan.finished("a", FAIL)
    assert (released, skipped) == (["cleanup"], ["b"])
    assert plan.finished("cleanup", OK) == (["after_cleanup"], [])


def test_on_failure_child_of_a_skipped_task_is_skipped():
    plan = planner({"a": [], "b": ["a"], "alert": ["b"]}, {"alert": Condition.ON_FAILURE})
    assert plan.finished("a", FAIL) == ([], ["b", "alert"])


def test_failing_job_example_shape():
    # mirrors examples/jobs/failing_job.yaml
    deps = {
        "prepare": [],
        "broken_step": ["prepare"],
        "never_runs": ["broken_step"],
        "cleanup": ["broken_step"],
        "alert": ["broken_step"],
    }
    final = simulate(
        deps,
        {"cleanup": Condition.ALL_DONE, "alert": Condition.ON_FAILURE},
        failing=frozenset({"broken_step"}),
    )
    assert final == {
        "prepare": OK,
        "broken_step": FAIL,
        "never_runs": SKIP,
        "cleanup": OK,
        "alert": OK,
    }


def test_skip_and_release_in_one_call_when_a_skip_completes_a_join():
    # b skipped (a failed); join (all_done) waits on b and c: once c is done, join runs
    deps = {"a": [], "c": [], "b": ["a"], "join": ["b", "c"]}
    plan = planner(deps, {"join": Condition.ALL_DONE})
    assert plan.initial() == ["a", "c"]
    assert plan.finished("c", OK) == ([], [])
    assert plan.finished("a", FAIL) == (["join"], ["b"])


def test_every_task_reaches_a_final_status_in_a_wide_graph():
    deps = {"root": []}
    deps.update({f"mid{i}": ["root"] for i in range(50)})
    deps["end"] = [f"mid{i}" for i in range(50)]
    final = simulate(deps, {"end": Condition.ALL_DONE}, failing=frozenset({"mid7", "mid31"}))
    assert set(final) == set(deps)
    assert [t for t, s in final.items() if s is FAIL] == ["mid7", "mid31"]
    assert final["end"] is OK


def test_skip_propagation_down_a_5000_task_chain():
    deps = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(5000)}
    plan = planner(deps)
    released, skipped = plan.finished("t0", FAIL)
    assert released == []
    assert len(skipped) == 4999 and set(skipped) == set(deps) - {"t0"}


def test_ancestors_are_every_task_above_not_the_task_itself():
    graph = {"a": (), "b": ("a",), "c": ("b",), "d": ("a", "c"), "lone": ()}
    assert ancestors("d", graph) == {"a", "b", "c"}
    assert ancestors("b", graph) == {"a"}
    assert ancestors("a", graph) == set() == ancestors("lone", graph)
