"""Priority lanes of the specialist: lane topics by priority, and the shared slot pool that
grants model-call slots most urgent lane first (asyncio, no clocks: waits are yields)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from agents.priority import LaneScheduler
from schemas import topics
from streams.lanes import LANES, SlotPool, lane_slot, lane_topic
from streams.metrics import Metrics

HIGH, NORMAL, LOW = 0, 1, 2


@pytest.mark.parametrize(
    ("priority", "lanes", "spec"),
    [
        (9, 3, topics.TASKS_HIGH),
        (7, 3, topics.TASKS_HIGH),
        (5, 3, topics.TASKS),
        (4, 3, topics.TASKS),
        (3, 3, topics.TASKS_LOW),
        (0, 3, topics.TASKS_LOW),
        (9, 2, topics.TASKS),
        (5, 2, topics.TASKS),
        (4, 2, topics.TASKS_LOW),
        (9, 1, topics.TASKS),
        (0, 1, topics.TASKS),
        (42, 3, topics.TASKS_HIGH),
        (-1, 3, topics.TASKS_LOW),
    ],
)
def test_a_task_goes_to_the_topic_of_its_lane(
    priority: int, lanes: int, spec: topics.TopicSpec
) -> None:
    assert lane_topic(priority, lanes) == spec


def test_every_lane_topic_is_provisioned_and_the_normal_lane_is_the_default() -> None:
    assert [name for name, _ in LANES] == ["high", "normal", "low"]
    assert set(topics.TASK_LANES) <= set(topics.ALL)
    assert topics.BY_RECORD["TaskAssigned"] == topics.TASKS
    assert all(spec.record.record_name == "TaskAssigned" for spec in topics.TASK_LANES)


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (a bounded number of turns, no clock)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)  # one loop turn: lets the created tasks reach their waits
    pytest.fail("the condition never held")


class Grants:
    """Waiters that note when they get a slot and hold it until told to finish."""

    def __init__(self, pool: SlotPool) -> None:
        self.pool = pool
        self.order: list[str] = []
        self.finish: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def wait(self, name: str, lane: int) -> None:
        self.finish[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(self._run(name, lane))

    async def _run(self, name: str, lane: int) -> None:
        async with self.pool.slot(lane):
            self.order.append(name)
            await self.finish[name].wait()

    async def done(self, name: str) -> None:
        """``name`` holds a slot (else the order is wrong: fail); let it release it."""
        await until(lambda: name in self.order)
        self.finish[name].set()
        await self.tasks[name]


async def test_a_free_slot_is_granted_at_once() -> None:
    pool = SlotPool(2, LaneScheduler())
    await pool.acquire(LOW)
    assert pool.free == 1
    pool.release()
    assert pool.free == 2


async def test_waiters_are_served_most_urgent_lane_first_and_in_order_within_a_lane() -> None:
    grants = Grants(SlotPool(1, LaneScheduler(guard_every=8)))
    grants.wait("first", LOW)
    await until(lambda: grants.order == ["first"])
    for name, lane in [("low1", LOW), ("low2", LOW), ("normal1", NORMAL)]:
        grants.wait(name, lane)
    for name in ("high1", "high2"):
        grants.wait(name, HIGH)
    await until(lambda: grants.pool.waiting(HIGH) == 2)
    for name in ["first", "high1", "high2", "normal1", "low1", "low2"]:
        await grants.done(name)
    assert grants.order == ["first", "high1", "high2", "normal1", "low1", "low2"]
    assert grants.pool.free == 1


async def test_the_starvation_guard_lets_a_waiting_lower_lane_through() -> None:
    grants = Grants(SlotPool(1, LaneScheduler(guard_every=3)))
    grants.wait("first", HIGH)
    await until(lambda: grants.order == ["first"])
    grants.wait("low", LOW)
    for i in range(4):
        grants.wait(f"high{i}", HIGH)
    await until(lambda: grants.pool.waiting(HIGH) == 4)
    for name in ["first", "high0", "high1", "low", "high2", "high3"]:
        await grants.done(name)
    # Three picks in a row passed the waiting low lane: the third went to it.
    assert grants.order == ["first", "high0", "high1", "low", "high2", "high3"]


async def test_a_waiter_cancelled_before_its_turn_gives_up_its_place() -> None:
    grants = Grants(SlotPool(1, LaneScheduler()))
    grants.wait("first", LOW)
    await until(lambda: grants.order == ["first"])
    grants.wait("high", HIGH)
    grants.wait("low", LOW)
    await until(lambda: grants.pool.waiting(HIGH) == 1 and grants.pool.waiting(LOW) == 1)
    grants.tasks["high"].cancel()
    await until(lambda: grants.pool.waiting(HIGH) == 0)
    await grants.done("first")
    await grants.done("low")
    assert grants.order == ["first", "low"]
    assert grants.tasks["high"].cancelled()
    assert grants.pool.free == 1


async def test_a_waiter_cancelled_after_its_grant_hands_the_slot_on() -> None:
    pool = SlotPool(1, LaneScheduler())
    await pool.acquire(NORMAL)
    granted_then_cancelled = asyncio.create_task(pool.acquire(HIGH))
    after = asyncio.create_task(pool.acquire(LOW))
    await until(lambda: pool.waiting(HIGH) == 1 and pool.waiting(LOW) == 1)
    pool.release()  # grants the high waiter, which is cancelled before it resumes
    granted_then_cancelled.cancel()
    await after
    assert granted_then_cancelled.cancelled()
    assert pool.free == 0
    pool.release()
    assert pool.free == 1


async def test_a_slot_is_released_when_the_work_in_it_fails() -> None:
    pool = SlotPool(1, LaneScheduler())
    with pytest.raises(RuntimeError, match="model"):
        async with pool.slot(HIGH):
            raise RuntimeError("model failed")
    assert pool.free == 1


def test_releasing_a_slot_never_acquired_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="never acquired"):
        SlotPool(1, LaneScheduler()).release()
    with pytest.raises(ValueError, match="at least one slot"):
        SlotPool(0, LaneScheduler())


async def test_lane_metrics_count_waiting_and_granted_tasks() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    pool = SlotPool(1, LaneScheduler())

    def sample(name: str, lane: str) -> float | None:
        return registry.get_sample_value(name, {"lane": lane})

    await pool.acquire(NORMAL)
    waiter = asyncio.create_task(_hold(pool, metrics))
    await until(lambda: sample("guardian_specialist_lane_waiting_tasks", "high") == 1)
    pool.release()
    await waiter
    assert sample("guardian_specialist_lane_waiting_tasks", "high") == 0
    assert sample("guardian_specialist_lane_tasks_total", "high") == 1
    assert sample("guardian_specialist_lane_wait_seconds_count", "high") == 1
    assert pool.free == 1


async def _hold(pool: SlotPool, metrics: Metrics) -> None:
    async with lane_slot(pool, metrics, HIGH, "high"):
        assert pool.free == 0


async def test_more_slots_go_to_waiters_at_once_and_fewer_take_none_back() -> None:
    pool = SlotPool(1, LaneScheduler())
    await pool.acquire(NORMAL)
    second = asyncio.ensure_future(pool.acquire(NORMAL))
    third = asyncio.ensure_future(pool.acquire(NORMAL))
    await until(lambda: pool.waiting(NORMAL) == 2)
    pool.resize(3)
    await asyncio.gather(second, third)
    assert (pool.size, pool.free) == (3, 0)
    pool.resize(1)  # three in use: none is taken back, the next waits for two releases
    fourth = asyncio.ensure_future(pool.acquire(NORMAL))
    await until(lambda: pool.waiting(NORMAL) == 1)
    pool.release()
    pool.release()
    assert not fourth.done()
    pool.release()
    await fourth
    assert (pool.size, pool.free) == (1, 0)
    with pytest.raises(ValueError, match="at least one slot"):
        pool.resize(0)


async def test_the_guard_can_change_while_tasks_wait() -> None:
    grants = Grants(SlotPool(1, LaneScheduler(guard_every=8)))
    grants.pool.guard(2)
    grants.wait("first", HIGH)
    await until(lambda: grants.order == ["first"])
    grants.wait("low", LOW)
    for i in range(2):
        grants.wait(f"high{i}", HIGH)
    await until(lambda: grants.pool.waiting(HIGH) == 2)
    for name in ["first", "high0", "low", "high1"]:
        await grants.done(name)
    assert grants.order == ["first", "high0", "low", "high1"]
