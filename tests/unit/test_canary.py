"""serving/canary.py and the registry's canary aliases: the guard trips on errors and on a slower p99 (with
enough answers), never on noise; set/promote/abort are recorded in the alias history."""

from __future__ import annotations

import pytest

from inference.errors import ConfigError, NotFound
from inference.registry import Registry
from serving.canary import CanaryGuard, CanaryPolicy
from tests.fixtures import register_tiny


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_guard_aborts_on_errors_with_the_figures() -> None:
    guard = CanaryGuard(CanaryPolicy(min_requests=20), clock=Clock())
    for _ in range(200):
        assert guard.record(1, True, 0.002, production=1, canary=2) is None
    verdicts = [guard.record(2, i % 4 != 0, 0.002, production=1, canary=2) for i in range(19)]
    assert verdicts == [None] * 19  # 5 of 19 failed, but fewer than min_requests answers
    reason = guard.record(2, False, 0.002, production=1, canary=2)
    assert reason is not None and reason.startswith("error rate 30.0 % > production's + 5 points")
    assert "canary v2: 20 requests" in reason and "production v1: 200 requests, 0.0 % errors" in reason


def test_guard_ignores_a_small_error_difference_and_old_events() -> None:
    clock = Clock()
    guard = CanaryGuard(CanaryPolicy(min_requests=20, window_s=60), clock=clock)
    for i in range(100):  # 3 % errors on both: no difference
        guard.record(1, i % 33 != 0, 0.002, production=1, canary=2)
        assert guard.record(2, i % 33 != 0, 0.002, production=1, canary=2) is None
    for _ in range(30):
        guard.record(2, False, 0.002, production=1, canary=2)
    clock.now += 61  # the failures leave the window
    for _ in range(40):
        assert guard.record(2, True, 0.002, production=1, canary=2) is None
    assert guard.stats(2).requests == 40


def test_guard_aborts_on_a_slower_p99_only_with_enough_answers() -> None:
    guard = CanaryGuard(CanaryPolicy(min_requests=20, min_requests_p99=100, check_every=1), clock=Clock())
    for _ in range(300):
        guard.record(1, True, 0.010, production=1, canary=2)
    for _ in range(99):  # 0.2 s each: 20 x slower, but a p99 of 99 answers is not judged
        assert guard.record(2, True, 0.200, production=1, canary=2) is None
    reason = guard.record(2, True, 0.200, production=1, canary=2)
    assert reason is not None and reason.startswith("p99 200.0 ms > 1.5 x production's")
    fast = CanaryGuard(CanaryPolicy(min_requests_p99=10, check_every=1), clock=Clock())
    for _ in range(200):  # 2 x slower but only 10 ms more: under the absolute floor of 50 ms
        fast.record(1, True, 0.010, production=1, canary=2)
        assert fast.record(2, True, 0.020, production=1, canary=2) is None


def test_registry_canary_aliases(tmp_path) -> None:  # noqa: ANN001
    registry = Registry(tmp_path)
    for seed in range(3):
        register_tiny(registry, seed=seed)
    with pytest.raises(ConfigError, match="production already"):
        registry.set_canary("tiny", 1, 10)
    with pytest.raises(ConfigError, match="percentage"):
        registry.set_canary("tiny", 2, 0)
    with pytest.raises(NotFound):
        registry.end_canary("tiny", promote=False)
    aliases = registry.set_canary("tiny", 2, 10, reason="try v2")
    assert (aliases["canary"], aliases["weights"], registry.resolve("tiny", "canary")) == (2, {"canary": 10}, 2)
    aliases = registry.end_canary("tiny", promote=False, reason="automatic abort: x", only=3)  # not that one
    assert aliases["canary"] == 2
    aliases = registry.end_canary("tiny", promote=False, reason="automatic abort: x", only=2)
    assert "canary" not in aliases and aliases["production"] == 1 and aliases["weights"] == {}
    registry.set_canary("tiny", 3, 25)
    aliases = registry.end_canary("tiny", promote=True)
    assert (aliases["production"], aliases["previous"]) == (3, 1) and "canary" not in aliases
    assert [e["action"] for e in aliases["history"][1:]] == ["canary", "canary-abort", "canary", "canary-promote"]
    assert aliases["history"][2]["reason"] == "automatic abort: x"


def test_registry_shadow_alias(tmp_path) -> None:  # noqa: ANN001
    registry = Registry(tmp_path)
    register_tiny(registry)
    register_tiny(registry, seed=1)
    with pytest.raises(ConfigError, match="percentage"):
        registry.set_shadow("tiny", 2, 101)
    aliases = registry.set_shadow("tiny", 2, 20)
    assert (aliases["shadow"], aliases["weights"], aliases["production"]) == (2, {"shadow": 20}, 1)
    aliases = registry.end_shadow("tiny")
    assert "shadow" not in aliases and aliases["history"][-1]["action"] == "shadow-stop"
    with pytest.raises(NotFound):
        registry.end_shadow("tiny")
