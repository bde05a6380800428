"""Fleet: N simulated MIG nodes, scraped by a real Prometheus and by VictoriaMetrics.

Starts N exporters on loopback, each on its own World file (mig-sim) and
port, in simulator mode, with a desired mig-parted config, and a fake kubelet
per node (examples/fleet_kubelets.rs, one process serving every node's
pod-resources socket) that puts pods of a few namespaces on most MIG devices.
One Prometheus (Debian's) scrapes every exporter every 15 s through file
service discovery, with the target labels `node` and `cluster`
(docs/monitoring.md) and the shipped rules (alerts/mig-exporter.rules.yml);
VictoriaMetrics single-node (Debian trixie's, fetched with
scripts/fetch-trixie-binary.sh) scrapes the same targets. While they run,
the SM activity of random MIG devices changes every tick (`mig-sim load`);
a fifth of the devices stays idle, most of them held by a pod.

After the steady phase it prints: series per node and per GPU instance at
default flags and with every `--no-collector.*` switch (extra exporters on
a sample of the nodes), head series, resident memory and samples/s of both
engines, each fleet-dashboard query's latency on the recorded series vs on
the raw series (each recorded name replaced by its rule's expression, as
Prometheus' /api/v1/rules gives it), the rule groups' evaluation time, and
the exporters' CPU and RSS per node; then ends every process it started.
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

FLEET_KUBELETS = os.path.join(b.RELEASE, "examples", "fleet_kubelets")
VM_DIR = os.path.join(b.TARGET, "tools", "victoria-metrics")
VM = os.path.join(VM_DIR, "victoria-metrics")
FETCH = os.path.join(b.ROOT, "scripts", "fetch-trixie-binary.sh")
RULES = os.path.join(b.ROOT, "alerts", "mig-exporter.rules.yml")
DASHBOARD = os.path.join(b.ROOT, "dashboards", "mig-fleet.json")
PROMETHEUS = "/usr/bin/prometheus"

# Products: mig-sim's name, its PCI device id (`mig-sim products`), share of
# the nodes (unverified: an assumed mix), and its 1g / 2g / 3g GPU-instance
# profiles as NVIDIA's GPU operator names them in its default mig-parted
# config (ConfigMap default-mig-parted-config, NVIDIA/gpu-operator
# assets/state-mig-manager/0400_configmap.yaml).
PRODUCTS = [
    ("h100-80gb", "0x233010DE", 0.40, ("1g.10gb", "2g.20gb", "3g.40gb")),
    ("h200-141gb", "0x233510DE", 0.25, ("1g.18gb", "2g.35gb", "3g.71gb")),
    ("a100-80gb", "0x20B210DE", 0.20, ("1g.10gb", "2g.20gb", "3g.40gb")),
    ("b200-180gb", "0x290110DE", 0.15, ("1g.23gb", "2g.45gb", "3g.90gb")),
]
HOPPER = ("h100-80gb", "h200-141gb")
# Layouts by kind, from that config: `all-balanced` is 2 x 1g, 1 x 2g, 1 x 3g
# on each of these products (its per-device-filter entries), `all-1g.<mem>`
# 7 x 1g, `all-3g.<mem>` 2 x 3g. `mixed` is ours (unverified: a site's custom
# config in the style of mig-parted's `custom-config` example): GPUs 0-3
# balanced, 4-5 all-1g, 6-7 all-3g. Share of nodes per kind: unverified.
KINDS = [("balanced", 0.45), ("1g", 0.35), ("mixed", 0.20)]
MIXED = [(range(0, 4), "balanced"), (range(4, 6), "1g"), (range(6, 8), "3g")]
NAMESPACES = ["ml-training", "inference", "research", "notebooks", "batch-jobs", "data-science"]
CLUSTERS = ["sim-east", "sim-west"]
TRIM = ["--no-collector.ci-activity", "--no-collector.gi-activity", "--no-collector.gpu-activity",
        "--no-collector.gi-memory", "--no-collector.health", "--no-collector.gpu-telemetry",
        "--no-collector.profiles"]


def layout(kind, profiles):
    one, two, three = profiles
    return {"balanced": [three, two, one, one], "1g": [one] * 7, "3g": [three] * 2}[kind]


def config_name(kind, profiles):
    return {"balanced": "all-balanced", "1g": f"all-{profiles[0]}", "3g": f"all-{profiles[2]}",
            "mixed": "fleet-mixed"}[kind]


def gpu_kinds(kind, gpus):
    if kind != "mixed":
        return [kind] * gpus
    return [k for idx, k in MIXED for _ in idx][:gpus]


# ---------------------------------------------------------------- the fleet


class Node:
    def __init__(self, i, rng, wd):
        self.name = f"gpu-node-{i:04d}"
        self.cluster = CLUSTERS[i % len(CLUSTERS)]
        self.product, self.pci, _, self.profiles = rng.choices(PRODUCTS, [p[2] for p in PRODUCTS])[0]
        self.kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        # Mostly 8-GPU HGX boards; one node in ten a 4-GPU one (unverified mix).
        self.gpus = 4 if self.kind != "mixed" and rng.random() < 0.1 else 8
        self.config = config_name(self.kind, self.profiles)
        self.drift = None
        self.dir = os.path.join(wd, "nodes", self.name)
        self.mig_config = os.path.join(wd, "mig-parted.yaml")
        self.world = os.path.join(self.dir, "world.json")
        self.socket = os.path.join(self.dir, "kubelet.sock")
        self.devices = []  # (gpu, gi, ci, mig_uuid, idle)
        self.pods = []
        self.port = None
        self.target = None


def plan(n, seed, wd):
    rng = random.Random(seed)
    nodes = [Node(i, rng, wd) for i in range(n)]
    # A few percent drifted: a desired config the layout does not match, and
    # Hopper nodes rebooted (their MIG layout lost; docs/drift.md).
    each = max(1, round(n * 0.02))
    order = list(range(n))
    rng.shuffle(order)
    hopper = [i for i in order if nodes[i].product in HOPPER]
    for i in hopper[:each]:
        nodes[i].drift = "reboot"
    for i in [i for i in order if nodes[i].drift is None][:each]:
        nodes[i].drift = "mismatch"
        nodes[i].config = config_name("1g" if nodes[i].kind != "1g" else "balanced", nodes[i].profiles)
    return nodes, rng


def mig_parted_config(path):
    """Every config a node of the fleet names, with the GPU operator's layouts."""
    lines = ["version: v1", "mig-configs:"]

    def entry(pci, devices, kind, profiles):
        counts = {}
        for p in layout(kind, profiles):
            counts[p] = counts.get(p, 0) + 1
        lines.append(f'    - device-filter: ["{pci}"]')
        lines.append(f"      devices: {devices}")
        lines.append("      mig-enabled: true")
        lines.append("      mig-devices: {" + ", ".join(f'"{p}": {c}' for p, c in counts.items()) + "}")

    names = {}
    for product, pci, _, profiles in PRODUCTS:
        for kind in ("balanced", "1g", "3g"):
            names.setdefault(config_name(kind, profiles), []).append((pci, "all", kind, profiles))
        for idx, kind in MIXED:
            names.setdefault("fleet-mixed", []).append((pci, list(idx), kind, profiles))
    for name, entries in names.items():
        lines.append(f"  {name}:")
        for e in entries:
            entry(*e)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def sim(*args):
    b.run([b.MIG_SIM, *args], stdout=subprocess.DEVNULL)


def make_world(node, rng):
    """The node's World, laid out and loaded; its pods."""
    os.makedirs(node.dir, exist_ok=True)
    sim("init", "--gpus", str(node.gpus), "--product", node.product, "--hostname", node.name, "--mig", "1",
        "--force", node.world)
    groups = {}
    for gpu, kind in enumerate(gpu_kinds(node.kind, node.gpus)):
        groups.setdefault(kind, []).append(str(gpu))
    for kind, gpus in groups.items():
        sim("--world", node.world, "-i", ",".join(gpus), "mig", "-cgi", ",".join(layout(kind, node.profiles)), "-C")
    with open(node.world) as f:
        world = json.load(f)
    # Activity: a fifth of the devices idle (under 1% SMs active), the others
    # busy at a random level; each GPU instance holds some framebuffer
    # (under 5 GiB, below the smallest profile's). unverified: the shares.
    for gpu in world["gpus"]:
        for gi in gpu["gpu_instances"]:
            gi["load"] = {"dram_active": round(rng.uniform(0, 0.6), 3), "memory_used_mib": rng.randrange(512, 5000)}
            for ci in gi["compute_instances"]:
                idle = rng.random() < 0.2
                sm = rng.uniform(0, 0.004) if idle else rng.uniform(0.15, 0.95)
                ci["load"] = {"sm_active": round(sm, 4), "sm_occupancy": round(sm * 0.6, 4),
                              "tensor_active": round(sm * rng.uniform(0, 0.7), 4)}
                node.devices.append((gpu["index"], gi["id"], ci["id"], ci["uuid"], idle))
    tmp = node.world + ".tmp"
    with open(tmp, "w") as f:
        json.dump(world, f, indent=1)
    os.replace(tmp, node.world)
    # Pods on most devices (85%), in a handful of namespaces.
    for k, (_g, _gi, _ci, uuid, _idle) in enumerate(node.devices):
        if rng.random() < 0.85:
            ns = rng.choice(NAMESPACES)
            node.pods.append({"namespace": ns, "name": f"{ns}-{node.name[-4:]}-{k}", "mig_uuid": uuid})


# ---------------------------------------------------------------- processes


def http(url, data=None, timeout=30):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=timeout) as r:
        return r.read()


def wait_until(what, check, timeout, period=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        time.sleep(period)
    raise RuntimeError(f"{what}: not reached after {timeout}s")


_next_port = [0]
LOGS = [None]  # where every process logs (set in main)


def listen_port():
    """A free port below the kernel's ephemeral range: with hundreds of servers and their
    clients on loopback, a port picked from that range (benchlib.free_port) can be taken
    by a client connection before the server binds it."""
    import socket

    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    if not _next_port[0]:
        _next_port[0] = max(1024, low - 12000)
    while _next_port[0] < low:
        port = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    return b.free_port()


def start_exporter(node, logs, extra=(), name=None, poll="5s"):
    port = listen_port()
    argv = [b.EXPORTER, "--web.listen-address", f"127.0.0.1:{port}", "--poll.interval", poll,
            "--world", node.world, "--kubelet.pod-resources-socket", node.socket,
            "--mig.config", node.mig_config,
            "--mig.config-name", node.config, "--log.level", "warn", *extra]
    proc = b.start(name or f"exporter-{node.name}", argv, log_dir=logs)
    return b.Target(name or node.name, proc, f"http://127.0.0.1:{port}/metrics")


def polls(target):
    v = b.metric_values(http(target.url, timeout=5), "mig_exporter_poll_duration_seconds_count", {"source": "sim"})
    return v[0] if v else 0


def wait_polled(targets, n, timeout):
    pending = list(targets)

    def check():
        pending[:] = [t for t in pending if _polls_or_zero(t) < n]
        return not pending

    wait_until(f"{len(pending)} exporters polled {n} times", check, timeout, period=0.5)


def _polls_or_zero(t):
    alive(t.proc, LOGS[0])
    try:
        return polls(t)
    except (OSError, urllib.error.URLError):
        return 0


def scrape_config(targets_file, rules):
    cfg = ["global:", "  scrape_interval: 15s", "  scrape_timeout: 10s"]
    if rules:  # Prometheus only: VictoriaMetrics single-node evaluates no rules (and refuses these fields)
        cfg += ["  evaluation_interval: 15s", "rule_files:", f"  - {RULES}"]
    cfg += ["scrape_configs:", "  - job_name: mig-exporter", "    honor_labels: true",
            "    file_sd_configs:", f"      - files: [{targets_file}]"]
    return "\n".join(cfg) + "\n"


def start_engines(wd, logs, nodes):
    targets_file = os.path.join(wd, "targets.json")
    with open(targets_file, "w") as f:
        json.dump([{"targets": [n.target.url.split("/")[2]], "labels": {"node": n.name, "cluster": n.cluster}}
                   for n in nodes], f)
    for name, rules in (("prometheus.yml", True), ("vm.yml", False)):
        with open(os.path.join(wd, name), "w") as f:
            f.write(scrape_config(targets_file, rules))
    pport, vport = listen_port(), listen_port()
    prom = b.start("prometheus", [PROMETHEUS, f"--config.file={wd}/prometheus.yml",
                                  f"--storage.tsdb.path={wd}/prometheus-data",
                                  f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"], log_dir=logs)
    vm = b.start("victoria-metrics", [VM, f"-storageDataPath={wd}/vm-data", f"-httpListenAddr=127.0.0.1:{vport}",
                                      f"-promscrape.config={wd}/vm.yml", "-retentionPeriod=1d",
                                      "-search.disableCache", "-loggerLevel=WARN"], log_dir=logs)
    prom_url, vm_url = f"http://127.0.0.1:{pport}", f"http://127.0.0.1:{vport}"
    wait_until("Prometheus ready", lambda: alive(prom, logs) and http(prom_url + "/-/ready", timeout=2), 60)
    wait_until("VictoriaMetrics ready", lambda: alive(vm, logs) and http(vm_url + "/health", timeout=2), 60)
    return (prom, prom_url), (vm, vm_url)


def alive(proc, logs):
    """True while PROC runs; ends the script with its log when it has exited."""
    if proc.poll() is None:
        return True
    name = next(n for p, n in b._procs if p is proc)
    with open(os.path.join(logs, f"{name}.log"), errors="replace") as f:
        raise SystemExit(f"{name} exited with {proc.returncode}:\n{f.read()[-3000:]}")


def query(url, expr, kind="query", **params):
    out = json.loads(http(f"{url}/api/v1/{kind}", {"query": expr, **params}, timeout=300))
    if out.get("status") != "success":
        raise RuntimeError(f"{url}: {expr}: {out}")
    return out["data"]["result"]


def scalar(url, expr):
    r = query(url, expr)
    return float(r[0]["value"][1]) if r else 0.0


def counter(url, name, labels=None):
    return sum(b.metric_values(http(url + "/metrics"), name, labels))


def version(url, family):
    """The `version` label of FAMILY in URL's own /metrics."""
    import re

    m = re.search(family + r'\{[^}]*version="([^"]+)"', http(url + "/metrics").decode(errors="replace"))
    return m.group(1) if m else "unknown"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------- queries


def panel_queries():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    expr = t["expr"].replace("$node", ".*").replace("$profile", ".*")
                    out.append((f"{p.get('title')} [{t.get('refId', '')}]", expr))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return out


def recording_rules(prom_url):
    rules = {}
    for g in json.loads(http(prom_url + "/api/v1/rules"))["data"]["groups"]:
        for r in g["rules"]:
            if r["type"] == "recording":
                rules[r["name"]] = r["query"]
    return rules


def rawify(expr, rules, step):
    """EXPR with each recorded series replaced by its rule's expression, until none is left;
    a range selector on one becomes a subquery at STEP. Matchers must be `=~".*"` (no-ops)."""
    import re

    names = "|".join(re.escape(n) for n in sorted(rules, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w:])(" + names + r")(?![\w:])(\{[^}]*\})?(\[[^\]]*\])?")

    def sub(m):
        name, sel, rng = m.groups()
        for part in (sel or "{}")[1:-1].split(","):
            if part.strip() and not re.fullmatch(r'\s*\w+\s*=~\s*"\.\*"\s*', part):
                raise ValueError(f"{name}{sel}: only =~\".*\" matchers can be dropped")
        body = f"({rules[name].strip()})"
        return f"{body}{rng[:-1]}:{step}]" if rng else body

    for _ in range(10):
        new = pattern.sub(sub, expr)
        if new == expr:
            return expr
        expr = new
    raise ValueError(f"recording rules nest too deep: {expr}")


def time_query(url, expr, runs, start, end, step):
    times, result = [], None
    for i in range(runs + 1):  # the first run warms the page cache and is not counted
        t0 = time.perf_counter()
        result = query(url, expr, "query_range", start=start, end=end, step=step)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), len(result)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nodes", type=int, help="number of simulated nodes (exporters)")
    ap.add_argument("--duration", type=int, default=300, help="seconds of steady state, measured (300)")
    ap.add_argument("--warmup", type=int, default=60, help="seconds after every target is up, before it (60)")
    ap.add_argument("--tick", type=float, default=15, help="seconds between activity changes (15)")
    ap.add_argument("--query-runs", type=int, default=5, help="timed runs of each query, median (5)")
    ap.add_argument("--trim-sample", type=int, default=8, help="nodes measured again with every switch (8)")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if args.nodes < 1:
        ap.error("N must be at least 1")

    if not args.no_build or not all(os.path.exists(p) for p in (b.EXPORTER, b.MIG_SIM, FLEET_KUBELETS)):
        b.say("building release binaries (cargo build --release -p mig-exporter -p mig-sim "
              "--bins --example fleet_kubelets)")
        b.run(["cargo", "build", "--release", "-q", "-p", "mig-exporter", "-p", "mig-sim", "--bins",
               "--example", "fleet_kubelets"], cwd=b.ROOT)
    b.run([FETCH, "victoria-metrics", "victoria-metrics", VM_DIR])
    if not os.path.exists(PROMETHEUS):
        b.ensure_debs(["prometheus"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # N exporters' connections, inherited

    t_start = time.time()
    wd = b.workdir("fleet")
    logs = os.path.join(wd, "logs")
    LOGS[0] = logs
    os.makedirs(logs)
    b.say(f"machine: {b.machine()}; load average {loadavg()}")
    b.say(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: {args.nodes} nodes, seed {args.seed}")

    nodes, rng = plan(args.nodes, args.seed, wd)
    mig_parted_config(os.path.join(wd, "mig-parted.yaml"))
    for node in nodes:
        make_world(node, rng)
    with open(os.path.join(wd, "kubelets.json"), "w") as f:
        json.dump([{"dir": n.dir, "world": n.world, "pods": n.pods} for n in nodes], f)
    kubelets = b.start("fleet_kubelets", [FLEET_KUBELETS, os.path.join(wd, "kubelets.json")], log_dir=logs)
    klog = os.path.join(logs, "fleet_kubelets.log")
    wait_until("fake kubelets ready", lambda: "ready" in open(klog).read() or kubelets.poll() is not None, 120, 0.2)
    if kubelets.poll() is not None:
        raise SystemExit(f"fleet_kubelets exited with {kubelets.returncode}:\n{open(klog).read()}")
    b.say(f"worlds and kubelets ready after {time.time() - t_start:.0f}s; starting {len(nodes)} exporters")

    for node in nodes:
        node.target = start_exporter(node, logs)
    wait_polled([n.target for n in nodes], 2, 60 + len(nodes) * 0.5)
    rebooted = [n for n in nodes if n.drift == "reboot"]
    for node in rebooted:  # after the exporter has seen the layout: it is the last known good one
        sim("--world", node.world, "reboot")
    (prom, prom_url), (vm, vm_url) = start_engines(wd, logs, nodes)
    n = len(nodes)
    wait_until("every target up in Prometheus",
               lambda: scalar(prom_url, 'count(up{job="mig-exporter"} == 1)') == n, 120, 2)
    wait_until("every target up in VictoriaMetrics",
               lambda: scalar(vm_url, 'count(up{job="mig-exporter"} == 1)') == n, 120, 2)
    try:
        with open(VM + ".deb-version") as f:
            vm_version = f.read().strip() + " (Debian)"
    except OSError:
        vm_version = version(vm_url, "vm_app_version")
    b.say(f"Prometheus {version(prom_url, 'prometheus_build_info')}, VictoriaMetrics {vm_version}")
    b.say(f"all {n} targets up in both engines after {time.time() - t_start:.0f}s; "
          f"warm-up {args.warmup}s; load average {loadavg()}")
    time.sleep(args.warmup)

    # ---- steady phase
    exporters = [nd.target for nd in nodes]
    others = {"Prometheus": prom, "VictoriaMetrics": vm, "fake kubelets": kubelets}
    cpu0 = {t.name: b.cpu_seconds(t.pid) for t in exporters}
    cpu0.update({k: b.cpu_seconds(p.pid) for k, p in others.items()})
    missed0 = counter(prom_url, "prometheus_rule_group_iterations_missed_total")
    samples0 = (counter(prom_url, "prometheus_tsdb_head_samples_appended_total"),
                counter(vm_url, "vm_rows_inserted_total", {"type": "promscrape"}))
    busy = [(nd, d) for nd in nodes if nd.drift != "reboot" for d in nd.devices if not d[4]]
    t0 = time.monotonic()
    steady_start = time.time()
    loads, evals, rss = [loadavg()], {}, {k: [] for k in others}
    exp_rss = []
    changes = 0
    while time.monotonic() - t0 < args.duration:
        tick_end = time.monotonic() + args.tick
        for nd, (gpu, gi, ci, _uuid, _idle) in rng.sample(busy, min(len(busy), max(2, n // 5))):
            sm = rng.uniform(0.05, 0.98)
            sim("--world", nd.world, "load", "--gpu", str(gpu), "--gi", str(gi), "--ci", str(ci),
                "--sm-active", f"{sm:.3f}", "--sm-occupancy", f"{sm * 0.6:.3f}",
                "--tensor-active", f"{sm * rng.uniform(0, 0.7):.3f}")
            changes += 1
        for g in json.loads(http(prom_url + "/api/v1/rules"))["data"]["groups"]:
            evals.setdefault(g["name"], []).append(g.get("evaluationTime", 0.0))
        for k, p in others.items():
            rss[k].append(b.proc_status(p.pid)["VmRSS"])
        exp_rss.append(sum(b.proc_status(t.pid)["VmRSS"] for t in exporters) / n)
        loads.append(loadavg())
        time.sleep(max(0.0, tick_end - time.monotonic()))
    elapsed = time.monotonic() - t0
    steady_end = time.time()
    samples1 = (counter(prom_url, "prometheus_tsdb_head_samples_appended_total"),
                counter(vm_url, "vm_rows_inserted_total", {"type": "promscrape"}))
    missed = counter(prom_url, "prometheus_rule_group_iterations_missed_total") - missed0
    scrape_fail = scalar(prom_url, 'count(min_over_time(up{job="mig-exporter"}[5m]) == 0)')
    cpu = {t.name: b.cpu_seconds(t.pid) - cpu0[t.name] for t in exporters}
    cpu.update({k: b.cpu_seconds(p.pid) - cpu0[k] for k, p in others.items()})
    exp_rss_end = [b.proc_status(t.pid)["VmRSS"] for t in exporters]
    b.say(f"steady phase: {elapsed:.0f}s, {changes} activity changes; load average {' | '.join(loads[::4])}")

    # ---- series per node, default and trimmed
    series = {nd.name: b.count_series(http(nd.target.url)) for nd in nodes}
    gis = {nd.name: 0 if nd.drift == "reboot" else len({(g, gi) for g, gi, *_ in nd.devices}) for nd in nodes}
    sample, seen = [], set()
    # The 8 x H100 x seven 1g.10gb node of docs/series-budget.md first, then one of each other kind;
    # nodes without drift first (a node with a mismatched config keeps its layout, a rebooted one has none).
    for nd in sorted(nodes, key=lambda nd: (nd.drift is not None,
                                            (nd.product, nd.kind, nd.gpus) != ("h100-80gb", "1g", 8))):
        key = (nd.product, nd.kind, nd.gpus)
        if nd.drift != "reboot" and key not in seen and len(sample) < args.trim_sample:
            seen.add(key)
            sample.append(nd)
    trimmed = {nd.name: start_exporter(nd, logs, TRIM, name=f"trim-{nd.name}", poll="1s") for nd in sample}
    wait_polled(list(trimmed.values()), 2, 60)
    trim_series = {k: b.count_series(http(t.url)) for k, t in trimmed.items()}
    for t in trimmed.values():
        b.stop(t.proc)

    # ---- engines
    prom_head = counter(prom_url, "prometheus_tsdb_head_series")
    vm_series = scalar(vm_url, 'count({__name__=~".+"})')
    prom_scraped = scalar(prom_url, 'sum(scrape_samples_scraped{job="mig-exporter"})')
    recorded = scalar(prom_url, 'count({__name__=~".+:.+"})')  # recording rules' names have colons

    # ---- print
    b.say()
    b.say(f"== fleet of {n} nodes: {sum(nd.gpus for nd in nodes)} GPUs, {sum(gis.values())} GPU instances, "
          f"{sum(len(nd.devices) for nd in nodes if nd.drift != 'reboot')} MIG devices, "
          f"{sum(len(nd.pods) for nd in nodes)} pods; drifted: "
          f"{sum(nd.drift == 'mismatch' for nd in nodes)} config mismatch, {len(rebooted)} rebooted (Hopper)")
    kinds = {}
    for nd in nodes:
        kinds[(nd.product, nd.kind)] = kinds.get((nd.product, nd.kind), 0) + 1
    b.say("mix: " + ", ".join(f"{p} {k} {c}" for (p, k), c in sorted(kinds.items())))
    b.say()
    healthy = [nd for nd in nodes if nd.drift != "reboot"]
    tot_s, tot_gi = sum(series[nd.name] for nd in healthy), sum(gis[nd.name] for nd in healthy)
    b.say(f"series per node (default flags): mean {statistics.mean(series.values()):.0f}, "
          f"min {min(series.values())}, max {max(series.values())}; "
          f"per GPU instance {tot_s / max(1, tot_gi):.2f} over the {len(healthy)} nodes with their layout")
    rows = []
    for nd in sample:
        s, t = series[nd.name], trim_series[nd.name]
        rows.append([f"{nd.gpus} x {nd.product} {nd.kind}", gis[nd.name], len(nd.pods), s, t,
                     f"{s / gis[nd.name]:.2f}", f"{t / gis[nd.name]:.2f}", f"{t / s:.2f}"])
    b.say(b.table(["node", "GIs", "pods", "series", "trimmed", "per GI", "per GI trimmed", "trimmed ÷"], rows))
    b.say("trimmed: " + " ".join(TRIM))
    b.say()
    prom_rss, vm_rss = rss["Prometheus"], rss["VictoriaMetrics"]
    b.say(b.table(["engine", "series", "RSS MiB mean", "RSS MiB max", "samples/s", "CPU % of a core"], [
        ["Prometheus", f"{prom_head:.0f} (head)", b.mib(statistics.mean(prom_rss)), b.mib(max(prom_rss)),
         f"{(samples1[0] - samples0[0]) / elapsed:.0f}", f"{cpu['Prometheus'] / elapsed * 100:.1f}"],
        ["VictoriaMetrics", f"{vm_series:.0f} (count)", b.mib(statistics.mean(vm_rss)), b.mib(max(vm_rss)),
         f"{(samples1[1] - samples0[1]) / elapsed:.0f}", f"{cpu['VictoriaMetrics'] / elapsed * 100:.1f}"],
    ]))
    b.say(f"samples per scrape round (sum of scrape_samples_scraped): {prom_scraped:.0f}, "
          f"i.e. {prom_scraped / 15:.0f} samples/s at a 15 s scrape; Prometheus' appends include the recorded series")
    b.say(f"recorded series: {recorded:.0f}, {recorded / n:.1f} per node")
    b.say()
    b.say("rule groups, evaluation time (/api/v1/rules evaluationTime, one sample per tick): "
          + "; ".join(f"{g} median {statistics.median(v) * 1000:.1f} ms max {max(v) * 1000:.1f} ms"
                      for g, v in evals.items()))
    b.say(f"rule group iterations missed in the steady phase (evaluation longer than the 15 s interval): "
          f"{missed:.0f}; targets with a failed scrape in its last 5 min: {scrape_fail:.0f}")
    b.say()
    exp_cpu = sum(cpu[t.name] for t in exporters)
    b.say(f"exporters: CPU {exp_cpu / elapsed / n * 100:.3f} % of a core per node "
          f"({exp_cpu / elapsed * 100:.1f} % for all {n}); RSS per node mean {b.mib(statistics.mean(exp_rss))} MiB "
          f"over the phase, {b.mib(max(exp_rss_end))} MiB largest at its end (5 s poll, 15 s scrape by both engines)")
    b.say(f"fake kubelets (one process, {n} sockets): CPU {cpu['fake kubelets'] / elapsed * 100:.1f} % of a core, "
          f"RSS {b.mib(max(rss['fake kubelets']))} MiB")
    b.say(f"load average: {loadavg()} before the queries")
    b.say()

    # ---- queries, recorded vs raw (after the figures above are out: at large N they take minutes)
    rules = recording_rules(prom_url)
    step = 15
    end = steady_end
    start = max(steady_start, end - 300)
    qrows = []
    for title, expr in panel_queries():
        raw = rawify(expr, rules, f"{step}s")
        rec_s, rec_n = time_query(prom_url, expr, args.query_runs, start, end, step)
        raw_s, raw_n = time_query(prom_url, raw, args.query_runs, start, end, step)
        vm_s, vm_n = time_query(vm_url, raw, args.query_runs, start, end, step)
        qrows.append((title, rec_s, raw_s, vm_s, rec_n, raw_n, vm_n))

    qrows_fmt = [[t[:60], f"{r * 1000:.1f}", f"{w * 1000:.1f}", f"{w / r:.1f}x", f"{v * 1000:.1f}", f"{rn}/{wn}/{vn}"]
                 for t, r, w, v, rn, wn, vn in qrows]
    b.say(f"fleet dashboard queries: query_range over the last {end - start:.0f}s at a {step}s step, "
          f"median of {args.query_runs} runs (ms)")
    b.say(b.table(["panel [ref]", "recorded", "raw", "raw ÷ recorded", "raw on VM", "series rec/raw/VM"],
                  qrows_fmt, ["<", ">", ">", ">", ">", ">"]))
    rec_sum, raw_sum = sum(r[1] for r in qrows), sum(r[2] for r in qrows)
    b.say(f"all {len(qrows)} queries: recorded {rec_sum * 1000:.0f} ms, raw {raw_sum * 1000:.0f} ms "
          f"({raw_sum / rec_sum:.1f}x); median ratio {statistics.median(r[2] / r[1] for r in qrows):.1f}x")
    b.say()
    b.say(f"load average: {loadavg()} at the end; total {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
