"""One run of every comparison the docs quote, written to one dated report.

Runs, one after the other on this machine: the cost per node at a 15 s scrape
(node_cost.py: mig-exporter in NVML mode on fake-nvml beside node_exporter with
its defaults, both scraped every 15 s), the scrape benchmark (scrape.py), the
footprint at a 1 s poll (footprint.py), the poll overhead (poll_overhead.py)
and the peer all-smi (peers.py), each through that script's own measuring
function. Writes bench/results/DATE.md: when and where it ran (machine, kernel,
load average before and after, git commit), a summary table (what README.md
copies), the table of targets (what bench/README.md copies), each figure naming
the script and phase that produced it, and every phase's printed output. Prints
the same. --update-docs then rewrites the blocks between `<!-- report:begin -->`
and `<!-- report:end -->` in README.md, docs/performance.md and bench/README.md
with those tables;
tests/readme.rs checks that they stay copies of the report they name.
"""

import argparse
import contextlib
import datetime
import io
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402
import footprint  # noqa: E402
import node_cost  # noqa: E402
import peers  # noqa: E402
import poll_overhead  # noqa: E402
import scrape  # noqa: E402

BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"
RESULTS = os.path.join(b.BENCH, "results")
NVML = "ours (--nvml fake)"  # the scrape and footprint scripts' name for NVML mode
SIM = "ours (sim --world)"

# Seconds (or polls) per phase: a full run (~12 min plus all-smi's first build) and --quick.
FULL = dict(node=300, scrape=10, cold=5, footprint=60, polls=30, peers=30, peers_scrape=10)
QUICK = dict(node=45, scrape=3, cold=2, footprint=5, polls=8, peers=5, peers_scrape=2)


class Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, out):
        self.out = out
        self.copy = io.StringIO()

    def write(self, s):
        self.out.write(s)
        self.copy.write(s)
        return len(s)

    def flush(self):
        self.out.flush()


def phase(name, outputs, fn, *args, **kw):
    """Runs FN(*ARGS, **KW) (a script's measure, then its print_report on the result), keeping
    what it prints under NAME."""
    b.say(f"\n== {name}")
    tee = Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        m = fn(*args, **kw)
    outputs.append((name, tee.copy.getvalue().strip("\n")))
    return m


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def git_commit():
    def git(*a):
        return subprocess.run(["git", *a], cwd=b.ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # the report and the docs it updates are not what was measured
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not re.search(r"(bench/results/|README\.md$|docs/performance\.md$)", line)]
    return commit + (" with uncommitted changes" if changed else "")


def ms(us):
    return b.fmt_us(us)


def mib(x):
    return f"{b.mib(x)} MiB"


def met(ok):
    return "met" if ok else "**missed**"


def summary_table(r):
    """The README's table: the node as it runs (NVML mode) beside node_exporter; short, as the
    README must stay small."""
    nc, sc, po = r["node"], r["scrape"], r["poll"]
    ours, node = nc["res"][node_cost.OURS], nc["res"][node_cost.NODE]
    res, opn = sc["results"], sc["open"]
    enc = scrape.encode_per_series(sc, NVML)
    node_series = res[(scrape.NODE, 1, "plain")]["cpu_us_per_series"]
    p_open = opn.get((scrape.NODE, 1.0))
    rows = [
        ("figure", "mig-exporter", "node_exporter", "script"),
        ("CPU per node, scraped every 15 s", f"{ours['cpu_s_per_hour']:.1f} s/h", f"{node['cpu_s_per_hour']:.1f} s/h",
         "node_cost"),
        ("RSS per node, scraped every 15 s", mib(ours["rss_avg"]), mib(node["rss_avg"]), "node_cost"),
        ("CPU per series: our encode of a polled snapshot vs node_exporter's collect-and-encode", f"{enc:.2f} µs",
         f"{node_series:.1f} µs", "scrape"),
        ("scrape p99, 50 scrapers at 1/s each", ms(opn[(NVML, 1.0)]["p99_us"]),
         ms(p_open["p99_us"]) if p_open else "–", "scrape"),
        ("poll: NVML calls, time, ÷ library time", f"{po['calls']:.0f}, {po['poll_s'] * 1e3:.2f} ms, "
         f"{po['ratio']:.3f}×", "–", "poll_overhead"),
    ]
    return md_table(rows)


def targets_table(r):
    """bench/README.md's table: every target of issue 10, and the cost per node."""
    nc, sc, fp, po, pe = r["node"], r["scrape"], r["footprint"], r["poll"], r["peers"]
    res, opn = sc["results"], sc["open"]
    fi, fs = fp["idle"], fp["scraped"]
    node_series = res[(scrape.NODE, 1, "plain")]["cpu_us_per_series"]
    enc = {n: scrape.encode_per_series(sc, n) for n in (SIM, NVML)}
    p99 = {k: res[k]["p99_us"] for k in res}
    rows = [("target (issue 10)", "figure (sim / NVML mode)", "verdict", "produced by")]
    for body in ("gzip", "plain"):
        a, c = p99[(SIM, 50, body)], p99[(NVML, 50, body)]
        rows.append((f"scrape p99 at 50 concurrent scrapers ≤ 2 ms, closed loop, {body}",
                     f"{ms(a)} / {ms(c)}; node_exporter {ms(p99[(scrape.NODE, 50, body)])}",
                     met(max(a, c) <= 2000), "`scrape.py`, `wrk -c50`"))
    for period in sc["periods"]:
        a, c = opn[(SIM, period)]["p99_us"], opn[(NVML, period)]["p99_us"]
        rows.append((f"scrape p99 ≤ 2 ms, 50 scrapers, open loop at {sc['scrapers'] / period:.0f} scrapes/s",
                     f"{ms(a)} / {ms(c)}", met(max(a, c) <= 2000), "`scrape.py`, open loop"))
    worst = b.div(max(enc.values()), node_series)
    rows.append(("encode cost per series ≤ ½ node_exporter's",
                 f"our encode of a polled snapshot {enc[SIM]:.2f} / {enc[NVML]:.2f} µs per series vs "
                 f"node_exporter's collect-and-encode {node_series:.1f} µs CPU per series per scrape: "
                 f"{b.div(enc[SIM], node_series):.3f}× / {b.div(enc[NVML], node_series):.3f}× "
                 "(not like for like: ours never reads the GPU at a scrape)",
                 met(worst <= 0.5), "`scrape.py`, 100 ms poll / `wrk -c1`"))
    rows.append(("poll overhead ≤ 1.10× the library call time",
                 f"{po['ratio']:.3f}× measured, {po['projected']:.3f}× projected onto the probe's latencies "
                 f"({po['calls']:.0f} NVML calls, {po['poll_s'] * 1e3:.2f} ms per poll, mean of {po['polls']})",
                 met(po["ratio"] <= 1.10) + " measured, " + met(po["projected"] <= 1.10) + " projected",
                 "`poll_overhead.py`"))
    rss = [fi[SIM]["rss_max"], fs[SIM]["rss_max"], fi[NVML]["rss_max"], fs[NVML]["rss_max"]]
    rows.append(("RSS ≤ 15 MiB",
                 f"idle {b.mib(rss[0])} / {b.mib(rss[2])} MiB, scraped 1/s {b.mib(rss[1])} / {b.mib(rss[3])} MiB "
                 f"(max); node_exporter {b.mib(fs[scrape.NODE]['rss_max'])} MiB",
                 met(max(rss) <= footprint.RSS_TARGET), f"`footprint.py`, {fp['duration']} s phases"))
    cpu = [fi[SIM]["cpu_pct"], fs[SIM]["cpu_pct"], fi[NVML]["cpu_pct"], fs[NVML]["cpu_pct"]]
    rows.append(("CPU ≤ 0.5 % of a core at a 1 s poll",
                 f"idle {cpu[0]:.2f} / {cpu[2]:.2f} %, scraped 1/s {cpu[1]:.2f} / {cpu[3]:.2f} %; "
                 f"node_exporter {fs[scrape.NODE]['cpu_pct']:.2f} % scraped",
                 met(max(cpu) <= footprint.CPU_TARGET), f"`footprint.py`, {fp['duration']} s phases"))
    if pe["why"]:
        rows.append(("lower memory and CPU than every peer", f"all-smi not measured: {pe['why']}", "–",
                     "`peers.py`"))
    else:
        o, p = peers.OURS, pe["names"][1]
        figs, ok = [], True
        for ph, d in (("idle", pe["idle"]), ("scraped 1/s", pe["scraped"])):
            figs.append(f"{ph}: RSS {b.mib(d[o]['rss_max'])} vs {b.mib(d[p]['rss_max'])} MiB, "
                        f"CPU {d[o]['cpu_pct']:.2f} vs {d[p]['cpu_pct']:.2f} %")
            ok = ok and d[o]["rss_max"] < d[p]["rss_max"] and d[o]["cpu_pct"] < d[p]["cpu_pct"]
        rows.append(("lower memory and CPU than every peer", "NVML mode vs all-smi " + "; ".join(figs),
                     met(ok), f"`peers.py`, {pe['duration']} s phases"))
    ours, node = nc["res"][node_cost.OURS], nc["res"][node_cost.NODE]
    rows.append(("(no target) cost per node, scraped every 15 s",
                 f"NVML mode at its default 5 s poll: CPU {ours['cpu_s_per_hour']:.1f} s/hour, "
                 f"RSS {b.mib(ours['rss_avg'])} MiB; node_exporter with its defaults: "
                 f"{node['cpu_s_per_hour']:.1f} s/hour, {b.mib(node['rss_avg'])} MiB",
                 "–", f"`node_cost.py`, {nc['duration']} s"))
    return md_table(rows)


def md_table(rows):
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def render(r, outputs):
    started, ended = r["started"], r["ended"]
    run = (f"`bench/report.sh{' --quick' if r['quick'] else ''}`, {started:%Y-%m-%d} "
           f"{started:%H:%M}–{ended:%H:%M} UTC, commit {r['commit']}; {r['machine']}; load "
           f"{r['load_before']} → {r['load_after']} (1, 5, 15 min). Node: 8 H100 × seven `1g.10gb`, "
           "fake-nvml.")
    parts = [
        f"# Benchmark report, {started:%Y-%m-%d %H:%M} UTC",
        "",
        "Written by `bench/report.sh`; every figure below comes from this one run. How each script "
        "measures: [bench/README.md](../README.md).",
        "",
        "## Summary (copied into README.md)",
        "",
        run,
        "",
        summary_table(r),
        "",
        "## Targets (copied into bench/README.md)",
        "",
        run,
        "",
        targets_table(r),
        "",
        "## Output of each phase",
    ]
    for name, text in outputs:
        parts += ["", f"### {name}", "", "```text", text, "```"]
    return "\n".join(parts) + "\n", run


def update_doc(path, link, run, table):
    """Rewrites the block between BEGIN and END in PATH."""
    with open(path) as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{os.path.relpath(path, b.ROOT)}: needs exactly one {BEGIN} … {END} block")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    block = f"{BEGIN}\nFrom [{link}]({link}):\n{run}\n\n{table}\n{END}"
    with open(path, "w") as f:
        f.write(head + block + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run of about 3 minutes: short phases, noisy figures; all-smi not built")
    b.add_build_options(ap)
    ap.add_argument("--node-duration", type=int,
                    help=f"seconds of the cost-per-node phase ({FULL['node']}; --quick {QUICK['node']})")
    ap.add_argument("--out", help="the report file (bench/results/YYYY-MM-DD.md, by the run's UTC date)")
    ap.add_argument("--update-docs", action="store_true",
                    help="copy the tables into README.md, docs/performance.md and bench/README.md "
                         "(their report:begin/end blocks)")
    args = ap.parse_args()
    d = dict(QUICK if args.quick else FULL)
    if args.node_duration:
        d["node"] = args.node_duration

    b.prepare(args, sorted(set(scrape.DEBS + footprint.DEBS + poll_overhead.DEBS + peers.DEBS + node_cost.DEBS)))
    r = {"quick": args.quick, "machine": b.machine(), "commit": git_commit(), "load_before": loadavg()}
    r["started"] = datetime.datetime.now(datetime.timezone.utc)
    b.say(f"machine: {r['machine']}; commit {r['commit']}; load {r['load_before']}")
    outputs = []

    def run_and_print(mod, **kw):
        m = mod.measure(**kw)
        mod.print_report(m)
        return m

    r["node"] = phase(f"cost per node, scraped every 15 s (node_cost.py, {d['node']} s)", outputs,
                      run_and_print, node_cost, duration=d["node"])
    r["scrape"] = phase(f"scrape (scrape.py, {d['scrape']} s per figure)", outputs, run_and_print, scrape,
                        duration=d["scrape"], cold_duration=d["cold"])
    r["footprint"] = phase(f"footprint at a 1 s poll (footprint.py, {d['footprint']} s phases)", outputs,
                           run_and_print, footprint, duration=d["footprint"])
    r["poll"] = phase(f"poll overhead (poll_overhead.py, {d['polls']} polls)", outputs, run_and_print,
                      poll_overhead, polls=d["polls"])
    r["peers"] = phase(f"peer all-smi (peers.py, {d['peers']} s phases)", outputs, run_and_print, peers,
                       duration=d["peers"], scrape_duration=d["peers_scrape"], build_peer=not args.quick)
    r["peers"]["duration"] = d["peers"]
    r["ended"] = datetime.datetime.now(datetime.timezone.utc)
    r["load_after"] = loadavg()

    text, run = render(r, outputs)
    out = os.path.abspath(args.out or os.path.join(RESULTS, f"{r['started']:%Y-%m-%d}.md"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    b.say("\n" + text)
    b.say(f"written: {os.path.relpath(out, b.ROOT)}")
    if args.update_docs:
        rel = os.path.relpath(out, b.ROOT)
        update_doc(os.path.join(b.ROOT, "README.md"), rel, run, summary_table(r))
        update_doc(os.path.join(b.BENCH, "README.md"), os.path.relpath(out, b.BENCH), run, targets_table(r))
        docs = os.path.join(b.ROOT, "docs")
        update_doc(os.path.join(docs, "performance.md"), os.path.relpath(out, docs), run, summary_table(r))
        b.say("updated: README.md, bench/README.md, docs/performance.md")


if __name__ == "__main__":
    main()
