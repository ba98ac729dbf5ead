"""The installed library as a user meets it: `meson install` into a staging folder, then a
project outside the tree (this folder's meson.build) built against it through pkg-config, and
its two programs run on a test model. Also: every public header is installed and compiles on
its own, warning-free, with nothing but the installed include folder (no libtorch headers).

Environment (set by tests/meson.build): SLUICE_BUILD_ROOT, SLUICE_SOURCE_ROOT,
SLUICE_TEST_MODELS, MESON (the meson that configured the build)."""

import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

BUILD = os.environ["SLUICE_BUILD_ROOT"]
SOURCE = os.environ["SLUICE_SOURCE_ROOT"]
MODELS = os.environ["SLUICE_TEST_MODELS"]
MESON = os.environ.get("MESON", "meson").split()
HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, env=None, cwd=None):
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


class InstalledLibrary(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sluice-install-")
        cls.stage = os.path.join(cls.tmp.name, "stage")
        run(MESON + ["install", "-C", BUILD, "--destdir", cls.stage, "--no-rebuild", "--quiet"])
        pcs = glob.glob(os.path.join(cls.stage, "**", "pkgconfig", "sluice.pc"), recursive=True)
        if len(pcs) != 1:
            raise AssertionError(f"expected one installed sluice.pc, found {pcs}")
        # The staged sluice.pc names the configured prefix; point it at the staging folder, as
        # installing with --prefix there would have.
        text = open(pcs[0]).read()
        prefix = next(l.split("=", 1)[1] for l in text.splitlines() if l.startswith("prefix="))
        cls.prefix = cls.stage + prefix
        cls.pc_dir = os.path.join(cls.tmp.name, "pkgconfig")
        os.makedirs(cls.pc_dir)
        with open(os.path.join(cls.pc_dir, "sluice.pc"), "w") as f:
            f.write(text.replace("prefix=" + prefix, "prefix=" + cls.prefix, 1))
        cls.env = dict(os.environ, PKG_CONFIG_PATH=cls.pc_dir)
        cls.libdir = run(["pkg-config", "--variable=libdir", "sluice"], env=cls.env).stdout.strip()
        cls.run_env = dict(os.environ, LD_LIBRARY_PATH=cls.libdir)

        # The consumer project, copied out of the source tree so nothing of the tree is near it.
        cls.project = os.path.join(cls.tmp.name, "consumer")
        os.makedirs(cls.project)
        for name in ("meson.build", "push_embedder.cpp", "pull_events.cpp"):
            shutil.copy(os.path.join(HERE, name), cls.project)
        cls.consumer_build = os.path.join(cls.tmp.name, "consumer-build")
        run(MESON + ["setup", cls.consumer_build, cls.project], env=cls.env)
        run(["ninja", "-C", cls.consumer_build], env=cls.env)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_every_public_header_is_installed_and_compiles_alone(self):
        ours = sorted(os.path.basename(p) for p in glob.glob(os.path.join(SOURCE, "lib/include/sluice/*.hpp")))
        installed_dir = os.path.join(self.prefix, "include", "sluice")
        installed = sorted(os.listdir(installed_dir))
        self.assertEqual(installed, ours, "lib/meson.build's install_headers() must list every public header")
        cflags = run(["pkg-config", "--cflags", "sluice"], env=self.env).stdout.split()
        self.assertIn("-I" + os.path.join(self.prefix, "include"), cflags)
        for header in ours:
            src = os.path.join(self.tmp.name, "alone.cpp")
            with open(src, "w") as f:
                f.write(f"#include <sluice/{header}>\nint main() {{ return 0; }}\n")
            with self.subTest(header=header):
                run(["c++", "-std=c++20", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only", *cflags, src])

    def test_libs_name_only_the_library_and_libuv(self):
        libs = run(["pkg-config", "--libs", "sluice"], env=self.env).stdout.split()
        self.assertIn("-lsluice", libs)
        self.assertIn("-luv", libs)
        self.assertTrue(os.path.exists(os.path.join(self.libdir, "libsluice.so")))

    def test_push_program_with_its_own_sink_and_subscriber(self):
        records = [{"id": i, "text": f"text number {i}"} for i in range(1, 11)]
        del records[3]["text"]  # line 4: no text field
        path = os.path.join(self.tmp.name, "in.jsonl")
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        r = run([os.path.join(self.consumer_build, "push-embedder"), os.path.join(MODELS, "minilm"), path],
                env=self.run_env)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[-1], "summary completed 9 1", r.stdout + r.stderr)
        self.assertEqual(lines[-2], "sink finished")
        self.assertIn("failed 4 missing_field", lines)
        embedded = [l.split() for l in lines if l[0].isdigit()]
        self.assertEqual([int(l[0]) for l in embedded], [1, 2, 3, 5, 6, 7, 8, 9, 10])
        for line, dim, norm in embedded:
            self.assertEqual(dim, "384")
            self.assertTrue(math.isclose(float(norm), 1.0, abs_tol=1e-3), f"line {line}: norm {norm}")

    def test_pull_program_with_generated_source_and_stream_operators(self):
        r = run([os.path.join(self.consumer_build, "pull-events"), os.path.join(MODELS, "minilm"), "40"],
                env=self.run_env)
        events = [l.split()[1:] for l in r.stdout.splitlines() if l.startswith("event ")]
        self.assertEqual([int(seq) for seq, _ in events], list(range(1, len(events) + 1)))
        kinds = [kind for _, kind in events]
        self.assertEqual(kinds[0], "pipeline_started")
        self.assertEqual(kinds[-1], "pipeline_finished")
        self.assertEqual(kinds.count("document_completed"), 10)
        self.assertNotIn("document_failed", kinds)
        sink = [l[len("sink "):] for l in r.stdout.splitlines() if l.startswith("sink ")]
        self.assertEqual(sink, ['{"n":%d} dim=384' % n for n in range(2, 21, 2)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
