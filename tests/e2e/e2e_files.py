"""What the end-to-end test files share: a test case that works in a temporary folder of its
own. Standard library only; each test file imports it from its own folder."""

import os
import tempfile
import unittest


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
