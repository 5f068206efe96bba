"""Compares the exporter's scrape with the driver's answers (pure functions).

Each reading the exporter serves for a GPU is matched, by UUID, with the
driver's answer for it (smi.Answer, in the driver's unit): exact readings must
be equal within the driver's display resolution (nvidia-smi prints MiB, W with
two decimals); moving readings (temperature, power, utilisation, clocks,
memory used) must lie between the exporter's value in a scrape taken before
the driver was asked and one taken after a collection that started later,
widened by a per-reading tolerance; counters must lie between the two scrapes.
A reading that both sides lack (the driver says N/A, the exporter omits it)
is a match; one that only one side lacks is a mismatch naming that side.
"""

import math
import re
from dataclasses import dataclass, field

from smi import CLOCKS, REASONS, Answer

MiB = float(1 << 20)
EXACT, MOVING, COUNTER, COUNT = "exact", "moving", "counter", "count"


@dataclass(frozen=True)
class Reading:
    key: str  # the driver-side reading id (smi.py, nvml_query.py)
    metric: str  # the exporter's metric
    labels: dict  # labels beyond gpu and uuid that pick the series
    scale: float  # exporter value = driver value × scale
    unit: str  # the driver's unit
    kind: str = EXACT
    tol: float = 0.0  # moving: allowed distance outside the range (driver unit)
    rel: float = 0.0  # moving: the same as a fraction of the driver's value
    res: float = 0.0  # exact, counter: the driver's display resolution


def _readings():
    r = [
        Reading("temperature", "nvidia_gpu_temperature_celsius", {}, 1, "C", MOVING, tol=2),
        Reading("memory_temperature", "nvidia_gpu_memory_temperature_celsius", {}, 1, "C", MOVING, tol=2),
    ]
    for t in ("shutdown", "slowdown", "gpu_max", "memory_max"):
        r.append(Reading(f"threshold.{t}", "nvidia_gpu_temperature_threshold_celsius", {"threshold": t}, 1, "C"))
    r += [
        Reading("power_usage", "nvidia_gpu_power_usage_watts", {}, 1, "W", MOVING, tol=5, rel=0.05),
        Reading("power_limit", "nvidia_gpu_power_limit_watts", {}, 1, "W", res=0.01),
        Reading("energy", "nvidia_gpu_energy_consumption_joules_total", {}, 1e-3, "mJ", COUNTER, res=1),
        Reading("memory.total", "nvidia_gpu_memory_total_bytes", {}, MiB, "MiB", res=1),
        Reading("memory.reserved", "nvidia_gpu_memory_reserved_bytes", {}, MiB, "MiB", res=1),
        Reading("memory.used", "nvidia_gpu_memory_used_bytes", {}, MiB, "MiB", MOVING, tol=2),
        Reading("memory.free", "nvidia_gpu_memory_free_bytes", {}, MiB, "MiB", MOVING, tol=2),
    ]
    for part in ("gpu", "memory", "encoder", "decoder"):
        metric = "nvidia_gpu_utilization_ratio" if part == "gpu" else f"nvidia_gpu_{part}_utilization_ratio"
        r.append(Reading(f"util.{part}", metric, {}, 0.01, "%", MOVING, tol=10))
    for label, _ in CLOCKS:
        r.append(Reading(f"clock.{label}", "nvidia_gpu_clock_hertz", {"clock": label}, 1e6, "MHz", MOVING, tol=15))
    for label, _ in CLOCKS:
        r.append(Reading(f"max_clock.{label}", "nvidia_gpu_clock_max_hertz", {"clock": label}, 1e6, "MHz"))
    for label, _ in REASONS:
        r.append(Reading(f"reason.{label}", "nvidia_gpu_clock_event_active", {"reason": label}, 1, "", MOVING))
    for label in ("power", "thermal", "sync_boost", "board_limit", "low_utilization", "reliability",
                  "application_clocks", "base_clocks"):
        r.append(Reading(f"throttle.{label}", "nvidia_gpu_throttled_seconds_total", {"reason": label}, 1e-9, "ns",
                         COUNTER, res=1000))
    r += [
        Reading("fans", "nvidia_gpu_fan_speed_ratio", {}, 1, "fans", COUNT),
        Reading("pstate", "nvidia_gpu_performance_state", {}, 1, "", MOVING),
        Reading("pcie.gen", "nvidia_gpu_pcie_link_generation", {}, 1, "", MOVING),
        Reading("pcie.max_gen", "nvidia_gpu_pcie_link_max_generation", {}, 1, ""),
        Reading("pcie.width", "nvidia_gpu_pcie_link_width", {}, 1, "x", MOVING),
        Reading("pcie.max_width", "nvidia_gpu_pcie_link_max_width", {}, 1, "x"),
        Reading("pcie.replay", "nvidia_gpu_pcie_replay_errors_total", {}, 1, "", COUNTER),
        Reading("ecc.enabled", "nvidia_gpu_ecc_enabled", {}, 1, ""),
    ]
    for scope, metric in (("volatile", "nvidia_gpu_ecc_errors_total"),
                          ("aggregate", "nvidia_gpu_ecc_errors_aggregate_total")):
        for kind in ("corrected", "uncorrected"):
            r.append(Reading(f"ecc.{scope}.{kind}", metric, {"type": kind}, 1, "", COUNTER))
    r += [
        Reading("retired.sbe", "nvidia_gpu_retired_pages", {"cause": "single_bit_ecc"}, 1, "pages"),
        Reading("retired.dbe", "nvidia_gpu_retired_pages", {"cause": "double_bit_ecc"}, 1, "pages"),
        Reading("retired.pending", "nvidia_gpu_retired_pages_pending", {}, 1, ""),
        Reading("remapped.correctable", "nvidia_gpu_remapped_rows_total", {"type": "correctable"}, 1, "rows", COUNTER),
        Reading("remapped.uncorrectable", "nvidia_gpu_remapped_rows_total", {"type": "uncorrectable"}, 1, "rows",
                COUNTER),
        Reading("remap.pending", "nvidia_gpu_row_remap_pending", {}, 1, ""),
        Reading("remap.failed", "nvidia_gpu_row_remap_failed", {}, 1, ""),
        Reading("mig.mode", "nvidia_gpu_mig_mode_enabled", {}, 1, ""),
        Reading("nvlinks", "nvidia_gpu_nvlinks", {}, 1, "links", COUNT),
        Reading("mig.devices", "nvidia_gpu_mig_info", {}, 1, "devices", COUNT),
    ]
    return r


READINGS = _readings()
IDENTITY = [("name", "name"), ("serial", "serial"), ("pci_bus_id", "pci_bus_id")]
# NVML's recovery actions, nvidia-smi's words for them and the exporter's labels.
RECOVERY = {"none": "none", "reset": "gpu_reset", "gpu reset": "gpu_reset", "reboot": "node_reboot",
            "node reboot": "node_reboot", "drain p2p": "drain_p2p", "drain and reset": "drain_and_reset",
            "0": "none", "1": "gpu_reset", "2": "node_reboot", "3": "drain_p2p", "4": "drain_and_reset"}


# ---- the exporter's scrape ------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(value):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse_scrape(text):
    """Prometheus text format → [(name, labels, value)]."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if not match:
            raise ValueError(f"not a sample line: {line!r}")
        name, _, body, value, _ = match.groups()
        labels, rest = {}, body or ""
        while rest.strip():
            label = _LABEL.match(rest)
            if not label:
                raise ValueError(f"bad labels in {line!r}")
            labels[label.group(1)] = _unescape(label.group(2))
            rest = rest[label.end():]
        samples.append((name, labels, float(value)))
    return samples


class Scrape:
    def __init__(self, text):
        self.samples = parse_scrape(text)

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples if n == name and all(l.get(k) == w for k, w in labels.items())]

    def value(self, name, **labels):
        found = self.find(name, **labels)
        return found[0][1] if found else None

    def names(self):
        return {n for n, _, _ in self.samples}

    def gpus(self):
        """UUID → gpu index label, from nvidia_gpu_info and nvidia_gpu_up."""
        return {l["uuid"]: l.get("gpu") for name in ("nvidia_gpu_info", "nvidia_gpu_up")
                for l, _ in self.find(name) if "uuid" in l}


# ---- comparison -----------------------------------------------------------

@dataclass
class Row:
    reading: str
    exporter: str
    driver: str
    verdict: str
    ok: object  # True, False, or None (not checked)


@dataclass
class Result:
    rows: list = field(default_factory=list)
    not_compared: list = field(default_factory=list)

    @property
    def mismatches(self):
        return [r for r in self.rows if r.ok is False]


def fmt(value):
    if value is None:
        return "absent"
    if isinstance(value, str) or not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _driver_text(answer, unit):
    if answer is None or not answer.known:
        return "-"
    shown = "N/A" if answer.na else f"{fmt(answer.value)} {unit}".strip()
    return f"{shown} [{answer.source}]"


def _hint(x, d):
    """Names the classic units bugs when the two values differ by one of their factors."""
    if not x or not d:
        return ""
    ratio = x / d
    for factor, name in ((1000, "1000"), (1e6, "10^6"), (100, "100 (percent vs ratio)"), (1024, "1024"),
                         (1.048576, "1.048576 (MiB vs MB)")):
        for r, word in ((factor, "×"), (1 / factor, "÷")):
            if math.isclose(ratio, r, rel_tol=0.01):
                return f" (exporter is the driver {word}{name}: a units bug?)"
    return ""


def judge(spec, before, after, answer):
    """(exporter text, verdict, ok) for one reading; before/after are the
    exporter's values (None when the series is absent)."""
    shown = fmt(after) if before in (None, after) else f"{fmt(before)}..{fmt(after)}"
    if answer is None or not answer.known:
        note = answer.note if answer is not None and answer.note else "no driver source"
        return shown, f"not checked ({note})", None
    present = [v for v in (before, after) if v is not None]
    if answer.na:
        if not present:
            return shown, "match (both N/A)", True
        return shown, "mismatch: the driver says N/A, the exporter serves a value", False
    if not present:
        return shown, "mismatch: omitted by the exporter", False
    d = answer.value
    if isinstance(d, str):
        ok = after == d
        return shown, "match" if ok else "mismatch", ok
    target = d * spec.scale
    if spec.kind == MOVING:
        tol = max(spec.tol, spec.rel * abs(d)) * spec.scale
        lo, hi = min(present) - tol, max(present) + tol
        ok = lo - 1e-9 * abs(target) <= target <= hi + 1e-9 * abs(target)
        what = "within range" if ok else f"mismatch: outside {fmt(lo)}..{fmt(hi)}"
    elif spec.kind == COUNTER:
        res = spec.res * spec.scale
        lo, hi = (before if before is not None else after) - res, after if after is not None else before
        ok = lo - 1e-9 * abs(target) <= target <= hi + res + 1e-9 * abs(target)
        what = "between the scrapes" if ok else f"mismatch: not between {fmt(lo + res)} and {fmt(hi)}"
    else:
        x = after if after is not None else before
        diff = abs(x / spec.scale - d)
        ok = diff < spec.res if spec.res else diff <= 1e-9 * max(1.0, abs(d))
        what = "exact" if ok else "mismatch"
    verdict = ("match, " + what) if ok else what + _hint(present[-1], target)
    return shown, verdict, ok


_UNITS = [("_bytes", "B"), ("_hertz", "Hz"), ("_watts", "W"), ("_celsius", "C"), ("_joules_total", "J"),
          ("_seconds_total", "s")]


def _with_unit(shown, metric, value):
    if value is None:
        return shown
    unit = next((u for suffix, u in _UNITS if metric.endswith(suffix)), "")
    return f"{shown} {unit}".strip()


def _pick(scrape, spec, uuid):
    """The exporter's value; per-MIG-instance series only where asked for."""
    if scrape is None:
        return None
    whole_gpu = "gpu_instance_id" not in spec.labels
    found = [v for l, v in scrape.find(spec.metric, uuid=uuid, **spec.labels)
             if not (whole_gpu and l.get("gpu_instance_id"))]
    return found[0] if found else None


def _count(scrape, spec, uuid):
    found = scrape.find(spec.metric, uuid=uuid)
    if spec.metric == "nvidia_gpu_nvlinks":
        return sum(v for _, v in found)  # links active plus inactive
    return float(len(found))


def _link_states(readings):
    """The driver's links counted by state ("nvlinks.active", ".inactive"),
    from its per-link answers, as the exporter's default serves them."""
    links = [a for k, a in readings.items() if re.fullmatch(r"nvlink\.\d+", k)]
    if not links:
        return {}
    if not all(a.value is not None for a in links):
        note = "a link's state is unknown"
        return {f"nvlinks.{state}": Answer(note=note) for state in ("active", "inactive")}
    active = float(sum(1 for a in links if a.value == 1))
    source = links[0].source
    return {"nvlinks.active": Answer(active, source=source),
            "nvlinks.inactive": Answer(len(links) - active, source=source)}


def _dynamic(driver, after, uuid):
    """Per-fan, per-link and per-MIG-device readings, from the keys of either side."""
    specs = []
    fans = {k.split(".")[1] for k in driver if re.fullmatch(r"fan\.\d+", k)}
    fans |= {l["fan"] for l, _ in after.find("nvidia_gpu_fan_speed_ratio", uuid=uuid)}
    for fan in sorted(fans, key=int):
        specs.append(Reading(f"fan.{fan}", "nvidia_gpu_fan_speed_ratio", {"fan": fan}, 0.01, "%", MOVING, tol=5))
    links = {k.split(".")[1] for k in driver if re.fullmatch(r"nvlink\.\d+", k)}
    if links or after.find("nvidia_gpu_nvlinks", uuid=uuid):
        for state in ("active", "inactive"):
            specs.append(Reading(f"nvlinks.{state}", "nvidia_gpu_nvlinks", {"state": state}, 1, "links"))
    # Each link's state where it is served (--collector.gpu.nvlink=links).
    if after.find("nvidia_gpu_nvlink_up", uuid=uuid):
        for link in sorted(links, key=int):
            specs.append(Reading(f"nvlink.{link}", "nvidia_gpu_nvlink_up", {"link": link}, 1, ""))
    migs = {tuple(k.split(".")[1:3]) for k in driver if re.fullmatch(r"mig\.\d+\.\d+\.memory\.total", k)}
    for gi, ci in sorted(migs):
        labels = {"gpu_instance_id": gi, "compute_instance_id": ci}
        specs.append(Reading(f"mig.{gi}.{ci}.memory.total", "nvidia_gpu_mig_memory_total_bytes", labels, MiB, "MiB",
                             res=1))
        specs.append(Reading(f"mig.{gi}.{ci}.memory.used", "nvidia_gpu_mig_memory_used_bytes", labels, MiB, "MiB",
                             MOVING, tol=2))
    return specs


def compare(before, after, driver):
    """Rows for every reading of every GPU. `driver` is (globals, {uuid:
    readings}) as merge() returns it; before/after are Scrapes."""
    glob, gpus = driver
    result = Result()
    rows = result.rows
    used = {"nvidia_nvml_up", "nvidia_driver_info", "nvidia_gpus", "nvidia_gpu_info", "nvidia_gpu_up"}
    up = after.value("nvidia_nvml_up")
    rows.append(Row("nvml up", fmt(up), "GPUs listed", "match" if up == 1 else "mismatch", up == 1))
    count = Reading("gpu_count", "nvidia_gpus", {}, 1, "GPUs")
    shown, verdict, ok = judge(count, None, after.value("nvidia_gpus"), glob.get("gpu_count"))
    rows.append(Row("GPU count", shown, _driver_text(glob.get("gpu_count"), "GPUs"), verdict, ok))
    info = after.find("nvidia_driver_info")
    for key, label in (("driver_version", "driver_version"), ("cuda_version", "cuda_driver_version"),
                       ("nvml_version", "nvml_version")):
        x = info[0][0].get(label) if info else None
        shown, verdict, ok = judge(Reading(key, "", {}, 1, ""), None, x, glob.get(key))
        rows.append(Row(key.replace("_", " "), shown, _driver_text(glob.get(key), ""), verdict, ok))
    exporter_gpus = after.gpus()
    for uuid in [u for u in exporter_gpus if u not in gpus]:
        rows.append(Row(f"gpu{exporter_gpus[uuid]} {uuid}", "served", "not listed",
                        "mismatch: a GPU the driver does not list", False))
    for uuid, readings in gpus.items():
        if uuid not in exporter_gpus:
            index = readings.get("index", Answer("?")).value
            rows.append(Row(f"gpu{index} {uuid}", "absent", "listed", "mismatch: GPU missing from the exporter", False))
            continue
        rows.extend(_compare_gpu(before, after, uuid, exporter_gpus[uuid], readings, used))
    result.not_compared = sorted(n for n in after.names() if n.startswith("nvidia_") and n not in used)
    return result


def _compare_gpu(before, after, uuid, index, readings, used):
    prefix = f"gpu{index} "
    rows = []
    answer = readings.get("index")
    if answer is not None and answer.known:
        ok = index == answer.value
        rows.append(Row(prefix + "index", index, _driver_text(answer, ""), "match" if ok else "mismatch", ok))
    up = after.value("nvidia_gpu_up", uuid=uuid)
    rows.append(Row(prefix + "up", fmt(up), "listed", "match" if up == 1 else "mismatch", up == 1))
    labels = next((l for l, _ in after.find("nvidia_gpu_info", uuid=uuid)), {})
    for key, label in IDENTITY:
        shown, verdict, ok = judge(Reading(key, "", {}, 1, ""), None, labels.get(label), readings.get(key))
        rows.append(Row(prefix + key, shown, _driver_text(readings.get(key), ""), verdict, ok))
    readings = {**readings, **_link_states(readings)}
    for spec in READINGS + _dynamic(readings, after, uuid):
        answer = readings.get(spec.key)
        if spec.kind == COUNT:
            x = _count(after, spec, uuid)
            if answer is not None and answer.na:
                answer = Answer(0.0, source=answer.source)
            if answer is None and not x:
                continue  # no source knows it and nothing is served
            shown, verdict, ok = judge(spec, None, x, answer)
        else:
            b, a = _pick(before, spec, uuid), _pick(after, spec, uuid)
            if a is None and b is None and answer is None:
                continue  # no source knows it and nothing is served
            shown, verdict, ok = judge(spec, b, a, answer)
            shown = _with_unit(shown, spec.metric, a if a is not None else b)
        used.add(spec.metric)
        rows.append(Row(prefix + spec.key, shown, _driver_text(answer, spec.unit), verdict, ok))
    rows.extend(_recovery(after, uuid, prefix, readings.get("recovery_action"), used))
    return rows


def _recovery(after, uuid, prefix, answer, used):
    served = [l.get("action") for l, v in after.find("nvidia_gpu_recovery_action", uuid=uuid) if v == 1]
    x = served[0] if served else None
    if x is None and (answer is None or not answer.known):
        return []
    used.add("nvidia_gpu_recovery_action")
    if answer is not None and answer.value is not None:
        answer = Answer(RECOVERY.get(str(answer.value).strip().lower(), str(answer.value)), source=answer.source)
    shown, verdict, ok = judge(Reading("recovery_action", "", {}, 1, ""), None, x, answer)
    return [Row(prefix + "recovery action", shown, _driver_text(answer, ""), verdict, ok)]


def merge(*sources):
    """Merges (globals, {uuid: readings}) pairs: for each reading the first
    answer with a value, else the first N/A, else the first note."""
    glob, gpus = {}, {}
    for g, per_gpu in sources:
        _merge_into(glob, g)
        for uuid, readings in per_gpu.items():
            _merge_into(gpus.setdefault(uuid, {}), readings)
    return glob, gpus


def fill(driver, glob_defaults, gpu_defaults):
    """Adds answers (e.g. "not checked (no pynvml)") for readings no source had."""
    glob, gpus = driver
    _merge_into(glob, glob_defaults)
    for readings in gpus.values():
        _merge_into(readings, gpu_defaults)
    return driver


def override(driver, per_gpu):
    """Replaces answers, e.g. NVML's word that a clock-event reason cannot be
    reported at all over nvidia-smi's "Not Active"."""
    for uuid, readings in per_gpu.items():
        driver[1].setdefault(uuid, {}).update(readings)
    return driver


def _rank(answer):
    return 0 if answer.value is not None else 1 if answer.na else 2


def _merge_into(into, readings):
    for key, answer in readings.items():
        if key not in into or _rank(answer) < _rank(into[key]):
            into[key] = answer
        elif _rank(answer) == _rank(into[key]) == 2 and answer.note not in into[key].note:
            into[key] = Answer(note=f"{answer.note}; {into[key].note}")


def table(rows):
    """The rows as `reading | exporter | driver | verdict`."""
    header = ("reading", "exporter", "driver", "verdict")
    cells = [header] + [(r.reading, r.exporter, r.driver, r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    line = lambda c: " | ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), "-+-".join("-" * w for w in widths)] + [line(c) for c in cells[1:]])


def best(attempts):
    """Merges the results of several snapshots: a row matches if it matched in
    any of them (moving readings can move past a tolerance once)."""
    first = attempts[0]
    for row in first.rows:
        if row.ok is False:
            for later in attempts[1:]:
                other = next((r for r in later.rows if r.reading == row.reading), None)
                if other is not None and other.ok:
                    row.exporter, row.driver, row.verdict, row.ok = (
                        other.exporter, other.driver, other.verdict + " (in a later snapshot)", True)
                    break
    return first
