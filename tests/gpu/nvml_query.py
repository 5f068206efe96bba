"""The driver's answers through NVML itself (pynvml, package nvidia-ml-py),
for the readings nvidia-smi has no field for: the energy counter, absolute
temperature thresholds (nvidia-smi R550+ prints only T.Limit margins), fan and
NVLink counts, throttle-time counters, the supported clock-event reasons and
the NVML version. Optional: without pynvml those rows are "not checked".

`answers(nvml)` takes the module as an argument so that tests can hand it a
stand-in; every call that fails is recorded, NOT_SUPPORTED as N/A.
"""

from smi import REASONS, Answer, unknown

SOURCE = "nvml"
NO_PYNVML = "no pynvml"
# NVML readings compare.py looks for; without pynvml they are "not checked".
ONLY_NVML = (
    ["nvml_version", "energy", "fans", "nvlinks", "recovery_action"]
    + [f"threshold.{t}" for t in ("shutdown", "slowdown", "gpu_max", "memory_max")]
    + [f"throttle.{t}" for t in ("power", "thermal", "sync_boost", "board_limit",
                                  "low_utilization", "reliability", "application_clocks", "base_clocks")]
)
# nvmlTemperatureThresholds_t: shutdown 0, slowdown 1, memory max 2, GPU max 3.
THRESHOLD_TYPES = [("shutdown", 0), ("slowdown", 1), ("memory_max", 2), ("gpu_max", 3)]
# nvmlPerfPolicyType_t 0..7, as the exporter labels them.
POLICIES = ["power", "thermal", "sync_boost", "board_limit", "low_utilization",
            "reliability", "application_clocks", "base_clocks"]
# Clock-event reason bits (nvmlClocksEventReason*), in REASONS order.
REASON_BITS = [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100]
FI_NVLINK_LINK_COUNT = 91
FI_RECOVERY_ACTION = 230  # NVML_FI_DEV_GET_GPU_RECOVERY_ACTION, drivers from R570
MAX_FANS = 8


def load():
    """The pynvml module, initialised, or None when it cannot be imported."""
    try:
        import pynvml  # noqa: PLC0415 (optional)
    except ImportError:
        return None
    pynvml.nvmlInit()
    return pynvml


class Calls:
    """Runs NVML calls, turning NOT_SUPPORTED into N/A and recording the rest
    of the failures."""

    def __init__(self, nvml):
        self.nvml = nvml
        self.failures = []

    def __call__(self, what, fn, *args):
        try:
            return fn(*args), None
        except self.nvml.NVMLError as error:
            not_supported = getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", 3)
            if getattr(error, "value", None) == not_supported:
                return None, Answer(na=True, source=SOURCE)
            self.failures.append(f"{what}: {error}")
            return None, unknown(f"NVML error: {error}")

    def answer(self, what, fn, *args, convert=float):
        value, failed = self(what, fn, *args)
        return failed if failed else Answer(convert(value), source=SOURCE)


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def answers(nvml):
    """(globals, {uuid: readings}, {uuid: overrides}, failures) from NVML; the
    overrides are the clock-event reasons the GPU cannot report, which
    nvidia-smi prints as "Not Active"."""
    call = Calls(nvml)
    glob = {"nvml_version": call.answer("nvmlSystemGetNVMLVersion", nvml.nvmlSystemGetNVMLVersion, convert=_text)}
    gpus, overrides = {}, {}
    count, failed = call("nvmlDeviceGetCount", nvml.nvmlDeviceGetCount)
    for index in range(count or 0):
        handle, failed = call(f"nvmlDeviceGetHandleByIndex({index})", nvml.nvmlDeviceGetHandleByIndex, index)
        if failed:
            continue
        uuid, failed = call("nvmlDeviceGetUUID", nvml.nvmlDeviceGetUUID, handle)
        if not failed:
            gpus[_text(uuid)], overrides[_text(uuid)] = _gpu(nvml, call, handle)
    return glob, gpus, overrides, call.failures


def _gpu(nvml, call, handle):
    r = {"energy": call.answer("nvmlDeviceGetTotalEnergyConsumption", nvml.nvmlDeviceGetTotalEnergyConsumption, handle)}
    for label, kind in THRESHOLD_TYPES:
        r[f"threshold.{label}"] = call.answer(
            f"nvmlDeviceGetTemperatureThreshold({label})", nvml.nvmlDeviceGetTemperatureThreshold, handle, kind)
    for policy, label in enumerate(POLICIES):
        r[f"throttle.{label}"] = call.answer(
            f"nvmlDeviceGetViolationStatus({label})", nvml.nvmlDeviceGetViolationStatus, handle, policy,
            convert=lambda v: float(v.violationTime))
    fans = call.answer("nvmlDeviceGetNumFans", nvml.nvmlDeviceGetNumFans, handle)
    r["fans"] = fans
    for fan in range(int(fans.value or 0) if fans.value is not None else 0):
        if fan < MAX_FANS:
            r[f"fan.{fan}"] = call.answer(f"nvmlDeviceGetFanSpeed_v2({fan})", nvml.nvmlDeviceGetFanSpeed_v2, handle, fan)
    supported = getattr(nvml, "nvmlDeviceGetSupportedClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetSupportedClocksThrottleReasons")
    mask, failed = call("nvmlDeviceGetSupportedClocksEventReasons", supported, handle)
    unsupported = {}
    if not failed:
        for (label, _), bit in zip(REASONS, REASON_BITS):
            if not mask & bit:
                unsupported[f"reason.{label}"] = Answer(na=True, source=SOURCE)
    action = _field(nvml, call, handle, FI_RECOVERY_ACTION)
    # nvmlGpuRecoveryAction_t as a word compare.RECOVERY knows ("0" is none).
    r["recovery_action"] = Answer(str(int(action.value)), source=SOURCE) if action.value is not None else action
    links = _field(nvml, call, handle, FI_NVLINK_LINK_COUNT)
    r["nvlinks"] = links
    for link in range(int(links.value or 0)):
        r[f"nvlink.{link}"] = call.answer(f"nvmlDeviceGetNvLinkState({link})", nvml.nvmlDeviceGetNvLinkState, handle, link)
    return r, unsupported


def _field(nvml, call, handle, field_id):
    values, failed = call(f"nvmlDeviceGetFieldValues({field_id})", nvml.nvmlDeviceGetFieldValues, handle, [field_id])
    if failed:
        return failed
    value = values[0]
    if value.nvmlReturn != 0:
        return Answer(na=True, source=SOURCE)
    return Answer(float(value.value.uiVal), source=SOURCE)


def processes(nvml, uuid):
    """[(pid, used bytes)] of compute processes on the GPU, or None."""
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        return [(p.pid, p.usedGpuMemory) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)]
    except nvml.NVMLError:
        return None


def without_pynvml(note=NO_PYNVML):
    """Globals and per-GPU answers saying why the NVML-only readings are missing."""
    return {"nvml_version": unknown(note)}, {key: unknown(note) for key in ONLY_NVML}
