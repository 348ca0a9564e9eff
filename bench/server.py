"""The server over real HTTP and websockets: latency, throughput, memory and fan-out.

Starts real servers (``python server.py`` subprocesses via ``tests.app.live_server``, each on a
free port of 127.0.0.1 with a temporary base folder, loading the ``SlowPassthrough`` test node)
and drives them with aiohttp. Prints, measured side by side in one run:

1. submit-to-first-event latency: POST /prompt to the ``execution_start`` message, one prompt
   at a time (tiny prompt: EmptyImage 8x8 -> PreviewImage, a new colour each, so no cache hit);
2. throughput: tiny prompts submitted N at a time, submit and completion rates;
3. GET /queue latency, server idle and while a 20 s node runs (target p99 < 50 ms);
4. memory: RSS of a server whose store holds 10,000 history entries, before and after
   GET /history?max_items=64 and a full GET /history, next to a server with an empty history;
5. fan-out: websocket clients, one prompt without client_id (broadcast to all) running a
   2 s node with 40 progress ticks: messages per client, arrival spread, server CPU time.

Run: ``.venv/bin/python bench/server.py [--prompts 1000] [--clients 50] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from app.store import PromptStore, QueueItem
from tests.app.live_server import LiveServer

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
SLOW_NODE = "2"  # the SlowPassthrough node's id in slow_prompt()
_colour = 0x000001


# -- helpers -----------------------------------------------------------------------------------


def next_colour() -> int:
    """A colour never used before in this run, so no prompt hits the output cache."""
    global _colour
    _colour += 1
    return _colour


def tiny_prompt() -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                         "color": next_colour()}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def slow_prompt(seconds: float) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                         "color": next_colour()}},
            "2": {"class_type": "SlowPassthrough", "inputs": {"image": ["1", 0],
                                                              "seconds": seconds}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # fields 14 and 15 of stat


@contextmanager
def live_server(history_entries: int = 0) -> Iterator[LiveServer]:
    """A server in a fresh temporary base folder (its store prefilled if asked); stopped after."""
    with tempfile.TemporaryDirectory(prefix="kinema-bench-") as tmp:
        base = Path(tmp)
        if history_entries:
            prefill_history(base / "user" / "kinema.sqlite", history_entries)
        started = time.perf_counter()
        with LiveServer(base) as server:
            server.start_s = time.perf_counter() - started
            yield server


@dataclass
class Report:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, figure: str, metric: str, value: str, target: str = "") -> None:
        self.rows.append((figure, metric, value, target))
        print(f"  {metric:<52} {value:>16}  {target}", file=sys.stderr, flush=True)

    def table(self) -> str:
        header = ("figure", "metric", "value", "target")
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(4)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                             r[2].rjust(widths[2]), r[3]]) for r in self.rows]
        return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


class Watcher:
    """Reads one websocket in the background and timestamps each prompt's messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.started: dict[str, float] = {}  # prompt_id -> arrival of execution_start
        self.done: dict[str, float] = {}  # prompt_id -> arrival of executing node=None
        self.progress: Counter[tuple[str, str]] = Counter()  # (prompt_id, node) -> messages
        self.tick_times: dict[tuple[str, int], float] = {}  # (node, value) -> last arrival
        self.previews = 0
        self.hello = asyncio.Event()
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            now = time.perf_counter()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.previews += 1
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            kind, data = event["type"], event.get("data") or {}
            if kind == "status":
                self.hello.set()
            prompt_id = data.get("prompt_id")
            if prompt_id is None:
                continue
            if kind == "execution_start":
                self.started[prompt_id] = now
            elif kind == "progress":
                self.progress[prompt_id, data["node"]] += 1
                self.tick_times[data["node"], data["value"]] = now
            elif kind == "executing" and data.get("node") is None:
                self.done[prompt_id] = now
                waiter = self._waiters.pop(prompt_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(now)

    async def wait_done(self, prompt_id: str, timeout: float) -> float:
        if prompt_id in self.done:
            return self.done[prompt_id]
        waiter = self._waiters.setdefault(prompt_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)

    async def wait_started(self, prompt_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while prompt_id not in self.started or not self.progress[prompt_id, SLOW_NODE]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not start")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.task, 10)


async def connect(http: aiohttp.ClientSession, url: str, client_id: str) -> Watcher:
    ws = await http.ws_connect(f"{url}/ws?clientId={client_id}")
    watcher = Watcher(ws)
    await asyncio.wait_for(watcher.hello.wait(), 10)
    return watcher


async def post_prompt(http: aiohttp.ClientSession, url: str, prompt: dict,
                      client_id: str | None = None) -> str:
    prompt_id = uuid.uuid4().hex
    body: dict = {"prompt": prompt, "prompt_id": prompt_id}
    if client_id is not None:
        body["client_id"] = client_id
    async with http.post(f"{url}/prompt", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"POST /prompt: {response.status} {await response.text()}")
        await response.read()
    return prompt_id


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


# -- 1. submit-to-first-event latency ------------------------------------------------------------


async def submit_latency(url: str, count: int, report: Report) -> None:
    client_id = uuid.uuid4().hex
    first, answered, finished = [], [], []
    async with session() as http:
        watcher = await connect(http, url, client_id)
        for i in range(count + 3):  # 3 warm-up prompts, not counted
            sent = time.perf_counter()
            prompt_id = await post_prompt(http, url, tiny_prompt(), client_id)
            replied = time.perf_counter()
            done = await watcher.wait_done(prompt_id, timeout=30)
            if i >= 3:
                first.append(watcher.started[prompt_id] - sent)
                answered.append(replied - sent)
                finished.append(done - sent)
        await watcher.close()
    fig = "1 submit latency"
    report.add(fig, f"POST -> execution_start, median ({count} prompts)",
               ms(statistics.median(first)))
    report.add(fig, "POST -> execution_start, p95", ms(percentile(first, 95)))
    report.add(fig, "POST /prompt response, median", ms(statistics.median(answered)))
    report.add(fig, "POST -> executing(node=null), median", ms(statistics.median(finished)))
    report.add(fig, "POST -> executing(node=null), p95", ms(percentile(finished, 95)))


# -- 2. throughput -------------------------------------------------------------------------------


async def throughput(url: str, count: int, in_flight: int, report: Report,
                     timeout: float = 150) -> None:
    client_id = uuid.uuid4().hex
    prompts = [tiny_prompt() for _ in range(count)]
    ids: list[str] = []
    post_times: list[float] = []
    async with session() as http:
        watcher = await connect(http, url, client_id)
        pending = iter(prompts)

        async def submitter() -> None:
            for prompt in pending:  # the iterator is shared: each prompt is sent once
                sent = time.perf_counter()
                ids.append(await post_prompt(http, url, prompt, client_id))
                post_times.append(time.perf_counter() - sent)

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(submitter() for _ in range(in_flight))), timeout)
        submitted = time.perf_counter() - start
        deadline = time.monotonic() + timeout
        while len(watcher.done) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        completed = [watcher.done[i] for i in ids if i in watcher.done]
        await watcher.close()
    fig = "2 throughput"
    report.add(fig, f"prompts submitted ({in_flight} in flight)", f"{count}")
    report.add(fig, "submit rate", f"{count / submitted:.1f} prompts/s")
    report.add(fig, "POST /prompt under load, p50", ms(statistics.median(post_times)))
    report.add(fig, "POST /prompt under load, p99", ms(percentile(post_times, 99)))
    report.add(fig, "prompts completed", f"{len(completed)}/{count}")
    if completed:
        report.add(fig, "completion rate (all submitted -> last done)",
                   f"{len(completed) / (max(completed) - start):.1f} prompts/s")


# -- 3. GET /queue latency -----------------------------------------------------------------------


async def queue_latencies(http: aiohttp.ClientSession, url: str, count: int,
                          budget: float) -> list[float]:
    times = []
    deadline = time.monotonic() + budget
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        sent = time.perf_counter()
        async with http.get(f"{url}/queue") as response:
            await response.read()
            assert response.status == 200, response.status
        times.append(time.perf_counter() - sent)
    return times


async def queue_latency(url: str, count: int, report: Report) -> None:
    client_id = uuid.uuid4().hex
    async with session() as http:
        await queue_latencies(http, url, 10, 5)  # warm-up
        idle = await queue_latencies(http, url, count, 15)
        watcher = await connect(http, url, client_id)
        prompt_id = await post_prompt(http, url, slow_prompt(20), client_id)
        await watcher.wait_started(prompt_id, 15)
        busy = await queue_latencies(http, url, count, 15)
        still_running = prompt_id not in watcher.done
        interrupted = time.perf_counter()
        async with http.post(f"{url}/interrupt", json={}) as response:
            assert response.status == 200
        stopped = await watcher.wait_done(prompt_id, 30)
        await watcher.close()
    fig = "3 GET /queue"
    report.add(fig, f"idle: p50 ({len(idle)} requests)", ms(statistics.median(idle)))
    report.add(fig, "idle: p99", ms(percentile(idle, 99)), "< 50 ms")
    report.add(fig, f"20 s node running: p50 ({len(busy)} requests)",
               ms(statistics.median(busy)))
    report.add(fig, "20 s node running: p99", ms(percentile(busy, 99)), "< 50 ms")
    report.add(fig, "20 s node running: max", ms(max(busy)))
    report.add(fig, "node still running after the requests", str(still_running))
    report.add(fig, "POST /interrupt -> executing(node=null)", ms(stopped - interrupted))


# -- 4. memory with 10,000 history entries -------------------------------------------------------


def realistic_prompt(i: int) -> dict:
    """A 10-node image graph, as a canvas user would submit it."""
    return {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 512 + i % 64}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": ["1", 0], "height": ["1", 0],
                                                     "batch_size": 1, "color": i}},
        "3": {"class_type": "LoadImage", "inputs": {"image": f"photo_{i % 97:03d}.png"}},
        "4": {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method":
                                                     "bilinear", "width": ["1", 0],
                                                     "height": ["1", 0], "crop": "center"}},
        "5": {"class_type": "ImageBlend", "inputs": {"image1": ["2", 0], "image2": ["4", 0],
                                                     "blend_factor": 0.5, "blend_mode": "normal"}},
        "6": {"class_type": "ImageBlur", "inputs": {"image": ["5", 0], "blur_radius": 3,
                                                    "sigma": 1.0}},
        "7": {"class_type": "ImageSharpen", "inputs": {"image": ["6", 0], "sharpen_radius": 1,
                                                       "sigma": 1.0, "alpha": 0.5}},
        "8": {"class_type": "ImageInvert", "inputs": {"image": ["7", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0],
                                                    "filename_prefix": "Kinema/bench"}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }


def prefill_history(database: Path, entries: int) -> None:
    """Write ``entries`` finished prompts into a store, as the worker would have."""
    now = int(time.time() * 1000)
    with PromptStore(database) as store:
        for i in range(entries):
            prompt_id = str(uuid.UUID(int=i + 1))
            store.enqueue(QueueItem(i, prompt_id, realistic_prompt(i),
                                    {"client_id": "bench-client"}, ["9", "10"]))
            item = store.claim_next()
            assert item is not None and item.prompt_id == prompt_id
            outputs = {
                "9": {"images": [{"filename": f"bench_{i + 1:05d}_.png", "subfolder": "Kinema",
                                  "type": "output"}]},
                "10": {"images": [{"filename": f"ComfyUI_temp_abcde_{i + 1:05d}_.png",
                                   "subfolder": "", "type": "temp"}]},
            }
            messages = [["execution_start", {"prompt_id": prompt_id, "timestamp": now + i}],
                        ["execution_cached", {"nodes": ["1", "3"], "prompt_id": prompt_id,
                                              "timestamp": now + i}],
                        ["execution_success", {"prompt_id": prompt_id, "timestamp": now + i}]]
            meta = {nid: {"node_id": nid, "display_node": nid, "parent_node": None,
                          "real_node_id": nid} for nid in outputs}
            store.finish(prompt_id, outputs=outputs, meta=meta,
                         status={"status_str": "success", "completed": True,
                                 "messages": messages})


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[float, bytes]:
    sent = time.perf_counter()
    async with http.get(url) as response:
        body = await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - sent, body


async def history_probe(server: LiveServer, label: str, report: Report) -> None:
    """RSS and latency around GET /history, and how long it holds up other requests."""
    pid = server.proc.pid
    await asyncio.sleep(1.0)  # let start-up allocations settle
    fig = "4 memory"
    report.add(fig, f"{label}: server start (spawn -> first answer)", f"{server.start_s:.2f} s")
    report.add(fig, f"{label}: RSS after start", f"{rss_mib(pid):.1f} MiB")
    async with session() as http:
        for query, name in (("?max_items=64", "GET /history?max_items=64"),
                            ("", "full GET /history")):
            took, body = await timed_get(http, f"{server.url}/history{query}")
            entries = len(json.loads(body))
            report.add(fig, f"{label}: {name} ({entries} entries, {len(body) / 2**20:.1f} MiB)",
                       ms(took))
            report.add(fig, f"{label}: RSS after {name}", f"{rss_mib(pid):.1f} MiB")
            warm = [(await timed_get(http, f"{server.url}/history{query}"))[0]
                    for _ in range(3 if query else 0)]
            if warm:
                report.add(fig, f"{label}: {name}, median of 3 more", ms(statistics.median(warm)))
        # A second full request, with GET /queue polled before, during and after it: the worst
        # poll shows how long the event loop was held.
        polls: list[float] = []
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set() and len(polls) < 20_000:
                polls.extend(await queue_latencies(http, server.url, 1, 60))

        poller = asyncio.create_task(poll())
        await asyncio.sleep(0.1)
        took, _ = await timed_get(http, f"{server.url}/history")
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(poller, 30)
        report.add(fig, f"{label}: second full GET /history", ms(took))
        report.add(fig, f"{label}: GET /queue p50/max around it ({len(polls)} polls)",
                   f"{ms(statistics.median(polls))}/{ms(max(polls))}")
        report.add(fig, f"{label}: RSS after the second full GET /history",
                   f"{rss_mib(pid):.1f} MiB")
    report.add(fig, f"{label}: peak RSS (VmHWM)", f"{rss_mib(pid, 'VmHWM'):.1f} MiB")


async def memory(entries: int, report: Report) -> None:
    started = time.perf_counter()
    with live_server(history_entries=entries) as full:
        prefill = time.perf_counter() - started - full.start_s
        report.add("4 memory", f"prefill of {entries} entries (PromptStore API)",
                   f"{prefill:.1f} s")
        db = full.base_dir / "user" / "kinema.sqlite"
        report.add("4 memory", "database size", f"{db.stat().st_size / 2**20:.1f} MiB")
        with live_server() as empty:
            await history_probe(empty, "empty history", report)
            await history_probe(full, f"{entries} entries", report)


# -- 5. fan-out ---------------------------------------------------------------------------------


async def fan_out(url: str, pid: int, clients: int, seconds: float, report: Report) -> None:
    ticks = max(1, round(seconds / 0.05))
    async with session() as http:
        watchers = await asyncio.gather(*(connect(http, url, f"fan-{i}-{uuid.uuid4().hex[:6]}")
                                          for i in range(clients)))
        await asyncio.sleep(0.2)
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        prompt_id = await post_prompt(http, url, slow_prompt(seconds))  # no client_id: broadcast
        done = await asyncio.gather(*(w.wait_done(prompt_id, seconds + 30) for w in watchers))
        cpu = cpu_seconds(pid) - cpu_before
        wall = time.perf_counter() - wall_before
        counts = [w.progress[prompt_id, SLOW_NODE] for w in watchers]
        previews = [w.previews for w in watchers]
        tick_spread = []
        for tick in ((SLOW_NODE, value) for value in range(1, ticks + 1)):
            arrivals = [w.tick_times[tick] for w in watchers if tick in w.tick_times]
            tick_spread.append(max(arrivals) - min(arrivals))
        await asyncio.gather(*(w.close() for w in watchers))
    fig = "5 fan-out"
    label = f"{clients} client{'s' if clients > 1 else ''}"
    report.add(fig, f"{label}: node progress msgs per client min/max (of {ticks})",
               f"{min(counts)}/{max(counts)}")
    report.add(fig, f"{label}: preview frames per client min/max",
               f"{min(previews)}/{max(previews)}")
    if clients > 1:
        report.add(fig, f"{label}: final message arrival spread", ms(max(done) - min(done)))
        report.add(fig, f"{label}: progress tick arrival spread, median",
                   ms(statistics.median(tick_spread)))
        report.add(fig, f"{label}: progress tick arrival spread, max", ms(max(tick_spread)))
    report.add(fig, f"{label}: server CPU time during the {seconds:g} s prompt",
               f"{cpu * 1e3:.0f} ms ({cpu / wall:.0%} of a core)")


# -- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, report: Report) -> None:
    with live_server() as server:
        print(f"server {server.url} (pid {server.proc.pid}) up in {server.start_s:.1f} s",
              file=sys.stderr)
        await submit_latency(server.url, args.latency_prompts, report)
        await queue_latency(server.url, args.queue_requests, report)
        await fan_out(server.url, server.proc.pid, 1, args.fan_seconds, report)
        await fan_out(server.url, server.proc.pid, args.clients, args.fan_seconds, report)
        await throughput(server.url, args.prompts, args.in_flight, report)
    await memory(args.history, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000, help="throughput prompts")
    parser.add_argument("--in-flight", type=int, default=8, help="concurrent submissions")
    parser.add_argument("--latency-prompts", type=int, default=50)
    parser.add_argument("--queue-requests", type=int, default=300)
    parser.add_argument("--history", type=int, default=10_000, help="prefilled history entries")
    parser.add_argument("--clients", type=int, default=50, help="fan-out websocket clients")
    parser.add_argument("--fan-seconds", type=float, default=2.0, help="fan-out node duration")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.latency_prompts, args.queue_requests = 100, 10, 50
        args.history, args.clients, args.fan_seconds = 1000, 10, 0.5
    report = Report()
    started = time.perf_counter()
    asyncio.run(run(args, report))
    print(f"\nserver bench ({time.perf_counter() - started:.0f} s in all, "
          f"{os.cpu_count()} cores)")
    print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
