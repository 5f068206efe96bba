#!/usr/bin/env python3
"""make test-gpu: the exporter on a real NVIDIA driver, checked against the
driver's own answers.

It starts the release binary (--collect.interval=1s, --collector.processes,
a free loopback port), compares every GPU reading it serves with
`nvidia-smi -q -x`, `nvidia-smi --query-gpu=...` and, where pynvml is
installed, NVML itself (compare.py), runs a short GPU load and checks that the
exporter saw it (load.py), measures the exporter's cost next to nvidia-smi and
dcgm-exporter (measure.py), records a profile for the NVML test double with
`record-nvml`, and writes report.txt and report.json into $OUT, else
target/gpu-run. Exit status 1 on any mismatch.

Without a GPU (no nvidia-smi, or it fails or lists none) it prints one line
saying why it skipped and exits 0.
"""

import argparse
import datetime
import json
import os
import platform
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import load  # noqa: E402
import measure  # noqa: E402
import nvml_query  # noqa: E402
import smi  # noqa: E402
from compare import MiB, MOVING, Reading, Row  # noqa: E402

HOPPER_OR_LATER = {"hopper", "blackwell", "rubin"}
HOPPER_NAMES = re.compile(r"\b(H100|H200|H800|H20|GH200|B100|B200|B300|GB200|GB300)\b")


def skip_reason():
    """Why this machine cannot run the acceptance run, or None."""
    if not shutil.which("nvidia-smi"):
        return "no nvidia-smi on PATH"
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi -L failed: {error}"
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().splitlines()
        return f"nvidia-smi -L failed (exit {done.returncode}): {said[0] if said else 'no output'}"
    if not any(line.startswith("GPU ") for line in done.stdout.splitlines()):
        return "nvidia-smi lists no GPU"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(*parts):
    print(*parts, flush=True)


class Run:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.failed_queries = []
        self.port = free_port()
        self.exporter = None
        self.nvml = None
        self.nvml_note = nvml_query.NO_PYNVML
        self.fields = []

    # ---- the exporter ----------------------------------------------------

    def start_exporter(self):
        command = [self.args.binary, f"--web.listen-address=127.0.0.1:{self.port}", "--collect.interval=1s",
                   "--collector.processes"]
        self.log = open(os.path.join(self.out, "exporter.log"), "w")
        self.exporter = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.exporter.poll() is not None:
                raise SystemExit(f"the exporter exited with {self.exporter.returncode}; see exporter.log")
            try:
                if self.last_collection(self.scrape()) is not None:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise SystemExit("the exporter did not complete a GPU collection within 30 s; see exporter.log")

    def stop_exporter(self):
        if self.exporter and self.exporter.poll() is None:
            self.exporter.terminate()
            try:
                self.exporter.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.exporter.kill()

    def scrape(self):
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return compare.Scrape(reply.read().decode())

    @staticmethod
    def last_collection(scrape):
        """(start, end) Unix time of the exporter's last GPU collection."""
        end = scrape.value("system_info_exporter_last_collect_timestamp_seconds", collector="gpu")
        took = scrape.value("system_info_exporter_collect_duration_seconds", collector="gpu") or 0.0
        return None if end is None else (end - took, end)

    def scrape_after(self, moment):
        """A scrape whose GPU collection started after `moment` (Unix time)."""
        deadline = time.monotonic() + 15
        while True:
            scrape = self.scrape()
            last = self.last_collection(scrape)
            if (last and last[0] > moment) or time.monotonic() > deadline:
                return scrape
            time.sleep(0.2)

    # ---- the driver ------------------------------------------------------

    def smi(self, *args, timeout=60):
        command = ["nvidia-smi", *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            self.failed_queries.append(f"{' '.join(command)}: {error}")
            return None
        if done.returncode != 0:
            said = (done.stdout + done.stderr).strip().splitlines()
            self.failed_queries.append(f"{' '.join(command)}: exit {done.returncode}: {said[0] if said else ''}")
            return None
        return done.stdout

    def prepare_driver(self):
        help_text = self.smi("--help-query-gpu") or ""
        self.fields = smi.supported_fields(help_text)
        try:
            self.nvml = nvml_query.load()
        except Exception as error:  # pynvml's NVMLError, or a broken install
            self.nvml_note = f"pynvml cannot initialise NVML: {error}"
            self.failed_queries.append(f"nvmlInit: {error}")
        if self.nvml is None:
            say(f"NVML rows: not checked ({self.nvml_note})")

    def query_csv(self):
        if not self.fields:
            return None
        return self.smi(f"--query-gpu={','.join(self.fields)}", "--format=csv,noheader,nounits")

    def ask_driver(self):
        """(globals, {uuid: readings}) from every source, CSV first."""
        sources, overrides = [], {}
        csv_text = self.query_csv()
        if csv_text is not None:
            try:
                glob, gpus = smi.parse_csv(self.fields, csv_text)
                sources.append((glob, smi.by_uuid(gpus)))
            except ValueError as error:
                self.failed_queries.append(f"nvidia-smi --query-gpu output: {error}")
        xml_text = self.smi("-q", "-x")
        if xml_text is not None:
            glob, gpus = smi.parse_xml(xml_text)
            sources.append((glob, smi.by_uuid(gpus)))
        if self.nvml is not None:
            glob, gpus, overrides, failures = nvml_query.answers(self.nvml)
            self.failed_queries.extend(f for f in failures if f not in self.failed_queries)
            sources.append((glob, gpus))
        driver = compare.merge(*sources)
        if self.nvml is None:
            compare.fill(driver, *nvml_query.without_pynvml(self.nvml_note))
        return compare.override(driver, overrides)

    # ---- the phases ------------------------------------------------------

    def comparison(self):
        attempts = []
        for _ in range(3):
            before = self.scrape()
            driver = self.ask_driver()
            after = self.scrape_after(time.time())
            attempts.append(compare.compare(before, after, driver))
            if not attempts[-1].mismatches:
                break
        self.driver = driver
        return compare.best(attempts)

    def gpu0(self):
        gpus = self.scrape().gpus()
        uuid = next((u for u, index in gpus.items() if index == "0"), None)
        readings = self.driver[1].get(uuid, {})
        arch = str(readings.get("architecture", smi.Answer("")).value or "").lower()
        name = str(readings.get("name", smi.Answer("")).value or "")
        return uuid, arch in HOPPER_OR_LATER or bool(HOPPER_NAMES.search(name))

    @staticmethod
    def sample(scrape, uuid):
        def get(metric, **labels):
            found = [v for l, v in scrape.find(metric, uuid=uuid, **labels) if not l.get("gpu_instance_id")]
            return found[0] if found else None
        return {
            "util": get("nvidia_gpu_utilization_ratio"),
            "power": get("nvidia_gpu_power_usage_watts"),
            "sm_clock": get("nvidia_gpu_clock_hertz", clock="sm"),
            "max_sm_clock": get("nvidia_gpu_clock_max_hertz", clock="sm"),
            "sm_active": get("nvidia_gpu_sm_active_ratio"),
            "energy": get("nvidia_gpu_energy_consumption_joules_total"),
        }

    @staticmethod
    def processes(scrape, uuid):
        """{pid: (process label, bytes)} the exporter serves for the GPU."""
        found = {}
        for labels, value in scrape.find("nvidia_gpu_process_memory_used_bytes", uuid=uuid):
            pid = int(labels.get("pid", "0"))
            found[pid] = (labels.get("process", ""), max(value, found.get(pid, ("", 0.0))[1]))
        return found

    def load_phase(self):
        uuid, hopper = self.gpu0()
        if uuid is None:
            return {"skipped": "the exporter serves no gpu=\"0\"", "checks": [], "rows": []}
        if self.args.load_seconds <= 0:
            return {"skipped": "load skipped: --load-seconds 0", "checks": [], "rows": []}
        idle = self.sample(self.scrape(), uuid)
        process, description = load.start(self.args.load_seconds, uuid, os.path.join(self.out, "load.log"))
        if process is None:
            say(description)
            return {"skipped": description, "checks": [], "rows": []}
        say(f"load: {description}")
        if not self.wait_ready(process):
            process.kill()
            return {"skipped": "the load did not start within 120 s", "checks": [], "rows": []}
        samples, listed, rows, energy = [], {}, [], []
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < self.args.load_seconds + 30:
            scrape = self.scrape()
            current = self.sample(scrape, uuid)
            samples.append(current)
            collected = self.last_collection(scrape)
            if current["energy"] is not None and collected is not None:
                energy.append((collected[1], current["energy"]))
            for pid, (name, used) in self.processes(scrape, uuid).items():
                listed[pid] = (name, max(used, listed.get(pid, ("", 0.0))[1]))
            if not rows and time.monotonic() - started > self.args.load_seconds / 2:
                rows = self.process_rows(scrape, uuid)
            time.sleep(1)
        process.wait()
        load_pids = {pid for pid in listed if load.descends_from(pid, process.pid)} | {process.pid}
        span = (energy[0][0], energy[0][1], energy[-1][0], energy[-1][1]) if len(energy) > 1 else None
        checks = load.checks(idle, samples, span, hopper, load_pids, listed,
                             lambda pid: os.path.exists(f"/proc/{pid}"))
        return {"description": description, "checks": checks, "rows": rows}

    def wait_ready(self, process):
        if not description_is_torch(process):
            time.sleep(5)
            return process.poll() is None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready and process.stdout.readline().strip() == "ready":
                return True
        return False

    def process_rows(self, before, uuid):
        """The exporter's memory per process against --query-compute-apps, at one moment."""
        text = self.smi("--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits")
        after = self.scrape_after(time.time())
        rows = []
        spec = Reading("process", "nvidia_gpu_process_memory_used_bytes", {}, MiB, "MiB", MOVING, tol=2)
        for pid, gpu_uuid, mib in smi.parse_compute_apps(text or ""):
            if gpu_uuid != uuid:
                continue
            b = self.processes(before, uuid).get(pid, (None, None))[1]
            a = self.processes(after, uuid).get(pid, (None, None))[1]
            answer = smi.Answer(mib, source="smi-csv") if mib is not None else smi.Answer(na=True, source="smi-csv")
            shown, verdict, ok = compare.judge(spec, b, a, answer)
            rows.append(Row(f"gpu0 process {pid} memory", shown, f"{compare.fmt(mib)} MiB [smi-csv]", verdict, ok))
        return rows

    def cost_phase(self):
        first = self.scrape()
        seen, durations, stamp = 0, [], self.last_collection(first)
        last = first
        deadline = time.monotonic() + self.args.collections * 3 + 10
        while seen < self.args.collections and time.monotonic() < deadline:
            time.sleep(0.5)
            last = self.scrape()
            now = self.last_collection(last)
            if now != stamp:
                seen, stamp = seen + 1, now
                durations.append(now[1] - now[0])
        cost = measure.exporter_cost(first, last, seen, durations)
        query = ["nvidia-smi", f"--query-gpu={','.join(self.fields or ['uuid'])}", "--format=csv,noheader,nounits"]
        smi_cost = measure.nvidia_smi_cost(query)
        dcgm = measure.dcgm_exporter_cost(free_port(), self.args.collections, os.path.join(self.out, "dcgm.log"))
        return {"exporter": cost, "nvidia_smi_query": smi_cost, "dcgm_exporter": dcgm}

    def record_profile(self):
        path = os.path.join(self.out, "profile.conf")
        try:
            done = subprocess.run([self.args.binary, "record-nvml", "--out", path], capture_output=True, text=True,
                                  timeout=120)
        except subprocess.TimeoutExpired:
            return "could not record: record-nvml ran over 120 s"
        said = (done.stderr + done.stdout).strip()
        if done.returncode == 0 and os.path.exists(path):
            return f"recorded {path}"
        if "unrecognized subcommand" in said or "unexpected argument" in said:
            return "could not record: this binary has no record-nvml subcommand"
        return f"could not record (exit {done.returncode}): {(said.splitlines() or [''])[-1]}"


def description_is_torch(process):
    return process.args[:2] == [sys.executable, "-c"]


def render(report):
    """report.txt: the environment, the table, the load, the cost."""
    lines = [f"make test-gpu, {report['date']}"]
    for gpu in report["gpus"]:
        lines.append(f"GPU {gpu['index']}: {gpu['name']} {gpu['uuid']}")
    lines.append(f"driver {report['driver_version']}, CUDA {report['cuda_version']}, binary {report['binary']}")
    env = report["environment"]
    lines.append("container or sandbox: " + ("; ".join(env["container_hints"]) or "no signs"))
    lines.append("queries that failed: " + ("; ".join(env["failed_queries"]) or "none"))
    lines += ["", compare.table([Row(**r) for r in report["rows"]])]
    if report["not_compared"]:
        lines.append("\nserved, with no driver counterpart: " + ", ".join(report["not_compared"]))
    ld = report["load"]
    lines.append("\nload: " + ld.get("description", ld.get("skipped", "")))
    for check, detail, ok in ld["checks"]:
        lines.append(f"  {'ok  ' if ok else 'n/a ' if ok is None else 'FAIL'} {check}: {detail}")
    if ld["rows"]:
        lines.append(compare.table([Row(**r) for r in ld["rows"]]))
    cost = report["cost"]
    e = cost["exporter"]
    if e.get("collections"):
        lines.append(f"\nexporter over {e['collections']} GPU collections: "
                     f"{e['collect_duration_seconds'] * 1000:.2f} ms per collection, NVML calls per collection "
                     + ", ".join(f"{k} {v:.1f}" for k, v in sorted(e["nvml_calls_per_collection"].items()))
                     + f", CPU {e['cpu_seconds_per_collection'] * 1000:.2f} ms per collection (scrapes of this run "
                     f"included), RSS {e['rss_bytes'] / MiB:.1f} MiB")
    q = cost["nvidia_smi_query"]
    lines.append(f"one `{q['command']}`: {q['wall_seconds'] * 1000:.0f} ms wall, {q['cpu_seconds'] * 1000:.0f} ms CPU")
    d = cost["dcgm_exporter"]
    lines.append("dcgm-exporter: " + (d["skipped"] if "skipped" in d else
                                      f"CPU {d['cpu_seconds_per_collection'] * 1000:.2f} ms per 1 s collection, "
                                      f"RSS {d['rss_bytes'] / MiB:.1f} MiB"))
    lines.append(f"profile: {report['profile']}")
    lines.append(f"\n{'PASSED' if report['passed'] else 'FAILED'}: {report['mismatches']} mismatches, "
                 f"{report['load_failures']} failed load checks")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(REPO, "target", "release", "system-info-exporter"))
    parser.add_argument("--out", default=os.environ.get("OUT") or os.path.join(REPO, "target", "gpu-run"))
    parser.add_argument("--load-seconds", type=float, default=20, help="0 skips the load")
    parser.add_argument("--collections", type=int, default=10, help="GPU collections the cost is measured over")
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        print(f"test-gpu: skipped: {reason}")
        return 0
    if not os.access(args.binary, os.X_OK):
        print(f"test-gpu: {args.binary} is not an executable; build it first (make build)", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    run = Run(args)
    try:
        run.prepare_driver()
        run.start_exporter()
        say(f"exporter on 127.0.0.1:{run.port}; comparing with the driver")
        result = run.comparison()
        say(f"{len(result.rows)} readings compared, {len(result.mismatches)} mismatches")
        loaded = run.load_phase()
        say("measuring the exporter's cost")
        cost = run.cost_phase()
    finally:
        run.stop_exporter()
    profile = run.record_profile()
    say(f"profile: {profile}")
    glob, gpus = run.driver
    load_failures = sum(1 for _, _, ok in loaded["checks"] if ok is False) + sum(
        1 for r in loaded["rows"] if r.ok is False)
    mismatches = len(result.mismatches)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "binary": args.binary,
        "platform": platform.platform(),
        "driver_version": glob.get("driver_version", smi.Answer("?")).value,
        "cuda_version": glob.get("cuda_version", smi.Answer("?")).value,
        "gpus": [{"index": r.get("index", smi.Answer("?")).value, "uuid": u, "name": r.get("name", smi.Answer("?")).value}
                 for u, r in gpus.items()],
        "environment": {"container_hints": measure.container_hints(), "pynvml": run.nvml is not None,
                        "failed_queries": run.failed_queries},
        "rows": [vars(r) for r in result.rows],
        "not_compared": result.not_compared,
        "load": {**loaded, "rows": [vars(r) for r in loaded["rows"]]},
        "cost": cost,
        "profile": profile,
        "mismatches": mismatches,
        "load_failures": load_failures,
        "passed": mismatches == 0 and load_failures == 0,
    }
    text = render(report)
    with open(os.path.join(args.out, "report.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    say(text)
    say(f"report: {os.path.join(args.out, 'report.txt')}, report.json")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
