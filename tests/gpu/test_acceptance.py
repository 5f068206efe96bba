"""The acceptance run without a GPU: one line saying why it skipped, exit 0."""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "acceptance.py")
FAKE = os.path.join(HERE, "fake-bin")


def run(path, **env):
    done = subprocess.run([sys.executable, SCRIPT, "--binary", "/nonexistent"], capture_output=True, text=True,
                          timeout=60, env={"PATH": path, **env})
    return done.returncode, done.stdout.splitlines(), done.stderr


class Skips(unittest.TestCase):
    def test_without_nvidia_smi(self):
        with tempfile.TemporaryDirectory() as empty:
            self.assertEqual((0, ["test-gpu: skipped: no nvidia-smi on PATH"], ""), run(empty))

    def test_when_nvidia_smi_fails(self):
        # The stand-in needs python3 on PATH for its #! line.
        path = FAKE + os.pathsep + os.path.dirname(sys.executable)
        rc, lines, stderr = run(path, FAKE_NVIDIA_SMI="fail")
        self.assertEqual((0, ""), (rc, stderr))
        self.assertEqual(1, len(lines), lines)
        self.assertTrue(lines[0].startswith("test-gpu: skipped: nvidia-smi -L failed (exit 9): NVIDIA-SMI has failed"),
                        lines[0])

    def test_when_nvidia_smi_lists_no_gpu(self):
        path = FAKE + os.pathsep + os.path.dirname(sys.executable)
        self.assertEqual((0, ["test-gpu: skipped: nvidia-smi lists no GPU"], ""),
                         run(path, FAKE_NVIDIA_SMI="none"))

    def test_a_gpu_without_the_binary_is_an_error(self):
        path = FAKE + os.pathsep + os.path.dirname(sys.executable)
        rc, lines, stderr = run(path)
        self.assertEqual((2, []), (rc, lines))
        self.assertIn("/nonexistent is not an executable", stderr)


if __name__ == "__main__":
    unittest.main()
