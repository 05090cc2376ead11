"""Task graph logic, pure and without IO: ordering, cycle detection, ready sets, conditions."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

from .model import Condition, TaskStatus


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as [a, b, ..., a] (edges point from a node to what it depends on), or None.
    Iterative so a 5,000-task chain cannot overflow the stack."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {node: WHITE for node in graph}
    for root in sorted(graph):
        if colour[root] != WHITE:
            continue
        path: list[str] = [root]
        stack = [iter(sorted(graph[root]))]
        colour[root] = GREY
        while stack:
            child = next(stack[-1], None)
            if child is None:
                colour[path.pop()] = BLACK
                stack.pop()
            elif child not in colour:
                continue
            elif colour[child] == GREY:
                return path[path.index(child) :] + [child]
            elif colour[child] == WHITE:
                colour[child] = GREY
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def topological_order(ids: Sequence[str], depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """Kahn's order, stable with respect to the declaration order of `ids`.
    The caller has already rejected cycles and unknown ids."""
    position = {task_id: i for i, task_id in enumerate(ids)}
    pending = {task_id: len(set(depends_on.get(task_id, ()))) for task_id in ids}
    downstream: dict[str, list[str]] = {task_id: [] for task_id in ids}
    for task_id in ids:
        for upstream in set(depends_on.get(task_id, ())):
            downstream[upstream].append(task_id)
    # A heap of declaration positions: re-sorting a list on every pop was quadratic, about a
    # second for a job of 10,000 independent tasks.
    ready = [position[task_id] for task_id in ids if pending[task_id] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        task_id = ids[heapq.heappop(ready)]
        order.append(task_id)
        for child in downstream[task_id]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, position[child])
    return order


def ancestors(task_id: str, depends_on: Mapping[str, Iterable[str]]) -> set[str]:
    """Every task `task_id` depends on, directly or through others (not itself)."""
    seen: set[str] = set()
    todo = list(depends_on.get(task_id, ()))
    while todo:
        upstream = todo.pop()
        if upstream not in seen:
            seen.add(upstream)
            todo.extend(depends_on.get(upstream, ()))
    return seen


def condition_holds(condition: Condition, upstream_statuses: Iterable[TaskStatus]) -> bool:
    """Whether a task runs, given the final statuses of its direct upstreams."""
    statuses = list(upstream_statuses)
    if condition is Condition.ALL_SUCCESS:
        return all(s is TaskStatus.COMPLETED for s in statuses)
    if condition is Condition.ON_FAILURE:
        return any(s is TaskStatus.FAILED for s in statuses)
    return True  # all_done / always: run once every upstream finished, whatever its status


class DagPlanner:
    """Tracks which tasks may start. No wave barrier: a task is released the moment its own
    upstreams are finished. `finished()` returns the tasks it releases and those it skips."""

    def __init__(
        self,
        ids: Sequence[str],
        depends_on: Mapping[str, Sequence[str]],
        conditions: Mapping[str, Condition],
    ) -> None:
        self._upstream = {
            task_id: tuple(dict.fromkeys(depends_on.get(task_id, ()))) for task_id in ids
        }
        self._downstream: dict[str, list[str]] = {task_id: [] for task_id in ids}
        for task_id, ups in self._upstream.items():
            for up in ups:
                self._downstream[up].append(task_id)
        self._waiting = {task_id: len(ups) for task_id, ups in self._upstream.items()}
        self._conditions = conditions
        self._status: dict[str, TaskStatus] = {}
        self._ids = list(ids)

    def initial(self) -> list[str]:
        return [task_id for task_id in self._ids if self._waiting[task_id] == 0]

    def finished(self, task_id: str, status: TaskStatus) -> tuple[list[str], list[str]]:
        """Record a final status; return (released task ids, task ids skipped as a consequence)."""
        released: list[str] = []
        skipped: list[str] = []
        todo = [(task_id, status)]
        while todo:
            done_id, done_status = todo.pop()
            self._status[done_id] = done_status
            for child in self._downstream[done_id]:
                self._waiting[child] -= 1
                if self._waiting[child]:
                    continue
                ups = (self._status[up] for up in self._upstream[child])
                if condition_holds(self._conditions[child], ups):
                    released.append(child)
                else:
                    skipped.append(child)
                    todo.append((child, TaskStatus.SKIPPED))
        return released, skipped
