#!/usr/bin/env python3
"""Produce throughput: postroom (Python and native) against confluent-kafka-python, side by
side in one run, on the same real Kafka broker, with the same producer settings.

Cases (each on its own fresh topic, after a warm-up on the same producer and topic):

  postroom.produce            Producer.produce(value, topic=...) per message, then flush()
  postroom.send_batch         Producer.send_batch(chunk, wait=False), --inflight chunks queued
  postroom.send_batch+hdr     the same with (key, value, headers) tuples, two headers each
  postroom.send_batch.sync    Producer.send_batch(chunk) waiting for each chunk (informational)
  confluent.produce           Producer.produce(topic, value) loop, poll(0) every --poll-every
  confluent.produce+hdr       the same with the same two headers
  confluent.produce_batch     Producer.produce_batch(topic, chunk) (it cannot send headers)
  native.send_batch           bench/native_produce.cpp: Producer::produce_batch + wait (C++)
  native.send_batch+hdr       the same with headers

Each case is timed from its first produce call until every delivery report arrived, and
checked afterwards: no failed report, and the topic's high watermarks add up to exactly
warm-up + messages (idempotence: nothing lost, nothing duplicated). Inputs (values, tuples,
dicts) are built before the clock starts. Every case runs --repeat times (cases rotate
between rounds); the table shows medians. Results and settings go to --json.

Exit status: 0 when every case ran and delivered everything, whatever the speed; 1 when a
case broke (delivery failure, wrong count, native tool missing or failing); 2 bad usage.

    python3 bench/produce.py                      # broker from POSTROOM_KAFKA_URL
    python3 bench/produce.py --messages 100000 --repeat 5
    python3 bench/produce.py --only postroom.send_batch,confluent.produce --no-native
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NATIVE_CANDIDATES = ("build/default/bench/postroom_bench_produce",
                     "build/bench/bench/postroom_bench_produce")
NATIVE_BUILD_DIR = "build/bench"
NATIVE_TARGET = "postroom_bench_produce"

HEADERS: list[tuple[str, bytes | str | None]] = [("h1", b"v1"), ("h2", b"v2")]

# Targets on medians; the benchmark reports them but never fails on them.
TARGET_VS_CONFLUENT_PRODUCE = 2.0
TARGET_VS_CONFLUENT_BATCH = 1.0
TARGET_VS_NATIVE = 0.70


def rel(path: Path | str) -> str:
    """`path` relative to the repository root when it is inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(path)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Settings shared by every client


@dataclass
class Settings:
    broker_url: str
    messages: int
    repeat: int
    size: int
    chunk: int
    inflight: int
    warmup: int
    poll_every: int
    partitions: int
    linger_ms: int = 5
    acks: str = "all"
    idempotence: bool = True
    compression: str = "none"
    delivery_timeout_ms: int = 30_000
    # librdkafka properties given to every client unchanged (postroom Python, native, confluent)
    librdkafka: dict[str, str] = field(default_factory=lambda: {
        "batch.num.messages": "10000",
        "batch.size": "1000000",
        "queue.buffering.max.messages": "500000",
    })

    @property
    def bootstrap_servers(self) -> str:
        return self.broker_url.split("://", 1)[1].rstrip("/")

    def confluent_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "confluent-bench",
            "enable.idempotence": self.idempotence,
            "acks": self.acks,
            "linger.ms": self.linger_ms,
            "compression.type": self.compression,
            "message.timeout.ms": self.delivery_timeout_ms,
            **self.librdkafka,
        }


# ------------------------------------------------------------------------------------------
# Cases. A runner gets (settings, topic, data) and returns {"seconds": ..., "failed": ...}.


class Data:
    """Inputs, built once before any clock starts."""

    def __init__(self, n: int, size: int) -> None:
        pad = b"x" * max(0, size - 8)
        self.values = [(b"%08d" % i + pad)[:size] for i in range(n)]
        self.with_headers = [(None, v, HEADERS) for v in self.values]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _postroom_producer(s: Settings, broker: Any) -> Any:
    return broker.producer(idempotent=s.idempotence, acks=s.acks, compression=s.compression,
                           linger=s.linger_ms / 1000, delivery_timeout=s.delivery_timeout_ms / 1000,
                           properties=s.librdkafka)


def run_postroom_produce(s: Settings, broker: Any, topic: str, data: Data) -> dict[str, Any]:
    values = data.values[:s.messages]
    with _postroom_producer(s, broker) as p:
        produce = p.produce
        for v in data.values[:s.warmup]:
            produce(v, topic=topic)
        if not p.flush(60):
            raise RuntimeError("warm-up did not flush")
        gc.collect()
        t0 = time.perf_counter()
        for v in values:
            produce(v, topic=topic)
        flushed = p.flush(120)
        seconds = time.perf_counter() - t0
        if not flushed:
            raise RuntimeError(f"flush left {p.in_flight} messages undelivered")
    return {"seconds": seconds, "failed": 0}


def _send_batches(p: Any, topic: str, items: list[Any], chunk: int, inflight: int) -> int:
    failed = 0
    if inflight <= 1:
        for i in range(0, len(items), chunk):
            failed += p.send_batch(items[i:i + chunk], topic=topic, raise_on_error=False).failed
        return failed
    queued: deque[Any] = deque()
    for i in range(0, len(items), chunk):
        if len(queued) >= inflight:
            b = queued.popleft()
            p.wait(b)
            failed += b.failed
        queued.append(p.send_batch(items[i:i + chunk], topic=topic, wait=False))
    for b in queued:
        p.wait(b)
        failed += b.failed
    return failed


def _postroom_batch(headers: bool, inflight: int | None) -> Callable[..., dict[str, Any]]:
    def run(s: Settings, broker: Any, topic: str, data: Data) -> dict[str, Any]:
        items = (data.with_headers if headers else data.values)
        k = s.inflight if inflight is None else inflight
        with _postroom_producer(s, broker) as p:
            if _send_batches(p, topic, items[:s.warmup], s.chunk, k):
                raise RuntimeError("warm-up: messages failed")
            measured = items[:s.messages]
            gc.collect()
            t0 = time.perf_counter()
            failed = _send_batches(p, topic, measured, s.chunk, k)
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "failed": failed}
    return run


def _confluent_produce(headers: bool) -> Callable[..., dict[str, Any]]:
    def run(s: Settings, broker: Any, topic: str, data: Data) -> dict[str, Any]:
        import confluent_kafka
        p = confluent_kafka.Producer(s.confluent_config())
        hdrs = HEADERS if headers else None

        def produce_all(values: list[bytes]) -> None:
            produce, poll = p.produce, p.poll
            for part in _chunks(values, s.poll_every):
                for v in part:
                    try:
                        produce(topic, v, headers=hdrs)
                    except BufferError:  # local queue full: serve reports, then retry
                        while True:
                            poll(0.05)
                            try:
                                produce(topic, v, headers=hdrs)
                                break
                            except BufferError:
                                continue
                poll(0)

        produce_all(data.values[:s.warmup])
        if p.flush(60):
            raise RuntimeError("warm-up did not flush")
        values = data.values[:s.messages]
        gc.collect()
        t0 = time.perf_counter()
        produce_all(values)
        left = p.flush(120)
        seconds = time.perf_counter() - t0
        if left:
            raise RuntimeError(f"flush left {left} messages undelivered")
        return {"seconds": seconds, "failed": 0}
    return run


def run_confluent_produce_batch(s: Settings, broker: Any, topic: str, data: Data) -> dict[str, Any]:
    import confluent_kafka
    p = confluent_kafka.Producer(s.confluent_config())

    def send(chunks: list[list[dict[str, Any]]]) -> int:
        failed = 0
        for part in chunks:
            queued = p.produce_batch(topic, part)
            while queued < len(part):  # some were refused: retry those the queue had no room for
                rejected = [m for m in part if "_error" in m]
                retry = [m for m in rejected
                         if m["_error"].code() == confluent_kafka.KafkaError._QUEUE_FULL]
                failed += len(rejected) - len(retry)
                if not retry:
                    break
                for m in retry:
                    del m["_error"]
                p.poll(0.05)
                part = retry
                queued = p.produce_batch(topic, part)
            p.poll(0)
        return failed

    if send(_chunks([{"value": v} for v in data.values[:s.warmup]], s.chunk)) or p.flush(60):
        raise RuntimeError("warm-up failed")
    chunks = _chunks([{"value": v} for v in data.values[:s.messages]], s.chunk)
    gc.collect()
    t0 = time.perf_counter()
    failed = send(chunks)
    left = p.flush(120)
    seconds = time.perf_counter() - t0
    if left:
        raise RuntimeError(f"flush left {left} messages undelivered")
    return {"seconds": seconds, "failed": failed}


def _native(headers: bool) -> Callable[..., dict[str, Any]]:
    def run(s: Settings, broker: Any, topic: str, data: Data,
            native: Path | None = None) -> dict[str, Any]:
        if native is None:
            raise RuntimeError("native tool not available")
        cmd = [str(native), "--broker", s.broker_url, "--topic", topic,
               "--messages", str(s.messages), "--size", str(s.size), "--chunk", str(s.chunk),
               "--inflight", str(s.inflight), "--warmup", str(s.warmup),
               "--linger-ms", str(s.linger_ms)]
        for k, v in s.librdkafka.items():
            cmd += ["--property", f"{k}={v}"]
        if headers:
            cmd.append("--headers")
        timeout = 120 + s.messages / 2000
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"native tool exit {proc.returncode}, no result; stderr: "
                               f"{proc.stderr.strip()[-500:]}")
        out = json.loads(lines[-1])
        if proc.returncode != 0 or "error" in out:
            raise RuntimeError(f"native tool exit {proc.returncode}: {out.get('error')}")
        return {"seconds": out["seconds"], "failed": out["failed"],
                "librdkafka": out.get("librdkafka"),
                "idempotence_enabled": out.get("idempotence_enabled"),
                "enqueue_ns_per_msg": out.get("enqueue_ns_per_msg")}
    return run


@dataclass
class Case:
    id: str
    label: str
    client: str
    api: str
    headers: bool
    run: Callable[..., dict[str, Any]]
    native: bool = False


CASES = [
    Case("postroom.produce", "postroom Python produce() loop + flush()", "postroom-python",
         "Producer.produce per message", False, run_postroom_produce),
    Case("postroom.send_batch", "postroom Python send_batch()", "postroom-python",
         "Producer.send_batch(wait=False), pipelined chunks", False, _postroom_batch(False, None)),
    Case("postroom.send_batch+hdr", "postroom Python send_batch() + 2 headers", "postroom-python",
         "Producer.send_batch(wait=False), pipelined chunks", True, _postroom_batch(True, None)),
    Case("postroom.send_batch.sync", "postroom Python send_batch(), waiting per chunk",
         "postroom-python", "Producer.send_batch(wait=True), one chunk at a time", False,
         _postroom_batch(False, 1)),
    Case("confluent.produce", "confluent-kafka produce() loop + poll(0)", "confluent-kafka",
         "Producer.produce per message", False, _confluent_produce(False)),
    Case("confluent.produce+hdr", "confluent-kafka produce() loop + 2 headers", "confluent-kafka",
         "Producer.produce per message", True, _confluent_produce(True)),
    Case("confluent.produce_batch", "confluent-kafka produce_batch() (no headers possible)",
         "confluent-kafka", "Producer.produce_batch per chunk", False, run_confluent_produce_batch),
    Case("native.send_batch", "postroom native C++ produce_batch()+wait", "postroom-native",
         "Producer::produce_batch + wait, pipelined chunks", False, _native(False), native=True),
    Case("native.send_batch+hdr", "postroom native C++ + 2 headers", "postroom-native",
         "Producer::produce_batch + wait, pipelined chunks", True, _native(True), native=True),
]

# (name, numerator case, denominator case, target); first three: the headline targets.
RATIOS = [
    ("postroom send_batch / confluent produce loop", "postroom.send_batch", "confluent.produce",
     TARGET_VS_CONFLUENT_PRODUCE),
    ("postroom send_batch / confluent produce_batch", "postroom.send_batch",
     "confluent.produce_batch", TARGET_VS_CONFLUENT_BATCH),
    ("postroom send_batch / native C++ ceiling", "postroom.send_batch", "native.send_batch",
     TARGET_VS_NATIVE),
    ("postroom send_batch+hdr / confluent produce loop+hdr", "postroom.send_batch+hdr",
     "confluent.produce+hdr", TARGET_VS_CONFLUENT_PRODUCE),
    ("postroom send_batch+hdr / confluent produce_batch (no hdr)", "postroom.send_batch+hdr",
     "confluent.produce_batch", TARGET_VS_CONFLUENT_BATCH),
    ("postroom send_batch+hdr / native C++ ceiling+hdr", "postroom.send_batch+hdr",
     "native.send_batch+hdr", TARGET_VS_NATIVE),
    ("postroom produce loop / confluent produce loop", "postroom.produce", "confluent.produce",
     None),
    ("postroom send_batch waiting per chunk / pipelined", "postroom.send_batch.sync",
     "postroom.send_batch", None),
]


# ------------------------------------------------------------------------------------------
# Native tool


def _newest_source_mtime() -> float:
    newest = (REPO / "bench" / "native_produce.cpp").stat().st_mtime
    for root in (REPO / "core", REPO / "bench"):
        for p in root.rglob("*"):
            if p.suffix in (".cpp", ".hpp", ".h", ".txt") and p.is_file():
                newest = max(newest, p.stat().st_mtime)
    return newest


def find_or_build_native(explicit: str | None) -> Path:
    if explicit:
        p = Path(explicit)
        if not p.is_absolute():  # relative to the current directory, else to the repo root
            p = Path.cwd() / p if (Path.cwd() / p).is_file() else REPO / p
        if not p.is_file():
            raise RuntimeError(f"--native {explicit}: no such file")
        return p
    newest = _newest_source_mtime()
    default = REPO / NATIVE_CANDIDATES[0]
    if default.is_file() and default.stat().st_mtime >= newest:
        return default
    if default.is_file():
        log(f"{NATIVE_CANDIDATES[0]} is older than the sources; using {NATIVE_BUILD_DIR}")
    # Our own build directory: configure once, then an incremental build (a no-op when fresh).
    if not shutil.which("cmake"):
        raise RuntimeError("cmake not found: cannot build the native tool (pass --native PATH)")
    build = REPO / NATIVE_BUILD_DIR
    if not (build / "CMakeCache.txt").is_file():
        log(f"configuring {NATIVE_BUILD_DIR}")
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(["cmake", "-S", ".", "-B", NATIVE_BUILD_DIR, *gen,
                        "-DPOSTROOM_BUILD_BENCH=ON", "-DPOSTROOM_BUILD_TESTS=OFF",
                        "-DCMAKE_BUILD_TYPE=Release"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    log(f"building {NATIVE_TARGET} in {NATIVE_BUILD_DIR}")
    subprocess.run(["cmake", "--build", NATIVE_BUILD_DIR, "--target", NATIVE_TARGET, "-j2"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    built = REPO / NATIVE_CANDIDATES[1]
    if not built.is_file():
        raise RuntimeError(f"build finished but {NATIVE_CANDIDATES[1]} is missing")
    return built


# ------------------------------------------------------------------------------------------
# Environment facts


def postroom_librdkafka_version() -> str | None:
    """The librdkafka that postroom._core loaded (not confluent-kafka's bundled copy)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "librdkafka" in line}
        for path in sorted(paths):
            if "confluent_kafka" in path:
                continue
            lib = ctypes.CDLL(path)
            lib.rd_kafka_version_str.restype = ctypes.c_char_p
            return str(lib.rd_kafka_version_str().decode())
    except OSError:
        pass
    return None


def _version_str(v: Any) -> str:
    """confluent_kafka.version() is a str in some releases, a (str, int) tuple in others."""
    return str(v[0] if isinstance(v, tuple) else v)


def git_facts() -> dict[str, Any]:
    """The commit measured, and whether the sources that make postroom differed from it."""
    def git(*a: str) -> str | None:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    dirty = git("status", "--porcelain", "--", "core", "python", "bench/native_produce.cpp",
                "CMakeLists.txt", "pyproject.toml")
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted_changes_in_measured_sources": None if dirty is None else bool(dirty)}


def machine_facts() -> dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    with contextlib.suppress(ValueError, OSError):
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "note": "Kafka broker, clients and this driver share the same machine",
    }


# ------------------------------------------------------------------------------------------


def median_or_none(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", default=os.environ.get("POSTROOM_KAFKA_URL"),
                    help="kafka://host:port (default: $POSTROOM_KAFKA_URL)")
    ap.add_argument("--messages", type=int, default=300_000, help="messages per run (300000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; medians reported (3)")
    ap.add_argument("--size", type=int, default=100, help="value size in bytes (100)")
    ap.add_argument("--chunk", type=int, default=10_000, help="messages per batch call (10000)")
    ap.add_argument("--inflight", type=int, default=4,
                    help="batch calls queued at once by the pipelined batch cases (4)")
    ap.add_argument("--warmup", type=int, default=20_000,
                    help="warm-up messages per run, same producer and topic (20000)")
    ap.add_argument("--poll-every", type=int, default=1000,
                    help="confluent produce loop: poll(0) every this many messages (1000)")
    ap.add_argument("--partitions", type=int, default=3, help="partitions per topic (3)")
    ap.add_argument("--pause", type=float, default=1.0,
                    help="seconds of rest between runs, to let the broker settle (1.0)")
    ap.add_argument("--native", help="path of postroom_bench_produce (default: find or build)")
    ap.add_argument("--no-native", action="store_true", help="skip the native C++ cases")
    ap.add_argument("--only", help="comma-separated case ids to run (default: all)")
    ap.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "produce.json"),
                    help="result file (default: bench/results/produce.json)")
    args = ap.parse_args(argv)

    if not args.broker:
        ap.error("no broker: pass --broker kafka://host:port or set POSTROOM_KAFKA_URL "
                 "(eval \"$(scripts/services.sh env)\")")
    if not args.broker.startswith("kafka://"):
        ap.error(f"--broker {args.broker!r}: expected kafka://host:port")
    for name in ("messages", "repeat", "chunk", "inflight", "poll_every", "partitions"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.size < 8 or args.warmup < 0:
        ap.error("--size must be >= 8 and --warmup >= 0")

    cases = list(CASES)
    if args.only:
        wanted = [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = set(wanted) - {c.id for c in CASES}
        if unknown:
            ap.error(f"--only: unknown case(s) {sorted(unknown)}; known: {[c.id for c in CASES]}")
        cases = [c for c in CASES if c.id in wanted]
    if args.no_native:
        cases = [c for c in cases if not c.native]

    import confluent_kafka
    from rich.console import Console
    from rich.table import Table

    import postroom

    # Wide enough for the table when the output is a file or a pipe.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    s = Settings(broker_url=args.broker, messages=args.messages, repeat=args.repeat,
                 size=args.size, chunk=args.chunk, inflight=args.inflight, warmup=args.warmup,
                 poll_every=args.poll_every, partitions=args.partitions)

    problems: list[str] = []
    native_path: Path | None = None
    if any(c.native for c in cases):
        try:
            native_path = find_or_build_native(args.native)
            log(f"native tool: {rel(native_path)}")
        except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
            problems.append(f"native tool: {e}")
            log(f"native tool unavailable: {e}")

    broker = postroom.connect(args.broker)
    try:
        broker.ping()
    except Exception as e:  # noqa: BLE001 - reported as the reason for exit 1
        log(f"broker {args.broker} does not answer: {e}")
        return 1

    load_start = os.getloadavg()
    git_start = git_facts()  # what was measured: the state when the run started
    log(f"building inputs: {max(s.messages, s.warmup):,} values of {s.size} bytes")
    data = Data(max(s.messages, s.warmup), s.size)

    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    results: dict[str, dict[str, Any]] = {
        c.id: {"label": c.label, "client": c.client, "api": c.api, "headers": c.headers,
               "runs": [], "errors": []} for c in cases}
    topics: list[str] = []
    native_librdkafka: str | None = None

    try:
        for r in range(s.repeat):
            order = cases[r % len(cases):] + cases[:r % len(cases)]  # rotate between rounds
            for c in order:
                topic = f"postroom-bench-{run_id}-{c.id.replace('+', '-')}-{r + 1}"
                try:
                    broker.create_topic(topic, s.partitions)
                    topics.append(topic)
                    time.sleep(args.pause)
                    kwargs = {"native": native_path} if c.native else {}
                    out = c.run(s, broker, topic, data, **kwargs)
                    expected = s.warmup + s.messages
                    landed = sum(broker.watermarks(topic, p)[1] for p in range(s.partitions))
                    rate = s.messages / out["seconds"]
                    run = {"round": r + 1, "topic": topic, "seconds": round(out["seconds"], 6),
                           "msgs_per_sec": round(rate, 1), "failed": out["failed"],
                           "in_topic": landed, "expected_in_topic": expected}
                    if c.native:
                        native_librdkafka = out.get("librdkafka") or native_librdkafka
                        run["idempotence_enabled"] = out.get("idempotence_enabled")
                        run["enqueue_ns_per_msg"] = out.get("enqueue_ns_per_msg")
                    results[c.id]["runs"].append(run)
                    bad = []
                    if out["failed"]:
                        bad.append(f"{out['failed']} messages failed")
                    if landed != expected:
                        bad.append(f"topic holds {landed} messages, expected {expected}")
                    if bad:
                        results[c.id]["errors"].append(f"round {r + 1}: " + "; ".join(bad))
                    log(f"round {r + 1}/{s.repeat} {c.id:26s} {rate:>12,.0f} msgs/s"
                        + (f"  BROKEN: {'; '.join(bad)}" if bad else ""))
                except Exception as e:  # noqa: BLE001 - recorded, reported, exit 1
                    results[c.id]["errors"].append(f"round {r + 1}: {type(e).__name__}: {e}")
                    log(f"round {r + 1}/{s.repeat} {c.id}: FAILED: {e}")
    finally:
        if not args.keep_topics:
            for name in topics:
                try:
                    broker.delete_topic(name)
                except Exception as e:  # noqa: BLE001 - cleanup only
                    log(f"could not delete topic {name}: {e}")

    # -- medians, ratios ---------------------------------------------------------------------
    medians: dict[str, float | None] = {}
    for cid, res in results.items():
        rates = [run["msgs_per_sec"] for run in res["runs"]]
        res["median_msgs_per_sec"] = medians[cid] = median_or_none(rates)
        res["min_msgs_per_sec"] = min(rates) if rates else None
        res["max_msgs_per_sec"] = max(rates) if rates else None
        # (max - min) / median: how noisy the machine was for this case
        res["spread"] = (max(rates) - min(rates)) / res["median_msgs_per_sec"] if rates else None
        if res["errors"]:
            problems.extend(f"{cid}: {e}" for e in res["errors"])

    ratios: list[dict[str, Any]] = []
    for rname, num, den, goal in RATIOS:
        a, b = medians.get(num), medians.get(den)
        quotient = a / b if a and b else None
        # Paired: the two cases' runs of the same round, which ran close together in time;
        # less sensitive to the machine's load drifting between rounds.
        den_runs = results.get(den, {}).get("runs", [])
        by_round = {run["round"]: run["msgs_per_sec"] for run in den_runs}
        paired = [run["msgs_per_sec"] / by_round[run["round"]]
                  for run in results.get(num, {}).get("runs", []) if by_round.get(run["round"])]
        ratios.append({"name": rname, "numerator": num, "denominator": den,
                       "value": None if quotient is None else round(quotient, 3), "target": goal,
                       "met": None if quotient is None or goal is None else quotient >= goal,
                       "paired_per_round": [round(x, 3) for x in paired],
                       "paired_median": round(statistics.median(paired), 3) if paired else None})

    # -- table ---------------------------------------------------------------------------------
    base = medians.get("confluent.produce")
    table = Table(title=f"Produce throughput: {s.messages:,} x {s.size} B messages, {s.partitions} "
                    f"partitions, median of {s.repeat}, {args.broker}")
    table.add_column("case")
    table.add_column("client / API")
    table.add_column("headers", justify="center")
    table.add_column("msgs/s (median)", justify="right")
    table.add_column("min .. max", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("MB/s", justify="right")
    table.add_column("x confluent produce", justify="right")
    for c in cases:
        res = results[c.id]
        m = res["median_msgs_per_sec"]
        table.add_row(c.id, c.label, "2" if c.headers else "-",
                  fmt_rate(m) + (" [red](errors)[/red]" if res["errors"] else ""),
                  f"{fmt_rate(res['min_msgs_per_sec'])} .. {fmt_rate(res['max_msgs_per_sec'])}",
                  "-" if not m else f"{res['spread']:.0%}",
                  "-" if m is None else f"{m * s.size / 1e6:.1f}",
                  "-" if not (m and base) else f"{m / base:.2f}")
    console.print(table)
    console.print("spread = (max - min) / median of a case's runs. The broker shares this "
                  f"machine's {os.cpu_count()} cores; load average at start "
                  f"{load_start[0]:.2f}, now {os.getloadavg()[0]:.2f}.")

    rt = Table(title="Ratios of medians (targets are goals, never a failure)")
    rt.add_column("ratio")
    rt.add_column("value", justify="right")
    rt.add_column("paired", justify="right")
    rt.add_column("target", justify="right")
    rt.add_column("met", justify="center")
    for x in ratios:
        met, value, target, paired = x["met"], x["value"], x["target"], x["paired_median"]
        as_share = x["denominator"].startswith("native")  # a share of the ceiling: percent
        rt.add_row(x["name"],
                   "-" if value is None else (f"{value:.0%}" if as_share else f"{value:.2f}x"),
                   "-" if paired is None else (f"{paired:.0%}" if as_share else f"{paired:.2f}x"),
                   "-" if target is None else
                   (f">= {target:.0%}" if as_share else f">= {target:g}x"),
                   "-" if met is None else ("[green]yes[/green]" if met else "[red]no[/red]"))
    console.print(rt)
    console.print("value = ratio of the medians (judged against the target); paired = median "
                  "of the per-round ratios (cases of one round ran back to back).")

    versions = {
        "postroom": getattr(postroom, "__version__", None),
        "postroom_python_librdkafka": postroom_librdkafka_version(),
        "postroom_native_librdkafka": native_librdkafka,
        "confluent_kafka": _version_str(confluent_kafka.version()),
        "confluent_kafka_librdkafka": _version_str(confluent_kafka.libversion()),
    }
    console.print("librdkafka: postroom Python {postroom_python_librdkafka}, postroom native "
                  "{postroom_native_librdkafka}, confluent-kafka {confluent_kafka} bundles "
                  "{confluent_kafka_librdkafka}".format(**versions))
    if problems:
        console.print("[red]BROKEN:[/red]")
        for p in problems:
            console.print(f"  {p}")

    doc = {
        "benchmark": "produce",
        "run_id": run_id,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": None if argv is not None else
        "python3 " + " ".join([rel(sys.argv[0]), *sys.argv[1:]]),
        "settings": {
            "broker_url": s.broker_url, "messages": s.messages, "repeat": s.repeat,
            "value_size_bytes": s.size, "chunk": s.chunk, "inflight_chunks": s.inflight,
            "warmup_messages": s.warmup, "confluent_poll_every": s.poll_every,
            "partitions": s.partitions, "replication_factor": 1,
            "producer": {"enable.idempotence": s.idempotence, "acks": s.acks,
                         "linger.ms": s.linger_ms, "compression": s.compression,
                         "message.timeout.ms": s.delivery_timeout_ms, **s.librdkafka},
            "headers": [[k, v.decode() if isinstance(v, bytes) else v] for k, v in HEADERS],
            "key": None,
            "timing": "first produce call .. every delivery report received; inputs built before",
            "native_tool": rel(native_path) if native_path else None,
        },
        "versions": versions,
        "git": git_start,
        "machine": {**machine_facts(), "loadavg_1_5_15_at_start": load_start,
                    "loadavg_1_5_15_at_end": os.getloadavg()},
        "cases": results,
        "ratios": ratios,
        "targets": {
            "postroom_batch_vs_confluent_produce": TARGET_VS_CONFLUENT_PRODUCE,
            "postroom_batch_vs_confluent_produce_batch": TARGET_VS_CONFLUENT_BATCH,
            "postroom_python_batch_vs_native": TARGET_VS_NATIVE,
            "all_met_without_headers": all(x["met"] for x in ratios[:3]) if all(
                x["met"] is not None for x in ratios[:3]) else None,
            "all_met_with_headers": all(x["met"] for x in ratios[3:6]) if all(
                x["met"] is not None for x in ratios[3:6]) else None,
        },
        "problems": problems,
        "ok": not problems,
    }
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results: {rel(json_path)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
