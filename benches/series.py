#!/usr/bin/env python3
"""Series per GPU and per node, and the size of a scrape, against the NVML
test double: an HGX-like node of 8 GPUs with 18 NVLink links each.

    make bench-series           # or: benches/series.py BINARY LIBRARY

For each NVLink detail (--collector.gpu.nvlink), with and without GPM
profiling (12 metrics) and with and without the processes collector (one
process per GPU), starts the binary, waits for every family, scrapes a few
times (so that the HTTP self-metrics of earlier scrapes are there) and
counts the series of the last scrape: per GPU (those labelled gpu="0") and
per node, the latter split into GPU and node-level series. It also compares
the gzip body the exporter serves with `gzip -9` of the same text. Prints a
table; it asserts nothing (tests/series_budget.rs holds the budget).
"""
import gzip
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

GPUS, LINKS = 8, 18
GPM_METRICS = (1, 2, 3, 5, 10, 11, 12, 13, 20, 21, 60, 61)


def fetch(port, gzipped=False):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if gzipped:
        request.add_header("Accept-Encoding", "gzip")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def config(gpm, processes):
    lines = [f"gpu_count = {GPUS}"]
    for gpu in range(GPUS):
        lines.append(f"gpu.{gpu}.nvlinks = {LINKS}")
        if gpm:
            lines.append(f"gpu.{gpu}.gpm = 1")
            lines += [f"gpu.{gpu}.gpm_value.{metric} = 10" for metric in GPM_METRICS]
        if processes:
            lines.append(f"process.{gpu} = gpu={gpu} pid={4000 + gpu} type=compute memory=1073741824 sm=50 mem=20")
    return "\n".join(lines) + "\n"


def series(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def measure(binary, library, nvlink, gpm, processes):
    port = 19000 + os.getpid() % 1000
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as file:
        file.write(config(gpm, processes))
    args = [binary, f"--web.listen-address=127.0.0.1:{port}", f"--nvml.library={library}",
            "--collect.interval=200ms", "--log.level=warn", f"--collector.gpu.nvlink={nvlink}"]
    if processes:
        args.append("--collector.processes")
    proc = subprocess.Popen(args, env=dict(os.environ, NVML_DOUBLE_CONFIG=file.name))
    try:
        wanted = ["nvidia_gpu_up"] + (["nvidia_gpu_sm_active_ratio"] if gpm else []) + (
            ["nvidia_gpu_process_memory_used_bytes"] if processes else [])
        deadline = time.monotonic() + 30
        text = ""
        while not all(name in text for name in wanted):
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {wanted}")
            time.sleep(0.2)
            try:
                text = fetch(port).decode()
            except OSError:
                continue
        fetch(port, gzipped=True)
        text = fetch(port).decode()
        body = fetch(port, gzipped=True)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        os.unlink(file.name)
    lines = series(text)
    per_gpu = [line for line in lines if 'gpu="0"' in line]
    gpu_series = [line for line in lines if re.search(r'[{,]gpu="\d+"', line)]
    node = len(lines) - len(gpu_series)
    http = len([line for line in lines if line.startswith("system_info_exporter_http_")])
    plain = gzip.decompress(body)
    best = subprocess.run(["gzip", "-9", "-c"], input=plain, capture_output=True, check=True).stdout
    return len(per_gpu), len(lines), node, http, len(plain), len(body), len(best)


def main():
    binary, library = sys.argv[1], sys.argv[2]
    print(f"{GPUS} GPUs × {LINKS} NVLink links; processes: one per GPU")
    print("nvlink | GPM | processes | per GPU | per node | of which node-level (HTTP) | "
          "text bytes | gzip body | gzip -9 | body / gzip -9")
    for nvlink, gpm, processes in itertools.product(("totals", "links", "off"), (True, False), (False, True)):
        per_gpu, total, node, http, text, body, best = measure(binary, library, nvlink, gpm, processes)
        print(f"{nvlink} | {'on' if gpm else 'off'} | {'on' if processes else 'off'} | {per_gpu} | "
              f"{total} | {node} ({http}) | {text} | {body} | {best} | {body / best:.3f}")


if __name__ == "__main__":
    main()
