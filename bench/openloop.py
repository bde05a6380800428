"""Open-loop scrape load, the way Prometheus servers scrape: SCRAPERS keep-alive
connections, each sending a GET every PERIOD seconds on a fixed schedule whatever
the answers take (phases spread evenly over the period).

wrk is closed-loop: each of its connections sends the next request as soon as the
last answer is in, so at 50 connections it keeps 50 requests queued on the server
and its latency is the queue (Little's law: mean latency = connections ÷
throughput). Here the offered rate is fixed, so latency is the server's answer time
plus whatever queueing that rate really causes.

A scrape's latency counts from its scheduled time when it had to wait for the one
before it on its connection (no coordinated omission), and from the moment it was
sent otherwise (so the client's own timer jitter, ~1 ms in asyncio, is not counted
against the server). One Python process runs every scraper; at high rates its own
CPU time competes with the server on a small machine, which only inflates the
figures.
"""

import asyncio
import time
from urllib.parse import urlparse


async def _answer(reader):
    """Reads one HTTP/1.1 response; returns (status, body bytes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            key, value = line.split(b":", 1)
            headers[key.strip().lower()] = value.strip()
    if b"content-length" in headers:
        size = int(headers[b"content-length"])
        await reader.readexactly(size)
        return status, size
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        size = 0
        while True:
            n = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(n + 2)  # the chunk and its CRLF; the last one: the final CRLF
            size += n
            if n == 0:
                return status, size
    raise RuntimeError(f"response with neither Content-Length nor chunked encoding: {head[:200]!r}")


async def _scraper(host, port, path, first_due, period, end, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n".encode()
    due = first_due
    try:
        while due < end:
            now = time.monotonic()
            if now < due:
                await asyncio.sleep(due - now)
            # On time (the last scrape was done before this was due): timed from the send.
            start = time.monotonic() if now < due else due
            writer.write(request)
            await writer.drain()
            status, _ = await _answer(reader)
            if status == 200:
                latencies.append(time.monotonic() - start)
            else:
                errors.append(status)
            due += period
    finally:
        writer.close()


async def _run(url, scrapers, period, duration):
    u = urlparse(url)
    latencies, errors = [], []
    t0 = time.monotonic() + 0.2
    end = t0 + duration
    await asyncio.gather(*(
        _scraper(u.hostname, u.port, u.path, t0 + period * i / scrapers, period, end, latencies, errors)
        for i in range(scrapers)))
    return latencies, errors


def open_loop(url, scrapers, period, duration):
    """SCRAPERS connections, each scraping URL every PERIOD s for DURATION s. Returns
    scrapes, offered and achieved rate (/s), p50/p99/max latency (µs), errors."""
    t = time.monotonic()
    latencies, errors = asyncio.run(_run(url, scrapers, period, duration))
    elapsed = time.monotonic() - t - 0.2
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6 if latencies else float("nan")

    return {
        "requests": len(latencies),
        "offered": scrapers / period,
        "rate": len(latencies) / elapsed if elapsed > 0 else float("nan"),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": latencies[-1] * 1e6 if latencies else float("nan"),
        "errors": len(errors),
    }
