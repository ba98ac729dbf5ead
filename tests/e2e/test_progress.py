"""Progress that tells the truth: the real pipeline-run binary and a MiniLM-shaped model on
input whose lengths are heavy-tailed (most records short, a few far past the model's limit),
with length-sorted windows on (the default).

- Work shows from the first model calls: records, bytes and tokens through the model, in
  completion order, long before the first record is written.
- The ETA (BatchProgress.eta_s) at 30 %, 50 % and 70 % of the run is within 25 % of the time
  that actually remained, measured from the event stream's timestamps.
- The fraction done is below 1 until the last event, which says 1, "finished", and counts
  every input byte and every token of the summary.
- On a terminal the line is tqdm-like and fits the terminal's width; it never wraps.

Run through meson (`meson test -C build e2e-progress`). Standard library only.
"""

import fcntl
import json
import math
import os
import pty
import random
import re
import select
import struct
import subprocess
import termios
import unittest

from e2e_files import TempDirTest

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
MINILM = os.path.join(MODELS, "minilm")
# Under a sanitizer (tools/sanitize.sh runs the e2e tests instrumented and several at once),
# speed is not the product's: the timing checks are skipped there, with that reason.
SANITIZED = any(v in os.environ for v in ("ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"))

WORDS = ("def return self value data index result config import from class lambda for while if "
         "else try except with yield async await print len range list dict").split()


def heavy_tailed_input(path, records, seed=7):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(records):
            n = max(1, int(min(20000, rng.lognormvariate(4.5, 1.1))))
            f.write(json.dumps({"id": i, "text": " ".join(rng.choice(WORDS) for _ in range(n))}) + "\n")


class EventStreamTruth(TempDirTest):
    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.tmp_class = tempfile.TemporaryDirectory(prefix="sluice-progress-")
        d = cls.tmp_class.name
        cls.input = os.path.join(d, "in.jsonl")
        heavy_tailed_input(cls.input, 300 if SANITIZED else 1200)
        events = os.path.join(d, "events.jsonl")
        r = subprocess.run([PIPELINE_RUN, "embed", cls.input, "-o", os.path.join(d, "out.jsonl"), "--model", MINILM,
                            "--no-checkpoint", "--progress", "never", "--events", events],
                           capture_output=True, timeout=900)
        if r.returncode != 0:
            raise AssertionError(r.stderr.decode())
        cls.events = [json.loads(l) for l in open(events)]
        cls.t0 = next(e["ts"] for e in cls.events if e["type"] == "pipeline_started")
        cls.t1 = next(e["ts"] for e in cls.events if e["type"] == "pipeline_finished")
        cls.summary = cls.events[-1]["summary"]
        cls.progress = [e for e in cls.events if e["type"] == "batch_progress"]

    @classmethod
    def tearDownClass(cls):
        cls.tmp_class.cleanup()

    def test_work_shows_from_the_first_model_calls(self):
        # The first event after the model's first results shows them (records, bytes and
        # tokens through the model) while the length-sorted window still keeps records from
        # being written: "done" alone would still say nothing happened.
        first = next((p for p in self.progress if p["processed"] > 0), None)
        self.assertIsNotNone(first)
        self.assertGreater(first["tokens_processed"], 0)
        self.assertGreater(first["bytes_processed"], 0)
        self.assertLess(first["completed"], first["processed"])
        later = [p for p in self.progress if p["ts"] > first["ts"] and p["phase"] == "embedding"]
        self.assertTrue(any(p["tokens_per_s"] > 0 for p in later), later[:3])
        if SANITIZED:
            return  # when, below, is a matter of speed
        # Within the first model calls: a few calls' time (each call's mean, from the summary)
        # and one progress period after the run started.
        call_s = self.summary["model_busy_s"] / self.summary["model_calls"]
        self.assertLessEqual(first["ts"] - self.t0, 4 * call_s + 1.0, (first["ts"] - self.t0, call_s))

    def test_eta_within_a_quarter_of_the_time_left(self):
        if SANITIZED:
            self.skipTest("timing under a sanitizer, beside other tests, is not the product's")
        for share in (0.3, 0.5, 0.7):
            at = self.t0 + share * (self.t1 - self.t0)
            before = [p for p in self.progress if p["ts"] <= at and p.get("eta_s") is not None]
            self.assertTrue(before, f"no ETA by {share:.0%} of the run")
            p = before[-1]
            left = self.t1 - p["ts"]
            self.assertLessEqual(abs(p["eta_s"] - left), 0.25 * left,
                                 f"at {share:.0%} of the run: ETA {p['eta_s']:.1f} s, {left:.1f} s remained")

    def test_eta_only_once_measured(self):
        for p in self.progress:
            if p.get("eta_s") is not None and p["phase"] != "finished":
                self.assertGreater(p["processed"], 0)
                self.assertGreater(p["tokens_per_s"], 0)

    def test_fraction_is_one_only_at_the_end_and_counts_everything(self):
        *before, last = self.progress
        for p in before:
            self.assertLess(p["fraction"], 1.0)
            self.assertNotEqual(p["phase"], "finished")
            self.assertIn(p["phase"], ("embedding", "draining", "finishing"))
        self.assertEqual(last["phase"], "finished")
        self.assertEqual(before[-1]["phase"], "finishing")  # the final checkpoint and sync
        self.assertEqual(last["fraction"], 1.0)
        self.assertEqual(last["eta_s"], 0)
        self.assertEqual(last["bytes_processed"], os.path.getsize(self.input))
        self.assertEqual(last["processed"], self.summary["completed"] + self.summary["failed"])
        self.assertEqual(last["tokens_processed"], self.summary["tokens"])
        self.assertEqual(last["tokens_expected"], self.summary["tokens"])
        # The estimate of the whole run's tokens once known, and how it settled.
        estimates = [p["tokens_expected"] for p in before if p["tokens_expected"] > 0]
        self.assertTrue(estimates)
        self.assertLessEqual(abs(estimates[-1] - self.summary["tokens"]), 0.05 * self.summary["tokens"])


def run_on_terminal(args, columns):
    """Runs pipeline-run with its standard error on a pseudo-terminal `columns` wide; returns
    every redraw of the live line and the lines printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = dict(os.environ, LANG="C.UTF-8")
    p = subprocess.Popen([PIPELINE_RUN] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                         env=env)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 1.0)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=600)
    os.close(master)
    text = out.decode("utf-8")
    # The terminal turns \n into \r\n; the live line is redrawn with \r ESC[K.
    text = text.replace("\r\n", "\n")
    redraws = [s for s in re.split(r"\r\x1b\[K", text)]
    return p.returncode, redraws


class TerminalLine(TempDirTest):
    def test_line_fits_every_width_and_ends_at_100_percent(self):
        src = self.path("in.jsonl")
        heavy_tailed_input(src, 150, seed=3)
        for columns in (130, 60, 24):
            with self.subTest(columns=columns):
                rc, redraws = run_on_terminal(["embed", src, "-o", self.path(f"out{columns}.jsonl"), "--model", MINILM,
                                               "--no-checkpoint"], columns)
                self.assertEqual(rc, 0)
                # Live lines are the redraws without a newline (printed lines, the summary, end in one).
                live = [r for r in redraws if r.strip() and "\n" not in r]
                self.assertTrue(any(l.startswith("embedding") for l in live), live)
                for l in live:
                    self.assertLess(len(l), columns, f"{l!r} is {len(l)} columns on a {columns}-column terminal")
                final = [l for l in live if l.startswith("finished")]
                self.assertTrue(final, live[-3:])
                self.assertIn("100%", final[-1])
                if columns >= 60:
                    self.assertTrue(re.search(r"\[\d\d:\d\d<", final[-1]), final[-1])
                    self.assertIn("150 embedded", final[-1])
                for l in live:
                    if l.startswith("embedding") and "%" in l:
                        self.assertNotIn("100%", l)


if __name__ == "__main__":
    unittest.main(verbosity=2)
