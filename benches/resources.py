#!/usr/bin/env python3
"""Resident memory after many scrapes, and idle CPU, of the release binary
against the NVML test double.

    make bench-resources        # or: benches/resources.py BINARY LIBRARY

Starts the exporter with 8 GPUs on a loopback port, scrapes /metrics 10,000
times over one keep-alive connection, reads VmRSS from /proc, then leaves it
idle at the default collection interval and reads its CPU time from /proc.
Prints what it measured; it asserts nothing.
"""
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time

SCRAPES = 10_000
IDLE_SECONDS = 60
GPUS = 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    raise KeyError(key)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    binary, library = sys.argv[1], sys.argv[2]
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as config:
        config.write(f"gpu_count = {GPUS}\n")
    env = dict(os.environ, NVML_DOUBLE_CONFIG=config.name)
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", f"--nvml.library={library}", "--log.level=warn"],
        env=env,
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(100):
            try:
                conn.request("GET", "/ready")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            time.sleep(0.1)
        rss_start = proc_status(proc.pid, "VmRSS")
        started = time.monotonic()
        size = 0
        for _ in range(SCRAPES):
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            size = len(response.read())
            assert response.status == 200
        elapsed = time.monotonic() - started
        rss_after = proc_status(proc.pid, "VmRSS")
        hwm = proc_status(proc.pid, "VmHWM")
        conn.close()
        print(f"gpus: {GPUS}, scrape size: {size} bytes")
        print(f"{SCRAPES} scrapes in {elapsed:.1f} s ({SCRAPES / elapsed:.0f}/s, one connection)")
        print(f"RSS before scrapes: {rss_start / 1024:.1f} MiB, after: {rss_after / 1024:.1f} MiB, peak: {hwm / 1024:.1f} MiB")

        cpu_before = cpu_seconds(proc.pid)
        time.sleep(IDLE_SECONDS)
        cpu_used = cpu_seconds(proc.pid) - cpu_before
        print(f"idle CPU over {IDLE_SECONDS} s at the default interval: {cpu_used:.2f} s = {100 * cpu_used / IDLE_SECONDS:.3f}% of one core")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        os.unlink(config.name)


if __name__ == "__main__":
    main()
