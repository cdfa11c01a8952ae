"""Ctrl-C interrupts a blocking poll promptly: the GIL is released and signals are checked
in short slices."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent("""
    import sys, time, postroom
    broker = postroom.connect("embedded://interrupt")
    broker.create_topic("quiet", 1)
    consumer = broker.consumer("g", "quiet")
    print("polling", flush=True)
    try:
        consumer.poll()          # no timeout: blocks until a message or a signal
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(0)
    sys.exit(3)
""")


def test_ctrl_c_interrupts_a_blocking_poll_within_200_ms() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "polling"
    time.sleep(1.0)  # let it settle into the blocking poll
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    line = proc.stdout.readline().split()
    proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert line[0] == "interrupted"
    assert float(line[1]) - sent < 0.2, f"took {float(line[1]) - sent:.3f} s"
