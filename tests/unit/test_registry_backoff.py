"""Per-host backoff of the registry poller: Retry-After, exponential growth, cap, reset."""

from __future__ import annotations

import random

from registry.poller import HostBackoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def backoff(clock: Clock) -> HostBackoff:
    return HostBackoff(clock=clock, base=5, cap=60, retry_after_cap=600, rng=random.Random(1))


def test_retry_after_is_honoured_exactly_and_capped():
    clock = Clock()
    hosts = backoff(clock)
    assert hosts.failure("hub", retry_after=42) == 42
    assert hosts.blocked_until("hub") == 142
    assert hosts.blocked_until("other") is None  # hosts are independent
    clock.now = 142
    assert hosts.blocked_until("hub") is None
    assert hosts.failure("hub", retry_after=10_000) == 600


def test_errors_back_off_exponentially_up_to_the_cap():
    clock = Clock()
    hosts = backoff(clock)
    delays = [hosts.failure("slow") for _ in range(6)]
    for index, delay in enumerate(delays[:4]):
        assert 5 * 2**index <= delay <= 5 * 2**index * 1.2
    assert all(delay <= 60 for delay in delays)
    assert delays[-1] == 60


def test_success_resets_but_not_while_another_request_backed_the_host_off():
    clock = Clock()
    hosts = backoff(clock)
    hosts.failure("reg")
    hosts.success("reg")  # a request that was already in flight succeeded
    assert hosts.blocked_until("reg") is not None and hosts.failures("reg") == 1
    clock.now += 100
    hosts.success("reg")
    assert hosts.failures("reg") == 0
    assert 5 <= hosts.failure("reg") <= 6  # starts from the base again
