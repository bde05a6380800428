"""Instruction counts (valgrind's callgrind): repeatable where wall-clock times are not.

Poll: mig-exporter --nvml on libfake_nvml.so (no latencies) on 8 H100 x seven
1g.10gb, run under callgrind collecting only inside the two sources that call
NVML (nvml, gpm), with a profile dumped at the start of each poll. For each
poll after the first two: instructions in all, instructions inside the NVML
library (the inclusive cost of the library's exported nvml* functions), and
the rest: the exporter's own work per poll. bench/poll_overhead.sh counts the
NVML calls.

Scrape: mig-exporter --world on the same node, --poll.interval 1h (no poll after
the first), under callgrind, answering N and then 6N keep-alive scrapes of
/metrics; the difference divided by 5N is the user-space instructions of one
scrape served from the body cache (the kernel's work, e.g. copying the body
through loopback, is not counted by callgrind).

glibc's `rep stosb`/`rep movsb` string routines are turned off
(GLIBC_TUNABLES) because callgrind counts each of their iterations as an
instruction, which would make a 4 kB memset look like 4,000 instructions.
"""

import argparse
import glob
import http.client
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

TUNABLES = "glibc.cpu.x86_rep_stosb_threshold=0x7fffffff:glibc.cpu.x86_rep_movsb_threshold=0x7fffffff"
SOURCES = ["*GeometrySource*poll*", "*UtilizationSource*fill*"]


def annotate(path, inclusive=False):
    argv = ["callgrind_annotate", "--threshold=100"] + (["--inclusive=yes"] if inclusive else []) + [path]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def totals(path):
    m = re.search(r"^\s*([\d,]+) .*PROGRAM TOTALS", annotate(path), re.M)
    return int(m.group(1).replace(",", "")) if m else 0


def library_share(path):
    """Inclusive instructions of the fake's exported nvml* functions."""
    total = 0
    for line in annotate(path, inclusive=True).splitlines():
        m = re.match(r"^\s*([\d,]+) .*\?\?\?:nvml[A-Za-z0-9_]+ \[.*libfake_nvml\.so\]", line)
        if m:
            total += int(m.group(1).replace(",", ""))
    return total


def polls(wd, world, count):
    """(instructions, of which inside the NVML library) of each poll after the first two."""
    out = os.path.join(wd, "poll.cg")
    argv = [b.EXPORTER, "--web.listen-address", "127.0.0.1:0", "--poll.interval", "1s", "--nvml",
            "--nvml.library", b.FAKE_NVML, "--no-dcgm", "--nvml.slow-interval", "1h"]
    cmd = (["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
           + [f"--toggle-collect={s}" for s in SOURCES]
           + ["--dump-before=*NvmlSource*GeometrySource*poll"] + argv)
    proc = b.start("callgrind-poll", cmd, env={"MIG_WORLD": world, "GLIBC_TUNABLES": TUNABLES}, log_dir=wd)
    deadline = time.time() + 60 + 10 * count
    # A dump at the start of each poll holds the poll before it; the first holds none.
    while len(glob.glob(out + ".*")) < count + 3 and time.time() < deadline:
        time.sleep(0.5)
    b.stop(proc)
    dumps = sorted(glob.glob(out + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))[3:count + 3]
    if not dumps:
        raise SystemExit(f"no poll was profiled; see {wd}")
    return [(totals(d), library_share(d)) for d in dumps]


def scrapes(wd, world, n):
    results = []
    for k in (n, 6 * n):
        out = os.path.join(wd, f"scrape{k}.cg")
        port = b.free_port()
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", b.EXPORTER,
               "--web.listen-address", f"127.0.0.1:{port}", "--poll.interval", "1h", "--world", world]
        proc = b.start(f"callgrind-scrape-{k}", cmd, env={"GLIBC_TUNABLES": TUNABLES}, log_dir=wd)
        deadline = time.time() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", "/metrics")
                conn.getresponse().read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        for _ in range(k):
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit(f"/metrics answered {r.status}")
        conn.close()
        proc.send_signal(2)
        proc.wait(timeout=120)
        results.append(totals(out))
    return (results[1] - results[0]) / (5 * n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polls", type=int, default=10, help="polls profiled after the first two (10)")
    ap.add_argument("--scrapes", type=int, default=100, help="N of the scrape difference (100)")
    b.add_build_options(ap)
    args = ap.parse_args()
    b.prepare(args, ["valgrind"])
    wd = b.workdir("instr")
    world = b.make_world(os.path.join(wd, "world.json"), gpus=8, per_gpu=7)
    b.say(f"machine: {b.machine()}; exporter: {os.path.relpath(b.EXPORTER, b.ROOT)}")

    rows = polls(wd, world, args.polls)
    n = len(rows)
    total = sum(t for t, _ in rows) / n
    lib = sum(lib for _, lib in rows) / n
    b.say(f"poll (NVML mode, mean of {n} polls after the first two):")
    b.say(f"  instructions per poll:            {total:,.0f}")
    b.say(f"  inside the NVML library (fake):   {lib:,.0f}")
    b.say(f"  the exporter's own:               {total - lib:,.0f}")

    per_scrape = scrapes(wd, world, args.scrapes)
    b.say(f"scrape (--world, body cached): {per_scrape:,.0f} user-space instructions per scrape")


if __name__ == "__main__":
    main()
