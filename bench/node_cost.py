"""Cost per node at a 15 s scrape: mig-exporter beside node_exporter, both on one machine
in one run, each as a node runs it.

Ours: NVML mode on libfake_nvml.so (--nvml --no-dcgm; the fake runs inside the
exporter's process, so its work is counted) over the bench's node, 8 H100 x
seven 1g.10gb, at its default --poll.interval. node_exporter: the Debian
package's binary with its default collectors and flags (only the listen address
set). Both are scraped every PERIOD seconds (15, Prometheus's common
scrape_interval) with `Accept-Encoding: gzip` as Prometheus asks, for DURATION
seconds, after a few seconds of warm-up. Reported for each: CPU seconds per hour
(utime + stime from /proc/PID/stat over the run, scaled to an hour) and the
resident memory (VmRSS sampled every second, its mean and maximum; VmHWM).
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

DEBS = ["prometheus-node-exporter", "curl"]
OURS = "mig-exporter --nvml (fake-nvml)"
NODE = "node_exporter"
GZIP = ("Accept-Encoding: gzip",)


def measure(duration=300, period=15.0):
    """Both side by side (started and ended here); returns {name: footprint figures} and the
    settings."""
    wd = b.workdir("node-cost")
    world = b.make_world(os.path.join(wd, "world.json"), gpus=8, per_gpu=7)
    targets = [b.start_exporter(OURS, world, "nvml", wd, poll=None), b.start_node_exporter(wd, defaults=True)]
    try:
        b.wait_polls(targets[0], "nvml", 2)  # GPM activity needs two polls
        time.sleep(2)
        res = b.footprint_phase(targets, duration, scraped=True, period=period, headers=GZIP)
    finally:
        for t in targets:
            b.stop(t.proc)
    for r in res.values():
        r["cpu_s_per_hour"] = r["cpu_s"] / r["elapsed"] * 3600
    return {"names": [t.name for t in targets], "duration": duration, "period": period, "res": res}


def print_report(m):
    rows = []
    for name in m["names"]:
        r = m["res"][name]
        rows.append([name, f"{r['cpu_s_per_hour']:.2f}", f"{r['cpu_pct']:.3f}", b.mib(r["rss_avg"]),
                     b.mib(r["rss_max"]), b.mib(r["hwm"]),
                     f"{r['scrapes']}" + (f" ({r['scrape_failures']} failed)" if r["scrape_failures"] else "")])
    b.say()
    b.say(f"scraped every {m['period']:g} s (gzip) for {m['duration']} s:")
    b.say(b.table(["process", "CPU s/hour", "CPU % of a core", "RSS avg MiB", "RSS max MiB", "VmHWM MiB",
                   "scrapes"], rows))
    o, n = m["res"][OURS], m["res"][NODE]
    if n["cpu_s"] > 0:
        b.say(f"ours ÷ node_exporter: CPU {o['cpu_s'] / n['cpu_s']:.2f}x, RSS {o['rss_avg'] / n['rss_avg']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=300, help="seconds scraped (300)")
    ap.add_argument("--period", type=float, default=15.0, help="seconds between scrapes (15)")
    b.add_build_options(ap)
    args = ap.parse_args()
    b.prepare(args, DEBS)
    b.say(f"machine: {b.machine()}")
    b.say("node: 8x H100 80GB HBM3, seven 1g.10gb each; ours in NVML mode on fake-nvml at its default "
          "poll interval, node_exporter with its defaults")
    print_report(measure(args.duration, args.period))


if __name__ == "__main__":
    main()
