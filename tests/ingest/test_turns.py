"""Acknowledgement turns: steps run in number order whatever order their threads arrive in."""

from __future__ import annotations

import threading

from ingest._turns import Turns


def test_steps_run_in_number_order_even_when_a_step_fails() -> None:
    turns = Turns()
    done: list[int] = []
    errors: list[BaseException] = []

    def step(n: int) -> None:
        try:
            with turns.turn(n):
                done.append(n)
                if n == 2:
                    raise RuntimeError("a failing step still passes its turn on")
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=step, args=(n,)) for n in reversed(range(6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert done == list(range(6))
    assert len(errors) == 1


def test_a_step_waits_for_its_predecessor() -> None:
    turns = Turns()
    entered = threading.Event()

    def second() -> None:
        with turns.turn(1):
            entered.set()

    t = threading.Thread(target=second)
    t.start()
    assert not entered.wait(0.2)
    with turns.turn(0):
        pass
    assert entered.wait(5)
    t.join(5)


def test_a_step_that_gave_up_waiting_finishes_without_releasing_later_ones() -> None:
    turns = Turns()
    assert not turns.wait(1, timeout=0.05)  # step 0 has not finished
    turns.finish(1)  # step 1 went ahead anyway
    assert not turns.wait(2, timeout=0.05)  # step 2 still waits for step 0
    turns.finish(0)
    assert turns.wait(2, timeout=0)
    turns.finish(0)  # finishing twice (a retried step) changes nothing
    assert not turns.wait(3, timeout=0)
