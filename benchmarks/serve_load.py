"""`emotion serve` under hostile load (issue 14): starts the server on 127.0.0.1, runs CLIENTS
concurrent clients for DURATION seconds, and reports what a defender cares about.

    python benchmarks/serve_load.py --model models/export --duration 60 --clients 32

Each client sends one request at a time, drawn from a fixed mix: real photos (a portrait, a
640×480 scene, a 12 MP phone-sized photo, a photo without a face), 48×48 face crops,
decompression bombs (a 307 KiB PNG of 9000×9000 RGBA), a 161 KiB PNG of 6200×6200 RGBA that is just
under the 40 MP limit (valid, but the costliest image the server accepts), truncated JPEGs, HTML
posing as a JPEG, and oversize bodies streamed chunked with no Content-Length (up to 200 MiB each,
sent until the server answers). A separate prober asks /health every 100 ms. Printed: requests/s,
p50/p99 latency of the real photos and crops, the count of each status code per kind, /health
latency, and the server's peak RSS (VmHWM). Exit status 1 if a goal is missed: any 5xx, any valid
image not answered 200, peak RSS of 1 GiB or more, or a /health p99 of 50 ms or more.

Loopback only (the server it starts, on a free port), bounded in time (--duration, plus at most
--timeout for the last requests) and in count (--max-requests). Python standard library only.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

BOUNDARY = "loadtestboundary7f3a"
HOST = "127.0.0.1"
GIB = 1 << 30


@dataclass(frozen=True)
class Kind:
    name: str
    weight: int
    expect: int  # the status a correct server answers
    body: bytes = b""  # multipart body sent with a Content-Length
    chunked_bytes: int = 0  # or: a file part of this many bytes, streamed chunked
    photo: bool = False  # a real photo or face crop: counted in the "valid photo" latency

    @property
    def valid(self) -> bool:
        return self.expect == 200


# --- the request mix ------------------------------------------------------------------------------

def _part_head(filename: str, content_type: str = "image/jpeg") -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()


def _multipart(filename: str, data: bytes, content_type: str = "image/jpeg") -> bytes:
    return _part_head(filename, content_type) + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _flat_rgba_png(side: int, pixel: bytes = bytes(4)) -> bytes:
    """side×side RGBA of one colour, written by hand: 307 KiB for 9000, 324 MB once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    packer, row = zlib.compressobj(9), b"\x00" + pixel * side
    idat = b"".join([packer.compress(row) for _ in range(side)] + [packer.flush()])
    header = side.to_bytes(4, "big") * 2 + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def build_mix() -> list[Kind]:
    import matplotlib

    samples = Path(matplotlib.get_data_path()) / "sample_data"
    portrait = Image.open(samples / "grace_hopper.jpg").convert("RGB")  # 512×600, one face
    scene = Image.new("RGB", (640, 480), (205, 205, 200))
    scene.paste(portrait.resize((300, 352)), (170, 64))
    phone = Image.new("RGB", (4032, 3024), (190, 200, 210))
    phone.paste(portrait.resize((1800, 2109)), (1116, 450))
    no_face = Image.open(samples / "Minduka_Present_Blue_Pack.png").convert("RGB")
    crop = portrait.convert("L").crop((150, 100, 382, 332)).resize((48, 48))
    jpeg = _encode(portrait, "JPEG", quality=90)
    return [
        Kind("portrait", 25, 200, _multipart("portrait.jpg", jpeg), photo=True),
        Kind("scene_640x480", 15, 200, _multipart("scene.jpg", _encode(scene, "JPEG", quality=90)), photo=True),
        Kind("phone_12mp", 3, 200, _multipart("phone.jpg", _encode(phone, "JPEG", quality=90)), photo=True),
        Kind("no_face", 7, 200, _multipart("present.png", _encode(no_face, "PNG"), "image/png"), photo=True),
        Kind("face_crop", 18, 200, _multipart("crop.png", _encode(crop, "PNG"), "image/png"), photo=True),
        Kind("rgba_38mp", 2, 200, _multipart("big.png", _flat_rgba_png(6200, bytes([200, 180, 160, 128])),
                                             "image/png")),
        Kind("bomb_81mp", 10, 413, _multipart("bomb.png", _flat_rgba_png(9000), "image/png")),
        Kind("truncated", 8, 415, _multipart("truncated.jpg", jpeg[:len(jpeg) // 2])),
        Kind("html_as_jpeg", 5, 415, _multipart("page.jpg", b"<!DOCTYPE html><html><script>alert(1)</script>")),
        Kind("oversize_chunked", 7, 413, chunked_bytes=200 * 1024 * 1024),
    ]


# --- one request, by hand (the oversize kind needs a chunked body cut short) ------------------------

async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    await reader.readexactly(int(headers.get("content-length", 0)))
    return int(lines[0].split()[1])


async def _stream_file_part(writer: asyncio.StreamWriter, size: int) -> None:
    """A chunked multipart body with a `size`-byte file; stops quietly when the server hangs up."""
    def send(data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    block = b"\xff" * 65536
    try:
        send(_part_head("huge.jpg"))
        for _ in range(size // len(block)):
            send(block)
            await writer.drain()
        send(f"\r\n--{BOUNDARY}--\r\n".encode())
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except OSError:
        pass


async def request(port: int, kind: Kind, timeout: float) -> int:
    """The response's status, or 0 when the connection failed or timed out."""
    head = (f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n")
    writer = sender = None
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        if kind.chunked_bytes:
            writer.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
            sender = asyncio.create_task(_stream_file_part(writer, kind.chunked_bytes))
        else:
            writer.write((head + f"Content-Length: {len(kind.body)}\r\n\r\n").encode() + kind.body)
        return await asyncio.wait_for(_read_status(reader), timeout)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
        return 0
    finally:
        if sender:
            sender.cancel()
        if writer:
            writer.close()


async def health_latency(port: int, timeout: float) -> float | None:
    start, writer = time.perf_counter(), None
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        status = await asyncio.wait_for(_read_status(reader), timeout)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
        return None
    finally:
        if writer:
            writer.close()
    return time.perf_counter() - start if status == 200 else None


# --- the run --------------------------------------------------------------------------------------

@dataclass
class Results:
    latencies: dict  # kind name → [seconds]
    statuses: dict  # kind name → Counter of status codes (0: connection failed or timed out)
    health: list  # seconds, None for a failed probe
    seconds: float = 0.0


async def client(port: int, mix: list[Kind], rng: random.Random, stop_at: float, budget: list[int],
                 results: Results, timeout: float) -> None:
    weights = [k.weight for k in mix]
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        kind = rng.choices(mix, weights)[0]
        start = time.perf_counter()
        status = await request(port, kind, timeout)
        results.statuses[kind.name][status] += 1
        results.latencies[kind.name].append(time.perf_counter() - start)


async def prober(port: int, stop_at: float, results: Results) -> None:
    while time.monotonic() < stop_at:
        results.health.append(await health_latency(port, 5.0))
        await asyncio.sleep(0.1)


async def run_load(port: int, mix: list[Kind], clients: int, duration: float, max_requests: int,
                   timeout: float, seed: int) -> Results:
    results = Results(defaultdict(list), defaultdict(Counter), [])
    stop_at, budget, start = time.monotonic() + duration, [max_requests], time.perf_counter()
    tasks = [client(port, mix, random.Random(seed + i), stop_at, budget, results, timeout) for i in range(clients)]
    await asyncio.gather(prober(port, stop_at, results), *tasks)
    results.seconds = time.perf_counter() - start
    return results


def start_server(args, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "emotion", "serve", "--model", str(args.model), "--host", HOST,
               "--port", str(port)]
    for option in ("concurrency", "queue"):
        if getattr(args, option) is not None:
            command += [f"--{option}", str(getattr(args, option))]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: the server exited ({server.returncode}); its output is in {log.name}")
        if asyncio.run(health_latency(port, 1.0)) is not None:
            return server
        time.sleep(0.25)
    server.kill()
    raise SystemExit(f"error: the server did not answer /health within 180 s; its output is in {log.name}")


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM), as the kernel counted it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- the report -----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def _kind_row(kind: Kind, results: Results) -> dict:
    latencies, statuses = results.latencies[kind.name], results.statuses[kind.name]
    return {"expect": kind.expect, "statuses": {str(code): n for code, n in sorted(statuses.items())},
            "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1)}


def summarize(mix: list[Kind], results: Results, rss: int, args) -> dict:
    total = sum(sum(c.values()) for c in results.statuses.values())
    photos = [t for k in mix if k.photo for t in results.latencies[k.name]]
    codes = sum(results.statuses.values(), Counter())
    probes = [h for h in results.health if h is not None]
    return {
        "clients": args.clients, "duration_s": round(results.seconds, 1), "requests": total,
        "requests_per_s": round(total / results.seconds, 1),
        "photo_ms": {"n": len(photos), "p50": round(1000 * percentile(photos, 0.5), 1),
                     "p99": round(1000 * percentile(photos, 0.99), 1)},
        "status_codes": {str(code): n for code, n in sorted(codes.items())},
        "per_kind": {k.name: _kind_row(k, results) for k in mix},
        "server_5xx": sum(n for code, n in codes.items() if code >= 500),
        "failed_valid": sum(n for k in mix if k.valid for code, n in results.statuses[k.name].items() if code != 200),
        "health_ms": {"n": len(results.health), "failed": len(results.health) - len(probes),
                      "p50": round(1000 * percentile(probes, 0.5), 1), "p99": round(1000 * percentile(probes, 0.99), 1),
                      "max": round(1000 * max(probes, default=float("nan")), 1)},
        "peak_rss_mib": round(rss / 2**20),
    }


def goals(summary: dict) -> dict[str, bool]:
    return {"0 server errors (5xx)": summary["server_5xx"] == 0,
            "0 failed valid images": summary["failed_valid"] == 0,
            "peak RSS < 1 GiB": summary["peak_rss_mib"] < 1024,
            "/health p99 < 50 ms": summary["health_ms"]["failed"] == 0 and summary["health_ms"]["p99"] < 50}


def print_report(summary: dict) -> None:
    print(f"\n{summary['clients']} clients for {summary['duration_s']} s: {summary['requests']} requests, "
          f"{summary['requests_per_s']} requests/s")
    print(f"{'kind':<18}{'expect':>7}  {'statuses':<28}{'p50 ms':>9}{'p99 ms':>9}")
    for name, row in summary["per_kind"].items():
        statuses = ", ".join(f"{c}: {n}" for c, n in row["statuses"].items())
        print(f"{name:<18}{row['expect']:>7}  {statuses:<28}{row['p50_ms']:>9}{row['p99_ms']:>9}")
    photos = summary["photo_ms"]
    print(f"real photos and crops: {photos['n']} requests, p50 {photos['p50']} ms, p99 {photos['p99']} ms; "
          f"valid images not answered 200: {summary['failed_valid']}")
    print("status codes: " + ", ".join(f"{c}: {n}" for c, n in summary["status_codes"].items())
          + "  (0 = connection failed or timed out)")
    health = summary["health_ms"]
    print(f"/health every 100 ms: {health['n']} probes, p50 {health['p50']} ms, p99 {health['p99']} ms, "
          f"max {health['max']} ms, failed {health['failed']}")
    print(f"server peak RSS (VmHWM): {summary['peak_rss_mib']} MiB")
    for goal, met in goals(summary).items():
        print(f"  [{'ok' if met else 'MISSED'}] {goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/export"))
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, help="passed to emotion serve (default: its own)")
    parser.add_argument("--queue", type=int, help="passed to emotion serve (default: its own)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="stop after this many (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if not args.model.exists():
        raise SystemExit(f"error: {args.model}: model not found; run `dvc repro` or pass --model")
    if not (1 <= args.clients <= 256 and 0 < args.duration <= 600):
        raise SystemExit("error: use 1 to 256 --clients and a --duration of at most 600 s")
    mix, port = build_mix(), free_port()
    with tempfile.NamedTemporaryFile("w", prefix="serve_load_", suffix=".log", delete=False) as log:
        server = start_server(args, port, log)
        try:
            print(f"emotion serve (pid {server.pid}) on {HOST}:{port}; {args.clients} clients for {args.duration:g} s",
                  flush=True)
            results = asyncio.run(run_load(port, mix, args.clients, args.duration, args.max_requests,
                                           args.timeout, args.seed))
            rss = peak_rss(server.pid)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    summary = summarize(mix, results, rss, args)
    print_report(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if not all(goals(summary).values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
