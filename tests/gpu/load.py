"""A short GPU load and the checks that the exporter saw it.

The load is a torch matmul loop where `import torch` finds CUDA, else
gpu-burn where it is on PATH. The checks (`checks`) are pure: they take the
exporter's idle values, its samples during the load and the processes NVML
listed, and say for each reading whether it rose.
"""

import os
import shutil
import subprocess
import sys

# Runs in its own process so that NVML lists it under its own PID. It holds
# 2 GiB besides its operands so that its memory is plain in the processes
# collector, and prints "ready" once CUDA is up.
TORCH_LOOP = r"""
import sys, time, torch
device = torch.device("cuda")
a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
b = torch.randn(8192, 8192, device=device, dtype=torch.float16)
held = torch.empty(2 << 30, dtype=torch.uint8, device=device)
torch.cuda.synchronize()
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
"""


def torch_problem():
    """None when torch can run on CUDA here, else why not."""
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "import torch took over 120 s"
    if done.returncode == 3:
        return "torch finds no CUDA device"
    if done.returncode != 0:
        return "import torch failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    return None


def start(seconds, uuid, log_path):
    """(process, description) of a load on the GPU with this UUID, or (None,
    why not). Its diagnostics go to log_path."""
    problem = torch_problem()
    log = open(log_path, "w")
    if problem is None:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=uuid)
        process = subprocess.Popen([sys.executable, "-c", TORCH_LOOP, str(seconds)], env=env,
                                   stdout=subprocess.PIPE, stderr=log, text=True)
        return process, f"torch float16 matmul loop, {seconds:g} s"
    for name in ("gpu_burn", "gpu-burn"):
        if shutil.which(name):
            process = subprocess.Popen([name, str(int(seconds))], stdout=log, stderr=subprocess.STDOUT)
            return process, f"{name} {int(seconds)} (all GPUs)"
    return None, (f"load skipped: {problem}, and neither gpu_burn nor gpu-burn is on PATH "
                  "(no CUDA sample runs for 20 s as one process)")


def descends_from(pid, root, proc="/proc"):
    """Whether pid is root or one of its descendants, as this /proc sees it."""
    for _ in range(64):
        if pid == root:
            return True
        try:
            with open(f"{proc}/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def _max(samples, key):
    values = [s[key] for s in samples if s.get(key) is not None]
    return max(values) if values else None


def checks(idle, samples, energy, hopper, load_pids, listed, visible):
    """[(check, detail, ok)] for one GPU under load.

    idle, samples: the exporter's values (util, power, sm_clock, max_sm_clock,
    sm_active) before and during the load; energy: (t0, joules0, t1, joules1)
    over the load, or None; hopper: whether GPM applies; load_pids: PIDs of
    the load as this /proc sees them; listed: {pid: (process label, bytes)}
    from the exporter's processes collector; visible: pid → whether this /proc
    has it. A check with ok None is not applicable here."""
    out = []

    def rise(check, key, at_least):
        before, peak = idle.get(key), _max(samples, key)
        if peak is None:
            out.append((check, "the exporter served no value under load", False))
            return
        ok = peak >= at_least(before or 0.0) and (before is None or peak > before)
        out.append((check, f"idle {_fmt(before)}, under load up to {_fmt(peak)}", ok))

    rise("utilisation rises", "util", lambda b: max(0.5, b))
    rise("power rises", "power", lambda b: b * 1.2 + 10)
    sm_max = idle.get("max_sm_clock")
    if idle.get("sm_clock") is not None and sm_max and idle["sm_clock"] >= sm_max:
        out.append(("SM clock rises", f"already at its maximum {_fmt(sm_max)} Hz when idle", True))
    else:
        rise("SM clock rises", "sm_clock", lambda b: b)
    if energy is None:
        out.append(("energy counter increases", "the exporter served no energy counter", False))
    else:
        t0, e0, t1, e1 = energy
        rate = (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0
        powers = [s["power"] for s in samples if s.get("power") is not None]
        mean = sum(powers) / len(powers) if powers else None
        # The counter's rise over time must be the power drawn: a factor 1000
        # (mJ served as J) cannot hide here.
        ok = e1 > e0 and mean is not None and 0.5 <= rate / mean <= 2.0
        out.append(("energy counter increases", f"+{_fmt(e1 - e0)} J in {t1 - t0:.1f} s = {_fmt(rate)} W, "
                    f"mean power {_fmt(mean)} W", ok))
    if hopper:
        rise("GPM SM activity rises", "sm_active", lambda b: max(0.2, b))
    else:
        out.append(("GPM SM activity rises", "not applicable (GPM needs Hopper or later)", None))
    out.append(_process_check(load_pids, listed, visible))
    return out


def _process_check(load_pids, listed, visible):
    check = "load process in the processes collector"
    ours = [pid for pid in listed if pid in load_pids]
    if ours:
        pid = ours[0]
        name, used = listed[pid]
        ok = bool(name) and used is not None and used > 0
        return check, f"pid {pid} ({name or 'no name'}), {_fmt(used)} bytes", ok
    hidden = [pid for pid, (name, _) in listed.items() if not visible(pid) and not name]
    if hidden:
        return (check, f"NVML reports PID {hidden[0]}, which this /proc cannot see (another PID namespace or "
                "a sandbox); the series is there with an empty process label", True)
    return check, f"no series for the load's PIDs {sorted(load_pids)}; served: {sorted(listed)}", False


def process_memory(listed, apps, uuid):
    """Rows comparing the exporter's memory per process with nvidia-smi's
    --query-compute-apps (MiB) for the same GPU: [(pid, exporter bytes, MiB)]."""
    rows = []
    for pid, gpu_uuid, mib in apps:
        if gpu_uuid == uuid and pid in listed:
            rows.append((pid, listed[pid][1], mib))
    return rows


def _fmt(value):
    if value is None:
        return "absent"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
