"""The comparison against a published H100 sample (testdata/): the matching
pair passes, and each kind of injected mismatch fails."""

import os
import re
import unittest

import compare
import nvml_query
import smi

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")
UUID = "GPU-f7b02328-d6fe-5b1f-9683-15041689bb03"
MiB = 1 << 20


def read(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


XML = read("h100-nvidia-smi-q.xml")
PROM = read("h100-scrape.prom")
_CSV = [line for line in read("h100-query-gpu.csv").splitlines() if not line.startswith("#")]
CSV_FIELDS = [f.strip() for f in _CSV[0].split(",")]
CSV_VALUES = _CSV[1]


def driver(xml=XML, csv=CSV_VALUES, nvml=None):
    sources = []
    if csv is not None:
        glob, gpus = smi.parse_csv(CSV_FIELDS, csv)
        sources.append((glob, smi.by_uuid(gpus)))
    if xml is not None:
        glob, gpus = smi.parse_xml(xml)
        sources.append((glob, smi.by_uuid(gpus)))
    if nvml is not None:
        glob, gpus, overrides, _ = nvml_query.answers(nvml)
        sources.append((glob, gpus))
    merged = compare.merge(*sources)
    if nvml is None:
        return compare.fill(merged, *nvml_query.without_pynvml())
    return compare.override(merged, overrides)


def run(prom=PROM, before=None, **kwargs):
    after = compare.Scrape(prom)
    return compare.compare(compare.Scrape(before) if before else after, after, driver(**kwargs))


def row(result, reading):
    found = [r for r in result.rows if r.reading == reading]
    assert len(found) == 1, f"{reading}: {[r.reading for r in result.rows]}"
    return found[0]


def sub(pattern, replacement, text=PROM):
    changed, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count, pattern
    return changed


class MatchingPair(unittest.TestCase):
    def test_the_published_sample_and_its_scrape_match(self):
        result = run()
        self.assertEqual([], [(r.reading, r.verdict) for r in result.mismatches])
        matched = [r.reading for r in result.rows if r.ok]
        self.assertGreaterEqual(len(matched), 55, matched)
        for reading in ("gpu0 name", "gpu0 serial", "gpu0 pci_bus_id", "gpu0 memory.total", "gpu0 power_limit",
                        "gpu0 clock.sm", "gpu0 max_clock.video", "gpu0 pcie.max_gen", "gpu0 remapped.correctable",
                        "gpu0 ecc.volatile.uncorrected", "driver version", "cuda version", "GPU count"):
            self.assertTrue(row(result, reading).ok, reading)
        self.assertEqual("match (both N/A)", row(result, "gpu0 retired.sbe").verdict)
        self.assertEqual("match (both N/A)", row(result, "gpu0 fan.0").verdict)

    def test_each_nvidia_smi_output_alone_also_matches(self):
        for kwargs in ({"csv": None}, {"xml": None}):
            self.assertEqual([], run(**kwargs).mismatches, kwargs)

    def test_readings_only_nvml_has_are_not_checked_without_pynvml(self):
        result = run()
        for reading in ("gpu0 energy", "gpu0 threshold.shutdown", "gpu0 throttle.power", "gpu0 fans", "nvml version"):
            self.assertIsNone(row(result, reading).ok, reading)
            self.assertIn("not checked (no pynvml", row(result, reading).verdict)
        self.assertIn("T.Limit", row(result, "gpu0 threshold.gpu_max").verdict)

    def test_series_without_a_driver_counterpart_are_listed(self):
        self.assertEqual(["nvidia_gpu_xid_errors_total"], run().not_compared)

    def test_the_table_has_the_four_columns(self):
        lines = compare.table(run().rows).splitlines()
        self.assertEqual(["reading", "exporter", "driver", "verdict"], [c.strip() for c in lines[0].split("|")])
        self.assertIn("81559 MiB [smi-csv]", compare.table(run().rows))


class InjectedMismatches(unittest.TestCase):
    def test_a_value_off_by_1000_fails_and_names_the_units_bug(self):
        result = run(sub(r"^(nvidia_gpu_power_limit_watts\{.*\}) 700$", r"\1 700000"))
        self.assertFalse(row(result, "gpu0 power_limit").ok)
        self.assertIn("×1000", row(result, "gpu0 power_limit").verdict)
        result = run(sub(r'^(nvidia_gpu_clock_max_hertz\{.*clock="sm"\}) 1980000000$', r"\1 1980000"))
        self.assertIn("÷1000", row(result, "gpu0 max_clock.sm").verdict)
        self.assertEqual(1, len(result.mismatches))

    def test_mebibytes_served_as_megabytes_fail(self):
        result = run(sub(r"^(nvidia_gpu_memory_total_bytes\{.*\}) \d+$", rf"\1 {81559 * 10**6}"))
        self.assertFalse(row(result, "gpu0 memory.total").ok)
        self.assertIn("MiB vs MB", row(result, "gpu0 memory.total").verdict)

    def test_a_missing_metric_fails(self):
        result = run(sub(r"^nvidia_gpu_temperature_celsius\{.*\n", ""))
        self.assertEqual("mismatch: omitted by the exporter", row(result, "gpu0 temperature").verdict)
        self.assertEqual(["gpu0 temperature"], [r.reading for r in result.mismatches])

    def test_a_wrong_uuid_fails_on_both_sides(self):
        result = run(PROM.replace(UUID, "GPU-00000000-0000-4000-8000-000000000000"))
        verdicts = sorted(r.verdict for r in result.mismatches)
        self.assertEqual(["mismatch: GPU missing from the exporter", "mismatch: a GPU the driver does not list"],
                         verdicts)

    def test_a_reading_only_the_exporter_serves_fails(self):
        extra = f'nvidia_gpu_retired_pages{{gpu="0",uuid="{UUID}",cause="single_bit_ecc"}} 0\n'
        result = run(PROM + extra)
        self.assertIn("the driver says N/A", row(result, "gpu0 retired.sbe").verdict)
        self.assertEqual(1, len(result.mismatches))

    def test_a_fan_the_driver_does_not_have_fails(self):
        extra = f'nvidia_gpu_fan_speed_ratio{{gpu="0",uuid="{UUID}",fan="0"}} 0.3\n'
        self.assertFalse(row(run(PROM + extra), "gpu0 fan.0").ok)

    def test_wrong_identity_and_count_fail(self):
        result = run(PROM.replace('serial="1650124008279"', 'serial="1650124008280"'))
        self.assertEqual(["gpu0 serial"], [r.reading for r in result.mismatches])
        result = run(sub(r"^nvidia_gpus 1$", "nvidia_gpus 2"))
        self.assertEqual(["GPU count"], [r.reading for r in result.mismatches])
        result = run(PROM.replace('cuda_driver_version="12.6"', 'cuda_driver_version="12.60"'))
        self.assertEqual(["cuda version"], [r.reading for r in result.mismatches])

    def test_a_reason_the_driver_shows_active_fails_when_served_inactive(self):
        result = run(sub(r'^(nvidia_gpu_clock_event_active\{.*reason="gpu_idle"\}) 1$', r"\1 0"))
        self.assertEqual(["gpu0 reason.gpu_idle"], [r.reading for r in result.mismatches])


class ToleranceEdges(unittest.TestCase):
    def temperature(self, after, before=None):
        line = r"^(nvidia_gpu_temperature_celsius\{.*\}) 34$"
        return row(run(sub(line, rf"\g<1> {after}"), before=before and sub(line, rf"\g<1> {before}")),
                   "gpu0 temperature")

    def test_moving_readings_allow_their_tolerance_and_no_more(self):
        self.assertTrue(self.temperature(36).ok)  # driver 34 C, tolerance 2 C
        self.assertTrue(self.temperature(32).ok)
        self.assertFalse(self.temperature(37).ok)
        self.assertFalse(self.temperature(31).ok)

    def test_a_moving_reading_between_the_two_scrapes_matches(self):
        self.assertTrue(self.temperature(40, before=28).ok)
        self.assertTrue(self.temperature(28, before=40).ok)
        self.assertFalse(self.temperature(40, before=37).ok)

    def test_exact_readings_allow_the_display_resolution_only(self):
        line = r"^(nvidia_gpu_memory_total_bytes\{.*\}) \d+$"
        self.assertTrue(row(run(sub(line, rf"\g<1> {81559 * MiB + MiB - 1}")), "gpu0 memory.total").ok)
        self.assertFalse(row(run(sub(line, rf"\g<1> {81560 * MiB}")), "gpu0 memory.total").ok)
        line = r"^(nvidia_gpu_power_limit_watts\{.*\}) 700$"
        self.assertTrue(row(run(sub(line, r"\g<1> 700.009")), "gpu0 power_limit").ok)
        self.assertFalse(row(run(sub(line, r"\g<1> 700.02")), "gpu0 power_limit").ok)

    def test_counters_must_lie_between_the_scrapes(self):
        line = r"^(nvidia_gpu_pcie_replay_errors_total\{.*\}) 6$"
        self.assertTrue(row(run(sub(line, r"\g<1> 7"), before=sub(line, r"\g<1> 5")), "gpu0 pcie.replay").ok)
        self.assertFalse(row(run(sub(line, r"\g<1> 5"), before=sub(line, r"\g<1> 4")), "gpu0 pcie.replay").ok)
        self.assertFalse(row(run(sub(line, r"\g<1> 8"), before=sub(line, r"\g<1> 7")), "gpu0 pcie.replay").ok)

    def test_a_later_snapshot_can_clear_a_moving_mismatch(self):
        first = run(sub(r"^(nvidia_gpu_temperature_celsius\{.*\}) 34$", r"\g<1> 50"))
        merged = compare.best([first, run()])
        self.assertEqual([], merged.mismatches)
        self.assertIn("later snapshot", row(merged, "gpu0 temperature").verdict)


class Parsing(unittest.TestCase):
    def test_label_values_are_unescaped(self):
        scrape = compare.Scrape('m{a="x\\"y",b="c\\\\d",c="e\\nf"} 1.5\n# comment\nn 2 1700000000\n')
        self.assertEqual([("m", {"a": 'x"y', "b": "c\\d", "c": "e\nf"}, 1.5), ("n", {}, 2.0)], scrape.samples)

    def test_a_csv_line_with_the_wrong_number_of_values_is_an_error(self):
        with self.assertRaises(ValueError):
            smi.parse_csv(["index", "uuid"], "0\n")

    def test_pre_ampere_ecc_totals_and_rows_without_remapping(self):
        xml = XML.replace("<remapped_rows>", "<remapped_rows>N/A<x>").replace("</remapped_rows>", "</x></remapped_rows>")
        old = re.sub(r"<volatile>.*?</volatile>", "<volatile><single_bit><total>3</total></single_bit>"
                     "<double_bit><total>N/A</total></double_bit></volatile>", XML, flags=re.S)
        readings = smi.parse_xml(old)[1][0]
        self.assertEqual(3.0, readings["ecc.volatile.corrected"].value)
        self.assertTrue(readings["ecc.volatile.uncorrected"].na)
        bare = re.sub(r"<remapped_rows>.*?</remapped_rows>", "<remapped_rows>N/A</remapped_rows>", xml, flags=re.S)
        readings = smi.parse_xml(bare)[1][0]
        self.assertTrue(all(readings[k].na for k in ("remapped.correctable", "remap.pending", "remap.failed")))

    def test_supported_fields_follow_the_help_text(self):
        self.assertEqual(["uuid", "power.draw"], smi.supported_fields('"uuid"\n"power.draw" or "x"\n"clocks.grx"'))


class MigDevices(unittest.TestCase):
    XML = XML.replace("<current_mig>Disabled</current_mig>", "<current_mig>Enabled</current_mig>").replace(
        "<mig_devices>\n\t\t\tNone\n\t\t</mig_devices>",
        "<mig_devices><mig_device><index>0</index><gpu_instance_id>1</gpu_instance_id>"
        "<compute_instance_id>0</compute_instance_id><fb_memory_usage><total>40192 MiB</total>"
        "<used>12 MiB</used></fb_memory_usage></mig_device></mig_devices>")
    SERIES = (f'nvidia_gpu_mig_info{{gpu="0",uuid="{UUID}",mig_uuid="MIG-x",gpu_instance_id="1",'
              f'compute_instance_id="0",profile="3g.40gb"}} 1\n'
              f'nvidia_gpu_mig_memory_total_bytes{{gpu="0",uuid="{UUID}",gpu_instance_id="1",'
              f'compute_instance_id="0"}} {40192 * MiB}\n'
              f'nvidia_gpu_mig_memory_used_bytes{{gpu="0",uuid="{UUID}",gpu_instance_id="1",'
              f'compute_instance_id="0"}} {12 * MiB}\n')
    PROM = sub(r"^(nvidia_gpu_mig_mode_enabled\{.*\}) 0$", r"\1 1") + SERIES

    def test_mig_devices_are_compared_per_instance(self):
        result = run(self.PROM, xml=self.XML, csv=CSV_VALUES.replace("Disabled", "Enabled"))
        self.assertEqual([], result.mismatches)
        self.assertTrue(row(result, "gpu0 mig.1.0.memory.total").ok)
        self.assertTrue(row(result, "gpu0 mig.devices").ok)

    def test_a_wrong_instance_size_fails(self):
        prom = self.PROM.replace(str(40192 * MiB), str(20096 * MiB))
        result = run(prom, xml=self.XML, csv=CSV_VALUES.replace("Disabled", "Enabled"))
        self.assertEqual(["gpu0 mig.1.0.memory.total"], [r.reading for r in result.mismatches])



class FakeNvml:
    """A stand-in for the pynvml module: the calls nvml_query makes, with
    made-up answers (test inputs, not facts about the H100)."""

    NVML_ERROR_NOT_SUPPORTED = 3

    class NVMLError(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value

        def __str__(self):
            return {3: "Not Supported", 999: "Unknown Error"}[self.value]

    def __init__(self, failing=()):
        self.failing = failing

    def _maybe_fail(self, name):
        if name in self.failing:
            raise self.NVMLError(999)

    def nvmlSystemGetNVMLVersion(self):
        return b"12.560.35.03"

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetUUID(self, handle):
        return UUID

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self._maybe_fail("energy")
        return 123456789

    def nvmlDeviceGetTemperatureThreshold(self, handle, kind):
        return {0: 92, 1: 89, 2: 95, 3: 87}[kind]

    def nvmlDeviceGetViolationStatus(self, handle, policy):
        return type("Violation", (), {"violationTime": 1_500_000_000 * policy})()

    def nvmlDeviceGetNumFans(self, handle):
        raise self.NVMLError(3)

    def nvmlDeviceGetSupportedClocksEventReasons(self, handle):
        return 0xFF  # every reason but display_clock_setting

    def nvmlDeviceGetFieldValues(self, handle, ids):
        # Two NVLink links; recovery action 0 (none).
        value = type("Value", (), {"uiVal": {91: 2, 230: 0}[ids[0]]})()
        return [type("Field", (), {"nvmlReturn": 0, "value": value})()]

    def nvmlDeviceGetNvLinkState(self, handle, link):
        return 1 if link == 0 else 0


def nvml_series():
    g = f'gpu="0",uuid="{UUID}"'
    lines = [f"nvidia_gpu_energy_consumption_joules_total{{{g}}} 123456.789"]
    for name, value in (("shutdown", 92), ("slowdown", 89), ("memory_max", 95), ("gpu_max", 87)):
        lines.append(f'nvidia_gpu_temperature_threshold_celsius{{{g},threshold="{name}"}} {value}')
    for policy, name in enumerate(nvml_query.POLICIES):
        lines.append(f'nvidia_gpu_throttled_seconds_total{{{g},reason="{name}"}} {1.5 * policy}')
    lines += [f'nvidia_gpu_nvlinks{{{g},state="active"}} 1', f'nvidia_gpu_nvlinks{{{g},state="inactive"}} 1']
    lines += [f'nvidia_gpu_recovery_action{{{g},action="{a}"}} {int(a == "none")}'
              for a in ("none", "gpu_reset", "node_reboot", "drain_p2p", "drain_and_reset")]
    without = sub(r'^nvidia_gpu_clock_event_active\{.*reason="display_clock_setting"\} 0\n', "")
    return without + "\n".join(lines) + "\n"


class ThroughNvml(unittest.TestCase):
    def test_nvml_only_readings_match_when_served_in_base_units(self):
        result = run(nvml_series(), nvml=FakeNvml())
        self.assertEqual([], [(r.reading, r.verdict) for r in result.mismatches])
        for reading in ("gpu0 energy", "gpu0 threshold.shutdown", "gpu0 threshold.memory_max",
                        "gpu0 throttle.base_clocks", "gpu0 nvlinks", "gpu0 nvlinks.active",
                        "gpu0 nvlinks.inactive", "nvml version",
                        "gpu0 recovery action"):
            self.assertTrue(row(result, reading).ok, reading)
        # NVML says the GPU cannot report it, so nvidia-smi's "Not Active" does not count.
        self.assertEqual("match (both N/A)", row(result, "gpu0 reason.display_clock_setting").verdict)
        # NOT_SUPPORTED fans: none, and none served.
        self.assertTrue(row(result, "gpu0 fans").ok)

    def test_links_counted_by_state_must_match_the_drivers(self):
        prom = nvml_series().replace('state="active"} 1', 'state="active"} 2').replace(
            'state="inactive"} 1', 'state="inactive"} 0')
        result = run(prom, nvml=FakeNvml())
        self.assertEqual(["gpu0 nvlinks.active", "gpu0 nvlinks.inactive"],
                         sorted(r.reading for r in result.mismatches))

    def test_each_links_state_is_compared_where_it_is_served(self):
        g = f'gpu="0",uuid="{UUID}"'
        prom = nvml_series() + f'nvidia_gpu_nvlink_up{{{g},link="0"}} 1\nnvidia_gpu_nvlink_up{{{g},link="1"}} 1\n'
        result = run(prom, nvml=FakeNvml())
        self.assertEqual(["gpu0 nvlink.1"], [r.reading for r in result.mismatches])
        self.assertTrue(row(result, "gpu0 nvlink.0").ok)

    def test_energy_served_in_millijoules_fails(self):
        prom = nvml_series().replace("joules_total{gpu=\"0\",uuid=\"%s\"} 123456.789" % UUID,
                                     "joules_total{gpu=\"0\",uuid=\"%s\"} 123456789" % UUID)
        result = run(prom, nvml=FakeNvml())
        self.assertEqual(["gpu0 energy"], [r.reading for r in result.mismatches])
        self.assertIn("×1000", row(result, "gpu0 energy").verdict)

    def test_a_recovery_action_other_than_the_drivers_fails(self):
        prom = nvml_series().replace('action="none"} 1', 'action="none"} 0').replace(
            'action="gpu_reset"} 0', 'action="gpu_reset"} 1')
        result = run(prom, nvml=FakeNvml())
        self.assertEqual(["gpu0 recovery action"], [r.reading for r in result.mismatches])
        # R570's nvidia-smi prints the action in words.
        xml = XML.replace("<gsp_firmware_version>", "<gpu_recovery_action>None</gpu_recovery_action>\n"
                          "\t\t<gsp_firmware_version>")
        self.assertTrue(row(run(nvml_series(), xml=xml), "gpu0 recovery action").ok)

    def test_a_failing_nvml_call_is_recorded_and_not_checked(self):
        nvml = FakeNvml(failing=("energy",))
        failures = nvml_query.answers(nvml)[3]
        self.assertEqual(["nvmlDeviceGetTotalEnergyConsumption: Unknown Error"], failures)
        result = run(nvml_series(), nvml=nvml)
        self.assertEqual("not checked (NVML error: Unknown Error)", row(result, "gpu0 energy").verdict)
        self.assertEqual([], result.mismatches)

if __name__ == "__main__":
    unittest.main()
