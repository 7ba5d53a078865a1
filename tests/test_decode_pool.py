"""The local engine's decode pool: interims yield to finals by the recent load, and go to the stream most behind.

In process (a pool of threads, no model): the pool's clock is a fake one the test moves, so the averages
are exact and nothing depends on how fast this machine is.
"""

from __future__ import annotations

import threading

from conftest import wait_until

from symbld.engines.local.streaming import DecodePool


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gated(started: threading.Event, gate: threading.Event):
    def job() -> None:
        started.set()
        gate.wait(30)
    return job


def busy_with_finals(pool: DecodePool, n: int) -> list[threading.Event]:
    gates = [threading.Event() for _ in range(n)]
    for gate in gates:
        pool.submit(gated(threading.Event(), gate))
    wait_until(f"{n} finals running", lambda: pool.running()["final"] == n)
    return gates


def test_interims_wait_while_finals_kept_the_workers_busy():
    clock = Clock()
    pool = DecodePool(2, load_tau_s=1.0, clock=clock, spare=False)  # the load rule alone
    try:
        gates = busy_with_finals(pool, 2)
        clock.now += 10  # both workers on finals for 10 s
        gates[0].set()
        wait_until("one worker free", lambda: pool.running()["final"] == 1)
        assert pool.load()["final"] > 1.9
        ran = threading.Event()
        assert not pool.try_submit_idle(ran.set), "a free worker, but finals kept both busy just now"
        clock.now += 10  # then only one final for 10 s: room again
        assert pool.load()["final"] < 1.1
        assert pool.try_submit_idle(ran.set)
        wait_until("the interim ran", ran.is_set)
        gates[1].set()
    finally:
        pool.close()


def test_the_stream_most_behind_gets_the_free_worker():
    clock = Clock()
    pool = DecodePool(2, clock=clock, spare=False)  # the lag rule alone
    try:
        gates = busy_with_finals(pool, 2)  # no time passes: the load stays low
        ran = {"a": threading.Event(), "b": threading.Event()}
        assert not pool.try_submit_idle(ran["a"].set, key="a", lag=2.0)  # no worker free
        assert not pool.try_submit_idle(ran["b"].set, key="b", lag=0.5)
        gates[0].set()
        wait_until("one worker free", lambda: pool.running()["final"] == 1)
        assert not pool.try_submit_idle(ran["b"].set, key="b", lag=0.6), "a is further behind and asked just now"
        assert pool.try_submit_idle(ran["a"].set, key="a", lag=2.1)
        wait_until("a's interim ran", lambda: ran["a"].is_set() and pool.running()["optional"] == 0)
        clock.now += 1.0  # a asks no more (it is served): b's turn
        assert pool.try_submit_idle(ran["b"].set, key="b", lag=1.6)
        wait_until("b's interim ran", ran["b"].is_set)
        gates[1].set()
    finally:
        pool.close()


def test_no_interim_starts_while_a_final_is_due():
    pool = DecodePool(2, hold=True)
    try:
        ran = threading.Event()
        pool.final_due("a", True)  # a's speech paused: its final may want a worker any moment
        assert not pool.try_submit_idle(ran.set, key="b", lag=2.0), "both workers free, but a's final is due"
        pool.final_due("a", False)  # a's final got its worker (or a spoke again)
        assert pool.try_submit_idle(ran.set, key="b", lag=2.0)
        wait_until("b's interim ran", ran.is_set)
    finally:
        pool.close()


def test_an_interim_leaves_the_last_free_worker_to_the_next_final():
    pool = DecodePool(2, spare=True)
    try:
        ran = threading.Event()
        gates = busy_with_finals(pool, 1)  # one final running, one worker free
        assert not pool.try_submit_idle(ran.set), "the free worker is the last one: a final may come due"
        gates[0].set()
        wait_until("both workers free", lambda: pool.running()["final"] == 0)
        assert pool.try_submit_idle(ran.set)
        wait_until("the interim ran", ran.is_set)
    finally:
        pool.close()


def test_finals_waiting_counts_finals_queued_for_a_worker_until_one_starts():
    # A running interim whose utterance closed gives its worker up when this is non-zero (streaming.py "cancel").
    pool = DecodePool(1)
    try:
        gates = busy_with_finals(pool, 1)  # the only worker busy
        assert pool.finals_waiting() == 0, "the running final is not waiting"
        started = threading.Event()
        pool.submit(gated(started, threading.Event()))
        assert pool.finals_waiting() == 1
        gates[0].set()
        wait_until("the queued final started", started.is_set)
        assert pool.finals_waiting() == 0
    finally:
        pool.close()
