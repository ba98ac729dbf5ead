"""End-to-end tests: the real pipeline-run binary on small files.

Run through meson (`meson test -C build e2e-cli`), which sets PIPELINE_RUN, SLUICE_TEST_MODELS
and SLUICE_SOURCE_ROOT. Standard library only.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
TINY = os.path.join(MODELS, "tiny")

EVENT_TYPES = {
    "pipeline_started", "document_started", "document_completed", "document_failed",
    "batch_progress", "stage_state_changed", "checkpointed", "pipeline_finished",
}


def run(args, stdin=None, timeout=300):
    return subprocess.run([PIPELINE_RUN] + args, input=stdin, capture_output=True, timeout=timeout)


def records(n, start=0):
    return b"".join(
        b'{"id": %d, "text": "record %d about rivers and deltas", "meta": {"n": %d}}\n' % (i, i, i)
        for i in range(start, start + n))


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="sluice-e2e-")
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

    def embed(self, input_bytes, *extra, name="in.jsonl"):
        src = self.write(name, input_bytes)
        out = self.path("out.jsonl")
        r = run(["embed", src, "-o", out, "--model", TINY, "--progress", "never", *extra])
        return r, src, out

    # --- output bytes -------------------------------------------------------------------

    def check_kept(self, in_line, out_line):
        """The output is the input object up to its closing brace, then the embedding."""
        body = in_line.rstrip(b" \t\r")
        self.assertTrue(body.endswith(b"}"), body)
        prefix = body[:-1]
        self.assertTrue(out_line.startswith(prefix), (in_line, out_line[:200]))
        rest = out_line[len(prefix):]
        self.assertTrue(rest.startswith(b',"embedding":[') or rest.startswith(b'"embedding":['), rest[:40])
        self.assertTrue(rest.endswith(b"]}"))
        obj = json.loads(out_line)
        self.assertEqual(len(obj["embedding"]), 32)

    def test_embed_keeps_every_input_byte_in_order(self):
        data = records(50)
        r, _, out = self.embed(data)
        self.assertEqual(r.returncode, 0, r.stderr)
        in_lines = data.splitlines()
        out_lines = self.read("out.jsonl").split(b"\n")
        self.assertEqual(out_lines[-1], b"")
        self.assertEqual(len(out_lines) - 1, len(in_lines))
        for a, b in zip(in_lines, out_lines):
            self.check_kept(a, b)
        self.assertIn(b"completed: 50 records embedded, 0 failed", r.stderr)

    def test_hostile_layout(self):
        data = (b"\xef\xbb\xbf{\"text\":\"bom first\"}\r\n"       # BOM and CRLF
                b"\n   \n\t\r\n"                                  # blank lines
                b"  {\"text\" : \"spaces\" ,\"x\":[1, 2 ] }  \r\n"  # whitespace everywhere
                b"{\"a\":1,\"a\":2,\"text\":\"dup keys\",\"big\":1e400,\"n\":123456789012345678901234567890}\n"
                b"{\"text\":\"esc \\u00e9 \\ud83d\\ude00 \\\"q\\\"\"}\n"
                b"{\"text\":\"no final newline\"}")
        r, _, _ = self.embed(data)
        self.assertEqual(r.returncode, 0, r.stderr)
        out_lines = self.read("out.jsonl").split(b"\n")
        self.assertEqual(out_lines[-1], b"")
        out_lines = out_lines[:-1]
        expected_inputs = [
            b"{\"text\":\"bom first\"}",
            b"  {\"text\" : \"spaces\" ,\"x\":[1, 2 ] }",
            b"{\"a\":1,\"a\":2,\"text\":\"dup keys\",\"big\":1e400,\"n\":123456789012345678901234567890}",
            b"{\"text\":\"esc \\u00e9 \\ud83d\\ude00 \\\"q\\\"\"}",
            b"{\"text\":\"no final newline\"}",
        ]
        self.assertEqual(len(out_lines), len(expected_inputs))
        for a, b in zip(expected_inputs, out_lines):
            self.check_kept(a, b)
        # Whitespace before the closing brace stays, the field follows it.
        self.assertTrue(out_lines[1].startswith(b"  {\"text\" : \"spaces\" ,\"x\":[1, 2 ] ,\"embedding\":["))

    def test_empty_object_gets_no_comma(self):
        r, _, _ = self.embed(b'{"text":"x"}\n', "--text-field", "text")
        self.assertEqual(r.returncode, 0)
        src = self.write("in2.jsonl", b'{"body":"text here"}\n')
        r = run(["embed", src, "-o", self.path("o2.jsonl"), "--model", TINY, "--text-field", "body",
                 "--output-field", "vec", "--progress", "never"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(self.read("o2.jsonl").startswith(b'{"body":"text here","vec":['))

    def test_stdin_to_stdout(self):
        data = records(7)
        r = run(["embed", "-", "--model", TINY, "--progress", "never"], stdin=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        out_lines = r.stdout.split(b"\n")[:-1]
        self.assertEqual(len(out_lines), 7)
        for a, b in zip(data.splitlines(), out_lines):
            self.check_kept(a, b)

    # --- validation and errors ----------------------------------------------------------

    BAD = (b'{"text":"ok"}\n'
           b'{"text": 5}\n'
           b'{"text":"unterminated}\n'
           b'{"other":"x"}\n'
           b'"just a string"\n'
           b'{"text":"has it","embedding":[1]}\n'
           b'{"text":"bad utf8 \xff\xfe"}\n'
           b'{"text":"ok again"}\n')

    def test_validate_lists_every_bad_line(self):
        src = self.write("bad.jsonl", self.BAD)
        r = run(["validate", src])
        self.assertEqual(r.returncode, 3)
        err = r.stderr.decode()
        self.assertIn(f'{src}:2: field "text" is a number, expected a string', err)
        self.assertIn(f"{src}:3: invalid JSON", err)
        self.assertIn(f'{src}:4: field "text" is missing', err)
        self.assertIn(f"{src}:5: ", err)
        self.assertIn(f'{src}:6: field "embedding" already exists', err)
        self.assertIn(f"{src}:7: ", err)
        self.assertNotIn(f"{src}:1:", err)
        self.assertNotIn(f"{src}:8:", err)
        self.assertIn("6 of 8 records are invalid", err)
        good = self.write("good.jsonl", records(3))
        self.assertEqual(run(["validate", good]).returncode, 0)

    def test_embed_validates_before_loading_the_model(self):
        src = self.write("bad.jsonl", self.BAD)
        out = self.path("out.jsonl")
        # A model folder that cannot load: validation must report before the model is touched.
        broken = os.path.join(self.dir, "broken-model")
        os.mkdir(broken)
        r = run(["embed", src, "-o", out, "--model", broken])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn(f'{src}:4: field "text" is missing', r.stderr.decode())
        self.assertIn("nothing was embedded", r.stderr.decode())
        self.assertFalse(os.path.exists(out))

    def test_skip_writes_dead_letters_and_counts(self):
        dead = self.path("dead.jsonl")
        r, src, _ = self.embed(self.BAD, "--on-error", "skip", "--dead-letter", dead)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"2 records embedded, 6 failed", r.stderr)
        self.assertEqual(len(self.read("out.jsonl").splitlines()), 2)
        lines = [json.loads(l) for l in self.read("dead.jsonl").splitlines()]
        self.assertEqual([d["line"] for d in lines], [2, 3, 4, 5, 6, 7])
        self.assertEqual(lines[0]["error"], "field_not_string")
        self.assertEqual(lines[0]["field"], "text")
        self.assertEqual(lines[0]["record"], '{"text": 5}')
        self.assertEqual(lines[2]["error"], "missing_field")
        # Invalid UTF-8 is kept byte for byte, in base64.
        import base64
        self.assertEqual(base64.b64decode(lines[5]["record_base64"]), b'{"text":"bad utf8 \xff\xfe"}')

    def test_max_errors_stops_the_run_past_the_limit(self):
        data = b"".join(b'{"id": %d, "text": 5}\n' % i if i % 10 == 3 else b'{"id": %d, "text": "t %d"}\n' % (i, i)
                        for i in range(100))
        dead = self.path("dead.jsonl")
        r, _, _ = self.embed(data, "--max-errors", "4", "--dead-letter", dead)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn(b'error: 5 records failed, more than --max-errors 4 allows; the last: ', r.stderr)
        self.assertIn(b'in.jsonl:44: field "text" is a number, expected a string', r.stderr)
        # Everything before the fifth bad record is written; the five are dead letters.
        self.assertEqual(len(self.read("out.jsonl").splitlines()), 39)
        self.assertEqual([json.loads(l)["line"] for l in self.read("dead.jsonl").splitlines()], [4, 14, 24, 34, 44])
        # Up to the limit, the run finishes (exit 4: some records failed).
        r, _, _ = self.embed(data, "--max-errors", "10", "--dead-letter", dead)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"90 records embedded, 10 failed", r.stderr)
        # --max-errors goes on past bad records, so it contradicts --on-error fail.
        r, _, _ = self.embed(data, "--max-errors", "1", "--on-error", "fail")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"cannot be used with --on-error fail", r.stderr)

    def test_full_disk_is_a_clear_error(self):
        src = self.write("in.jsonl", records(100))
        r = run(["embed", src, "-o", "/dev/full", "--model", TINY, "--progress", "never", "--no-checkpoint"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"error: /dev/full: write failed: no space left on device", r.stderr)

    def test_output_error_leaves_a_consistent_checkpoint_and_resume_finishes(self):
        # A file size limit (ulimit -f) makes a write fail part way (EFBIG), as a full disk
        # would; once the limit is lifted, --resume finishes with the uninterrupted bytes.
        import resource
        data = records(3000)
        src = self.write("in.jsonl", data)
        r = run(["embed", src, "-o", self.path("ref.jsonl"), "--model", TINY, "--progress", "never", "--no-checkpoint"])
        self.assertEqual(r.returncode, 0, r.stderr)
        reference = self.read("ref.jsonl")
        out = self.path("out.jsonl")
        cmd = [PIPELINE_RUN, "embed", src, "-o", out, "--model", TINY, "--progress", "never", "--checkpoint-every", "100"]
        limit = len(reference) // 3
        r = subprocess.run(cmd, capture_output=True, timeout=300,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"write failed: file too large", r.stderr)
        state = json.loads(self.read("out.jsonl.checkpoint"))
        self.assertFalse(state["finished"])
        self.assertGreater(state["records_done"], 0)
        self.assertLessEqual(state["output_offset"], limit)
        self.assertEqual(self.read("out.jsonl")[:state["output_offset"]], reference[:state["output_offset"]])
        r = subprocess.run(cmd + ["--resume"], capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read("out.jsonl"), reference)

    def test_broken_model_folder_is_a_clear_error(self):
        broken = os.path.join(self.dir, "broken-model")
        os.mkdir(broken)
        with open(os.path.join(broken, "config.json"), "w") as f:
            f.write("{}")
        r, _, _ = self.embed(records(2), name="in.jsonl")
        src = self.path("in.jsonl")
        r = run(["embed", src, "-o", self.path("o.jsonl"), "--model", broken])
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"error: ", r.stderr)
        self.assertIn(broken.encode(), r.stderr)

    def test_usage_errors(self):
        src = self.write("in.jsonl", records(1))
        r = run(["embed", src, "--model", TINY, "--events", "-"])
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"cannot share standard output", r.stderr)
        self.assertEqual(run(["embed", src, "--model", self.path("nope")]).returncode, 2)
        self.assertEqual(run(["embed", src, "--model", TINY, "--batch-size", "0"]).returncode, 2)
        self.assertEqual(run(["frobnicate"]).returncode, 2)
        self.assertEqual(run(["embed", "--help"]).returncode, 0)

    def test_missing_input(self):
        r = run(["embed", self.path("none.jsonl"), "-o", self.path("o.jsonl"), "--model", TINY])
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"none.jsonl: cannot open input", r.stderr)

    # --- events -------------------------------------------------------------------------

    def test_every_event_type_appears_in_events_output(self):
        data = records(30) + b'{"text": 1}\n' + records(5, 30)
        src = self.write("in.jsonl", data)
        r = run(["embed", src, "-o", self.path("out.jsonl"), "--model", TINY, "--events", "-",
                 "--on-error", "skip", "--progress", "never", "--batch-size", "4"])
        self.assertEqual(r.returncode, 4, r.stderr)
        events = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual({e["type"] for e in events}, EVENT_TYPES)
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[0]["type"], "pipeline_started")
        self.assertEqual(events[-1]["type"], "pipeline_finished")
        self.assertTrue(all(e["v"] == 1 for e in events))
        self.assertEqual(len({e["pipeline"] for e in events}), 1)
        failed = [e for e in events if e["type"] == "document_failed"]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["location"]["line"], 31)
        self.assertEqual(failed[0]["code"], "field_not_string")
        summary = events[-1]["summary"]
        self.assertEqual(summary["completed"], 35)
        self.assertEqual(summary["failed"], 1)

    # --- interruption -------------------------------------------------------------------

    def test_sigint_drains_checkpoints_and_resume_finishes_identically(self):
        data = records(6000)
        src = self.write("in.jsonl", data)
        ref = self.path("ref.jsonl")
        r = run(["embed", src, "-o", ref, "--model", TINY, "--progress", "never", "--no-checkpoint"])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.path("out.jsonl")
        cmd = [PIPELINE_RUN, "embed", src, "-o", out, "--model", TINY, "--progress", "never", "--checkpoint-every", "64"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and (not os.path.exists(out) or os.path.getsize(out) < 20000):
            time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn(b"stopping", err)
        self.assertIn(b"--resume", err)
        state = json.loads(self.read("out.jsonl.checkpoint"))
        body = self.read("out.jsonl")
        reference = self.read("ref.jsonl")
        self.assertFalse(state["finished"])
        self.assertLess(state["records_done"], 6000)
        self.assertGreater(state["records_done"], 0)
        # The checkpoint names a prefix of the output; that prefix is the uninterrupted run's.
        self.assertLessEqual(state["output_offset"], len(body))
        self.assertEqual(body[:state["output_offset"]], reference[:state["output_offset"]])
        self.assertEqual(body[:state["output_offset"]].count(b"\n"), state["records_done"])
        self.assertEqual(state["input_offset"], len(records(state["records_done"])))
        r = subprocess.run(cmd + ["--resume"], capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read("out.jsonl"), reference)
        # Once more: a finished run does nothing and succeeds.
        r = subprocess.run(cmd + ["--resume"], capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read("out.jsonl"), reference)

    def test_sigkill_at_random_moments_then_resume_is_byte_identical(self):
        import random
        trials = int(os.environ.get("SLUICE_KILL_TRIALS", "4"))
        rng = random.Random(int(os.environ.get("SLUICE_KILL_SEED", "1")))
        data = records(3000) + b'{"text": 7}\n' + records(3000, 3000)
        src = self.write("in.jsonl", data)
        common = ["--model", TINY, "--progress", "never", "--on-error", "skip", "--checkpoint-every", "50"]
        t0 = time.monotonic()
        r = run(["embed", src, "-o", self.path("ref.jsonl"), "--dead-letter", self.path("ref.dead"), *common])
        whole = time.monotonic() - t0  # how long an uninterrupted run takes on this machine, now
        self.assertEqual(r.returncode, 4, r.stderr)
        reference, reference_dead = self.read("ref.jsonl"), self.read("ref.dead")
        for trial in range(trials):
            out, dead = self.path(f"out{trial}.jsonl"), self.path(f"out{trial}.dead")
            cmd = [PIPELINE_RUN, "embed", src, "-o", out, "--dead-letter", dead, *common]
            kills = rng.randint(1, 4)
            for k in range(kills + 1):
                p = subprocess.Popen(cmd + (["--resume"] if k else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if k < kills:
                    # SIGKILL at a random moment of the run: during start-up, reading, embedding or writing.
                    try:
                        p.wait(timeout=rng.uniform(0.02, 1.1) * whole)
                    except subprocess.TimeoutExpired:
                        p.kill()
                    p.communicate()
                else:
                    _, err = p.communicate(timeout=600)
                    self.assertEqual(p.returncode, 4, err)
            self.assertEqual(self.read(f"out{trial}.jsonl"), reference, f"trial {trial} after {kills} kills")
            self.assertEqual(self.read(f"out{trial}.dead"), reference_dead, f"trial {trial}")

class ReferenceTest(unittest.TestCase):
    """pipeline-run against an independent implementation: transformers.js + onnxruntime on the
    same weights (tests/data/reference/README.md says how the reference was made)."""

    def test_minilm_matches_transformers_js(self):
        import array
        import math
        root = os.environ.get("SLUICE_SOURCE_ROOT", ".")
        ref_dir = os.path.join(root, "tests", "data", "reference")
        with open(os.path.join(ref_dir, "minilm.json")) as f:
            meta = json.load(f)
        n, dims = meta["records"], meta["dimensions"]
        ref = array.array("f")
        with open(os.path.join(ref_dir, "minilm.f32"), "rb") as f:
            ref.fromfile(f, n * dims)
        if sys.byteorder != "little":
            ref.byteswap()
        with tempfile.TemporaryDirectory(prefix="sluice-ref-") as tmp:
            out = os.path.join(tmp, "out.jsonl")
            r = run(["embed", os.path.join(ref_dir, meta["texts"]), "-o", out, "--model",
                     os.path.join(MODELS, "minilm"), "--progress", "never", "--events", os.path.join(tmp, "ev.jsonl")],
                    timeout=1200)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                rows = [json.loads(line)["embedding"] for line in f]
            with open(os.path.join(tmp, "ev.jsonl")) as f:
                summary = [json.loads(l) for l in f][-1]["summary"]
        self.assertEqual(len(rows), n)
        self.assertEqual(summary["truncated"], meta["truncated"])
        worst = 1.0
        for i, row in enumerate(rows):
            self.assertEqual(len(row), dims)
            expected = ref[i * dims:(i + 1) * dims]
            dot = sum(a * b for a, b in zip(row, expected))
            na = math.sqrt(sum(a * a for a in row))
            nb = math.sqrt(sum(b * b for b in expected))
            worst = min(worst, dot / (na * nb))
        print(f"\nminilm vs transformers.js: {n} records, min cosine {worst:.8f}", file=sys.stderr)
        self.assertGreaterEqual(worst, 0.99999)


if __name__ == "__main__":
    unittest.main(verbosity=2)
