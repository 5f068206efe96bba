"""The load checks, the container hints and the cost arithmetic, on made-up
inputs (they are pure functions)."""

import os
import tempfile
import unittest

import compare
import load
import measure

IDLE = {"util": 0.0, "power": 70.0, "sm_clock": 345e6, "max_sm_clock": 1980e6, "sm_active": 0.0}
BUSY = {"util": 1.0, "power": 650.0, "sm_clock": 1980e6, "sm_active": 0.9}
# 20 s at 650 W: 13 kJ.
ENERGY = (1000.0, 5000.0, 1020.0, 18000.0)
LISTED = {4242: ("python3", 3 << 30)}


def checks(idle=IDLE, samples=(BUSY, BUSY), energy=ENERGY, hopper=True, pids=frozenset({4242}), listed=None,
           visible=lambda pid: True):
    result = load.checks(idle, list(samples), energy, hopper, set(pids), LISTED if listed is None else listed,
                         visible)
    return {check: ok for check, _, ok in result}, {check: detail for check, detail, _ in result}


class LoadChecks(unittest.TestCase):
    def test_a_load_the_exporter_saw_passes(self):
        ok, _ = checks()
        self.assertEqual({True}, set(ok.values()), ok)

    def test_readings_that_do_not_rise_fail(self):
        ok, _ = checks(samples=[dict(BUSY, util=0.0, power=71.0, sm_clock=345e6, sm_active=0.0)])
        for check in ("utilisation rises", "power rises", "SM clock rises", "GPM SM activity rises"):
            self.assertFalse(ok[check], check)

    def test_an_sm_clock_already_at_its_maximum_passes(self):
        ok, detail = checks(idle=dict(IDLE, sm_clock=1980e6), samples=[BUSY])
        self.assertTrue(ok["SM clock rises"])
        self.assertIn("maximum", detail["SM clock rises"])

    def test_an_energy_counter_that_does_not_match_the_power_fails(self):
        self.assertFalse(checks(energy=(1000.0, 5000.0, 1020.0, 5000.0))[0]["energy counter increases"])
        # Millijoules served as joules: a thousand times the power drawn.
        self.assertFalse(checks(energy=(1000.0, 5e6, 1020.0, 18e6))[0]["energy counter increases"])
        self.assertFalse(checks(energy=None)[0]["energy counter increases"])

    def test_gpm_applies_from_hopper_on(self):
        ok, _ = checks(hopper=False, samples=[dict(BUSY, sm_active=None)])
        self.assertIsNone(ok["GPM SM activity rises"])
        self.assertFalse(checks(samples=[dict(BUSY, sm_active=None)])[0]["GPM SM activity rises"])

    def test_the_load_process_must_be_listed_with_name_and_memory(self):
        check = "load process in the processes collector"
        self.assertFalse(checks(listed={})[0][check])
        self.assertFalse(checks(listed={4242: ("", 3 << 30)})[0][check])
        self.assertFalse(checks(listed={999: ("bash", 1 << 20)})[0][check])

    def test_a_pid_this_proc_cannot_see_is_said_not_failed(self):
        ok, detail = checks(listed={77: ("", 3 << 30)}, visible=lambda pid: pid != 77)
        check = "load process in the processes collector"
        self.assertTrue(ok[check])
        self.assertIn("cannot see", detail[check])

    def test_descendants_are_found_through_proc(self):
        with tempfile.TemporaryDirectory() as proc:
            for pid, parent in ((10, 1), (11, 10), (12, 11), (20, 1)):
                os.makedirs(f"{proc}/{pid}")
                with open(f"{proc}/{pid}/stat", "w") as f:
                    f.write(f"{pid} (gpu burn) S {parent} 0 0\n")
            self.assertTrue(load.descends_from(12, 10, proc))
            self.assertFalse(load.descends_from(20, 10, proc))
            self.assertFalse(load.descends_from(99, 10, proc))


class Environment(unittest.TestCase):
    def test_container_markers_are_found(self):
        with tempfile.TemporaryDirectory() as root:
            self.assertEqual([], measure.container_hints(root, env={}))
            open(os.path.join(root, ".dockerenv"), "w").close()
            os.makedirs(os.path.join(root, "proc", "1"))
            os.makedirs(os.path.join(root, "proc", "self"))
            with open(os.path.join(root, "proc/1/cgroup"), "w") as f:
                f.write("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope\n")
            with open(os.path.join(root, "proc/self/status"), "w") as f:
                f.write("Name:\tpython3\nNSpid:\t4242\t7\n")
            hints = measure.container_hints(root, env={"container": "podman"})
            self.assertEqual(["/.dockerenv", "container=podman", "/proc/1/cgroup mentions kubepods, containerd",
                              "in a nested PID namespace (NSpid 4242 7)"], hints)


class Cost(unittest.TestCase):
    def test_cost_per_collection_is_the_delta_over_the_collections(self):
        first = compare.Scrape('system_info_exporter_nvml_calls_total{phase="collection"} 1000\n'
                               'system_info_exporter_nvml_calls_total{phase="processes"} 10\n'
                               "process_cpu_seconds_total 1.5\nprocess_resident_memory_bytes 9e6\n")
        last = compare.Scrape('system_info_exporter_nvml_calls_total{phase="collection"} 1190\n'
                              'system_info_exporter_nvml_calls_total{phase="processes"} 40\n'
                              "process_cpu_seconds_total 1.55\nprocess_resident_memory_bytes 1e7\n")
        cost = measure.exporter_cost(first, last, 10, [0.002, 0.004])
        self.assertEqual({"collection": 19.0, "processes": 3.0}, cost["nvml_calls_per_collection"])
        self.assertAlmostEqual(0.005, cost["cpu_seconds_per_collection"])
        self.assertAlmostEqual(0.003, cost["collect_duration_seconds"])
        self.assertEqual(1e7, cost["rss_bytes"])
        self.assertEqual({"collections": 0}, measure.exporter_cost(first, last, 0, []))


if __name__ == "__main__":
    unittest.main()
