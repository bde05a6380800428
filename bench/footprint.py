"""Footprint: resident memory and CPU of mig-exporter at a 1 s poll on 8 H100 x seven 1g.10gb.

Two exporters run side by side, one on the simulator (--world) and one in
NVML mode on libfake_nvml.so (--no-dcgm; the fake runs inside the exporter's
process, so its own work and memory are counted too), with node_exporter as
a reference. Each is measured over DURATION seconds idle, then over DURATION
seconds while scraped once a second: CPU% of one core from /proc/PID/stat
(utime+stime), VmRSS sampled every second and VmHWM (peak) at the end.
Also prints the size of the release binary, as built and stripped.
"""

import argparse
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

RSS_TARGET = 15 * b.MIB
CPU_TARGET = 0.5


def binary_sizes(wd):
    stripped = os.path.join(wd, "mig-exporter.stripped")
    subprocess.run(["strip", "-o", stripped, b.EXPORTER], check=True)
    return os.path.getsize(b.EXPORTER), os.path.getsize(stripped)


def print_phases(phases, names):
    rows = []
    for phase, res in phases:
        for n in names:
            r = res[n]
            rows.append([n, phase, f"{r['cpu_pct']:.2f}", b.mib(r["rss_avg"]), b.mib(r["rss_max"]),
                         b.mib(r["hwm"]), f"{r['scrapes']}" + (f" ({r['scrape_failures']} failed)"
                                                               if r["scrape_failures"] else "")])
    b.say(b.table(["process", "phase", "CPU % of a core", "RSS avg MiB", "RSS max MiB", "VmHWM MiB",
                   "scrapes"], rows))


DEBS = ["prometheus-node-exporter", "curl", "binutils"]


def measure(duration=60):
    """Both exporters and node_exporter side by side, DURATION s idle then DURATION s scraped
    once a second (servers started and ended here); returns the phases and binary sizes."""
    wd = b.workdir("footprint")
    world = b.make_world(os.path.join(wd, "world.json"), gpus=8, per_gpu=7)
    targets = [
        b.start_exporter("ours (sim --world)", world, "sim", wd, poll="1s"),
        b.start_exporter("ours (--nvml fake)", world, "nvml", wd, poll="1s"),
        b.start_node_exporter(wd),
    ]
    try:
        time.sleep(3)  # a few polls before measuring
        idle = b.footprint_phase(targets, duration, scraped=False)
        scraped = b.footprint_phase(targets, duration, scraped=True)
    finally:
        for t in targets:
            b.stop(t.proc)
    size, stripped = binary_sizes(wd)
    return {"names": [t.name for t in targets], "duration": duration, "idle": idle, "scraped": scraped,
            "size": size, "stripped": stripped, "node_size": os.path.getsize(b.NODE_EXPORTER)}


def print_report(m):
    idle, scraped = m["idle"], m["scraped"]
    b.say()
    print_phases([("idle", idle), ("scraped 1/s", scraped)], m["names"])
    b.say()
    b.say(f"binary: target/release/mig-exporter {b.mib(m['size'])} MiB as built, {b.mib(m['stripped'])} MiB "
          f"stripped (node_exporter's: {b.mib(m['node_size'])} MiB)")
    b.say()
    b.say("targets (issue 10):")
    for name in m["names"][:2]:
        for phase, res in (("idle", idle), ("scraped 1/s", scraped)):
            r = res[name]
            b.say(f"  {name}, {phase}: RSS max {b.mib(r['rss_max'])} MiB, peak {b.mib(r['hwm'])} MiB "
                  f"(target <= 15 MiB): {b.verdict(max(r['rss_max'], r['hwm']) <= RSS_TARGET)}; "
                  f"CPU {r['cpu_pct']:.2f}% (target <= 0.5%): {b.verdict(r['cpu_pct'] <= CPU_TARGET)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=60, help="seconds per phase (60)")
    ap.add_argument("--quick", action="store_true", help="10 s per phase")
    b.add_build_options(ap)
    args = ap.parse_args()
    duration = 10 if args.quick else args.duration

    b.prepare(args, DEBS)
    b.say(f"machine: {b.machine()}")
    b.say(f"node: 8x H100 80GB HBM3, seven 1g.10gb each; --poll.interval 1s; {duration}s idle, "
          f"then {duration}s scraped once a second")
    print_report(measure(duration))


if __name__ == "__main__":
    main()
