"""Faults on Redis Streams as the transport (real Redis with AOF, appendfsync always): a
worker killed with SIGKILL while it holds pending entries, restarted under the same consumer
name and under another; Redis itself killed and restarted mid-run. Counted as for Kafka:
lost = 0, duplicate effects = 0 (unguarded ledger), and no entry left stuck pending."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import kill_then_start, require_env
from .test_processor_faults import Run

pytestmark = [pytest.mark.redis, pytest.mark.robustness]


def stuck_pending(run: Run) -> int:
    return sum(g["pending"] for g in run.broker.groups(run.topic))  # type: ignore[attr-defined]


@pytest.mark.parametrize("restart_as", ["same-name", "other-name"])
def test_kill_9_holding_pending_entries_then_restart(tmp_path: Path, restart_as: str) -> None:
    run = Run(require_env("POSTROOM_REDIS_URL"), tmp_path, events=150, keys=16)
    proc = run.start_working(delay=0.02, consumer_name="worker-a")
    run.wait_for_deliveries(40)
    proc.kill()
    proc.wait(timeout=10)
    assert stuck_pending(run) > 0, "the killed worker held entries it had not acknowledged"
    run.finish(consumer_name="worker-a" if restart_as == "same-name" else "worker-b")
    figures = run.check()
    assert stuck_pending(run) == 0, figures
    run.cleanup()


def test_redis_killed_and_restarted_mid_run(tmp_path: Path) -> None:
    run = Run(require_env("POSTROOM_REDIS_URL"), tmp_path, events=120)
    proc = run.start_working(delay=0.03, consumer_name="worker-a")
    run.wait_for_deliveries(30)
    kill_then_start("redis", down_for=2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "is Redis running" in err, "the outage was seen and ridden out"
    run.finish(consumer_name="worker-a")
    run.check()
    assert stuck_pending(run) == 0
    run.cleanup()
