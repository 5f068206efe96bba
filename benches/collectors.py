#!/usr/bin/env python3
"""Cost of one collection per collector, default and opt-in, against the NVML
test double: 8 GPUs, each with 50 processes, GPM profiling and two MIG
devices.

    make bench-collectors       # or: benches/collectors.py BINARY LIBRARY

Starts the release binary with --collector.processes at a 1 s interval, then
over 10 collections reads each collector's collection duration and the NVML
calls of each phase between consecutive collections. Prints medians; it
asserts nothing.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

GPUS, PROCESSES, COLLECTIONS = 8, 50, 10


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r'(system_info_exporter_\w+)\{(collector|phase)="(\w+)"\} (\S+)', line)
        if match:
            samples[(match[1], match[3])] = float(match[4])
    return samples


def config():
    lines = [f"gpu_count = {GPUS}"]
    for gpu in range(GPUS):
        lines.append(f"synthetic_processes = {gpu} {PROCESSES} {100000 + gpu * PROCESSES}")
        lines += [f"gpu.{gpu}.gpm = 1", f"gpu.{gpu}.gpm_value.2 = 50", f"gpu.{gpu}.mig = 1", f"gpu.{gpu}.mig_slots = 7"]
        for slot in range(2):
            lines.append(
                f"gpu.{gpu}.mig_device.{slot} = MIG-{gpu:08x}-0000-5000-8000-{slot:012x} "
                f"gi={slot + 1} ci=0 profile=3g.40gb memory_total=42949672960 memory_used=0"
            )
    return "\n".join(lines) + "\n"


def main():
    binary, library = sys.argv[1], sys.argv[2]
    port = 19000 + os.getpid() % 1000
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as file:
        file.write(config())
    env = dict(os.environ, NVML_DOUBLE_CONFIG=file.name)
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", f"--nvml.library={library}",
         "--collect.interval=1s", "--collector.processes", "--log.level=warn"],
        env=env,
    )
    try:
        durations, calls = {}, {}
        previous = None
        deadline = time.monotonic() + 60
        while len(calls.get("collection", [])) < COLLECTIONS and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                now = scrape(port)
            except OSError:
                continue
            stamp = now.get(("system_info_exporter_last_collect_timestamp_seconds", "gpu"))
            if stamp is None or (previous and stamp == previous[0]):
                continue
            if previous:
                for phase in ("collection", "processes"):
                    key = ("system_info_exporter_nvml_calls_total", phase)
                    calls.setdefault(phase, []).append(now[key] - previous[1][key])
            for collector in ("gpu", "host", "processes"):
                key = ("system_info_exporter_collect_duration_seconds", collector)
                if key in now:
                    durations.setdefault(collector, []).append(now[key] * 1000)
            previous = (stamp, now)
        print(f"{GPUS} GPUs, {PROCESSES} processes each, GPM and 2 MIG devices per GPU; "
              f"medians over {COLLECTIONS} collections")
        for collector, values in durations.items():
            print(f"collector {collector}: {statistics.median(values):.2f} ms per collection")
        for phase, values in calls.items():
            median = statistics.median(values)
            print(f"NVML calls ({phase}): {median:.0f} per collection, {median / GPUS:.1f} per GPU")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        os.unlink(file.name)


if __name__ == "__main__":
    main()
