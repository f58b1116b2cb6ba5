"""Benchmark: the real HTTP server under concurrent streamed `/v1/audio/speech` requests, measured as serving
systems are: audio seconds per second, time to first audio, real-time factor and underrun per concurrency.

`barkserve serve` runs as a child process (waitress, the production WSGI server) on a free port; the
official `openai` client streams raw `pcm` (16-bit mono at 24 kHz, so every byte's place in the audio is
known) for sentences of `benchmarks/data/sentences-en.txt`, with N requests in flight at once (a closed
loop: a request starts as soon as one ends) at each concurrency level (default 1, 4, 8, 16, 32, 64).
The same sentences go, one at a time, through a second server with `--engine reference` (transformers'
`BarkModel.generate`), and each level's throughput is quoted against it.

Per level, over every request of every repeat:

- audio-s/s: seconds of audio received, summed over the level's requests, divided by the wall time from
  the first request's start to the last one's last byte (median and min-max over repeats);
- time to first audio (TTFA): from sending the request to the first audio byte (p50, p95, p99);
- real-time factor (RTF) of each request: from sending it to its last byte, divided by its audio
  seconds (p50, p95; under 1 is faster than real time);
- underrun: a listener starts playing a stream the moment its first audio byte arrives, with no buffer,
  at real speed; a byte due to play before it has arrived stalls the player until it arrives, and
  playback goes on from there. A stream's underrun is its total stall: for the reads of the stream,
  at times t_i (t_0: the first audio byte) carrying audio that starts a_i seconds into the stream, it is
  max(0, max_i (t_i - t_0 - a_i)) (`barkserve.server.streams.Playback`, the same model the server
  uses for its own metrics). Reported: total and worst per level, and the share of requests that never
  underran (underrun exactly 0);
- the server's own view of the same requests from `/metrics` (send times, not arrival times): underrun
  seconds and continuity (streams that ran to their end without an underrun / streams).

Weights: `--shape bark-small` (default) or `tiny` builds random weights here, end-of-speech pinned off, so
each chunk makes exactly `max_duration_sec` of audio: about the time the sentence takes to say (its
length at 14 characters a second), at most `--max-chunk-sec`. `--model PATH` serves a checkpoint folder
with its own end of speech. `--smoke` runs every part on the tiny shapes on the CPU with concurrency 1
and 2 and a few sentences (the test suite does).

Writes `OUT/bench_serve.json` and `OUT/bench_serve.txt` (the table), prints the table and one JSON line.

Run: `python benchmarks/bench_serve.py --out DIR [--smoke] [--levels 1,4,8,16,32,64] [--device cuda]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.bark import SAMPLE_RATE
from barkserve.server.streams import playback_of
from barkserve.testing.provenance import git_commit
from barkserve.text import estimate_seconds

SENTENCES = Path(__file__).resolve().parent / "data" / "sentences-en.txt"
PCM_BYTES_PER_SEC = 2 * SAMPLE_RATE  # 16-bit mono
LEVELS = (1, 4, 8, 16, 32, 64)
VOICE = "alloy"
STARTUP_TIMEOUT_SEC = 600  # a guard against a hung start (bark-small weights load in seconds)
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors")
WARMUP_SEC = 1.0  # audio per chunk of the warm-up requests
SMOKE = {"levels": "1,2", "requests": 2, "repeats": 1, "reference_requests": 1, "max_chunk_sec": 0.3, "warmup": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_serve.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="folder for bench_serve.json and bench_serve.txt")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, concurrency 1 and 2 (the suite)")
    p.add_argument("--levels", help="concurrency levels, comma-separated (default 1,4,8,16,32,64)")
    p.add_argument("--requests", type=int, help="requests per level and repeat (default: 2 x level, at least 8)")
    p.add_argument("--repeats", type=int, help="repeats of every level (default 2)")
    p.add_argument("--reference-requests", type=int,
                   help="reference server requests per repeat, one at a time (default 4; 0: none)")  # fmt: skip
    p.add_argument("--model", help="checkpoint folder to serve (default: random weights of --shape)")
    p.add_argument("--shape", choices=["bark-small", "tiny"], help="random weights' shapes (default bark-small)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--max-chunk-sec", type=float, help="most audio per chunk, seconds (default 13; smoke 0.3)")
    p.add_argument("--max-batch-size", type=int, help="the engine's rows per step (default: the highest level)")
    p.add_argument("--budget-sec", type=float, default=240.0, help="start no new run after this many seconds")
    p.add_argument("--warmup", type=int, help="requests at the highest level before measuring (default: that level)")
    p.add_argument("--server-arg", action="append", default=[], help="one more `barkserve serve` argument")
    p.add_argument("--reference-arg", action="append", default=[],
                   help="one more argument of the reference's server, e.g. --reference-arg=--cpu-offload")  # fmt: skip
    p.add_argument("--voices", type=Path, help="folder of Bark .npz prompts (default: ../shared fixtures if there)")
    p.add_argument("--sentences", type=Path, default=SENTENCES, help="text file, one sentence a line")
    p.add_argument("--commit", help="commit being measured (default: git rev-parse)")
    args = p.parse_args(argv)
    for name, smoke_value in SMOKE.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke_value if args.smoke else None)
    args.shape = args.shape or ("tiny" if args.smoke else "bark-small")
    args.device = "cpu" if args.smoke and args.device == "auto" else args.device
    try:
        args.levels = [int(n) for n in (args.levels or ",".join(map(str, LEVELS))).split(",")]
    except ValueError:
        p.error(f"--levels takes whole numbers separated by commas, e.g. 1,4,16; got {args.levels!r}")
    if min(args.levels) < 1:
        p.error("every --levels entry must be at least 1 (requests in flight at once)")
    args.repeats = args.repeats or 2
    args.reference_requests = 4 if args.reference_requests is None else args.reference_requests
    return args


# ------------------------------------------------------------------------------------------- the servers


def fixtures_dir(given: Path | None) -> Path | None:
    """Suno's voice prompts: `given`, the test fixtures (`make install`) or a shared/ folder near the checkout."""
    here = Path(__file__).resolve()
    shared = [p / "shared/fixtures/bark-voices" for p in here.parents[:5]]
    found = [here.parents[1] / "tests/fixtures/bark-voices", *shared]
    for root in [given] if given else found:
        if root is not None and (root / "v2").is_dir():
            return root
    return None


def build_checkpoint(shape: str, out: Path, voices: Path | None) -> Path:
    """Random weights of `shape` with end-of-speech pinned off, beside a tiny checkpoint's tokenizer and presets."""
    import torch

    from barkserve.testing.tiny import build_random_bark, make_tiny_checkpoint

    tokenizer = make_tiny_checkpoint(out.parent / "tokenizer", presets_from=voices)
    model = build_random_bark(shape)
    eos = int(model.generation_config.semantic_config["eos_token_id"])
    with torch.no_grad():
        # Random logits are spread around 0 over 10,000 ids: a 0 is never the argmax, so greedy decoding of
        # the semantic stage (text_temp 0, see request_options) never stops early: each chunk makes its
        # max_duration_sec. Sampled, it would stop early about once in 10,000 steps, a tenth of the requests.
        model.semantic.lm_head.weight[eos].zero_()
    model.save_pretrained(out)
    for item in tokenizer.iterdir():  # the tokenizer and the voice presets
        if item.name not in MODEL_FILES:
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: str, root: Path, args: argparse.Namespace, engine: str) -> tuple[subprocess.Popen, str]:
    """Start `barkserve serve` on 127.0.0.1 as a child process; returns it and its base URL (see wait_started)."""
    root.mkdir(parents=True, exist_ok=True)
    port, top = free_port(), max(args.levels)
    cmd = [sys.executable, "-m", "barkserve.cli", "serve", "--model", model, "--port", str(port), "--offline",
           "--preload", "--engine", engine, "--device", args.device, "--dtype", args.dtype,
           "--threads", str(top + 8), "--max-batch-size", str(args.max_batch_size or top), "--auth", "off",
           "--max-queue-depth", "0", "--output-dir", str(root / "out"), "--voices-dir", str(root / "voices"),
           "--jobs-dir", str(root / "jobs"), *args.server_arg]  # fmt: skip
    if engine == "reference":  # e.g. the half precision, attention or offloading the Bark docs suggest
        cmd += args.reference_arg
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # The child runs in its own folder: a relative PYTHONPATH (`PYTHONPATH=src`) must keep meaning this checkout.
    paths = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)
    log.close()
    return proc, f"http://127.0.0.1:{port}"


def wait_started(proc: subprocess.Popen, base: str, log: Path) -> dict[str, Any]:
    """The server's /health once it answers 200."""
    import requests

    deadline = time.monotonic() + STARTUP_TIMEOUT_SEC
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server at {base} exited:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(requests.ConnectionError):
            answer = requests.get(f"{base}/health", timeout=5)
            if answer.status_code == 200:
                health: dict[str, Any] = answer.json()
                return health
        time.sleep(0.3)
    raise RuntimeError(f"the server at {base} did not start in {STARTUP_TIMEOUT_SEC} s")


@contextlib.contextmanager
def servers(model: str, root: Path, args: argparse.Namespace) -> Iterator[dict[str, tuple[str, dict[str, Any]]]]:
    """The batched engine's server and (with --reference-requests) the reference's, started together."""
    engines = ["batched", *(["reference"] if args.reference_requests else [])]
    started = {engine: start_server(model, root / engine, args, engine) for engine in engines}
    try:
        yield {
            engine: (base, wait_started(proc, base, root / engine / "server.log"))
            for engine, (proc, base) in started.items()
        }
    finally:
        stopping = time.perf_counter()
        for proc, _ in started.values():
            proc.terminate()
        for proc, _ in started.values():
            try:
                proc.wait(timeout=max(0.1, stopping + 3 - time.perf_counter()))
            except subprocess.TimeoutExpired:  # nothing of it is kept: a graceful stop need not be waited for
                proc.kill()
                proc.wait(timeout=60)
        progress(f"servers stopped in {time.perf_counter() - stopping:.1f} s")


# ------------------------------------------------------------------------------------------ one request


@dataclass
class Stream:
    """One streamed request as the client saw it (times in seconds from its start)."""

    sentence: int
    chunks: int
    first_audio_sec: float
    total_sec: float
    audio_sec: float
    rtf: float
    underrun_sec: float
    stalls: int


def request_options(text: str, args: argparse.Namespace, seed: int, cap: float | None = None) -> dict[str, Any]:
    """Bark's options of one request: a seed, and with random weights the audio each chunk makes (`cap`: at
    most that) and a greedy semantic stage (see build_checkpoint)."""
    options: dict[str, Any] = {"seed": seed}
    if not args.model:  # about the time the sentence takes to say, at most --max-chunk-sec
        options["text_temp"] = 0
        options["max_duration_sec"] = round(min(max(estimate_seconds(text), 0.5), args.max_chunk_sec or 13.0), 2)
    elif args.max_chunk_sec:
        options["max_duration_sec"] = args.max_chunk_sec
    if cap is not None:
        options["max_duration_sec"] = min(cap, options.get("max_duration_sec", cap))
    return options


def stream_one(client: Any, sentences: list[str], index: int, args: argparse.Namespace, cap: float | None) -> Stream:
    """Stream sentence `index` as raw pcm; time every read of its body."""
    text = sentences[index % len(sentences)]
    arrivals: list[tuple[float, float]] = []
    started = time.perf_counter()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=VOICE, input=text, response_format="pcm",
        extra_body=request_options(text, args, seed=1000 + index, cap=cap),
    ) as response:  # fmt: skip
        for data in response.iter_bytes():
            if data:
                arrivals.append((time.perf_counter() - started, len(data) / PCM_BYTES_PER_SEC))
        chunks = int(response.headers["x-chunks"])
    if not arrivals:
        raise RuntimeError(f"no audio for sentence {index}: {text!r}")
    total = arrivals[-1][0]
    playback = playback_of(arrivals)
    return Stream(index % len(sentences), chunks, arrivals[0][0], total, playback.audio_sec,
                  total / playback.audio_sec, playback.underrun_sec, playback.stalls)  # fmt: skip


# ------------------------------------------------------------------------------------------------ levels


def server_counters(base: str) -> dict[str, float]:
    """The server's own underrun and continuity counters (GET /metrics)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{base}/metrics", timeout=30).text
    wanted = {"barkserve_stream_underrun_seconds_total": "underrun_sec", "barkserve_streams_total": "streams",
              "barkserve_streams_continuous_total": "continuous"}  # fmt: skip
    found = {name: 0.0 for name in wanted.values()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                found[wanted[sample.name]] = sample.value
    return found


def run_level(
    base: str, sentences: list[str], level: int, requests: int, args: argparse.Namespace, cap: float | None = None
) -> dict:
    """`requests` streams with `level` in flight at once; the level's throughput, the server's counters."""
    import openai

    before = server_counters(base)
    with openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=level) as pool:
            streams = list(pool.map(lambda i: stream_one(client, sentences, i, args, cap), range(requests)))
        wall = time.perf_counter() - started
    after = server_counters(base)
    server = {k: after[k] - before[k] for k in after}
    audio = sum(s.audio_sec for s in streams)
    return {"level": level, "requests": requests, "wall_sec": wall, "audio_sec": audio,
            "audio_per_sec": audio / wall, "streams": [asdict(s) for s in streams], "server": server}  # fmt: skip


def requests_at(level: int, args: argparse.Namespace) -> int:
    return args.requests or max(8, 2 * level)


def percentiles(values: list[float], qs: tuple[int, ...]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in qs}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict]) -> dict[str, Any]:
    """One level over its repeats: throughput's spread, per-request figures pooled over every repeat."""
    streams = [s for run in runs for s in run["streams"]]
    underruns = [s["underrun_sec"] for s in streams]
    server = {k: sum(run["server"][k] for run in runs) for k in runs[0]["server"]}
    return {
        "level": runs[0]["level"], "requests": len(streams), "repeats": len(runs),
        "audio_per_sec": spread([run["audio_per_sec"] for run in runs]),
        "audio_sec": sum(s["audio_sec"] for s in streams),
        "ttfa_sec": percentiles([s["first_audio_sec"] for s in streams], (50, 95, 99)),
        "rtf": percentiles([s["rtf"] for s in streams], (50, 95)),
        "underrun_sec": {"total": sum(underruns), "max": max(underruns), **percentiles(underruns, (50, 95))},
        "never_underran": sum(u == 0 for u in underruns) / len(streams),
        "chunks_per_request": statistics.mean(s["chunks"] for s in streams),
        "server": {**server, "continuity": server["continuous"] / server["streams"] if server["streams"] else None},
        "runs": runs,
    }  # fmt: skip


def progress(message: str) -> None:
    print(f"[serve] {message}", file=sys.stderr, flush=True)


def plan(args: argparse.Namespace, reference: bool) -> list[tuple[int, int]]:
    """(repeat, level) in the order they run, level 0 for the reference: levels up, then down on the next
    repeat; the reference first on odd repeats and last on even ones, so a run cut short still has one."""
    order: list[tuple[int, int]] = []
    for r in range(args.repeats):
        levels = args.levels if r % 2 == 0 else list(reversed(args.levels))
        ref = [0] if reference else []
        order += [(r, level) for level in (ref + levels if r % 2 == 0 else levels + ref)]
    return order


def measure(bases: dict[str, str], sentences: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then the plan's runs while `--budget-sec` lasts; each level summarized, against the reference."""
    started = time.monotonic()
    top = max(args.levels)
    warm = max(args.warmup if args.warmup is not None else top, 1)
    cap = min(WARMUP_SEC, args.max_chunk_sec or WARMUP_SEC)
    # One-off costs (allocations, CUDA graphs of every batch size up to the top level): short requests.
    run_level(bases["batched"], sentences, min(top, warm), warm, args, cap=cap)
    if "reference" in bases:
        run_level(bases["reference"], sentences, 1, 1, args, cap=cap)
    progress(f"warmed up in {time.monotonic() - started:.1f} s")
    runs: dict[int, list[dict]] = {level: [] for level in [0, *args.levels]}
    skipped = []
    for r, level in plan(args, "reference" in bases):
        if time.monotonic() - started > args.budget_sec:
            skipped.append({"repeat": r + 1, "level": level or "reference"})
            continue
        base, requests = (bases["reference"], args.reference_requests) if level == 0 else (bases["batched"], None)
        run = run_level(base, sentences, max(level, 1), requests or requests_at(level, args), args)
        runs[level].append(run)
        label = f"{level} concurrent" if level else "reference one at a time"
        progress(f"repeat {r + 1}, {label}: {run['audio_per_sec']:.3f} audio-s/s")
    if skipped:
        progress(f"--budget-sec {args.budget_sec} spent: {len(skipped)} run(s) skipped")
    levels = [summarize(runs[level]) for level in args.levels if runs[level]]
    reference = summarize(runs[0]) if runs[0] else None
    if reference is not None:
        for row in levels:
            row["vs_reference"] = row["audio_per_sec"]["median"] / reference["audio_per_sec"]["median"]
    return {"levels": levels, "reference": reference, "skipped": skipped}


# -------------------------------------------------------------------------------------------- reporting


def environment(args: argparse.Namespace, health: dict[str, Any]) -> dict[str, Any]:
    import torch

    status = health["models"][health["default_model"]]
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": args.commit or git_commit(),
        "python": platform.python_version(),
        "versions": {name: version_of(name) for name in ("barkserve", "torch", "transformers", "waitress", "openai")},
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": status.get("device"),
        "dtype": status.get("dtype"),
        "gpu": torch.cuda.get_device_name(0) if str(status.get("device", "")).startswith("cuda") else None,
    }
    return env


def version_of(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def table(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"barkserve serving benchmark: {result['model']} on {env['device']} ({env['dtype']}"
        f"{', ' + env['gpu'] if env['gpu'] else ''}), commit {env['commit']}, {result['repeats']} repeat(s), "
        f"{result['sentences']} sentences, streamed pcm through /v1/audio/speech",
        f"{'level':>5} {'reqs':>5} {'audio-s/s (min-max)':>22} {'x ref':>6} {'TTFA p50/p95/p99 s':>20} "
        f"{'RTF p50/p95':>12} {'underrun s tot/max':>19} {'never':>6} {'server underrun/cont.':>22}",
    ]
    rows = [*result["levels"], *([result["reference"]] if result["reference"] else [])]
    for row in rows:
        a, t, rtf, u, srv = row["audio_per_sec"], row["ttfa_sec"], row["rtf"], row["underrun_sec"], row["server"]
        label = "ref" if row is result["reference"] else str(row["level"])
        ratio = f"{row['vs_reference']:.2f}" if "vs_reference" in row else "-"
        cont = f"{srv['continuity']:.2f}" if srv["continuity"] is not None else "-"
        lines.append(
            f"{label:>5} {row['requests']:>5} {a['median']:>9.3f} ({a['min']:.3f}-{a['max']:.3f}) {ratio:>6} "
            f"{t['p50']:>6.2f}/{t['p95']:.2f}/{t['p99']:.2f} {rtf['p50']:>6.2f}/{rtf['p95']:.2f} "
            f"{u['total']:>10.2f}/{u['max']:.2f} {row['never_underran']:>6.2f} {srv['underrun_sec']:>14.2f}/{cont}"
        )
    lines.append("ref: --engine reference (BarkModel.generate), one request at a time; x ref: audio-s/s over its.")
    if result["skipped"]:
        lines.append(f"--budget-sec spent: not run: {result['skipped']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (the figures are reported, not judged)."""
    args = parse_args(argv)
    sentences = [line.strip() for line in args.sentences.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        voices = fixtures_dir(args.voices)
        model = args.model or str(build_checkpoint(args.shape, root / "model", voices))
        progress(f"serving {args.model or 'random ' + args.shape} on {args.device}")
        with servers(model, root, args) as started:
            bases = {engine: base for engine, (base, _) in started.items()}
            measured = measure(bases, sentences, args)
            health = started["batched"][1]
    result = {
        "model": args.model or f"random {args.shape} (end of speech pinned off)",
        "environment": environment(args, health), "smoke": args.smoke, "repeats": args.repeats,
        "sentences": len(sentences), "sentence_file": args.sentences.name, "levels_asked": args.levels,
        "max_chunk_sec": args.max_chunk_sec, "voice": VOICE, "budget_sec": args.budget_sec,
        "server_args": args.server_arg, "reference_args": args.reference_arg, **measured,
    }  # fmt: skip
    text = table(result)
    print(text)
    line = json.dumps(result, default=float)
    print(line)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_serve.json").write_text(line + "\n")
        (args.out / "bench_serve.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
