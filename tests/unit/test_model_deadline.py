"""A model call's deadline stops while the call waits for a local model's turn, and
still bounds the call's own work."""

from __future__ import annotations

import asyncio

import pytest

from connectors.model_deadline import deadline, turn

pytestmark = pytest.mark.asyncio


async def held_until(lock: asyncio.Lock, released: asyncio.Event, started: asyncio.Event) -> None:
    """Another call generating: holds the model until ``released``."""
    async with turn(lock):
        started.set()
        await released.wait()


async def test_waiting_for_the_model_s_turn_does_not_count() -> None:
    lock, released, started = asyncio.Lock(), asyncio.Event(), asyncio.Event()
    other = asyncio.create_task(held_until(lock, released, started))
    await started.wait()

    async def queued() -> str:
        async with deadline(0.2), turn(lock):
            return "answered"

    waiting = asyncio.create_task(queued())
    await asyncio.sleep(0.5)  # the queued call waits 2.5 times its deadline
    assert not waiting.done()
    released.set()
    assert await waiting == "answered"
    await other


async def test_without_a_turn_the_same_wait_times_out() -> None:
    lock, released, started = asyncio.Lock(), asyncio.Event(), asyncio.Event()
    other = asyncio.create_task(held_until(lock, released, started))
    await started.wait()

    async def queued() -> None:
        async with deadline(0.2), lock:
            pass

    with pytest.raises(TimeoutError):
        await queued()
    released.set()
    await other


async def test_the_call_s_own_work_is_still_bounded_and_frees_the_model() -> None:
    lock, never = asyncio.Lock(), asyncio.Event()

    async def stuck() -> None:
        async with deadline(0.1), turn(lock):
            await never.wait()

    with pytest.raises(TimeoutError):
        await stuck()
    assert not lock.locked()


async def test_the_time_left_before_the_wait_is_kept() -> None:
    """Work before the turn counts: 0.15 s of a 0.2 s deadline spent, the call times out
    0.05 s into its turn, however long it waited for it."""
    lock, released, started = asyncio.Lock(), asyncio.Event(), asyncio.Event()
    other = asyncio.create_task(held_until(lock, released, started))
    await started.wait()
    loop = asyncio.get_running_loop()
    turned: list[float] = []

    async def late() -> None:
        async with deadline(0.2):
            await asyncio.sleep(0.15)  # a retry's pause before this attempt
            async with turn(lock):
                turned.append(loop.time())
                await asyncio.Event().wait()

    call = asyncio.create_task(late())
    await asyncio.sleep(0.4)
    released.set()
    with pytest.raises(TimeoutError):
        await call
    assert turned
    assert loop.time() - turned[0] < 0.15
    await other
