"""nvidia-smi's answers as readings in the driver's own units (pure functions).

`nvidia-smi -q -x` and `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`
print text such as "34 C", "81559 MiB", "16x", "Enabled" or "[N/A]". These
functions turn it into numbers in the unit nvidia-smi shows (C, W, MiB, MHz,
%), or into N/A, keyed by the reading ids that compare.py knows.
"""

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """One reading as the driver gives it."""

    value: object = None  # float or str; None when there is none
    na: bool = False  # the driver says N/A or Not Supported
    source: str = ""  # "smi-xml", "smi-csv" or "nvml"
    note: str = ""  # why there is neither a value nor N/A

    @property
    def known(self):
        return self.value is not None or self.na


def unknown(note):
    return Answer(note=note)


# What nvidia-smi prints for a reading the GPU or driver does not offer.
_NA = {
    "n/a",
    "[n/a]",
    "not supported",
    "[not supported]",
    "requested functionality has been deprecated",
    "unknown error",
    "[unknown error]",
    "[gpu requires reset]",
    "insufficient permissions",
    "[insufficient permissions]",
}
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:C|W|MiB|MHz|%|x|KB/s|us|mV|bank\(s\))?$")
_FLAGS = {
    "enabled": 1.0,
    "active": 1.0,
    "yes": 1.0,
    "disabled": 0.0,
    "not active": 0.0,
    "no": 0.0,
}


def _is_na(text):
    return text.strip().lower() in _NA


def number(text, source):
    text = text.strip()
    if _is_na(text):
        return Answer(na=True, source=source)
    match = _NUMBER.match(text)
    if not match:
        return unknown(f"cannot read {text!r}")
    return Answer(float(match.group(1)), source=source)


def flag(text, source):
    text = text.strip()
    if _is_na(text):
        return Answer(na=True, source=source)
    if text.lower() in _FLAGS:
        return Answer(_FLAGS[text.lower()], source=source)
    return unknown(f"cannot read {text!r}")


def pstate(text, source):
    text = text.strip()
    match = re.fullmatch(r"P(\d{1,2})", text)
    if match:
        return Answer(float(match.group(1)), source=source)
    # "Unknown" (P32 in NVML) is omitted by the exporter, like N/A.
    if _is_na(text) or text.lower() == "unknown":
        return Answer(na=True, source=source)
    return unknown(f"cannot read {text!r}")


def string(text, source):
    text = text.strip()
    if _is_na(text):
        return Answer(na=True, source=source)
    return Answer(text, source=source)


def total(answers, source):
    """The sum of several counters (e.g. SRAM + DRAM), N/A when all are."""
    values = [a.value for a in answers if a.value is not None]
    if values:
        return Answer(float(sum(values)), source=source)
    if answers and all(a.na for a in answers):
        return Answer(na=True, source=source)
    return unknown("no counters")


# Clock-event reasons: the exporter's label and nvidia-smi's element suffix.
REASONS = [
    ("gpu_idle", "gpu_idle"),
    ("applications_clocks_setting", "applications_clocks_setting"),
    ("sw_power_cap", "sw_power_cap"),
    ("hw_slowdown", "hw_slowdown"),
    ("sync_boost", "sync_boost"),
    ("sw_thermal_slowdown", "sw_thermal_slowdown"),
    ("hw_thermal_slowdown", "hw_thermal_slowdown"),
    ("hw_power_brake_slowdown", "hw_power_brake_slowdown"),
    ("display_clock_setting", "display_clocks_setting"),
]
CLOCKS = [("graphics", "graphics_clock"), ("sm", "sm_clock"), ("memory", "mem_clock"), ("video", "video_clock")]
# Absolute thresholds, printed by drivers before the T.Limit layout (R550).
THRESHOLDS = [
    ("shutdown", "gpu_temp_max_threshold"),
    ("slowdown", "gpu_temp_slow_threshold"),
    ("gpu_max", "gpu_temp_max_gpu_threshold"),
    ("memory_max", "gpu_temp_max_mem_threshold"),
]


def _text(element, path):
    found = element.find(path) if element is not None else None
    return None if found is None or found.text is None else found.text


def _first(element, *paths):
    for path in paths:
        text = _text(element, path)
        if text is not None:
            return text
    return None


def _ecc(errors, scope, source):
    """Corrected and uncorrected totals of one scope (volatile, aggregate).

    Ampere and later list SRAM and DRAM counters (Hopper splits SRAM
    uncorrectable into parity and SEC-DED); older GPUs list single_bit and
    double_bit with a total each."""
    block = errors.find(scope) if errors is not None else None
    if block is None:
        return {}
    if block.find("single_bit") is not None:
        return {
            "corrected": number(_text(block, "single_bit/total") or "N/A", source),
            "uncorrected": number(_text(block, "double_bit/total") or "N/A", source),
        }
    corrected, uncorrected = [], []
    for child in block:
        if "threshold" in child.tag or child.text is None:
            continue
        if "uncorrectable" in child.tag:
            uncorrected.append(number(child.text, source))
        elif "correctable" in child.tag:
            corrected.append(number(child.text, source))
    return {"corrected": total(corrected, source), "uncorrected": total(uncorrected, source)}


def parse_xml(text, source="smi-xml"):
    """`nvidia-smi -q -x` → (globals, [per-GPU readings]) in nvidia-smi's order,
    which is NVML's index order."""
    root = ET.fromstring(text)
    glob = {
        "driver_version": string(_text(root, "driver_version") or "N/A", source),
        "cuda_version": string(_text(root, "cuda_version") or "N/A", source),
        "gpu_count": number(_text(root, "attached_gpus") or "N/A", source),
    }
    return glob, [_gpu(index, gpu, source) for index, gpu in enumerate(root.findall("gpu"))]


def _gpu(index, gpu, source):
    r = {"index": Answer(str(index), source=source)}

    def put(key, parse, *paths):
        text = _first(gpu, *paths)
        if text is not None:
            r[key] = parse(text, source)

    put("uuid", string, "uuid")
    put("name", string, "product_name")
    put("serial", string, "serial")
    put("pci_bus_id", string, "pci/pci_bus_id")
    put("architecture", string, "product_architecture")
    put("temperature", number, "temperature/gpu_temp")
    put("memory_temperature", number, "temperature/memory_temp")
    for label, element in THRESHOLDS:
        put(f"threshold.{label}", number, f"temperature/{element}")
        if f"threshold.{label}" not in r and gpu.find("temperature/gpu_temp_tlimit") is not None:
            r[f"threshold.{label}"] = unknown("nvidia-smi prints only T.Limit margins")
    # R535 and later: gpu_power_readings; R570 and later split the draw into
    # average (what nvmlDeviceGetPowerUsage returns) and instant.
    put(
        "power_usage",
        number,
        "gpu_power_readings/power_draw",
        "gpu_power_readings/average_power_draw",
        "power_readings/power_draw",
    )
    put(
        "power_limit",
        number,
        "gpu_power_readings/current_power_limit",
        "power_readings/enforced_power_limit",
    )
    for part in ("total", "used", "free", "reserved"):
        put(f"memory.{part}", number, f"fb_memory_usage/{part}")
    for part in ("gpu", "memory", "encoder", "decoder"):
        put(f"util.{part}", number, f"utilization/{part}_util")
    for label, element in CLOCKS:
        put(f"clock.{label}", number, f"clocks/{element}")
        put(f"max_clock.{label}", number, f"max_clocks/{element}")
    for label, element in REASONS:
        put(
            f"reason.{label}",
            flag,
            f"clocks_event_reasons/clocks_event_reason_{element}",
            f"clocks_throttle_reasons/clocks_throttle_reason_{element}",
        )
    put("fan.0", number, "fan_speed")
    put("pstate", pstate, "performance_state")
    link = "pci/pci_gpu_link_info/"
    put("pcie.gen", number, link + "pcie_gen/current_link_gen")
    put("pcie.max_gen", number, link + "pcie_gen/max_link_gen")
    put("pcie.width", number, link + "link_widths/current_link_width")
    put("pcie.max_width", number, link + "link_widths/max_link_width")
    put("pcie.replay", number, "pci/replay_counter")
    put("ecc.enabled", flag, "ecc_mode/current_ecc")
    errors = gpu.find("ecc_errors")
    for scope in ("volatile", "aggregate"):
        for kind, answer in _ecc(errors, scope, source).items():
            r[f"ecc.{scope}.{kind}"] = answer
    put("retired.sbe", number, "retired_pages/multiple_single_bit_retirement/retired_count")
    put("retired.dbe", number, "retired_pages/double_bit_retirement/retired_count")
    put("retired.pending", flag, "retired_pages/pending_retirement")
    remapped = gpu.find("remapped_rows")
    if remapped is not None and len(remapped) == 0:
        # "<remapped_rows>N/A</remapped_rows>": the GPU does not remap rows.
        for key in ("remapped.correctable", "remapped.uncorrectable", "remap.pending", "remap.failed"):
            r[key] = flag(remapped.text or "N/A", source)
    else:
        put("remapped.correctable", number, "remapped_rows/remapped_row_corr")
        put("remapped.uncorrectable", number, "remapped_rows/remapped_row_unc")
        put("remap.pending", flag, "remapped_rows/remapped_row_pending")
        put("remap.failed", flag, "remapped_rows/remapped_row_failure")
    put("mig.mode", flag, "mig_mode/current_mig")
    put("recovery_action", string, "gpu_recovery_action")
    migs = gpu.findall("mig_devices/mig_device")
    if gpu.find("mig_devices") is not None:
        r["mig.devices"] = Answer(float(len(migs)), source=source)
    for mig in migs:
        key = f"mig.{_text(mig, 'gpu_instance_id')}.{_text(mig, 'compute_instance_id')}"
        put_mig = _text(mig, "fb_memory_usage/total")
        if put_mig is not None:
            r[f"{key}.memory.total"] = number(put_mig, source)
        used = _text(mig, "fb_memory_usage/used")
        if used is not None:
            r[f"{key}.memory.used"] = number(used, source)
    return r


# --query-gpu fields and the readings they answer. Fields a given nvidia-smi
# does not know are left out by the caller (see `supported_fields`).
CSV_FIELDS = [
    ("index", "index", string),
    ("uuid", "uuid", string),
    ("name", "name", string),
    ("serial", "serial", string),
    ("pci.bus_id", "pci_bus_id", string),
    ("driver_version", "driver_version", string),
    ("temperature.gpu", "temperature", number),
    ("temperature.memory", "memory_temperature", number),
    ("power.draw", "power_usage", number),
    ("enforced.power.limit", "power_limit", number),
    ("memory.total", "memory.total", number),
    ("memory.used", "memory.used", number),
    ("memory.free", "memory.free", number),
    ("memory.reserved", "memory.reserved", number),
    ("utilization.gpu", "util.gpu", number),
    ("utilization.memory", "util.memory", number),
    ("utilization.encoder", "util.encoder", number),
    ("utilization.decoder", "util.decoder", number),
    ("clocks.gr", "clock.graphics", number),
    ("clocks.sm", "clock.sm", number),
    ("clocks.mem", "clock.memory", number),
    ("clocks.video", "clock.video", number),
    ("clocks.max.gr", "max_clock.graphics", number),
    ("clocks.max.sm", "max_clock.sm", number),
    ("clocks.max.mem", "max_clock.memory", number),
    ("fan.speed", "fan.0", number),
    ("pstate", "pstate", pstate),
    ("pcie.link.gen.current", "pcie.gen", number),
    ("pcie.link.gen.max", "pcie.max_gen", number),
    ("pcie.link.width.current", "pcie.width", number),
    ("pcie.link.width.max", "pcie.max_width", number),
    ("ecc.mode.current", "ecc.enabled", flag),
    ("ecc.errors.corrected.volatile.total", "ecc.volatile.corrected", number),
    ("ecc.errors.uncorrected.volatile.total", "ecc.volatile.uncorrected", number),
    ("ecc.errors.corrected.aggregate.total", "ecc.aggregate.corrected", number),
    ("ecc.errors.uncorrected.aggregate.total", "ecc.aggregate.uncorrected", number),
    ("retired_pages.sbe", "retired.sbe", number),
    ("retired_pages.dbe", "retired.dbe", number),
    ("retired_pages.pending", "retired.pending", flag),
    ("remapped_rows.correctable", "remapped.correctable", number),
    ("remapped_rows.uncorrectable", "remapped.uncorrectable", number),
    ("remapped_rows.pending", "remap.pending", flag),
    ("remapped_rows.failure", "remap.failed", flag),
    ("mig.mode.current", "mig.mode", flag),
]


def supported_fields(help_text):
    """The CSV_FIELDS names that `nvidia-smi --help-query-gpu` lists (it
    quotes each name), in CSV_FIELDS order: an unknown field fails the whole
    query."""
    return [field for field, _, _ in CSV_FIELDS if f'"{field}"' in help_text]


def parse_csv(fields, text, source="smi-csv"):
    """`--query-gpu=<fields> --format=csv,noheader,nounits` → (globals,
    [per-GPU readings]), one GPU per line."""
    parsers = {field: (key, parse) for field, key, parse in CSV_FIELDS}
    glob, gpus = {}, []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not row:
            continue
        if len(row) != len(fields):
            raise ValueError(f"{len(row)} values for {len(fields)} fields: {row}")
        readings = {}
        for field, value in zip(fields, row):
            key, parse = parsers[field]
            (glob if key == "driver_version" else readings)[key] = parse(value, source)
        gpus.append(readings)
    glob["gpu_count"] = Answer(float(len(gpus)), source=source)
    return glob, gpus


def parse_compute_apps(text):
    """`--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits`
    → [(pid, gpu uuid, MiB or None)]."""
    apps = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(row) == 3 and row[0].strip().isdigit():
            used = number(row[2], "smi-csv")
            apps.append((int(row[0]), row[1].strip(), used.value))
    return apps


def by_uuid(gpus):
    """Per-GPU readings keyed by UUID (GPUs without one are dropped)."""
    return {g["uuid"].value: g for g in gpus if "uuid" in g and g["uuid"].value}
