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

from e2e_files import TempDirTest, killed_then_resumed, wait_for_size

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


class CliTest(TempDirTest):

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

    def test_concurrent_model_calls_give_the_bytes_of_one_call_at_a_time(self):
        data = records(600)
        src = self.write("in.jsonl", data)
        common = ["embed", src, "--model", TINY, "--progress", "never", "--sort-window", "64", "--batch-size", "8"]
        r1 = run(common + ["-o", self.path("one.jsonl"), "--model-workers", "1", "--threads", "1"])
        self.assertEqual(r1.returncode, 0, r1.stderr)
        self.assertNotIn(b" x ", r1.stderr.split(b"model: ")[1])
        r2 = run(common + ["-o", self.path("two.jsonl"), "--model-workers", "2", "--threads", "2"])
        self.assertEqual(r2.returncode, 0, r2.stderr)
        # Two calls at once, one thread each: the summary compares busy time with 2 x the run.
        self.assertRegex(r2.stderr, rb"busy [0-9.]+ s of 2 x [0-9.]+ s \([0-9]+%\)")
        self.assertEqual(self.read("two.jsonl"), self.read("one.jsonl"))

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

    def test_stdout_keeps_what_the_descriptor_held_and_moves_its_position(self):
        """Standard output as every kind of file: a new file, one with content (the shell's own
        writes before and after the run), an append, a pipe and a terminal. The records are
        the bytes of `-o FILE`, written where the descriptor stood, and what follows lands
        after them."""
        data = records(300)
        src = self.write("in.jsonl", data)
        common = [PIPELINE_RUN, "embed", src, "--model", TINY, "--progress", "never"]
        r = run(common[1:] + ["-o", self.path("ref.jsonl")])
        self.assertEqual(r.returncode, 0, r.stderr)
        ref = self.read("ref.jsonl")
        self.assertEqual(len(ref.splitlines()), 300)
        cmd = " ".join("'%s'" % a for a in common)

        def shell(script):
            r = subprocess.run(["bash", "-c", script], capture_output=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            return r

        out = self.path("stdout.jsonl")
        shell("%s > '%s'" % (cmd, out))  # a new, empty file
        self.assertEqual(self.read("stdout.jsonl"), ref)
        shell("{ echo HEADER; %s; echo FOOTER; } > '%s'" % (cmd, out))  # the shell writes around the run
        self.assertEqual(self.read("stdout.jsonl"), b"HEADER\n" + ref + b"FOOTER\n")
        self.write("stdout.jsonl", b"already there\n")
        shell("%s >> '%s'; echo FOOTER >> '%s'" % (cmd, out, out))  # an append
        self.assertEqual(self.read("stdout.jsonl"), b"already there\n" + ref + b"FOOTER\n")
        # A file opened without truncating (the shell's 1<>) whose position was moved: the bytes
        # before the position stay, the run writes from there on as any write would.
        self.write("stdout.jsonl", b"x" * 10)
        shell("exec 1<> '%s'; printf ABCD; %s" % (out, cmd))
        self.assertEqual(self.read("stdout.jsonl")[:4], b"ABCD")
        self.assertEqual(self.read("stdout.jsonl")[4:], ref)
        r = shell("%s | cat" % cmd)  # a pipe
        self.assertEqual(r.stdout, ref)

        # A terminal: the run's output through a pseudo-terminal, after a line of the shell's.
        import pty
        pid, fd = pty.fork()
        if pid == 0:
            os.execvp("bash", ["bash", "-c", "stty -onlcr; echo HEADER; %s 2>/dev/null; echo FOOTER" % cmd])
        got = b""
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(got, b"HEADER\n" + ref + b"FOOTER\n")

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

    def test_dim_output_types_and_prompt(self):
        import base64, math, struct
        data = records(20)
        r, _, _ = self.embed(data)
        self.assertEqual(r.returncode, 0, r.stderr)
        full = [json.loads(l)["embedding"] for l in self.read("out.jsonl").splitlines()]

        def out_values(*flags):
            r, _, _ = self.embed(data, "--no-checkpoint", *flags)
            self.assertEqual(r.returncode, 0, r.stderr)
            return [json.loads(l)["embedding"] for l in self.read("out.jsonl").splitlines()]

        # --dim: the leading values, back to unit length (the tiny model normalises).
        for v, cut in zip(full, out_values("--dim", "8")):
            n = math.sqrt(sum(x * x for x in v[:8]))
            self.assertEqual(len(cut), 8)
            for a, b in zip(cut, v[:8]):
                self.assertAlmostEqual(a, b / n, places=6)
        # float16 as numbers and as base64 of little-endian halves: the same values.
        halves = out_values("--output-type", "float16")
        for v, h, b in zip(full, halves, out_values("--output-type", "float16", "--output-encoding", "base64")):
            unpacked = struct.unpack("<%de" % len(v), base64.b64decode(b))
            f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]  # the JSON number is the shortest float32
            self.assertEqual([f32(x) for x in unpacked], [f32(x) for x in h])
            for a, x in zip(h, v):
                self.assertLessEqual(abs(a - x), abs(x) * 2 ** -11 + 2 ** -25)
        # float32 base64: the very floats of the JSON numbers.
        for v, b in zip(full, out_values("--output-encoding", "base64")):
            self.assertEqual(list(struct.unpack("<%df" % len(v), base64.b64decode(b))),
                             [struct.unpack("<f", struct.pack("<f", x))[0] for x in v])
        # int8: round(127 x), clamped; base64 of the same bytes.
        for v, q, b in zip(full, out_values("--output-type", "int8"),
                           out_values("--output-type", "int8", "--output-encoding", "base64")):
            self.assertEqual(q, [max(-127, min(127, int(math.floor(abs(x) * 127 + 0.5)) * (1 if x >= 0 else -1)))
                                 for x in v])
            self.assertEqual(list(struct.unpack("<%db" % len(v), base64.b64decode(b))), q)
        # binary: sign bits, packed high bit first.
        for v, packed in zip(full, out_values("--output-type", "binary")):
            bits = [1 if x > 0 else 0 for x in v] + [0] * (-len(v) % 8)
            self.assertEqual(packed, [int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8)])
        # --prompt: the same as the prompt written into the text.
        prompted = b"".join(b'{"id": %d, "text": "query: record %d about rivers and deltas", "meta": {"n": %d}}\n'
                            % (i, i, i) for i in range(20))
        r, _, _ = self.embed(prompted, "--no-checkpoint", name="prompted.jsonl")
        self.assertEqual(r.returncode, 0, r.stderr)
        expected = [json.loads(l)["embedding"] for l in self.read("out.jsonl").splitlines()]
        self.assertEqual(out_values("--prompt", "query: "), expected)
        # Refusals name the problem.
        r, _, _ = self.embed(data, "--dim", "33")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"error: --dim 33 is more than the model's 32 dimensions", r.stderr)
        r, _, _ = self.embed(data, "--prompt-name", "query")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b'error: the model has no prompt named "query"', r.stderr)
        r, _, _ = self.embed(data, "--no-normalize", "--output-type", "int8")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"error: int8 output needs normalised embeddings", r.stderr)

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

    def test_bad_records_among_many_reads_fail_alone(self):
        # A bad record completes at once, while its read buffer is still being split: the
        # next read must not land in that buffer (it once did, corrupting later lines).
        lines = [b'{"id": %d, "text": 7}\n' % i if i % 7 == 3 else
                 b'{"id": %d, "text": "record %d about rivers and deltas"}\n' % (i, i) for i in range(20000)]
        dead = self.path("dead.jsonl")
        for _ in range(2):
            r, _, _ = self.embed(b"".join(lines), "--on-error", "skip", "--dead-letter", dead)
            self.assertEqual(r.returncode, 4, r.stderr)
            bad = [i for i in range(20000) if i % 7 == 3]
            self.assertIn(b"%d records embedded, %d failed" % (20000 - len(bad), len(bad)), r.stderr)
            self.assertEqual([json.loads(l)["line"] for l in self.read("dead.jsonl").splitlines()],
                             [i + 1 for i in bad])
            out = self.read("out.jsonl").splitlines()
            self.assertEqual([json.loads(l)["id"] for l in out], [i for i in range(20000) if i % 7 != 3])

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
        # Windows of 100 records, so checkpoints fall well before the limit; the same windows
        # for the reference, so the same batches and the same bytes.
        r = run(["embed", src, "-o", self.path("ref.jsonl"), "--model", TINY, "--progress", "never", "--no-checkpoint",
                 "--sort-window", "100"])
        self.assertEqual(r.returncode, 0, r.stderr)
        reference = self.read("ref.jsonl")
        out = self.path("out.jsonl")
        cmd = [PIPELINE_RUN, "embed", src, "-o", out, "--model", TINY, "--progress", "never", "--checkpoint-every", "100",
               "--sort-window", "100"]
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
        r = run(["embed", src, "-o", ref, "--model", TINY, "--progress", "never", "--no-checkpoint", "--sort-window", "64"])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.path("out.jsonl")
        # A small in-flight bound keeps reading going on, so SIGINT meets unread input.
        cmd = [PIPELINE_RUN, "embed", src, "-o", out, "--model", TINY, "--progress", "never", "--checkpoint-every", "64",
               "--sort-window", "64", "--max-in-flight", "256"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_size(out, 20000, 120, 0.01)
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
        common = ["--model", TINY, "--progress", "never", "--on-error", "skip", "--checkpoint-every", "50",
                  "--sort-window", "256"]
        t0 = time.monotonic()
        r = run(["embed", src, "-o", self.path("ref.jsonl"), "--dead-letter", self.path("ref.dead"), *common])
        whole = time.monotonic() - t0  # how long an uninterrupted run takes on this machine, now
        self.assertEqual(r.returncode, 4, r.stderr)
        reference, reference_dead = self.read("ref.jsonl"), self.read("ref.dead")
        for trial in range(trials):
            out, dead = self.path(f"out{trial}.jsonl"), self.path(f"out{trial}.dead")
            cmd = [PIPELINE_RUN, "embed", src, "-o", out, "--dead-letter", dead, *common]
            kills = rng.randint(1, 4)
            rc, err = killed_then_resumed(cmd, rng, whole, kills)
            self.assertEqual(rc, 4, err)
            self.assertEqual(self.read(f"out{trial}.jsonl"), reference, f"trial {trial} after {kills} kills")
            self.assertEqual(self.read(f"out{trial}.dead"), reference_dead, f"trial {trial}")

class OmpWaitPolicyTest(unittest.TestCase):
    """libgomp reads OMP_WAIT_POLICY once, as it loads; pipeline-run sets PASSIVE before that
    (a .preinit_array function) in one process, and leaves a user's choice alone. libgomp's
    OMP_DISPLAY_ENV prints what it read, once per process that loads it."""

    def policies(self, **env):
        r = subprocess.run([PIPELINE_RUN, "--help"], capture_output=True, timeout=120,
                           env={**os.environ, "OMP_DISPLAY_ENV": "true", **env})
        self.assertEqual(r.returncode, 0, r.stderr)
        text = (r.stdout + r.stderr).decode()
        return text.count("OPENMP DISPLAY ENVIRONMENT BEGIN"), [
            line.split("=")[1].strip().strip("'") for line in text.splitlines() if "OMP_WAIT_POLICY" in line]

    def test_passive_by_default_without_a_second_process(self):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        r = subprocess.run([PIPELINE_RUN, "--help"], capture_output=True, timeout=120,
                           env={**env, "OMP_DISPLAY_ENV": "true"})
        text = (r.stdout + r.stderr).decode()
        self.assertEqual(text.count("OPENMP DISPLAY ENVIRONMENT BEGIN"), 1, text[-2000:])
        self.assertIn("OMP_WAIT_POLICY = 'PASSIVE'", text)

    def test_a_users_choice_is_kept(self):
        self.assertEqual(self.policies(OMP_WAIT_POLICY="ACTIVE"), (1, ["ACTIVE"]))


class LongInputTest(unittest.TestCase):
    """--long-input chunk and fail on the MiniLM-shaped test model. Window counts come from the
    Hugging Face Rust tokenizer (tests/data/tokenizer/bert-base-uncased.windows-64-16.jsonl,
    made by tools/reference/window_reference.mjs)."""

    ROOT = os.environ.get("SLUICE_SOURCE_ROOT", ".")

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="sluice-long-")
        self.src = os.path.join(self.tmp.name, "in.jsonl")
        with open(os.path.join(self.ROOT, "tests/data/reference/texts.jsonl"), "rb") as f:
            self.lines = f.read().splitlines()[:120]
        with open(self.src, "wb") as f:
            f.write(b"\n".join(self.lines) + b"\n")
        with open(os.path.join(self.ROOT, "tests/data/tokenizer/bert-base-uncased.windows-64-16.jsonl")) as f:
            self.windows = [json.loads(l)["windows"] for l in f][:120]

    def tearDown(self):
        self.tmp.cleanup()

    def embed(self, *flags):
        out = os.path.join(self.tmp.name, "out.jsonl")
        r = run(["embed", self.src, "-o", out, "--model", os.path.join(MODELS, "minilm"), "--progress", "never",
                 "--no-checkpoint", *flags])
        with open(out, "rb") as f:
            return r, f.read().splitlines()

    def test_chunks_follow_hugging_face_windows_and_cover_the_text(self):
        import math
        r, out = self.embed("--long-input", "chunk", "--chunk-tokens", "64", "--chunk-overlap", "16",
                            "--chunk-document")
        self.assertEqual(r.returncode, 0, r.stderr)
        at = 0
        for i, line in enumerate(self.lines):
            record = json.loads(line)
            text = record["text"]
            doc = json.loads(out[at])
            # The record itself comes first, every byte kept, with the document vector.
            self.assertTrue(out[at].startswith(line.rstrip()[:-1] + b',"embedding":['))
            n = len(self.windows[i])
            chunks = [json.loads(l) for l in out[at + 1:at + 1 + n]]
            at += 1 + n
            self.assertEqual([c["chunk"] for c in chunks], list(range(n)))
            for c in chunks:
                self.assertEqual((c["parent_line"], c["parent_id"], c["chunks"]), (i + 1, record["id"], n))
            # Windows start at the text's start, overlap, and end at its last token.
            self.assertEqual(chunks[0]["start"], len(text) - len(text.lstrip()))
            for a, b in zip(chunks, chunks[1:]):
                self.assertLess(b["start"], a["end"])
                self.assertGreater(b["end"], a["end"])
            self.assertLessEqual(chunks[-1]["end"], len(text))
            self.assertEqual(text[chunks[-1]["end"]:].strip(), "", i)
            # The document vector is the token-weighted mean of the windows', renormalised.
            weights = [len(w) for w in self.windows[i]]
            mean = [sum(w * c["embedding"][d] for w, c in zip(weights, chunks)) for d in range(384)]
            norm = math.sqrt(sum(x * x for x in mean))
            for a, b in zip(doc["embedding"], mean):
                self.assertAlmostEqual(a, b / norm, places=5)
        self.assertEqual(at, len(out))
        self.assertIn(b"0 truncated", r.stderr)

    def test_a_short_text_is_one_window_equal_to_its_plain_embedding(self):
        r, plain = self.embed()
        self.assertEqual(r.returncode, 0, r.stderr)
        r, chunked = self.embed("--long-input", "chunk")
        self.assertEqual(r.returncode, 0, r.stderr)
        chunks = [json.loads(l) for l in chunked]
        for i, line in enumerate(plain):
            rec = json.loads(line)
            mine = [c for c in chunks if c["parent_line"] == i + 1]
            if len(mine) != 1:
                continue
            a, b = rec["embedding"], mine[0]["embedding"]
            self.assertGreater(sum(x * y for x, y in zip(a, b)), 0.99999)

    def test_fail_reports_each_long_text(self):
        dead = os.path.join(self.tmp.name, "dead.jsonl")
        r, out = self.embed("--long-input", "fail", "--on-error", "skip", "--dead-letter", dead)
        self.assertEqual(r.returncode, 4, r.stderr)
        with open(os.path.join(self.ROOT, "tests/data/reference/tokens.jsonl")) as f:
            lengths = [json.loads(l)["untruncated"] for l in f][:120]
        long = [i for i, n in enumerate(lengths) if n > 256]
        self.assertGreater(len(long), 5)
        with open(dead) as f:
            dl = [json.loads(l) for l in f]
        self.assertEqual([d["line"] for d in dl], [i + 1 for i in long])
        self.assertEqual(dl[0]["error"], "text_too_long")
        self.assertEqual(dl[0]["message"], "the text is %d tokens, more than the model's 256 (embed it in pieces with "
                         "--long-input chunk, or cut it with --long-input truncate)" % lengths[long[0]])
        self.assertEqual(len(out), 120 - len(long))


class DefaultModelTest(unittest.TestCase):
    """No --model: the real pretrained default, Universal Sentence Encoder Lite, which
    tools/setup.sh installs into models/use-lite."""

    def test_default_model_embeds_and_ranks_paraphrases_first(self):
        pairs = [
            ("A man is playing a guitar.", "Someone is strumming a guitar."),
            ("The cat sleeps on the sofa.", "A cat is napping on the couch."),
            ("How do I reset my password?", "I forgot my password, how can I change it?"),
            ("The stock market fell sharply today.", "Shares dropped steeply on the exchange today."),
            ("It is raining heavily in the city.", "There is a downpour in town."),
            ("She bought fresh bread at the bakery.", "She purchased a new loaf from the baker."),
        ]
        texts = [t for p in pairs for t in p]
        with tempfile.TemporaryDirectory(prefix="sluice-default-") as d:
            src, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
            with open(src, "w") as f:
                for i, t in enumerate(texts):
                    f.write(json.dumps({"id": i, "text": t}) + "\n")
            r = run(["embed", src, "-o", out, "--progress", "never"])
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                v = [json.loads(l)["embedding"] for l in f]
        self.assertEqual(len(v), len(texts))
        self.assertEqual(len(v[0]), 512)
        dot = lambda a, b: sum(x * y for x, y in zip(a, b))
        for x in v:
            self.assertAlmostEqual(dot(x, x), 1.0, places=4)
        para = [dot(v[2 * i], v[2 * i + 1]) for i in range(len(pairs))]
        unrelated = [dot(v[2 * i], v[2 * j + 1]) for i in range(len(pairs)) for j in range(len(pairs)) if i != j]
        self.assertGreater(min(para), max(unrelated), (para, max(unrelated)))


class TokenizeTest(unittest.TestCase):
    """`pipeline-run tokenize` against ids from the Hugging Face Rust tokenizer
    (tests/data/tokenizer/README.md says how they were made)."""

    ROOT = os.environ.get("SLUICE_SOURCE_ROOT", ".")

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="sluice-tok-")

    def tearDown(self):
        self.tmp.cleanup()

    def test_ids_match_hugging_face_for_every_tokenizer_kind(self):
        data = os.path.join(self.ROOT, "tests/data/tokenizer")
        for kind in ["bert-base-uncased", "roberta", "xlm-roberta", "albert"]:
            out = os.path.join(self.tmp.name, kind + ".jsonl")
            r = run(["tokenize", os.path.join(data, "corpus.jsonl"), "--model", os.path.join(data, kind), "-o", out])
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out, "rb") as f:
                lines = f.read().splitlines()
            got = [json.loads(l)["input_ids"] for l in lines]
            if kind == "bert-base-uncased":
                with open(os.path.join(data, kind + ".ids.jsonl")) as f:
                    want = [json.loads(l)["ids"] for l in f]
            else:
                with open(os.path.join(data, kind + ".ids.txt")) as f:
                    want = [[int(x) for x in l.split()] for l in f]
            self.assertEqual(len(got), 8000)
            self.assertEqual(sum(a == b for a, b in zip(got, want)), 8000, kind)
            # Each line is the input record with the ids added.
            with open(os.path.join(data, "corpus.jsonl"), "rb") as f:
                first = f.readline().rstrip(b"\n")
            self.assertTrue(lines[0].startswith(first[:-1] + b',"input_ids":['), lines[0][:100])

    def test_stats_count_tokens_and_truncation(self):
        texts = os.path.join(self.ROOT, "tests/data/reference/texts.jsonl")
        r = run(["tokenize", texts, "--model", os.path.join(MODELS, "minilm"), "--stats"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.ROOT, "tests/data/reference/tokens.jsonl")) as f:
            lengths = [json.loads(l)["untruncated"] for l in f]
        out = r.stdout.decode()
        self.assertIn("records       1200\n", out)
        self.assertIn("tokens        %d (special tokens included)" % sum(lengths), out)
        over = [n for n in lengths if n > 256]
        self.assertIn("model limit   256 tokens: %d records longer" % len(over), out)
        self.assertIn("truncation would drop %d tokens" % sum(n - 256 for n in over), out)
        self.assertIn("longest %d\n" % max(lengths), out)
        # Without -o or --stats there is nothing to do.
        r = run(["tokenize", texts, "--model", os.path.join(MODELS, "minilm")])
        self.assertEqual(r.returncode, 2)


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
