"""Peers on the same node: all-smi's API mode beside mig-exporter, both reading NVML from
libfake_nvml.so over one World (8 H100 x seven 1g.10gb).

all-smi (a Rust crate that reads NVML through nvml-wrapper) is built with
`cargo install --locked --root target/bench-tools all-smi@<version>`, once.
It finds NVIDIA GPUs through `lspci` or `nvidia-smi -L`; the script puts a
shim `nvidia-smi` first on its PATH that answers `-L` from the World
(`mig-sim -L`) and fails every other command, and a `libnvidia-ml.so.1`
symlink to libfake_nvml.so on its LD_LIBRARY_PATH. all-smi always listens on
0.0.0.0, so it runs in a network namespace of its own with only `lo`, and
its load tool runs in that namespace too.

Measured for each, as in footprint.sh and scrape.sh: CPU% of one core and
RSS at a 1 s poll, idle and scraped once a second; wrk at 1 and 50
connections; bytes and series per scrape; and whether the MIG instances
(their MIG UUIDs and profiles) appear in the output at all.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402


def install_all_smi():
    """Returns None when all-smi is there, or why it is not."""
    if os.path.exists(b.ALL_SMI):
        return None
    # its build script compiles .proto files; it links libdrm and libdrm_amdgpu (AMD GPU support)
    b.ensure_debs(["protobuf-compiler", "libdrm-dev"])
    b.say(f"building all-smi {b.ALL_SMI_VERSION} with cargo install into {b.TOOLS} (once; ~15 min on 2 cores)")
    log = os.path.join(b.TOOLS, "install.log")
    os.makedirs(b.TOOLS, exist_ok=True)
    with open(log, "wb") as f:
        rc = subprocess.run(
            ["cargo", "install", "--locked", "--root", b.TOOLS, f"all-smi@{b.ALL_SMI_VERSION}"],
            stdout=f, stderr=subprocess.STDOUT,
            env=dict(os.environ, CARGO_TARGET_DIR=os.path.join(b.TOOLS, "build")),
        ).returncode
    if rc != 0 or not os.path.exists(b.ALL_SMI):
        with open(log, errors="replace") as f:
            tail = [line for line in f.read().splitlines() if line.startswith("error")][-3:]
        return f"cargo install all-smi failed (rc {rc}), see {log}: " + " | ".join(tail)
    return None


def mig_facts(world_path):
    with open(world_path) as f:
        world = json.load(f)
    text = json.dumps(world)
    return sorted(set(re.findall(r"MIG-[0-9a-f-]{36}", text)))


def mig_report(body, uuids):
    text = body.decode(errors="replace")
    seen = [u for u in uuids if u in text]
    mig_lines = [line for line in text.splitlines() if not line.startswith("#") and re.search(r"mig", line, re.I)]
    profiles = sorted(set(re.findall(r"\b\dg\.\d+gb(?:\+me)?\b", text)))
    return seen, mig_lines, profiles


def read_calls(path):
    """(calls, nanoseconds, when, {function: calls}) of every NVML call so far, from a
    FAKE_NVML_STATS_FILE."""
    calls = nanos = 0
    per_fn = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                name, c, n = line.split()
                calls += int(c)
                nanos += int(n)
                per_fn[name] = int(c)
    return calls, nanos, time.monotonic(), per_fn


GPUS = 8


DEBS = ["wrk", "curl", "iproute2", "util-linux"]
OURS = "mig-exporter --nvml"


def measure(duration=30, scrape_duration=10, build_peer=True):
    """mig-exporter and all-smi side by side (started and ended here); returns the figures.
    all-smi is built first when missing and BUILD_PEER; without it, 'why' says why it is not
    measured and only ours is."""
    why = install_all_smi() if build_peer else None
    if why is None and not os.path.exists(b.ALL_SMI):
        why = (f"all-smi is not built ({os.path.relpath(b.ALL_SMI, b.ROOT)}); bench/peers.sh builds it "
               "(~15 min on 2 cores)")
    wd = b.workdir("peers")
    world = b.make_world(os.path.join(wd, "world.json"), gpus=GPUS, per_gpu=7)
    uuids = mig_facts(world)
    # each process's fake-nvml writes its call counters once a second (a file write a second)
    stats = {OURS: os.path.join(wd, "stats-ours.txt"), "all-smi": os.path.join(wd, "stats-all-smi.txt")}

    def stats_env(name):
        return {"FAKE_NVML_STATS_FILE": stats[name], "FAKE_NVML_STATS_INTERVAL_MS": "1000"}

    targets = [b.start_exporter(OURS, world, "nvml", wd, poll="1s", env=stats_env(OURS))]
    try:
        if why is None:
            try:
                targets.append(b.start_all_smi(world, wd, interval_s=1, env=stats_env("all-smi")))
            except RuntimeError as e:
                why = f"all-smi did not start: {e}; its log: {os.path.join(wd, 'all-smi.log')}"
                with open(os.path.join(wd, "all-smi.log"), errors="replace") as f:
                    b.say(f.read()[-2000:])

        time.sleep(4)  # a few collection cycles
        shape, devices, mig = {}, {}, {}  # devices reported: the GPUs and the MIG devices seen in the output
        for t in targets:
            body = b.http_get(t)
            shape[t.name] = (len(body), b.count_series(body))
            seen, mig_lines, profiles = mig_report(body, uuids)
            devices[t.name] = GPUS + len(seen)
            mig[t.name] = (seen, mig_lines, profiles)

        calls0 = {t.name: read_calls(stats[t.name]) for t in targets}
        idle = b.footprint_phase(targets, duration, scraped=False)
        calls1 = {t.name: read_calls(stats[t.name]) for t in targets}
        scraped = b.footprint_phase(targets, duration, scraped=True)
        loads = {}
        for t in targets:
            for c in (1, 50):
                loads[(t.name, c)] = b.scrape_under_load(t, c, scrape_duration, shape[t.name][1])
    finally:
        for t in targets:
            b.stop(t.proc)
    return {
        "why": why, "names": [t.name for t in targets], "uuids": uuids, "shape": shape, "devices": devices,
        "mig": mig, "calls0": calls0, "calls1": calls1, "idle": idle, "scraped": scraped, "loads": loads,
        "size": os.path.getsize(b.EXPORTER),
        "peer_size": os.path.getsize(b.ALL_SMI) if len(targets) > 1 else None,
    }


def print_report(m):
    names, idle, scraped, shape = m["names"], m["idle"], m["scraped"], m["shape"]
    if m["why"]:
        b.say(f"all-smi: not measured: {m['why']}")
    b.say()
    for name in names:
        seen, mig_lines, profiles = m["mig"][name]
        b.say(f"{name}: {shape[name][1]} series, {shape[name][0]} bytes; MIG UUIDs reported: "
              f"{len(seen)} of {len(m['uuids'])}; MIG profiles named: {', '.join(profiles) or 'none'}; "
              f"{len(mig_lines)} series mention MIG")
        for line in mig_lines[:3]:
            b.say(f"    e.g. {line[:160]}")
    b.say()
    rows = []
    for name in names:
        for phase, res in (("idle", idle), ("scraped 1/s", scraped)):
            r = res[name]
            rows.append([name, phase, f"{r['cpu_pct']:.2f}", b.mib(r["rss_avg"]), b.mib(r["rss_max"]),
                         b.mib(r["hwm"])])
    b.say(b.table(["process", "phase", "CPU % of a core", "RSS avg MiB", "RSS max MiB", "VmHWM MiB"], rows))
    b.say()
    for name in names:
        (c0, n0, t0, f0), (c1, n1, t1, f1) = m["calls0"][name], m["calls1"][name]
        b.say(f"{name}: {(c1 - c0) / (t1 - t0):.0f} NVML calls/s while idle, "
              f"{(n1 - n0) / (t1 - t0) / 1e6:.2f} ms/s inside the library (fake-nvml's counters)")
        rates = sorted(((f1[k] - f0.get(k, 0)) / (t1 - t0), k) for k in f1)
        b.say("    " + ", ".join(f"{k} {r:.0f}/s" for r, k in reversed(rates[-8:]) if r > 0))
    b.say()
    b.say(f"per device reported ({GPUS} GPUs plus the MIG devices each names), idle:")
    for name in names:
        (c0, _, t0, _), (c1, _, t1, _) = m["calls0"][name], m["calls1"][name]
        n = m["devices"][name]
        b.say(f"  {name}: {n} devices, {(c1 - c0) / (t1 - t0) / n:.1f} NVML calls/s and "
              f"{idle[name]['cpu_pct'] / n:.4f} % of a core per device")
    b.say()
    rows = []
    for name in names:
        for c in (1, 50):
            r = m["loads"][(name, c)]
            rows.append([name, c, b.fmt_us(r["p50_us"]), b.fmt_us(r["p99_us"]), f"{r['rate']:.0f}",
                         shape[name][0], shape[name][1], f"{r['cpu_per_1000']:.3f}",
                         f"{r['cpu_us_per_series']:.3f}", int(r["errors"])])
    b.say(b.table(["server", "conns", "p50", "p99", "scrapes/s", "bytes/scrape", "series", "CPU s/1000",
                   "CPU µs/series", "errors"], rows))
    b.say()
    line = f"binary: mig-exporter {b.mib(m['size'])} MiB"
    if m["peer_size"] is not None:
        line += f", all-smi {b.mib(m['peer_size'])} MiB (both as built by cargo install/build --release)"
    b.say(line)

    if len(names) > 1:
        ours, peer = names[0], names[1]
        b.say()
        b.say("target (issue 10): lower memory and CPU than every peer measured")
        for phase, res in (("idle", idle), ("scraped 1/s", scraped)):
            o, p = res[ours], res[peer]
            b.say(f"  {phase}: RSS max {b.mib(o['rss_max'])} vs {b.mib(p['rss_max'])} MiB: "
                  f"{b.verdict(o['rss_max'] < p['rss_max'])}; CPU {o['cpu_pct']:.2f}% vs {p['cpu_pct']:.2f}%: "
                  f"{b.verdict(o['cpu_pct'] < p['cpu_pct'])}")
        b.say("note: all-smi also reads CPU, memory, chassis and storage of the host each cycle.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=30, help="seconds per footprint phase (30)")
    ap.add_argument("--scrape-duration", type=int, default=10, help="seconds of wrk per concurrency (10)")
    b.add_build_options(ap)
    args = ap.parse_args()
    b.prepare(args, DEBS)
    b.say(f"machine: {b.machine()}")
    b.say(f"node: 8x H100 80GB HBM3, seven 1g.10gb each ({GPUS * 7} MIG devices); both read NVML from "
          "libfake_nvml.so; 1 s poll")
    print_report(measure(args.duration, args.scrape_duration))


if __name__ == "__main__":
    main()
