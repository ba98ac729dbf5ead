"""What the end-to-end test files share: a test case that works in a temporary folder of its
own. Standard library only; each test file imports it from its own folder."""

import os
import subprocess
import tempfile
import time
import unittest


def wait_for_size(path, size, timeout, step=0.02):
    """Until the file at `path` holds at least `size` bytes, or `timeout` seconds have passed
    (the caller then finds out what the run did)."""
    deadline = time.time() + timeout
    while time.time() < deadline and (not os.path.exists(path) or os.path.getsize(path) < size):
        time.sleep(step)


def killed_then_resumed(cmd, rng, whole, kills):
    """Runs `cmd`, SIGKILLs it at a random moment (from 2 % to 110 % of `whole`, the seconds an
    uninterrupted run takes: during start-up, reading, embedding or writing) `kills` times, each
    time starting it again with --resume, then lets the last run finish. Returns its exit
    status and standard error."""
    for k in range(kills + 1):
        p = subprocess.Popen(cmd + (["--resume"] if k else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if k < kills:
            try:
                p.wait(timeout=rng.uniform(0.02, 1.1) * whole)
            except subprocess.TimeoutExpired:
                p.kill()
            p.communicate()
        else:
            _, err = p.communicate(timeout=600)
            return p.returncode, err


class TempDirTest(unittest.TestCase):
    """setUp makes a temporary folder (self.dir), tearDown removes it; path, write and read
    name, create and read files there (bytes)."""

    prefix = "sluice-e2e-"

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix=self.prefix)
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()
