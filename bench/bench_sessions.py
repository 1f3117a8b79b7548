"""Load and isolation: concurrent gradio_client sessions on the real app (prints figures).

    python bench/bench_sessions.py                          # 16 clients x 50 calls on faces64, a fresh server
    python bench/bench_sessions.py --clients 4 --calls 10   # a quick look
    python bench/bench_sessions.py --url http://127.0.0.1:7860/ --pid 1234   # an app that already runs

Starts ``python app.py`` (the real entry point, its default queue) in a subprocess with a fresh disk
cache, warms it up, then runs ``--clients`` sessions at once, each ``--calls`` calls mixed over the
tabs' public endpoints (generate, use_sample, explore find / render / apply, text global / apply,
attributes train / render / apply, paint preview / apply, current image, recipe undo / clear / save).
Every session works on its own seed and keeps a model of what its current image must be (origin,
number of stacked edits, pixels), and checks it on every answer: a state leak between sessions (a
recipe or an image of another seed, a wrong edit count, an image that is not its own) is counted.
It reports:

1. errors and leaks (targets: 0 and 0) and p50 / p95 latency per endpoint;
2. the server's resident memory (/proc/PID/status VmRSS) after the warm-up, at its peak and at the end
   (target: growth < 10 % over the run);
3. long work does not block the fast endpoints of other visitors: the latency of explore_apply alone, while
   another session inverts an image, and while four sessions run long jobs at once (two inversions, a text
   optimization, a dissection); and of a paint preview while another visitor's first brush of a segmenter
   concept dissects the model (the same endpoint);
4. queue full is a clear refusal: a second server with a small ``--queue-size`` is flooded; the extra
   requests are refused with "Queue is full" (client) / HTTP 503 (server), and it keeps serving.

tests/test_load.py runs the same code on a reduced scale (:func:`run_sessions`, :func:`flood_queue`).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "faces64"
PSI = 0.7
ZEROS = [0.0] * 10
PIXEL_TOLERANCE = 4             # PNG round trips of the same recipe differ by at most a few levels
MAX_EDITS = 4                   # a session undoes before its stack grows past this
QUEUE_FULL = "Queue is full"    # gradio_client's QueueError and the server's HTTP 503 detail both say so
LONG_WORK = ["invert", "invert", "text_optimize", "paint_dissect"]   # visitors' long jobs at once, next to fast calls

# Endpoint weights of the random mix (the setup calls they need are made on demand).
FULL_MIX = {
    "explore_render": 6, "explore_apply": 5, "current_image": 5, "recipe_undo": 4, "attributes_render": 4,
    "attributes_apply": 3, "text_global": 3, "text_apply": 2, "paint_preview": 2, "paint_apply": 2,
    "generate": 2, "use_sample": 2, "recipe_clear": 2, "recipe_save": 3,
}
# Endpoints that need no precomputation: a cold server (the tests' fresh cache) answers them in well under a second.
LIGHT_MIX = {
    "explore_render": 3, "explore_apply": 3, "current_image": 3, "recipe_undo": 2, "generate": 1,
    "use_sample": 1, "recipe_clear": 1, "recipe_save": 2,
}


# ----------------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Server:
    """``python app.py`` in a subprocess: ``url``, ``pid`` (for its memory), ``log`` (its output)."""

    process: subprocess.Popen
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def app_environment(cache: Path) -> dict[str, str]:
    """The environment of a server whose disk caches live in ``cache`` (offline, no analytics)."""
    env = dict(os.environ)
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", INTERP_CACHE_DIR=str(cache / "interp"),
               HF_HUB_CACHE=str(cache / "hf-cache"), GRADIO_TEMP_DIR=str(cache / "gradio"),
               PYTHONUNBUFFERED="1")
    return env


@contextlib.contextmanager
def serve_app(cache: Path, app_args: Sequence[str] = (), startup_s: float = 180.0) -> Iterator[Server]:
    """Start ``python app.py --no-preload --port FREE *app_args`` with its caches in ``cache``; stop it after."""
    import httpx

    cache.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = cache / f"app-{port}.log"
    cmd = [sys.executable, str(REPO_ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), "--no-preload",
           *app_args]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=app_environment(cache), stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}/", log)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with code {process.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(server.url + "gradio_api/info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not answer within {startup_s:g} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class MemoryWatch:
    """Samples a process's RSS every ``every`` seconds in a thread: ``peak`` since the last :meth:`reset`."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self.samples: list[tuple[float, float]] = []          # (seconds since the reset, MiB)
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                rss = rss_mib(self.pid)
                self.peak = max(self.peak, rss)
                self.samples.append((time.perf_counter() - self._t0, rss))
            self._stop.wait(self.every)

    def reset(self) -> float:
        self.peak, self.samples, self._t0 = rss_mib(self.pid), [], time.perf_counter()
        return self.peak

    def timeline(self, until: float, parts: int = 4) -> list[float]:
        """RSS (MiB) at 1/parts, 2/parts, ... of ``until`` seconds after the reset."""
        out = []
        for k in range(1, parts + 1):
            t = until * k / parts
            out.append(min(self.samples, key=lambda ts: abs(ts[0] - t))[1] if self.samples else float("nan"))
        return out

    def __enter__(self) -> "MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------------------------
# One session


def read_image(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(np.int16)


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal pixels (up to PNG rounding); an image enlarged by a whole factor (the Paint tab's) is sampled back."""
    if a.shape[0] > b.shape[0] and a.shape[0] % b.shape[0] == 0:
        f = a.shape[0] // b.shape[0]
        a = a[f // 2::f, f // 2::f]
    return a.shape == b.shape and int(np.abs(a - b).max()) <= PIXEL_TOLERANCE


def write_mask(path: Path, size: int = 64) -> Path:
    """A square mask (white = painted) for the Paint tab's brush endpoints."""
    from PIL import Image

    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: size // 2, size // 3: 2 * size // 3] = 255
    Image.fromarray(mask).save(path)
    return path


@dataclasses.dataclass
class Call:
    session: int
    endpoint: str
    seconds: float


@dataclasses.dataclass
class Report:
    """What a run of sessions saw: every call's latency, every error and every leak."""

    calls: list[Call] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    leaks: list[str] = dataclasses.field(default_factory=list)
    wall_s: float = 0.0

    def extend(self, other: "Report") -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.leaks += other.leaks

    def latencies(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(list)
        for call in self.calls:
            out[call.endpoint].append(call.seconds)
        return dict(out)


class Leak(AssertionError):
    """The server answered with another session's state."""


class Session:
    """A visitor: one gradio_client Client (one server session), its own seed, a model of its current image.

    ``run(op)`` calls the endpoint behind ``op`` (making the setup calls it needs first: an image,
    directions, boundaries) and checks the answer against what this session did; every call is
    recorded in ``report`` with its latency, a failed call as an error, a foreign answer as a leak.
    """

    def __init__(self, url: str, index: int, workdir: Path, seed: int | None = None, mix_seed: int = 0) -> None:
        from gradio_client import Client

        self.index = index
        self.seed = 1000 + 7 * index if seed is None else seed
        self.rng = random.Random(mix_seed * 7919 + index)
        self.dir = workdir / f"session-{index:02d}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mask = write_mask(self.dir / "mask.png")
        self.client = Client(url, verbose=False, download_files=str(self.dir / "downloads"))
        self.report = Report()
        self.origin: str | None = None           # "seed S, psi 0.70" (+ ", sample k of 4"); None: no image yet
        self.edits = 0
        self.image: np.ndarray | None = None     # the current image's pixels, as last published
        self.has_directions = self.has_boundaries = False

    # ---- calls

    def call(self, endpoint: str, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.client.predict(*args, api_name=f"/{endpoint}")
        finally:
            self.report.calls.append(Call(self.index, endpoint, time.perf_counter() - t0))

    def run(self, op: str) -> None:
        """One call of the mix (or the setup call it needs first); failures land in the report, never raise."""
        try:
            getattr(self, f"op_{self._feasible(op)}")()
        except Leak as exc:
            self.report.leaks.append(f"session {self.index}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a load test counts every failure
            endpoint = self.report.calls[-1].endpoint if self.report.calls else op
            self.report.errors.append(f"session {self.index} /{endpoint}: {type(exc).__name__}: {exc}")

    def _feasible(self, op: str) -> str:
        """``op``, or the call that must come first (an image, directions, boundaries, a shorter stack)."""
        if self.origin is None and op not in ("generate", "use_sample"):
            return "generate"
        if op.startswith("explore_") and not self.has_directions:
            return "explore_find_directions"
        if op.startswith("attributes_") and not self.has_boundaries:
            return "attributes_train"
        if op.endswith("_apply") and self.edits >= MAX_EDITS:
            return "recipe_undo"
        if op == "recipe_undo" and self.edits == 0:
            return "current_image"
        return op

    # ---- checks: the answer is this session's own state

    def check_summary(self, summary: str, where: str) -> None:
        first = summary.splitlines()[0] if summary else ""
        if not first.startswith(f"Image: {self.origin} from model {MODEL}"):
            raise Leak(f"/{where} answered a recipe of another image: {first!r}; expected {self.origin!r}")
        edits = len(re.findall(r"^\d+\. ", summary, flags=re.M))
        if edits != self.edits:
            raise Leak(f"/{where} answered a recipe with {edits} edit(s); this session has {self.edits}")

    def check_image(self, path: str, where: str) -> None:
        if self.image is not None and not same_image(read_image(path), self.image):
            raise Leak(f"/{where} shows an image that is not this session's current image")

    def published(self, image: str, summary: str, where: str) -> None:
        self.check_summary(summary, where)
        self.image = read_image(image)

    # ---- the endpoints

    def op_generate(self) -> None:
        grid, image, summary = self.call("generate", MODEL, self.seed, PSI, 1)
        self.origin, self.edits = f"seed {self.seed}, psi {PSI:.2f}", 0
        self.published(image, summary, "generate")
        self.check_image(grid, "generate (samples)")

    def op_use_sample(self) -> None:
        k = self.rng.randint(1, 4)
        image, summary = self.call("use_sample", MODEL, self.seed, PSI, 4, k)
        self.origin, self.edits = f"seed {self.seed}, psi {PSI:.2f}, sample {k} of 4", 0
        self.published(image, summary, "use_sample")

    def op_current_image(self) -> None:
        image, summary = self.call("current_image", MODEL)
        self.check_summary(summary, "current_image")
        self.check_image(image, "current_image")

    def op_recipe_undo(self) -> None:
        image, summary = self.call("recipe_undo", MODEL)
        self.edits -= 1
        self.published(image, summary, "recipe_undo")

    def op_recipe_clear(self) -> None:
        image, summary = self.call("recipe_clear", MODEL)
        self.edits = 0
        self.published(image, summary, "recipe_clear")

    def op_recipe_save(self) -> None:
        from safetensors import safe_open

        path = self.call("recipe_save")
        with safe_open(path, "pt") as f:
            self.check_summary(f.metadata()["summary"], "recipe_save")

    def op_explore_find_directions(self) -> None:
        self.call("explore_find_directions", MODEL, "SeFa", "all", 0, 3, 6, "", False)
        self.has_directions = True

    def op_explore_render(self) -> None:
        if self.rng.random() < 0.5:              # all sliders at 0: exactly the current image
            self.check_image(self.call("explore_render", MODEL, *ZEROS), "explore_render")
        else:
            self.call("explore_render", MODEL, *self._strengths())

    def op_explore_apply(self) -> None:
        image, summary = self.call("explore_apply", MODEL, *self._strengths())[:2]
        self.edits += 1
        self.published(image, summary, "explore_apply")

    def _strengths(self) -> list[float]:
        s = list(ZEROS)
        s[self.rng.randrange(6)] = self.rng.choice([-2.0, -1.0, 1.0, 2.0])
        return s

    def op_text_global(self) -> None:
        before_after = self.call("text_global", MODEL, "a smiling face", "a face", self.rng.choice([2.0, 3.0]), 0.5,
                                 "conditional")[0]
        self.check_image(before_after[0], "text_global (before)")

    def op_text_apply(self) -> None:
        image, summary = self.call("text_apply", MODEL, "Global direction", "a smiling face", "a face", 2.0, 0.5,
                                   "conditional")[:2]
        self.edits += 1
        self.published(image, summary, "text_apply")

    def op_attributes_train(self) -> None:
        self.call("attributes_train", MODEL, "Attribute predictor", "", "w", 2000, 0.02)
        self.has_boundaries = True

    def op_attributes_render(self) -> None:
        strength = self.rng.choice([0.0, 1.0, 2.0])
        image = self.call("attributes_render", MODEL, "age", strength, ["glasses"])
        if strength == 0.0:
            self.check_image(image, "attributes_render")

    def op_attributes_apply(self) -> None:
        image, summary = self.call("attributes_apply", MODEL, "age", self.rng.choice([-1.5, 1.5]), ["glasses"])[:2]
        self.edits += 1
        self.published(image, summary, "attributes_apply")

    def _brush(self) -> list[Any]:
        from gradio_client import handle_file

        return [handle_file(str(self.mask)), "what I painted", "remove", 1.0, "auto", 0, 500]

    def op_paint_preview(self) -> None:
        before_after = self.call("paint_preview", MODEL, *self._brush())[0]
        self.check_image(before_after[0], "paint_preview (before)")

    def op_paint_apply(self) -> None:
        image, summary = self.call("paint_apply", MODEL, *self._brush())[:2]
        self.edits += 1
        self.published(image, summary, "paint_apply")


# ----------------------------------------------------------------------------------------------------
# Many sessions


def _mix_plan(rng: random.Random, mix: dict[str, int], n: int) -> list[str]:
    ops, weights = zip(*mix.items())
    return rng.choices(ops, weights=weights, k=n)


def warm_up(url: str, workdir: Path, mix: dict[str, int]) -> Report:
    """One session computes what the mix needs once (disk caches, loaded models); its calls are not measured."""
    s = Session(url, 999, workdir)
    for op in ("generate", "explore_find_directions", *sorted(mix)):
        s.run(op)
    if any(op.startswith("text_") for op in mix):
        s.run("text_global")
    return s.report


def run_sessions(url: str, clients: int = 16, calls: int = 50, mix: dict[str, int] | None = None,
                 workdir: Path | None = None, warmup_rounds: int = 0, mix_seed: int = 0,
                 between: Callable[[], Any] | None = None) -> tuple[Report, Any]:
    """``clients`` sessions at once, each ``calls`` calls of ``mix`` (default :data:`FULL_MIX`).

    Each session first calls every endpoint of the mix ``warmup_rounds`` times, in its own order (so that
    every per-session state exists; these calls are not in the report, their failures are); all sessions
    wait for each other; ``between()`` runs (e.g. measures the server's memory) and its value is returned
    with the report of the measured calls. Sessions are seeded: the same arguments make the same calls.
    """
    mix = mix or FULL_MIX
    workdir = Path(workdir or tempfile.mkdtemp(prefix="interp-sessions-"))
    barrier = threading.Barrier(clients + 1)
    reports: list[Report] = []
    measured = None

    def visit(index: int) -> None:
        warm = Report()
        try:
            s = Session(url, index, workdir, mix_seed=mix_seed)             # its own Client: its own server session
            for _ in range(warmup_rounds):
                for op in s.rng.sample(sorted(mix), len(mix)):
                    s.run(op)
            warm, s.report = s.report, Report()
        except Exception as exc:  # noqa: BLE001 - a session that cannot start is an error, not a hang
            warm.errors.append(f"session {index} could not start: {type(exc).__name__}: {exc}")
            s = None
        finally:
            barrier.wait()
            barrier.wait()
        if s is not None:
            for op in _mix_plan(s.rng, mix, calls):
                s.run(op)
            warm.calls = []                    # the measured calls; the warm-up's failures count too
            warm.extend(s.report)
        reports.append(warm)

    threads = [threading.Thread(target=visit, args=(i,), name=f"session-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()                                   # every session has started and warmed up
    if between is not None:
        measured = between()
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    report = Report(wall_s=time.perf_counter() - t0)
    for r in reports:
        report.extend(r)
    return report, measured


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1e3:.0f} ms" if values else "-"


def latency_table(report: Report) -> str:
    rows = [f"{'endpoint':28s} {'calls':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}"]
    for endpoint, times in sorted(report.latencies().items()):
        rows.append(f"/{endpoint:27s} {len(times):6d} {percentile(times, 50) * 1e3:8.0f} "
                    f"{percentile(times, 95) * 1e3:8.0f} {max(times) * 1e3:8.0f}")
    every = [c.seconds for c in report.calls]
    if every:
        rows.append(f"{'all':28s} {len(every):6d} {percentile(every, 50) * 1e3:8.0f} "
                    f"{percentile(every, 95) * 1e3:8.0f} {max(every) * 1e3:8.0f}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------------
# Queue full


@dataclasses.dataclass
class FloodResult:
    joined: int                 # plain HTTP joins the queue accepted (as it drains, more get in)
    http_refused: int           # plain HTTP joins refused
    http_detail: str            # the server's answer to the first refused join ("HTTP 503: Queue is full. ...")
    refused: list[str]          # gradio_client's messages for its refused requests
    served: int                 # gradio_client requests answered
    failed: list[str]           # gradio_client requests that failed otherwise (should be none)
    served_after: bool          # a normal call succeeds after the flood


def flood_queue(url: str, requests: int, blockers: int = 8, burst: int = 8,
                workdir: Path | None = None) -> FloodResult:
    """Fill the server's queue and look at the refusals.

    ``blockers`` slow ``/generate`` calls (16 samples each; more than the endpoint has workers) occupy its
    workers; then ``requests`` more are sent over plain HTTP, one after the other: those that find the
    queue full must be refused (HTTP 503 and its detail). Right after the first refusal, while the queue
    is full, ``burst`` gradio_client calls are made at once (again after later refusals, until one is
    refused): the queue cannot free as many places that fast, so some must fail with gradio_client's
    "Queue is full" error. Whatever was accepted runs to its end; when the queue is empty, a normal call.
    """
    import httpx
    from gradio_client import Client

    workdir = Path(workdir or tempfile.mkdtemp(prefix="interp-flood-"))
    client = Client(url, verbose=False, download_files=str(workdir / "downloads"))
    joining = ("STARTING", "JOINING_QUEUE")

    def joined(job: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not job.done() and job.status().code.name in joining and time.monotonic() < deadline:
            time.sleep(0.005)

    jobs = [client.submit(MODEL, i, PSI, 16, api_name="/generate") for i in range(blockers)]
    for job in jobs:
        joined(job)
    fn_index = next(i for i, d in enumerate(client.config["dependencies"]) if d.get("api_name") == "generate")
    accepted, refused_http, detail, client_refused = 0, 0, "", False
    with httpx.Client(timeout=10) as http:
        for i in range(requests):
            answer = http.post(url + "gradio_api/queue/join", json={
                "data": [MODEL, i, PSI, 16], "fn_index": fn_index, "session_hash": f"flood{i:04d}",
                "event_data": None, "trigger_id": None})
            if answer.status_code == 200:
                accepted += 1
                continue
            refused_http += 1
            detail = detail or f"HTTP {answer.status_code}: {answer.json().get('detail', answer.text)}"
            if not client_refused:                            # the queue is full right now: visitors' calls
                calls = [client.submit(MODEL, i, PSI, 1, api_name="/generate") for _ in range(burst)]
                for job in calls:
                    joined(job)
                jobs += calls
                client_refused = any(job.done() and job.exception() is not None for job in calls)
    served, refused, failed = 0, [], []
    for job in jobs:
        try:
            job.result(timeout=600)
            served += 1
        except Exception as exc:  # noqa: BLE001
            (refused if QUEUE_FULL.lower() in str(exc).lower() else failed).append(f"{type(exc).__name__}: {exc}")
    deadline = time.monotonic() + 300                 # the plain HTTP joins have no listener: wait for them
    while httpx.get(url + "gradio_api/queue/status", timeout=10).json()["queue_size"] and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        client.predict(MODEL, 1, PSI, 1, api_name="/generate")
        served_after = True
    except Exception:  # noqa: BLE001
        served_after = False
    return FloodResult(accepted, refused_http, detail, refused, served, failed, served_after)


# ----------------------------------------------------------------------------------------------------
# Long work next to fast calls


@dataclasses.dataclass
class BlockingResult:
    alone: list[float]          # explore_apply + recipe_undo round trips (per call), nothing else running
    during: list[float]         # the same while other sessions run the long jobs
    long_s: float               # from the first long job's submission to the last one's end
    errors: list[str]


def _long_job(s: Session, name: str, steps: int) -> Any:
    """Submit one long job in session ``s`` (its setup calls first); returns the gradio_client Job."""
    from gradio_client import handle_file

    s.run("generate")
    if name == "invert":
        photo = s.client.predict(MODEL, 4242 + s.index, PSI, 1, api_name="/generate")[1]
        return s.client.submit(MODEL, handle_file(photo), "Optimization W+", steps, "Reconstruct", False, None,
                               api_name="/invert")
    if name == "text_optimize":
        return s.client.submit(MODEL, "a smiling face", "a face", steps, 0.02, 0.1, False, None,
                               api_name="/text_optimize")
    if name == "paint_dissect":
        return s.client.submit(MODEL, 500, "glasses", api_name="/paint_dissect")
    raise ValueError(f"unknown long job {name!r}; known: invert, text_optimize, paint_dissect")


def fast_during_long_work(url: str, workdir: Path, long_jobs: Sequence[str] = ("invert",), steps: int = 200,
                          alone_calls: int = 10) -> BlockingResult:
    """explore_apply latency alone, then while other sessions run ``long_jobs`` (one session each).

    ``invert``: an optimization in W+ of ``steps`` steps; ``text_optimize``: CLIP optimization, ``steps``
    steps; ``paint_dissect``: a dissection of 500 samples (computed unless cached).
    """
    fast = Session(url, 100, workdir)
    for op in ("generate", "explore_find_directions"):
        fast.run(op)

    def timed_apply() -> float:
        t0 = time.perf_counter()
        fast.op_explore_apply()
        fast.op_recipe_undo()
        return (time.perf_counter() - t0) / 2

    alone = [timed_apply() for _ in range(alone_calls)]
    t0 = time.perf_counter()
    jobs = [_long_job(Session(url, 101 + i, workdir), name, steps) for i, name in enumerate(long_jobs)]
    waiting = ("STARTING", "JOINING_QUEUE", "IN_QUEUE", "SENDING_DATA")
    while not all(job.done() for job in jobs) and all(job.status().code.name in waiting for job in jobs):
        time.sleep(0.05)                             # until long work runs
    during = []
    while not all(job.done() for job in jobs):
        during.append(timed_apply())
    errors = []
    for name, job in zip(long_jobs, jobs):
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"/{name}: {type(exc).__name__}: {exc}")
    return BlockingResult(alone, during, time.perf_counter() - t0, errors + fast.report.errors + fast.report.leaks)


@dataclasses.dataclass
class PrecomputeResult:
    alone: list[float]          # paint_preview ("what I painted") calls, nothing else running
    during: list[float]         # the same calls while another visitor's paint_preview dissects first
    precompute_s: float         # that visitor's call
    errors: list[str]


def fast_during_precompute(url: str, workdir: Path, samples: int = 300, alone_calls: int = 5) -> PrecomputeResult:
    """A fast call of an endpoint while another visitor's call of the same endpoint precomputes.

    Visitor A's first brush with a segmenter concept ("glasses", ``samples`` dissection samples, a new
    cache key) dissects the model first; visitor B meanwhile previews "what I painted", which needs
    no dissection. With one worker per endpoint B would wait for A's dissection.
    """
    from gradio_client import handle_file

    a, b = Session(url, 200, workdir), Session(url, 201, workdir)
    for s in (a, b):
        s.run("generate")

    def timed_preview() -> float:
        t0 = time.perf_counter()
        b.op_paint_preview()
        return time.perf_counter() - t0

    alone = [timed_preview() for _ in range(alone_calls)]
    t0 = time.perf_counter()
    job = a.client.submit(MODEL, handle_file(str(a.mask)), "glasses", "remove", 1.0, "auto", 0, samples,
                          api_name="/paint_preview")
    waiting = ("STARTING", "JOINING_QUEUE", "IN_QUEUE", "SENDING_DATA")
    while not job.done() and job.status().code.name in waiting:
        time.sleep(0.05)
    time.sleep(0.5)                                  # it is dissecting now
    during = []
    while not job.done() or not during:
        during.append(timed_preview())
    errors = []
    try:
        job.result()
    except Exception as exc:  # noqa: BLE001
        errors.append(f"/paint_preview (dissecting): {type(exc).__name__}: {exc}")
    return PrecomputeResult(alone, during, time.perf_counter() - t0, errors + b.report.errors + b.report.leaks)


# ----------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--calls", type=int, default=50, help="measured calls per session")
    ap.add_argument("--warmup-rounds", type=int, default=1,
                    help="each session calls every endpoint of the mix this often before memory is measured")
    ap.add_argument("--mix", choices=("full", "light"), default="full")
    ap.add_argument("--queue-size", type=int, default=4, help="of the second server, flooded to show the refusal")
    ap.add_argument("--steps", type=int, default=200, help="of the inversions and text optimizations next to fast calls")
    ap.add_argument("--url", help="use an app that already runs (no memory figures without --pid)")
    ap.add_argument("--pid", type=int, help="the process id of the app at --url (for its memory)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs, downloads)")
    args = ap.parse_args(argv)
    mix = FULL_MIX if args.mix == "full" else LIGHT_MIX
    tmp = Path(tempfile.mkdtemp(prefix="interp-bench-sessions-"))
    failures: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            if args.url:
                url, pid = args.url.rstrip("/") + "/", args.pid
            else:
                t0 = time.perf_counter()
                server = stack.enter_context(serve_app(tmp / "server"))
                url, pid = server.url, server.pid
                print(f"app.py started in {time.perf_counter() - t0:.1f} s at {url} (pid {pid}), fresh caches in {tmp}")
            print(f"CPU cores: {os.cpu_count()}; MALLOC_* tuning: "
                  f"{'on' if os.environ.get('MALLOC_MMAP_THRESHOLD_') else 'off'}")

            t0 = time.perf_counter()
            warm = warm_up(url, tmp / "warmup", mix)
            print(f"warm-up (one session computes the caches the mix needs): {time.perf_counter() - t0:.1f} s, "
                  f"{len(warm.calls)} calls, {len(warm.errors)} errors")
            for line in warm.errors:
                print("  ", line)
            failures += warm.errors

            watch = stack.enter_context(MemoryWatch(pid)) if pid else None
            start_rss = rss_mib(pid) if pid else None
            report, base_rss = run_sessions(url, args.clients, args.calls, mix, tmp / "sessions", args.warmup_rounds,
                                            between=watch.reset if watch else None)
            print(f"\n{args.clients} sessions x {args.calls} calls (after {args.warmup_rounds} warm-up round(s) of "
                  f"every endpoint each), "
                  f"mix {args.mix}: {len(report.calls)} calls in {report.wall_s:.1f} s "
                  f"({len(report.calls) / report.wall_s:.1f} calls/s)")
            print(latency_table(report))
            print(f"errors: {len(report.errors)}   leaks: {len(report.leaks)}")
            for line in (report.errors + report.leaks)[:20]:
                print("  ", line)
            failures += report.errors + report.leaks
            if watch is not None:
                end_rss = rss_mib(pid)
                growth = (end_rss - base_rss) / base_rss
                steps = " -> ".join(f"{v:.0f}" for v in watch.timeline(report.wall_s))
                print(f"server RSS: {start_rss:.0f} MiB before the sessions, {base_rss:.0f} MiB after their warm-up, "
                      f"then at each quarter of the run {steps} MiB (peak {watch.peak:.0f} MiB), {end_rss:.0f} MiB at "
                      f"the end: growth {growth:+.1%} (target < 10 %)")
                if growth >= 0.10:
                    failures.append(f"memory grew by {growth:.1%}")

            print("\nfast calls next to long work (per call; a call that waited for the long work would take about "
                  "as long as it):")
            for jobs in (["invert"], LONG_WORK):
                blocking = fast_during_long_work(url, tmp / "blocking", jobs, args.steps)
                print(f"  explore_apply alone: p50 {ms(blocking.alone, 50)}, p95 {ms(blocking.alone, 95)}; while other "
                      f"sessions run {' + '.join(jobs)} ({args.steps} steps, {blocking.long_s:.1f} s): "
                      f"p50 {ms(blocking.during, 50)}, p95 {ms(blocking.during, 95)}, max {ms(blocking.during, 100)} "
                      f"over {len(blocking.during)} calls")
                failures += blocking.errors
                if not blocking.during or max(blocking.during) > blocking.long_s / 2:
                    failures.append(f"explore_apply was held up by {' + '.join(jobs)}")
            pre = fast_during_precompute(url, tmp / "precompute")
            print(f"  paint_preview ('what I painted') alone: p50 {ms(pre.alone, 50)}, p95 {ms(pre.alone, 95)}; "
                  f"while another visitor's paint_preview dissects first ({pre.precompute_s:.1f} s): "
                  f"p50 {ms(pre.during, 50)}, p95 {ms(pre.during, 95)}, max {ms(pre.during, 100)} "
                  f"over {len(pre.during)} calls")
            failures += pre.errors
            if max(pre.during) > pre.precompute_s / 2:
                failures.append("paint_preview was held up by another visitor's dissection")

        with serve_app(tmp / "small-queue", ["--queue-size", str(args.queue_size)]) as small:
            flood = flood_queue(small.url, requests=4 * args.queue_size, workdir=tmp / "flood")
        print(f"\nqueue full (--queue-size {args.queue_size}): of {4 * args.queue_size} plain HTTP joins sent while "
              f"the workers were busy, {flood.joined} accepted and {flood.http_refused} refused, the server saying "
              f"{flood.http_detail!r}; gradio_client: {flood.served} served, {len(flood.refused)} refused saying "
              f"{flood.refused[0] if flood.refused else '-'!r}, {len(flood.failed)} failed; serves afterwards: "
              f"{flood.served_after}")
        if not (flood.http_refused and flood.refused) or flood.failed or not flood.served_after:
            failures.append("queue full was not a clean refusal")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nOK" if not failures else f"\nFAILED: {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
