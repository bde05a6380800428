"""Shared helpers for the scripts under bench/ (Python 3 standard library only).

Every process a script starts is registered here and ended by its pid when
the script exits (normally, on an exception, or on SIGINT/SIGTERM). Servers
listen on 127.0.0.1 only; the one peer that cannot be told where to listen
(all-smi binds 0.0.0.0) runs in a network namespace of its own that has
nothing but a loopback interface.
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
# Where cargo puts the release build: CARGO_TARGET_DIR when set (as .ci/run
# sets it), the project's target/ otherwise.
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
RELEASE = os.path.join(TARGET, "release")
EXPORTER = os.path.join(RELEASE, "mig-exporter")
MIG_SIM = os.path.join(RELEASE, "mig-sim")
FAKE_NVML = os.path.join(RELEASE, "libfake_nvml.so")
FAKE_DCGM = os.path.join(RELEASE, "libfake_dcgm.so")
TOOLS = os.path.join(TARGET, "bench-tools")
ALL_SMI_VERSION = "0.22.0"  # the newest all-smi whose rust-version this toolchain meets
ALL_SMI = os.path.join(TOOLS, "bin", "all-smi")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
WRK_LUA = os.path.join(BENCH, "wrk_report.lua")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# ---------------------------------------------------------------- cleanup

_procs = []  # (Popen, name)


def _cleanup():
    for proc, _name in reversed(_procs):
        if proc.poll() is None:
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for proc, _name in reversed(_procs):
        if proc.poll() is None:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    _procs.clear()


def _on_signal(signum, _frame):
    _cleanup()
    sys.exit(128 + signum)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def start(name, argv, env=None, log_dir=None, preexec=None):
    """Starts argv in the background, logging to LOG_DIR/NAME.log; ended at exit."""
    log = open(os.path.join(log_dir or tempfile.gettempdir(), f"{name}.log"), "wb")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, preexec_fn=preexec
    )
    log.close()
    _procs.append((proc, name))
    return proc


def stop(proc):
    """Ends one process started with start(), by its pid."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for i, (p, _n) in enumerate(_procs):
        if p is proc:
            del _procs[i]
            break


# ---------------------------------------------------------------- setup


def say(*args):
    print(*args, flush=True)


def run(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


_apt_updated = False


def _deb_installed(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    # dpkg's status is "WANT ERROR STATUS"; only "install ok installed" is a
    # usable package ("unknown ok not-installed" also ends in "installed").
    return out.returncode == 0 and out.stdout.split() == ["install", "ok", "installed"]


def ensure_debs(packages):
    """Installs those of the Debian PACKAGES that are not installed (apt-get update first, once)."""
    global _apt_updated
    missing = [pkg for pkg in packages if not _deb_installed(pkg)]
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
        _apt_updated = True
    # Where the package ships a service, the container may try to start it: harmless,
    # the scripts start their own instance on a port of their own.
    run(["apt-get", "install", "-y", "-qq", *missing], env=env, stdout=subprocess.DEVNULL)


def add_build_options(ap):
    """The options every script takes: --no-build and --exporter FILE."""
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--exporter", help="another mig-exporter binary to measure (e.g. an older build)")


def prepare(args, debs):
    """What every script does first: the exporter to measure, the Debian packages, the build."""
    global EXPORTER
    if args.exporter:
        EXPORTER = os.path.abspath(args.exporter)
    ensure_debs(debs)
    build(skip=args.no_build)


def build(skip=False):
    if skip and all(os.path.exists(p) for p in (EXPORTER, MIG_SIM, FAKE_NVML, FAKE_DCGM)):
        return
    packages = ["mig-exporter", "mig-sim", "fake-nvml", "fake-dcgm"]
    say(f"building release binaries (cargo build --release -p {' -p '.join(packages)})")
    run(["cargo", "build", "--release", "-q", *(a for p in packages for a in ("-p", p))], cwd=ROOT)


def machine():
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, Linux {os.uname().release}"


def workdir(prefix):
    d = tempfile.mkdtemp(prefix=f"mig-bench-{prefix}-", dir=TARGET)

    def remove():
        # The processes first: one still running may write into d again (fake-nvml's stats file).
        _cleanup()
        shutil.rmtree(d, True)

    atexit.register(remove)
    return d


def make_world(path, gpus, per_gpu, product="h100-80gb", latency_us=None):
    """A World of GPUS PRODUCTs, MIG on, each with PER_GPU 1g.10gb (profile 19) + default CI."""
    run([MIG_SIM, "init", "--gpus", str(gpus), "--product", product, "--mig", "1", "--force", path],
        stdout=subprocess.DEVNULL)
    if per_gpu:
        run([MIG_SIM, "--world", path, "mig", "-cgi", ",".join(["19"] * per_gpu), "-C"], stdout=subprocess.DEVNULL)
    if latency_us:
        with open(path) as f:
            world = json.load(f)
        world.setdefault("faults", {})["call_latency_us"] = latency_us
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(world, f)
        os.replace(tmp, path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- processes under test


class Target:
    """A server under test: its process, where to scrape it, how to reach its network."""

    def __init__(self, name, proc, url, netns_pid=None):
        self.name = name
        self.proc = proc
        self.url = url
        self.netns_pid = netns_pid  # run clients inside this pid's network namespace

    @property
    def pid(self):
        return self.proc.pid

    def client(self, argv):
        if self.netns_pid is None:
            return argv
        return ["nsenter", f"--net=/proc/{self.netns_pid}/ns/net", *argv]


def start_exporter(name, world, mode, log_dir, poll="5s", extra=(), env=None, preexec=None):
    """mode 'sim': --world FILE; mode 'nvml': --nvml on libfake_nvml.so over FILE, --no-dcgm.
    POLL None: the exporter's default --poll.interval."""
    port = free_port()
    argv = [EXPORTER, "--web.listen-address", f"127.0.0.1:{port}"]
    if poll is not None:
        argv += ["--poll.interval", poll]
    full_env = {}
    if mode == "sim":
        argv += ["--world", world]
    elif mode == "nvml":
        argv += ["--nvml", "--nvml.library", FAKE_NVML, "--no-dcgm"]
        full_env["MIG_WORLD"] = world
    else:
        raise ValueError(mode)
    argv += list(extra)
    full_env.update(env or {})
    proc = start(name, argv, env=full_env, log_dir=log_dir, preexec=preexec)
    t = Target(name, proc, f"http://127.0.0.1:{port}/metrics")
    wait_ready(t, f"http://127.0.0.1:{port}/readyz")
    return t


def start_node_exporter(log_dir, defaults=False):
    """node_exporter on a free loopback port; DEFAULTS: nothing but the address (the Debian
    package's settings otherwise left as shipped)."""
    port = free_port()
    argv = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"]
    if not defaults:
        # --web.max-requests=0: no cap on parallel scrapes (its default of 40 answers
        # the 41st to 50th concurrent scrape with 503 at once, which is not a scrape).
        argv += ["--web.max-requests=0", "--log.level=warn"]
    proc = start("node_exporter", argv, log_dir=log_dir)
    t = Target("node_exporter", proc, f"http://127.0.0.1:{port}/metrics")
    wait_ready(t, t.url)
    return t


def fake_driver_dir(d):
    """LD_LIBRARY_PATH dir: libnvidia-ml.so.1 -> libfake_nvml.so; PATH dir: an `nvidia-smi`
    that answers `-L` from the World (mig-sim -L) and fails anything else."""
    lib = os.path.join(d, "lib")
    bindir = os.path.join(d, "bin")
    os.makedirs(lib, exist_ok=True)
    os.makedirs(bindir, exist_ok=True)
    link = os.path.join(lib, "libnvidia-ml.so.1")
    if not os.path.lexists(link):
        os.symlink(FAKE_NVML, link)
    smi = os.path.join(bindir, "nvidia-smi")
    with open(smi, "w") as f:
        f.write(f"""#!/bin/sh
# bench shim: only `nvidia-smi -L`, from the World file in MIG_WORLD
if [ "$1" = "-L" ] && [ $# -eq 1 ]; then exec {MIG_SIM} -L; fi
echo "nvidia-smi shim (bench): only -L is served" >&2
exit 1
""")
    os.chmod(smi, 0o755)
    return lib, bindir


def start_all_smi(world, log_dir, interval_s=1, drv_dir=None, env=None):
    """all-smi api in a network namespace with only `lo` (it always binds 0.0.0.0)."""
    lib, bindir = fake_driver_dir(drv_dir or os.path.join(log_dir, "fake-driver"))
    port = free_port()
    env = {
        "MIG_WORLD": world,
        "LD_LIBRARY_PATH": lib,
        "PATH": bindir + ":" + os.environ.get("PATH", ""),
        "HOME": log_dir,  # its config file and caches, away from the real home
        "XDG_CONFIG_HOME": os.path.join(log_dir, "xdg"),
        **(env or {}),
    }
    script = f'ip link set lo up && exec "$0" api --port {port} --interval {interval_s}'
    proc = start("all-smi", ["unshare", "--net", "sh", "-c", script, ALL_SMI], env=env, log_dir=log_dir)
    # unshare execs sh which execs all-smi: the pid stays the same.
    t = Target("all-smi", proc, f"http://127.0.0.1:{port}/metrics", netns_pid=proc.pid)
    wait_ready(t, t.url, timeout=60)
    return t


def wait_polls(target, source, n, timeout=60):
    """Waits until SOURCE has completed N polls (activity from NVML GPM appears only from
    the second poll on: it needs two samples)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = metric_values(http_get(target), "mig_exporter_poll_duration_seconds_count", {"source": source})
        if c and c[0] >= n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{target.name}: fewer than {n} polls of {source} after {timeout}s")


def http_get(target, url=None, timeout=10, headers=()):
    """GET through curl (inside the target's network namespace when it has one), sending
    HEADERS ("Name: value"); the body as sent (still compressed if the server compressed it)."""
    header_args = [arg for h in headers for arg in ("-H", h)]
    argv = target.client(["curl", "-sS", "-f", "--max-time", str(timeout), *header_args, "-o", "-",
                          url or target.url])
    out = subprocess.run(argv, capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"GET {url or target.url}: {out.stderr.decode(errors='replace').strip()}")
    return out.stdout


def wait_ready(target, url, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {target.proc.returncode} before it was ready")
        try:
            http_get(target, url, timeout=2)
            return
        except RuntimeError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{target.name} not ready after {timeout}s: {last}")


# ---------------------------------------------------------------- measurements


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid):
    """{'VmRSS': bytes, 'VmHWM': bytes} of PID."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def count_series(body):
    return sum(1 for line in body.decode(errors="replace").splitlines() if line and not line.startswith("#"))


def metric_values(body, name, labels=None):
    """Values of the samples of NAME whose labels include LABELS (a dict)."""
    out = []
    for line in body.decode(errors="replace").splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        lbl = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if labels and any(lbl.get(k) != v for k, v in labels.items()):
            continue
        out.append(float(m.group(3)))
    return out


def wrk(target, connections, duration_s, threads=1, headers=()):
    """Runs wrk against the target, sending HEADERS ("Name: value") with each request; returns
    requests, duration, p50/p99/max latency (µs), errors."""
    header_args = [arg for h in headers for arg in ("-H", h)]
    argv = target.client(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s",
                          "--timeout", "10s", *header_args, "-s", WRK_LUA, target.url])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    m = re.search(r"^WRK (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in r if k.startswith("errors_"))
    if not r["requests"]:  # nothing answered in time (a short run, a slow server): no latency to report
        for k in ("p50_us", "p99_us", "max_us"):
            r[k] = float("nan")
    return r


def cold_and_warm(target, source, duration_s, period=0.02):
    """Median latency (µs) of the first scrape after each poll (which encodes the new
    snapshot) and of the others (served from the body cache), over DURATION_S, one
    keep-alive connection, a request every PERIOD seconds (loopback targets only)."""
    import http.client
    import statistics
    from urllib.parse import urlparse

    u = urlparse(target.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    cold, warm = [], []
    last = None
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        t0 = time.perf_counter()
        conn.request("GET", u.path)
        body = conn.getresponse().read()
        us = (time.perf_counter() - t0) * 1e6
        c = metric_values(body, "mig_exporter_poll_duration_seconds_count", {"source": source})
        count = c[0] if c else None
        if last is not None:
            (cold if count != last else warm).append(us)
        last = count
        time.sleep(period)
    conn.close()
    med = statistics.median
    return (med(cold) if cold else float("nan")), (med(warm) if warm else float("nan")), len(cold)


def scrape_under_load(target, connections, duration_s, series, headers=()):
    """wrk at CONNECTIONS for DURATION_S, with the target's CPU time around it."""
    cpu0 = cpu_seconds(target.pid)
    r = wrk(target, connections, duration_s, headers=headers)
    cpu1 = cpu_seconds(target.pid)
    r["cpu_s"] = cpu1 - cpu0
    r["cpu_per_1000"] = r["cpu_s"] / r["requests"] * 1000 if r["requests"] else float("nan")
    r["cpu_us_per_series"] = r["cpu_s"] / r["requests"] / series * 1e6 if r["requests"] and series else float("nan")
    return r


class Scraper(threading.Thread):
    """GETs each target's /metrics once every PERIOD seconds until stopped (the client's own
    CPU is not the target's)."""

    def __init__(self, targets, period=1.0, headers=()):
        super().__init__(daemon=True)
        self.targets = targets
        self.period = period
        self.headers = headers
        self.stop_event = threading.Event()
        self.count = {t.name: 0 for t in targets}
        self.failures = {t.name: 0 for t in targets}

    def run(self):
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            for t in self.targets:
                try:
                    http_get(t, headers=self.headers)
                    self.count[t.name] += 1
                except RuntimeError:
                    self.failures[t.name] += 1
            next_at += self.period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self):
        self.stop_event.set()
        self.join()


def footprint_phase(targets, duration_s, scraped, period=1.0, headers=()):
    """CPU% of one core and RSS (sampled each second) of every target over DURATION_S; when
    SCRAPED, each target is scraped every PERIOD seconds (the first scrape at the start)."""
    scraper = Scraper(targets, period, headers) if scraped else None
    cpu0 = {t.name: cpu_seconds(t.pid) for t in targets}
    rss = {t.name: [] for t in targets}
    t0 = time.monotonic()
    if scraper:
        scraper.start()
    while time.monotonic() - t0 < duration_s:
        for t in targets:
            rss[t.name].append(proc_status(t.pid)["VmRSS"])
        time.sleep(1.0)
    if scraper:
        scraper.stop()
    elapsed = time.monotonic() - t0
    out = {}
    for t in targets:
        st = proc_status(t.pid)
        cpu = cpu_seconds(t.pid) - cpu0[t.name]
        out[t.name] = {
            "cpu_s": cpu,
            "cpu_pct": cpu / elapsed * 100,
            "rss_avg": sum(rss[t.name]) / len(rss[t.name]),
            "rss_max": max(rss[t.name]),
            "rss_end": st["VmRSS"],
            "hwm": st["VmHWM"],
            "scrapes": scraper.count[t.name] if scraper else 0,
            "scrape_failures": scraper.failures[t.name] if scraper else 0,
            "elapsed": elapsed,
        }
    return out


# ---------------------------------------------------------------- printing


def table(headers, rows, align=None):
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    fmt = "  ".join(f"{{:{a}{w}}}" for a, w in zip(align, widths))
    lines = [fmt.format(*headers), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


def mib(b):
    return f"{b / MIB:.1f}"


def verdict(ok):
    return "met" if ok else "MISSED"


def div(a, b):
    """a ÷ b, NaN where b is 0 or NaN (a phase too short to have an answer)."""
    return a / b if b else float("nan")


def fmt_us(us):
    if us != us:  # NaN
        return "–"
    if us >= 10000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"
