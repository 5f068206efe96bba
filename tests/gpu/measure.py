"""Where the run happens (container or sandbox hints) and what the exporter
costs there, next to one nvidia-smi query and dcgm-exporter where installed.
`container_hints` and `exporter_cost` are pure; the rest runs things."""

import os
import resource
import shutil
import subprocess
import time
import urllib.request


def container_hints(root="/", env=None):
    """Signs that this runs in a container or sandbox, e.g. ["/.dockerenv"]."""
    env = os.environ if env is None else env
    hints = []
    for marker in (".dockerenv", "run/.containerenv"):
        if os.path.exists(os.path.join(root, marker)):
            hints.append("/" + marker)
    if env.get("container"):
        hints.append(f"container={env['container']}")
    for name in ("proc/1/cgroup", "proc/self/cgroup"):
        try:
            with open(os.path.join(root, name)) as f:
                text = f.read()
        except OSError:
            continue
        words = [w for w in ("docker", "kubepods", "containerd", "libpod", "lxc", "crio") if w in text]
        if words:
            hints.append(f"/{name} mentions {', '.join(words)}")
    try:
        with open(os.path.join(root, "proc/self/status")) as f:
            nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
        if len(nspid) > 1:
            hints.append("in a nested PID namespace (NSpid " + " ".join(nspid) + ")")
    except OSError:
        pass
    if os.path.exists(os.path.join(root, "proc/sys/kernel/osrelease")):
        with open(os.path.join(root, "proc/sys/kernel/osrelease")) as f:
            if "gvisor" in f.read().lower():
                hints.append("gVisor kernel")
    return hints


def _total(scrape, name, **labels):
    return sum(v for _, v in scrape.find(name, **labels))


def exporter_cost(first, last, collections, durations):
    """The exporter's cost per GPU collection between two scrapes (compare.Scrape)."""
    if collections <= 0:
        return {"collections": 0}
    calls = {}
    for labels, value in last.find("system_info_exporter_nvml_calls_total"):
        before = first.value("system_info_exporter_nvml_calls_total", phase=labels.get("phase"))
        calls[labels.get("phase")] = (value - (before or 0.0)) / collections
    cpu = _total(last, "process_cpu_seconds_total") - _total(first, "process_cpu_seconds_total")
    return {
        "collections": collections,
        "collect_duration_seconds": sum(durations) / len(durations) if durations else None,
        "nvml_calls_per_collection": calls,
        "cpu_seconds_per_collection": cpu / collections,
        "rss_bytes": last.value("process_resident_memory_bytes"),
    }


def nvidia_smi_cost(command, runs=3):
    """Median wall time and CPU time (its own and its children's) of one query."""
    samples = []
    for _ in range(runs):
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        done = subprocess.run(command, capture_output=True, timeout=60)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        samples.append((wall, cpu, done.returncode))
    samples.sort()
    wall, cpu, rc = samples[len(samples) // 2]
    return {"command": " ".join(command), "wall_seconds": wall, "cpu_seconds": cpu, "returncode": rc}


def _proc_cpu_rss(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), None)
    return cpu, rss


def dcgm_exporter_cost(port, seconds, log_path):
    """dcgm-exporter on the same GPUs, collecting every second: its CPU per
    second and RSS, or {"skipped": why}."""
    binary = shutil.which("dcgm-exporter")
    if not binary:
        return {"skipped": "dcgm-exporter is not on PATH"}
    with open(log_path, "w") as log:
        process = subprocess.Popen([binary, "-a", f"127.0.0.1:{port}", "-c", "1000"], stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    return {"skipped": f"dcgm-exporter did not serve (exit {process.poll()}); see {log_path}"}
                time.sleep(0.5)
        cpu0, _ = _proc_cpu_rss(process.pid)
        time.sleep(seconds)
        cpu1, rss = _proc_cpu_rss(process.pid)
        return {"cpu_seconds_per_collection": (cpu1 - cpu0) / seconds, "rss_bytes": rss,
                "collections": seconds, "command": f"{binary} -c 1000"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
