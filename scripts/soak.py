#!/usr/bin/env python3
"""Soak load for scripts/soak.sh: steady update checks and downloads against
a running firmup-server, some downloads cut and resumed, some clients slow.

    soak.py BASE_URL SERVER_PID DEVICES_JSON GRANT_URL IMAGE_SHA256 SECONDS

Prints a line every 30 s: requests, errors, p99 check latency, downloads,
the server's RSS. Exits 1 if any request failed or the RSS grew by more than
20% (+ 8 MiB) between the first report and the last.
Standard library only, so it runs on a fresh machine.
"""

import asyncio
import hashlib
import json
import random
import sys
import time

BASE, PID, DEVICES, GRANT, SHA, SECONDS = sys.argv[1:7]
HOST, PORT = BASE.removeprefix("http://").split(":")
PORT = int(PORT)
SECONDS = int(SECONDS)
CHECKS_PER_SEC = 100
DOWNLOADERS = 4
SLOW_CLIENTS = 2

stats = {"checks": 0, "downloads": 0, "cuts": 0, "slow": 0, "errors": 0}
latencies = []
errors = []


def rss_kib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def request(method, path, headers, body=b""):
    """One request on its own connection; returns (status, headers, reader, writer)."""
    reader, writer = await asyncio.open_connection(HOST, PORT)
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
    for k, v in headers.items():
        head += f"{k}: {v}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    hdrs = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, reader, writer


def fail(what):
    stats["errors"] += 1
    if len(errors) < 20:
        errors.append(what)


async def checker(devices, deadline):
    interval = 1.0 / CHECKS_PER_SEC
    nxt = time.monotonic()
    i = 0
    pending = set()
    while time.monotonic() < deadline:
        serial, token = devices[i % len(devices)]
        i += 1
        pending.add(asyncio.ensure_future(one_check(serial, token)))
        pending = {p for p in pending if not p.done()}
        nxt += interval
        await asyncio.sleep(max(0, nxt - time.monotonic()))
    await asyncio.gather(*pending)


async def one_check(serial, token):
    body = json.dumps({"serial": serial, "hw_id": "soak-r1", "current_version": "1.0.0",
                       "security_counter": 1, "channel": "stable", "root_version": 1}).encode()
    started = time.monotonic()
    try:
        status, _, reader, writer = await request(
            "POST", "/v1/device/check",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, body)
        await reader.read()
        writer.close()
        if status != 200:
            fail(f"check {serial}: {status}")
            return
        latencies.append(time.monotonic() - started)
        stats["checks"] += 1
    except OSError as e:
        fail(f"check {serial}: {e}")


async def downloader(deadline, length):
    """Whole downloads; one in three is cut at a random offset and resumed."""
    while time.monotonic() < deadline:
        h = hashlib.sha256()
        got = 0
        cut_at = random.randrange(1, length) if random.random() < 1 / 3 else None
        try:
            while got < length:
                hdrs = {"Range": f"bytes={got}-"} if got else {}
                status, _, reader, writer = await request("GET", GRANT, hdrs)
                if status not in (200, 206):
                    fail(f"download: {status}")
                    writer.close()
                    break
                while got < length:
                    want = 65536 if cut_at is None else min(65536, cut_at - got)
                    chunk = await reader.read(want)
                    if not chunk:
                        break
                    h.update(chunk)
                    got += len(chunk)
                    if cut_at is not None and got >= cut_at:
                        stats["cuts"] += 1
                        cut_at = None
                        break
                writer.close()
            if got == length:
                if h.hexdigest() == SHA:
                    stats["downloads"] += 1
                else:
                    fail("download: sha256 mismatch")
        except OSError as e:
            fail(f"download: {e}")


async def slow_client(deadline):
    """Reads 64 KiB/s for 5 s (well above the minimum rate), then leaves."""
    while time.monotonic() < deadline:
        try:
            status, _, reader, writer = await request("GET", GRANT, {})
            if status != 200:
                fail(f"slow download: {status}")
            end = time.monotonic() + 5
            while time.monotonic() < end:
                chunk = await reader.read(8192)
                if not chunk:
                    fail("slow download cut by the server")
                    break
                await asyncio.sleep(0.125)
            writer.close()
            stats["slow"] += 1
        except OSError as e:
            fail(f"slow download: {e}")


def p99():
    if not latencies:
        return 0.0
    s = sorted(latencies)
    return s[min(len(s) - 1, int(len(s) * 0.99))] * 1000


async def reporter(deadline, rss):
    started = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(min(30, max(0.1, deadline - time.monotonic())))
        r = rss_kib()
        rss.append(r)
        print(f"{time.monotonic() - started:6.0f}s  checks {stats['checks']:7d}  "
              f"p99 {p99():6.1f} ms  downloads {stats['downloads']:4d}  cuts {stats['cuts']:4d}  "
              f"slow {stats['slow']:3d}  errors {stats['errors']:3d}  rss {r / 1024:6.1f} MiB",
              flush=True)
        latencies.clear()


async def main():
    with open(DEVICES) as f:
        devices = [(d["serial"], d["token"]) for d in json.load(f)["devices"]]
    status, hdrs, reader, writer = await request("HEAD", GRANT, {})
    writer.close()
    length = int(hdrs["content-length"])
    deadline = time.monotonic() + SECONDS
    rss = []
    await asyncio.gather(
        checker(devices, deadline),
        *(downloader(deadline, length) for _ in range(DOWNLOADERS)),
        *(slow_client(deadline) for _ in range(SLOW_CLIENTS)),
        reporter(deadline, rss),
    )
    grown = len(rss) >= 2 and rss[-1] > rss[0] * 1.2 + 8 * 1024
    print(f"total: checks {stats['checks']}, downloads {stats['downloads']} "
          f"({stats['cuts']} cut and resumed), slow clients {stats['slow']}, "
          f"errors {stats['errors']}; rss first {rss[0] / 1024:.1f} MiB, "
          f"last {rss[-1] / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB")
    for e in errors:
        print("error:", e)
    if stats["errors"] or grown:
        print("SOAK FAILED" + (": RSS grew" if grown else ""))
        sys.exit(1)
    print("soak ok")


asyncio.run(main())
