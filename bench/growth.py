"""Growth: scrape time, poll time and memory at 1, 8 and 16 H100s x 1 and 7 instances per GPU.

For each node, mig-exporter runs on the simulator (--world) and in NVML mode
on libfake_nvml.so (--no-dcgm, no latency faults), at a 250 ms poll. For
DURATION seconds a client scrapes every 10 ms, to time the first scrape
after each poll (it encodes the new snapshot) against the others (served
from the exporter's body cache); then wrk scrapes with one connection for
DURATION seconds. The table gives series and bytes per scrape, the cold
scrape and the encode cost per series, wrk's p50/p99 and CPU µs per scrape,
the mean poll time of the source (mig_exporter_poll_duration_seconds) and
RSS / peak RSS after the load, and how each grows against the smallest node.
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

NODES = [(1, 1), (1, 7), (8, 1), (8, 7), (16, 1), (16, 7)]


def poll_totals(target, source):
    body = b.http_get(target)
    s = b.metric_values(body, "mig_exporter_poll_duration_seconds_sum", {"source": source})
    c = b.metric_values(body, "mig_exporter_poll_duration_seconds_count", {"source": source})
    return (s[0] if s else 0.0), (c[0] if c else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=4, help="seconds of wrk per node and mode (4)")
    ap.add_argument("--poll", default="250ms", help="the exporter's --poll.interval (250ms)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    b.ensure_debs(["wrk", "curl"])
    b.build(skip=args.no_build)
    wd = b.workdir("growth")
    b.say(f"machine: {b.machine()}")
    b.say(f"H100 80GB HBM3 nodes, N x 1g.10gb (+ default CI) per GPU; {args.poll} poll; "
          f"wrk 1 connection, {args.duration}s")

    results = []
    for gpus, per in NODES:
        world = b.make_world(os.path.join(wd, f"world-{gpus}x{per}.json"), gpus=gpus, per_gpu=per)
        for mode, source in (("sim", "sim"), ("nvml", "nvml")):
            t = b.start_exporter(f"exporter-{gpus}x{per}-{mode}", world, mode, wd, poll=args.poll)
            b.wait_polls(t, source, 2)
            s0, c0 = poll_totals(t, source)  # the first poll (library init) left out
            body = b.http_get(t)
            series = b.count_series(body)
            cold, warm, _ = b.cold_and_warm(t, source, args.duration, period=0.01)
            r = b.scrape_under_load(t, 1, args.duration, series)
            st = b.proc_status(t.pid)
            s1, c1 = poll_totals(t, source)
            results.append({
                "gpus": gpus, "per": per, "mode": mode, "series": series, "bytes": len(body),
                "p50": r["p50_us"], "p99": r["p99_us"], "cold": cold, "warm": warm, "cpu_us": r["cpu_s"] / r["requests"] * 1e6,
                "cpu_us_series": r["cpu_us_per_series"],
                "poll_ms": (s1 - s0) / (c1 - c0) * 1e3 if c1 > c0 else float("nan"),
                "rss": st["VmRSS"], "hwm": st["VmHWM"],
            })
            b.stop(t.proc)

    for mode in ("sim", "nvml"):
        rs = [r for r in results if r["mode"] == mode]
        base = rs[0]
        rows = []
        for r in rs:
            rows.append([f"{r['gpus']} x {r['per']}", r["series"], r["bytes"], b.fmt_us(r["cold"]),
                         f"{(r['cold'] - r['warm']) / r['series']:.3f}", b.fmt_us(r["p50"]),
                         b.fmt_us(r["p99"]), f"{r['cpu_us']:.0f}",
                         f"{r['poll_ms']:.2f}", b.mib(r["rss"]), b.mib(r["hwm"]),
                         f"{r['series'] / base['series']:.1f}x", f"{r['cold'] / base['cold']:.1f}x",
                         f"{r['poll_ms'] / base['poll_ms']:.1f}x", f"{r['rss'] / base['rss']:.2f}x"])
        b.say()
        b.say(f"mode {mode}" + (" (--world)" if mode == "sim" else " (--nvml on fake-nvml, --no-dcgm)"))
        b.say(b.table(["GPUs x inst", "series", "bytes", "cold scrape", "encode µs/series", "warm p50",
                       "warm p99", "CPU µs/scrape", "poll ms", "RSS MiB", "peak MiB", "series ×",
                       "cold scrape ×", "poll ×", "RSS ×"], rows))
    b.say()
    for mode in ("sim", "nvml"):
        rs = [r for r in results if r["mode"] == mode]
        xs, ys = [r["series"] for r in rs], [r["cold"] for r in rs]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        b.say(f"mode {mode}: a cold scrape takes {my - slope * mx:.0f} µs + {slope:.3f} µs per series "
              "(least squares over the six nodes)")
    b.say("cold scrape: median latency of the first scrape after a poll, which encodes the new snapshot "
          "(Python client, keep-alive);")
    b.say("encode µs/series: (cold − cached median latency) ÷ series; warm p50/p99 and CPU µs/scrape: wrk, "
          "1 connection, served from the body cache;")
    b.say("× columns: against the 1 x 1 node of the same mode.")


if __name__ == "__main__":
    main()
