"""`webhooks.Deadline`, the hot path's `asyncio.timeout`: what cuts off slow-drip bodies."""

from __future__ import annotations

import asyncio

import pytest

from dbt_tableau_relay.webhooks import Deadline


def test_a_block_that_outlives_its_deadline_raises_timeout_error() -> None:
    async def slow() -> None:
        with Deadline(0.01):
            await asyncio.sleep(5)

    with pytest.raises(TimeoutError):
        asyncio.run(slow())


def test_a_block_that_finishes_in_time_returns_its_value() -> None:
    async def quick() -> int:
        with Deadline(5):
            await asyncio.sleep(0)
            return 7

    assert asyncio.run(quick()) == 7


def test_a_deadline_leaves_no_cancellation_behind() -> None:
    """After a timeout the task goes on awaiting as if nothing happened."""

    async def after_a_timeout() -> str:
        with pytest.raises(TimeoutError), Deadline(0.01):
            await asyncio.sleep(5)
        await asyncio.sleep(0.02)
        task = asyncio.current_task()
        assert task is not None
        return f"cancelling={task.cancelling()}"

    assert asyncio.run(after_a_timeout()) == "cancelling=0"


def test_a_timer_that_did_not_fire_never_fires_later() -> None:
    async def sleep_past_it() -> None:
        with Deadline(0.01):
            pass
        await asyncio.sleep(0.05)

    asyncio.run(sleep_past_it())


def test_a_cancellation_from_elsewhere_passes_through_as_cancelled_error() -> None:
    async def cancelled_from_outside() -> None:
        async def victim() -> None:
            with Deadline(5):
                await asyncio.sleep(5)

        task = asyncio.create_task(victim())
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled_from_outside())


def test_an_outer_cancellation_during_an_expired_deadline_stays_a_cancellation() -> None:
    """Both fired: the outer one wins, as with asyncio.timeout."""

    async def both() -> None:
        async def victim() -> None:
            with Deadline(0.01):
                await asyncio.sleep(5)

        task = asyncio.create_task(victim())
        await asyncio.sleep(0)
        task.cancel()  # pending before the deadline fires
        await asyncio.sleep(0.05)
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(both())


def test_the_inner_of_two_nested_deadlines_fires_first() -> None:
    async def nested() -> str:
        with Deadline(5):
            try:
                with Deadline(0.01):
                    await asyncio.sleep(5)
            except TimeoutError:
                return "inner"
        return "none"

    assert asyncio.run(nested()) == "inner"
