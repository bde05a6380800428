"""Heap: what the exporter keeps allocated while its node keeps changing.

The release exporter runs in NVML mode on libfake_nvml.so and libfake_dcgm.so
(both inside its process) under heaptrack, polling every 50 ms, while
mig-sim reboots the node (2 H100s: MIG mode and every instance gone) and
recreates its layout (3g.40gb, 2g.20gb and two 1g.10gb, each with a compute
instance, as in tests/soak.rs) CYCLES times, with a scrape after each. It
then prints heaptrack's totals and the call stacks of what was still
allocated when the exporter ended. Memory kept per reconfiguration shows
there with a size that grows with CYCLES: run it at two counts and compare.
--fake-nvml FILE runs another build of the fake (e.g. of an older commit)
for a before/after.
"""

import argparse
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

DEBS = ["heaptrack", "curl"]
LAYOUT = "9,14,19,19"


def descendants(pid):
    """PID's child processes, their children and so on."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            continue
        found += children
        todo += children
    return found


def end_exporter(heaptrack):
    """SIGINT to the exporter heaptrack runs as its child, so that it ends
    cleanly and heaptrack writes its file; then waits for heaptrack."""
    exporter = os.path.realpath(b.EXPORTER)
    for pid in descendants(heaptrack.pid):
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == exporter:
                os.kill(pid, 2)
        except OSError:
            pass
    heaptrack.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cycles", nargs="?", type=int, default=100, help="reboots and layouts (default 100)")
    ap.add_argument("--fake-nvml", help="another libfake_nvml.so to load (default: the release build's)")
    b.add_build_options(ap)
    args = ap.parse_args()
    b.prepare(args, DEBS)
    fake_nvml = os.path.abspath(args.fake_nvml) if args.fake_nvml else b.FAKE_NVML

    wd = b.workdir("heap")
    world = os.path.join(wd, "world.json")
    env = dict(os.environ, MIG_WORLD=world)

    def sim(*argv):
        b.run([b.MIG_SIM, *argv], env=env, stdout=subprocess.DEVNULL)

    def layout():
        for gpu in ("0", "1"):
            sim("-i", gpu, "-mig", "1")
            sim("-i", gpu, "mig", "-cgi", LAYOUT, "-C")

    sim("init", "--gpus", "2", "--product", "h100-80gb", world)
    layout()
    port = b.free_port()
    heaptrack = b.start("heaptrack", [
        "heaptrack", "-o", os.path.join(wd, "heap"), b.EXPORTER, "--nvml",
        "--nvml.library", fake_nvml, "--dcgm.library", b.FAKE_DCGM, "--no-kubelet",
        "--poll.interval=50ms", "--web.listen-address", f"127.0.0.1:{port}",
    ], env={"MIG_WORLD": world}, log_dir=wd)
    target = b.Target("mig-exporter", heaptrack, f"http://127.0.0.1:{port}/metrics")
    b.wait_ready(target, f"http://127.0.0.1:{port}/readyz", timeout=60)
    b.say(f"bench/heap.sh: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {b.machine()}, "
          f"{args.cycles} reboots and layouts, fake-nvml {fake_nvml}")
    for _ in range(args.cycles):
        sim("reboot")
        time.sleep(0.2)
        layout()
        time.sleep(0.2)
        b.http_get(target)
    end_exporter(heaptrack)
    data = [f for f in os.listdir(wd) if f.startswith("heap.")]
    if not data:
        sys.exit(f"bench/heap.sh: heaptrack wrote no data file; its log: {os.path.join(wd, 'heaptrack.log')}")
    out = subprocess.run(
        ["heaptrack_print", "--print-leaks", "1", "--print-peaks", "0", "--print-allocators", "0",
         "--print-temporary", "0", "--peak-limit", "10", "--sub-peak-limit", "3", os.path.join(wd, data[0])],
        capture_output=True, text=True, check=True,
    ).stdout
    b.say(out)


if __name__ == "__main__":
    main()
