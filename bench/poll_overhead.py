"""Poll overhead: the exporter's NVML poll time ÷ the time spent inside NVML calls.

mig-exporter --nvml on libfake_nvml.so (--no-dcgm), on 8 H100 x seven 1g.10gb,
with per-call latencies set to the real H100 figures of
shared/fixtures/h100-80gb-hbm3-real/probe.txt. The fake writes its call
counters to a file (FAKE_NVML_STATS_FILE, every 20 ms); the poll time is
mig_exporter_poll_duration_seconds (sum and count) of the two sources that
call NVML on a poll: "nvml" (geometry, health) and "gpm" (activity). Both are
read between two polls, so the window holds whole polls only. The first polls
(library init, XID event registration, the slow-cadence energy read) are left
out.

Latencies under 1 ms are spun, not slept (FAKE_NVML_SPIN_LATENCY=1): a
sleep of 2 µs takes ~45 µs on the 2-core VM these figures come from.

ratio = poll time ÷ library time recorded by the fake (1.00: nothing but
driver calls). The fake's recorded time includes its own work around each
call (a stat of the World file, a lock); the script also prints the
exporter's own time per poll (poll time − library time) and the ratio
projected onto a driver whose calls take exactly the probe's latencies:
(configured latency + own time) ÷ configured latency.
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

# probe.txt (µs per call on an H100 80GB HBM3, driver 580.159.04) -> NVML functions.
# fake-nvml takes whole microseconds.
PROBE = {
    "memory_info": (11.59, ["nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2"]),
    "utilization": (2.45, ["nvmlDeviceGetUtilizationRates"]),
    "power": (2.60, ["nvmlDeviceGetPowerUsage"]),
    "temperature": (4.09, ["nvmlDeviceGetTemperature"]),
    "mig_mode": (163.20, ["nvmlDeviceGetMigMode"]),
    "clock_sm": (2.36, ["nvmlDeviceGetClockInfo", "nvmlDeviceGetClock"]),
    "ecc_vol": (3.27, ["nvmlDeviceGetTotalEccErrors"]),
    "handle_by_index": (1.93, ["nvmlDeviceGetHandleByIndex_v2"]),
    "procs": (10.85, ["nvmlDeviceGetComputeRunningProcesses_v3"]),
    "energy": (3891.66, ["nvmlDeviceGetTotalEnergyConsumption"]),
    "pcie": (21109.32, ["nvmlDeviceGetPcieThroughput"]),
}
DEFAULT_US = 2  # every other call ("*")


def latency_map():
    m = {"*": DEFAULT_US}
    for us, names in PROBE.values():
        for n in names:
            m[n] = max(1, round(us))
    return m


def read_stats(path):
    out = {}
    written = 0
    with open(path) as f:
        for line in f:
            if line.startswith("#written_unix_ns"):
                written = int(line.split()[1])
                continue
            name, calls, nanos = line.split()
            out[name] = (int(calls), int(nanos))
    return written, out


# The sources that call NVML on each poll: geometry and health ("nvml") and, on
# Hopper, per-instance activity from GPM ("gpm", through the same library).
NVML_SOURCES = ("nvml", "gpm")


def poll_metrics(target):
    """(completed polls, {source: seconds summed}, nvml source up). A poll is complete
    when every NVML source has accounted for it (gpm runs after nvml in each poll);
    None while one is still running."""
    body = b.http_get(target)
    counts, totals = {}, {}
    for src in NVML_SOURCES:
        c = b.metric_values(body, "mig_exporter_poll_duration_seconds_count", {"source": src})
        v = b.metric_values(body, "mig_exporter_poll_duration_seconds_sum", {"source": src})
        if c and v:
            counts[src], totals[src] = int(c[0]), v[0]
    up = b.metric_values(body, "mig_exporter_source_up", {"source": "nvml"})
    complete = counts.get("nvml", 0) if len(set(counts.values())) <= 1 else None
    return complete, totals, up[0] if up else 0.0


def between_polls(target, stats_file, timeout=30):
    """(poll count, {source: seconds summed}, stats) read while no poll runs: right after
    a poll completes, once the fake has written its counters since."""
    deadline = time.time() + timeout
    count0 = None
    while time.time() < deadline:
        count, totals, _ = poll_metrics(target)
        if count is not None and count0 is not None and count != count0:
            done_ns = time.time_ns()
            time.sleep(0.1)  # the fake writes every 20 ms
            written, stats = read_stats(stats_file)
            count2, totals2, _ = poll_metrics(target)
            if written > done_ns and count2 == count and totals2 == totals:
                return count, totals, stats
        if count is not None:
            count0 = count
        time.sleep(0.005)
    raise RuntimeError("no quiet moment between two polls")


DEBS = ["curl"]


def measure(polls=30, interval="1s", sleep=False):
    """One exporter in NVML mode on fake-nvml with the probe's latencies (started and ended
    here); returns the per-poll figures over POLLS polls after the first two."""
    wd = b.workdir("poll")
    lat = latency_map()
    world = b.make_world(os.path.join(wd, "world.json"), gpus=8, per_gpu=7, latency_us=lat)
    stats_file = os.path.join(wd, "fake-nvml-stats.txt")
    t = b.start_exporter("exporter", world, "nvml", wd, poll=interval,
                         extra=["--nvml.slow-interval", "1h"],
                         env={"FAKE_NVML_STATS_FILE": stats_file, "FAKE_NVML_STATS_INTERVAL_MS": "20",
                              "FAKE_NVML_SPIN_LATENCY": "0" if sleep else "1"})
    try:
        # leave out the first two polls (init, event registration, energy)
        while (poll_metrics(t)[0] or 0) < 2:
            time.sleep(0.05)
        c0, s0, st0 = between_polls(t, stats_file)
        while (poll_metrics(t)[0] or 0) < c0 + polls - 1:
            time.sleep(0.2)
        c1, s1, st1 = between_polls(t, stats_file)
        if poll_metrics(t)[2] != 1.0:
            raise SystemExit("source nvml is not up: see the exporter's log in " + wd)
    finally:
        b.stop(t.proc)

    polls = c1 - c0
    per_source = {src: (s1.get(src, 0.0) - s0.get(src, 0.0)) / polls for src in s1}
    poll_s = sum(per_source.values())
    rows = []
    lib_ns = conf_ns = calls_total = 0
    for name in sorted(set(st1) | set(st0)):
        calls = st1.get(name, (0, 0))[0] - st0.get(name, (0, 0))[0]
        nanos = st1.get(name, (0, 0))[1] - st0.get(name, (0, 0))[1]
        if calls == 0:
            continue
        conf = lat.get(name, lat["*"]) * 1000 * calls
        lib_ns += nanos
        conf_ns += conf
        calls_total += calls
        rows.append([name, f"{calls / polls:.0f}", f"{lat.get(name, lat['*'])}",
                     f"{conf / polls / 1000:.0f}", f"{nanos / polls / 1000:.0f}"])
    rows.sort(key=lambda r: -float(r[4]))
    lib_s = lib_ns / polls / 1e9
    conf_s = conf_ns / polls / 1e9
    own_s = poll_s - lib_s
    return {
        "polls": polls, "interval": interval, "sleep": sleep, "latencies": lat, "rows": rows,
        "calls": calls_total / polls, "per_source": per_source, "poll_s": poll_s, "lib_s": lib_s,
        "conf_s": conf_s, "own_s": own_s, "ratio": poll_s / lib_s, "projected": (conf_s + own_s) / conf_s,
    }


def print_report(m):
    b.say()
    b.say(f"per poll (mean of {m['polls']} polls):")
    b.say(b.table(["NVML function", "calls", "µs/call set", "set µs", "recorded µs"], m["rows"]))
    b.say()
    b.say(f"NVML calls per poll:                 {m['calls']:.0f}")
    b.say(f"poll time (exporter's histograms):   {m['poll_s'] * 1e3:.2f} ms ("
          + ", ".join(f"source {k} {v * 1e3:.2f} ms" for k, v in sorted(m["per_source"].items())) + ")")
    b.say(f"library time recorded by the fake:   {m['lib_s'] * 1e3:.2f} ms "
          f"(latencies as set: {m['conf_s'] * 1e3:.2f} ms; the rest is the fake's own work"
          + (" and sleep overshoot)" if m["sleep"] else ")"))
    b.say(f"exporter's own time (poll − library): {m['own_s'] * 1e3:.2f} ms, "
          f"{m['own_s'] / m['calls'] * 1e6:.2f} µs per call")
    b.say(f"poll overhead ratio = poll ÷ library time = {m['ratio']:.3f}  "
          f"(target <= 1.10: {b.verdict(m['ratio'] <= 1.10)})")
    b.say(f"projected onto the probe's latencies = (set + own) ÷ set = {m['projected']:.3f}  "
          f"(target <= 1.10: {b.verdict(m['projected'] <= 1.10)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polls", type=int, default=30, help="polls measured (30)")
    ap.add_argument("--interval", default="1s", help="--poll.interval of the exporter (1s)")
    ap.add_argument("--sleep", action="store_true",
                    help="let fake-nvml sleep its latencies (default: spin those under 1 ms, "
                         "FAKE_NVML_SPIN_LATENCY=1, since a µs sleep overshoots by tens of µs)")
    b.add_build_options(ap)
    args = ap.parse_args()
    b.prepare(args, DEBS)
    b.say(f"machine: {b.machine()}; exporter: {os.path.relpath(b.EXPORTER, b.ROOT)}")
    b.say("node: 8x H100 80GB HBM3, seven 1g.10gb each; mig-exporter --nvml (fake-nvml) --no-dcgm "
          f"--nvml.slow-interval 1h --poll.interval {args.interval}")
    b.say("per-call latency (µs): " + ", ".join(f"{k} {v}" for k, v in sorted(latency_map().items())))
    print_report(measure(args.polls, args.interval, args.sleep))


if __name__ == "__main__":
    main()
