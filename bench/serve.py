"""Serving benchmark: a real demo server, real gradio_client users, per-request vs batched.

    python bench/serve.py [--model DIR | --random-init gpt-neo-125m] [--users 1 4 16 32]
        [--requests 4] [--tokens 64] [--modes per-request batched] [--client gradio|http]
        [--json PATH] [--png PATH]

For each mode the demo runs as `python app.py` (SERVING=<mode>) on 127.0.0.1; for each user
count, that many threads each send `--requests` /generate requests (3 columns) one after the
other. Reported per (mode, users): aggregate new tokens/s (the returned texts re-tokenized),
time to first streamed text and end-to-end latency (p50/p95), the server's peak RSS, its
rows in flight at most, the scheduler's time per step in the forward and in the sampler, and the
CPU seconds the server and the benchmark's own clients spent (they share the machine).
`--client gradio` (default) makes each user a `gradio_client.Client`; `--client http` a plain
HTTP user of the same API (POST /gradio_api/call/generate, then read its event stream), whose
own CPU cost is far lower, so the server's capacity shows rather than the clients'.
Results go to a new timestamped JSON under bench/results/ unless --json names one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _server, _setup  # noqa: E402
from generation.runners.session import available_cores  # noqa: E402

PROMPTS = ["In this paper, we propose a novel method for",
           "Deep neural networks have achieved remarkable success in",
           "We study the problem of scheduling jobs on parallel machines",
           "Graph neural networks are a powerful tool for"]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def one_request(client, prompt: str, tokens: int, seed: int) -> tuple[float, float, tuple[str, ...]]:
    """Send one streamed /generate; returns (time to first text, total time, the three texts)."""
    start = time.perf_counter()
    first = None
    job = client.submit(prompt, tokens, 0.8, 40, 0.9, seed, api_name="/generate")
    for out in job:
        if first is None and any(out):
            first = time.perf_counter() - start
    texts = tuple(job.outputs()[-1])
    total = time.perf_counter() - start
    return (first if first is not None else total), total, texts


def http_request(http, url: str, prompt: str, tokens: int, seed: int) -> tuple[float, float, tuple[str, ...]]:
    """`one_request` through the plain HTTP API: join, then read the event stream to its end."""
    start = time.perf_counter()
    first, texts = None, None
    joined = http.post(f"{url}gradio_api/call/generate",
                       json={"data": [prompt, tokens, 0.8, 40, 0.9, seed]})
    joined.raise_for_status()
    with http.stream("GET", f"{url}gradio_api/call/generate/{joined.json()['event_id']}") as events:
        event = None
        for line in events.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("generating", "complete"):
                texts = tuple(json.loads(line[5:]))
                if first is None and any(texts):
                    first = time.perf_counter() - start
                if event == "complete":
                    break
            elif line.startswith("data:") and event == "error":
                raise RuntimeError(f"/generate failed: {line[5:].strip()}")
    if texts is None:
        raise RuntimeError("/generate: the event stream ended without a result")
    total = time.perf_counter() - start
    return (first if first is not None else total), total, texts


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process so far (0 if unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def run_level(url: str, pid: int, users: int, requests: int, tokens: int, tokenizer,
              client: str = "gradio") -> dict:
    """`users` concurrent clients × `requests` each; the level's measurements."""
    import httpx
    from gradio_client import Client

    peak = [0.0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _server.rss_mib(pid))

    def user(index: int) -> list[tuple[float, float, int]]:
        runs = []
        if client == "http":
            with httpx.Client(timeout=120) as http:
                for r in range(requests):
                    runs.append(http_request(http, url, PROMPTS[(index + r) % len(PROMPTS)], tokens, r))
        else:
            gradio = Client(url, verbose=False)
            for r in range(requests):
                runs.append(one_request(gradio, PROMPTS[(index + r) % len(PROMPTS)], tokens, r))
        return [(ttft, total, sum(len(tokenizer.encode(t).ids) for t in texts))
                for ttft, total, texts in runs]

    stats_client = Client(url, verbose=False)
    before = stats_client.predict(api_name="/serving_stats")
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    load = os.getloadavg()[0]
    server_cpu, own_cpu = cpu_seconds(pid), cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        runs = [r for rs in pool.map(user, range(users)) for r in rs]
    wall = time.perf_counter() - start
    server_cpu, own_cpu = cpu_seconds(pid) - server_cpu, cpu_seconds() - own_cpu
    done.set()
    watcher.join()
    after = stats_client.predict(api_name="/serving_stats")
    ttfts, totals = [r[0] for r in runs], [r[1] for r in runs]
    steps = max(1, after.get("steps", 0) - before.get("steps", 0))
    return {
        "users": users, "requests": len(runs), "wall_s": wall, "load_average_1m": load,
        "tokens_per_s": sum(r[2] for r in runs) / wall,
        "ttft_p50_s": statistics.median(ttfts), "ttft_p95_s": percentile(ttfts, 0.95),
        "latency_p50_s": statistics.median(totals), "latency_p95_s": percentile(totals, 0.95),
        "rss_peak_mib": max(peak[0], _server.rss_mib(pid)),
        "rows_peak": after.get("rows_peak"),
        "forward_ms_per_step": 1e3 * (after.get("forward_s", 0) - before.get("forward_s", 0)) / steps,
        "sampler_ms_per_step": 1e3 * (after.get("sample_s", 0) - before.get("sample_s", 0)) / steps,
        "client": client, "server_cpu_s": server_cpu, "clients_cpu_s": own_cpu,
    }


def run_mode(mode: str, model: Path, args: argparse.Namespace, tokenizer, log_dir: Path) -> list[dict]:
    """Start the server in `mode`, warm it up, and measure every user count."""
    from gradio_client import Client

    proc, url = _server.start_app(model, log_dir / f"server_{mode}.log", SERVING=mode,
                                  QUEUE_SIZE=str(max(64, 2 * max(args.users))))
    try:
        one_request(Client(url, verbose=False), PROMPTS[0], 8, 0)  # warm-up
        levels = []
        for users in args.users:
            level = {"mode": mode, **run_level(url, proc.pid, users, args.requests, args.tokens, tokenizer,
                                               args.client)}
            print(row_line(level), flush=True)
            levels.append(level)
        return levels
    finally:
        _server.stop_app(proc)


HEADER = (f"{'mode':<12} {'users':>5} {'reqs':>5} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9} "
          f"{'e2e p50':>8} {'e2e p95':>8} {'RSS MiB':>8} {'fwd ms':>7} {'smp ms':>7} {'srv CPU':>7} "
          f"{'cli CPU':>7} {'load':>5}")


def row_line(r: dict) -> str:
    """One table row."""
    return (f"{r['mode']:<12} {r['users']:>5} {r['requests']:>5} {r['tokens_per_s']:>8.1f} "
            f"{r['ttft_p50_s']:>9.3f} {r['ttft_p95_s']:>9.3f} {r['latency_p50_s']:>8.3f} "
            f"{r['latency_p95_s']:>8.3f} {r['rss_peak_mib']:>8.0f} {r['forward_ms_per_step']:>7.2f} "
            f"{r['sampler_ms_per_step']:>7.2f} {r.get('server_cpu_s', 0):>7.2f} "
            f"{r.get('clients_cpu_s', 0):>7.2f} {r['load_average_1m']:>5.2f}")


def plot(levels: list[dict], path: Path, title: str) -> None:
    """Throughput and p50/p95 latency against users, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in dict.fromkeys(r["mode"] for r in levels):
        rows = [r for r in levels if r["mode"] == mode]
        users = [r["users"] for r in rows]
        ax1.plot(users, [r["tokens_per_s"] for r in rows], "o-", label=mode)
        line, = ax2.plot(users, [r["latency_p50_s"] for r in rows], "o-", label=f"{mode} p50")
        ax2.plot(users, [r["latency_p95_s"] for r in rows], "s--", color=line.get_color(),
                 label=f"{mode} p95")
    ax1.set(xlabel="concurrent users", ylabel="aggregate new tokens/s", title="throughput")
    ax2.set(xlabel="concurrent users", ylabel="seconds per /generate", title="end-to-end latency")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/serve.py", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, default=_setup.REPO_ROOT / "demo_model",
                     help="an export directory the app can serve (default: the bundled demo_model/)")
    src.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES),
                     help="a known architecture with random weights, built and exported once")
    p.add_argument("--users", type=int, nargs="+", default=[1, 4, 16, 32])
    p.add_argument("--requests", type=int, default=4, help="requests per user")
    p.add_argument("--tokens", type=int, default=64, help="max_new_tokens of every request")
    p.add_argument("--modes", nargs="+", default=["per-request", "batched"],
                   choices=["per-request", "batched"])
    p.add_argument("--client", choices=["gradio", "http"], default="gradio",
                   help="each user a gradio_client.Client (default) or a plain HTTP client of the "
                        "same API (cheaper on the shared CPU)")
    p.add_argument("--cache-dir", type=Path, default=_setup.DEFAULT_CACHE)
    p.add_argument("--tokenizer", type=Path, default=_setup.SHARED_GPT2)
    p.add_argument("--json", type=Path, default=None,
                   help="results file (default: a new bench/results/serve_<model>_<time>.json)")
    p.add_argument("--png", type=Path, default=None, help="plot (default: beside the JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if any(u < 1 for u in args.users) or args.requests < 1 or args.tokens < 1:
        print("bench/serve.py: --users, --requests and --tokens must be >= 1", file=sys.stderr)
        return 2
    model = args.model
    if args.random_init:
        _, model = _setup.prepare_random_init(args.random_init, args.cache_dir, args.tokenizer, False)
    if not (model / "tokenizer.json").is_file():
        print(f"bench/serve.py: {model} has no tokenizer.json (not a model the app can serve)",
              file=sys.stderr)
        return 2
    if not (model / "decode.json").is_file():
        print(f"[bench] note: {model} has no decode graph (decode.json): the batched mode serves "
              "it one request at a time")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    slug = args.random_init or model.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or _setup.REPO_ROOT / "bench" / "results" / f"serve_{slug}_{stamp}.json"
    png = args.png or path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = _setup.machine_info(available_cores())
    print(f"[bench] {slug}: users {args.users} × {args.requests} requests × {args.tokens} tokens × 3 "
          f"columns; load average {os.getloadavg()[0]:.2f}\n{HEADER}", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="serve_bench_"))
    print(f"[bench] server logs in {logs}")
    levels = [lv for mode in args.modes for lv in run_mode(mode, model, args, tokenizer, logs)]
    machine["load_average_1m_at_end"] = os.getloadavg()[0]
    path.write_text(json.dumps({"model": str(model), "settings": vars(args) | {
        "model": str(model), "cache_dir": str(args.cache_dir), "tokenizer": str(args.tokenizer),
        "json": str(path), "png": str(png)}, "machine": machine, "levels": levels}, indent=2) + "\n")
    plot(levels, png, f"{slug}: /generate ({args.tokens} tokens × 3 columns), {args.requests} per "
                      f"user, {args.client} clients")
    print(f"[bench] wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
