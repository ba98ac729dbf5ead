"""What a user types must never destroy or mix data: the real pipeline-run binary against the
classes of mistake and damage that docs/reliability.md's threat model lists.

- No file plays two roles: the input as the output (by the same path, another spelling, a
  symbolic or hard link, standard output redirected onto it), the dead letters, checkpoint or
  event log onto the input or output, tokenize's output onto its input. Two runs never write
  one output at once (a lock).
- Every option of `embed`, changed between a run and its resume, is either refused or changes
  no output byte; the list of options is read from --help, so a new option must be classified.
- A checkpoint edited into plausible values is refused; so is an input edited before the
  point the run reached (even with its size and time kept), and bytes added to the output of a
  finished run. An edit after that point is accepted: fix a bad record and resume.
- Numeric options outside their range are usage errors naming the range; a failing event
  log fails the run; the summary and the exit status agree with the events; the final
  checkpoint always says finished (with --checkpoint-every 0, and under SIGSTOP/SIGCONT).

Run through meson (`meson test -C build e2e-adversarial`). Standard library only.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import unittest

from e2e_files import TempDirTest

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
TINY = os.path.join(MODELS, "tiny")
MINILM = os.path.join(MODELS, "minilm")


def run(args, timeout=300, **kw):
    return subprocess.run([PIPELINE_RUN] + args, capture_output=True, timeout=timeout, **kw)


def interrupt(p):
    """Sends SIGINT to a running pipeline-run; returns (its stderr, seconds until it exited)."""
    p.send_signal(signal.SIGINT)
    t0 = time.time()
    _, err = p.communicate(timeout=300)
    return err, time.time() - t0


def records(n, bad=()):
    lines = []
    for i in range(n):
        if i in bad:
            lines.append(b'{"id": %d, "text": 5}\n' % i)
        else:
            lines.append(b'{"id": %d, "text": "record %d about rivers and deltas %s"}\n' % (i, i, b"x" * (i % 13)))
    return b"".join(lines)


class Base(TempDirTest):
    prefix = "sluice-adv-"


class SameFileTest(Base):
    def assert_refused(self, r, data_before, name="in.jsonl"):
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"are the same file", r.stderr)
        self.assertEqual(self.read(name), data_before, "the input was changed")

    def test_no_file_plays_two_roles(self):
        data = records(30)
        src = self.write("in.jsonl", data)
        os.symlink("in.jsonl", self.path("link.jsonl"))
        os.link(src, self.path("hard.jsonl"))
        common = ["--model", TINY, "--progress", "never"]
        cases = [
            ["embed", src, "-o", src],
            ["embed", src, "-o", os.path.join(self.dir, ".", "in.jsonl")],
            ["embed", src, "-o", self.path("link.jsonl")],
            ["embed", src, "-o", self.path("hard.jsonl")],
            ["embed", src, "-o", self.path("out.jsonl"), "--on-error", "skip", "--dead-letter", src],
            ["embed", src, "-o", self.path("out.jsonl"), "--checkpoint", src],
            ["embed", src, "-o", self.path("out.jsonl"), "--events", src],
            ["embed", src, "-o", self.path("out.jsonl"), "--events", self.path("out.jsonl")],
            ["embed", src, "-o", self.path("out.jsonl"), "--events", self.path("out.jsonl.checkpoint")],
            ["embed", src, "-o", self.path("out.jsonl"), "--on-error", "skip", "--dead-letter",
             self.path("out.jsonl")],
            ["embed", src, "-o", self.path("out.jsonl"), "--checkpoint", self.path("out.jsonl")],
            ["embed", src, "-o", self.path("out.jsonl"), "--checkpoint", self.path("link.jsonl")],
        ]
        for args in cases:
            with self.subTest(args=args[3:]):
                r = run(args + common)
                self.assert_refused(r, data)
                self.assertFalse(os.path.exists(self.path("out.jsonl")) and os.path.getsize(self.path("out.jsonl")),
                                 "an output was written")
        r = run(["tokenize", src, "-o", self.path("hard.jsonl"), "--model", TINY])
        self.assert_refused(r, data)
        # Standard output appended onto the input: the shell opened it, the run must not read its own output.
        with open(src, "ab") as f:
            r = subprocess.run([PIPELINE_RUN, "embed", src] + common, stdout=f, stderr=subprocess.PIPE, timeout=300)
        self.assert_refused(r, data)
        with open(src, "rb") as f:
            r = subprocess.run([PIPELINE_RUN, "embed", "-"] + common + ["-o", self.path("link.jsonl")], stdin=f,
                               capture_output=True, timeout=300)
        self.assert_refused(r, data)

    def test_two_runs_never_write_one_output_at_once(self):
        big = self.write("big.jsonl", records(50000))
        small = self.write("small.jsonl", records(10))
        out = self.path("out.jsonl")
        first = subprocess.Popen([PIPELINE_RUN, "embed", big, "-o", out, "--model", TINY, "--progress", "never",
                                  "--no-checkpoint"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 60
            while not (os.path.exists(out) and os.path.getsize(out) > 0) and time.time() < deadline:
                time.sleep(0.02)
            first.send_signal(signal.SIGSTOP)  # held mid-run, its lock with it
            self.assertIsNone(first.poll(), "the first run ended before the second could start")
            try:
                second = run(["embed", small, "-o", out, "--model", TINY, "--progress", "never", "--no-checkpoint"])
            finally:
                first.send_signal(signal.SIGCONT)
            self.assertEqual(second.returncode, 1, second.stderr)
            self.assertIn(b"another run is writing this file", second.stderr)
        finally:
            _, err = first.communicate(timeout=300)
        self.assertEqual(first.returncode, 0, err)
        ref = run(["embed", big, "-o", self.path("ref.jsonl"), "--model", TINY, "--progress", "never",
                   "--no-checkpoint"])
        self.assertEqual(ref.returncode, 0, ref.stderr)
        self.assertEqual(self.read("out.jsonl"), self.read("ref.jsonl"))

    def test_two_runs_never_write_one_checkpoint_at_once(self):
        # Two outputs, one --checkpoint: the output locks cannot see it; the checkpoint's own can.
        big = self.write("big.jsonl", records(50000))
        small = self.write("small.jsonl", records(10))
        cp = self.path("shared.checkpoint")
        out = self.path("out.jsonl")
        first = subprocess.Popen([PIPELINE_RUN, "embed", big, "-o", out, "--model", TINY, "--progress", "never",
                                  "--checkpoint", cp], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 60
            while not (os.path.exists(out) and os.path.getsize(out) > 0) and time.time() < deadline:
                time.sleep(0.02)
            first.send_signal(signal.SIGSTOP)
            self.assertIsNone(first.poll(), "the first run ended before the second could start")
            try:
                second = run(["embed", small, "-o", self.path("other.jsonl"), "--model", TINY, "--progress", "never",
                              "--checkpoint", cp])
            finally:
                first.send_signal(signal.SIGCONT)
            self.assertEqual(second.returncode, 2, second.stderr)
            self.assertIn(b"another run is using the checkpoint", second.stderr)
            self.assertFalse(os.path.exists(self.path("other.jsonl")) and os.path.getsize(self.path("other.jsonl")))
        finally:
            _, err = first.communicate(timeout=300)
        self.assertEqual(first.returncode, 0, err)
        with open(cp, encoding="utf-8") as f:
            state = json.load(f)
        self.assertTrue(state["finished"])
        self.assertEqual(state["records_done"], 50000)
        # Once it ended, the same checkpoint serves another run.
        r = run(["embed", small, "-o", self.path("other.jsonl"), "--model", TINY, "--progress", "never",
                 "--checkpoint", self.path("shared.checkpoint")])
        self.assertNotIn(b"another run is using", r.stderr)

    def test_no_checkpoint_beside_a_device(self):
        src = self.write("in.jsonl", records(10))
        r = run(["embed", src, "-o", os.devnull, "--model", TINY, "--progress", "never"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.devnull + ".checkpoint"))


# The resume scenario: 48 records, windows of 8; record 20 is bad and --max-errors 0 stops the
# run there, with a checkpoint at record 16. The bad record is then fixed (an edit after the
# checkpoint) and the run resumed, with one option changed.
N, WINDOW, BAD = 48, 8, 20
BASE = ["--sort-window", str(WINDOW), "--batch-size", str(WINDOW), "--on-error", "skip", "--max-errors", "0",
        "--progress", "never"]

# Every option of `embed`: (kind, first run's args, resumed run's args). "refused": the resume
# must be refused, saying so; "same": the resume must succeed and give the bytes of one run,
# never interrupted, with the second args. "setup": what the scenario itself is made of.
OPTIONS = {
    "--output": ("setup", [], []),
    "--checkpoint": ("setup", [], []),
    "--no-checkpoint": ("setup", [], []),
    "--resume": ("setup", [], []),
    "--table": ("setup", [], []),  # a store's (test_stores.py); refused with a JSONL output
    "--model": ("model", [], []),  # below: a copy elsewhere is the same model, a changed weight is not
    "--text-field": ("refused", [], ["--text-field", "body"]),
    "--output-field": ("refused", [], ["--output-field", "vec"]),
    "--prompt": ("refused", [], ["--prompt", "query: "]),
    "--prompt-name": ("prompts", [], []),  # below: with a model that has named prompts
    "--pooling": ("refused", [], ["--pooling", "cls"]),
    "--normalize": ("refused", ["--no-normalize"], ["--normalize"]),
    "--no-normalize": ("refused", [], ["--no-normalize"]),
    "--precision": ("refused", [], ["--precision", "int8"]),
    "--device": ("same", [], ["--device", "cpu"]),  # cuda is in the fingerprint too (unit test)
    "--dim": ("refused", [], ["--dim", "16"]),
    "--output-type": ("refused", [], ["--output-type", "float16"]),
    "--output-encoding": ("refused", [], ["--output-encoding", "base64"]),
    "--long-input": ("refused", [], ["--long-input", "chunk"]),
    "--chunk-tokens": ("refused", ["--long-input", "chunk", "--chunk-overlap", "4"],
                       ["--long-input", "chunk", "--chunk-overlap", "4", "--chunk-tokens", "12"]),
    "--chunk-overlap": ("refused", ["--long-input", "chunk"], ["--long-input", "chunk", "--chunk-overlap", "2"]),
    "--chunk-document": ("refused", ["--long-input", "chunk"], ["--long-input", "chunk", "--chunk-document"]),
    "--id-field": ("refused", ["--long-input", "chunk"], ["--long-input", "chunk", "--id-field", "key"]),
    "--max-batch-tokens": ("refused", [], ["--max-batch-tokens", "64"]),
    "--sort-window": ("refused", [], ["--sort-window", "16"]),
    "--sort-window-bytes": ("refused", [], ["--sort-window-bytes", "3000"]),
    "--batch-size": ("refused", [], ["--batch-size", "4"]),
    "--on-error": ("refused", [], ["--on-error", "fail", "--max-errors", "DROP"]),
    "--max-errors": ("same", [], ["--max-errors", "5"]),
    # Failures before the checkpoint would be missing from a dead-letter file named only now.
    "--dead-letter": ("refused", [], ["--dead-letter", "DEAD"]),
    "--events": ("same", [], ["--events", "EVENTS"]),
    "--progress": ("same", [], ["--progress", "always"]),
    "--threads": ("same", [], ["--threads", "1"]),
    # The threads of each model call can change the last bits of a vector; how many calls run
    # at once cannot (--threads 1 above keeps one thread per call, as the default does here).
    "--model-workers": ("refused", [], ["--model-workers", "1", "--threads", "2"]),
    "--max-record-bytes": ("refused", [], ["--max-record-bytes", "100000"]),
    "--max-in-flight": ("same", [], ["--max-in-flight", "9"]),
    "--max-in-flight-bytes": ("same", [], ["--max-in-flight-bytes", "2000"]),
    "--checkpoint-every": ("same", [], ["--checkpoint-every", "1"]),
    "--no-validate": ("same", [], ["--no-validate"]),
    # Model workers through NATS (test_scale_out.py, with a server of its own): --nats itself
    # is refused on resume (another backend), the others change no byte (the same batches,
    # whatever the transport): a run resumed with other values gives the uninterrupted output.
    # The credentials and TLS files only say how to reach the server.
    "--nats": ("scale-out", [], []),
    "--nats-in-flight": ("scale-out", [], []),
    "--nats-ack-wait": ("scale-out", [], []),
    "--nats-max-deliveries": ("scale-out", [], []),
    "--nats-timeout": ("scale-out", [], []),
    "--nats-creds": ("scale-out", [], []),
    "--nats-tls-ca": ("scale-out", [], []),
    "--nats-tls-cert": ("scale-out", [], []),
    "--nats-tls-key": ("scale-out", [], []),
    # A remote API as the model (test_remote.py, against a server of its own): the endpoint,
    # the model name, the tokenizer or estimate and the batch limits are in the fingerprint
    # (refused on resume); the others say how to reach the API, and how fast.
    "--remote": ("remote", [], []),
    "--remote-model": ("remote", [], []),
    "--remote-key-env": ("remote", [], []),
    "--remote-key-file": ("remote", [], []),
    "--remote-max-inputs": ("remote", [], []),
    "--remote-max-tokens": ("remote", [], []),
    "--remote-max-input-tokens": ("remote", [], []),
    "--remote-concurrency": ("remote", [], []),
    "--rate-limit-rpm": ("remote", [], []),
    "--rate-limit-tpm": ("remote", [], []),
    "--remote-retries": ("remote", [], []),
    "--remote-retry-time": ("remote", [], []),
    "--remote-timeout": ("remote", [], []),
    "--remote-dimensions": ("remote", [], []),
    "--remote-bytes-per-token": ("remote", [], []),
}


def embed_options():
    """The long options `pipeline-run embed --help` lists."""
    r = run(["embed", "--help"])
    names = set(re.findall(rb"^\s+(?:-\w,)?(--[a-z][a-z-]*)", r.stdout, re.M))
    return {n.decode() for n in names} - {"--help"}


class ResumeTest(Base):
    def stopped_run(self, args, model=TINY, input_name="in.jsonl"):
        """Runs the scenario's first part; returns the input path, output path."""
        src = self.write(input_name, records(N, bad={BAD}))
        out = self.path("out.jsonl")
        for p in (out, out + ".checkpoint", self.path("DEAD"), self.path("EVENTS")):
            if os.path.exists(p):
                os.remove(p)
        r = run(["embed", src, "-o", out, "--model", model] + self.with_base(args))
        self.assertEqual(r.returncode, 3, r.stderr)
        with open(out + ".checkpoint") as f:
            cp = json.load(f)
        self.assertEqual(cp["records_done"], BAD // WINDOW * WINDOW)
        self.assertFalse(cp["finished"])
        self.write(input_name, records(N))  # the bad record fixed: an edit after the checkpoint
        return src, out

    def fill(self, args):
        return [self.path(a) if a in ("DEAD", "EVENTS") else a for a in args]

    @staticmethod
    def with_base(args):
        """BASE with `args` added, an option given in both taking the value in `args`."""
        given = {a for a in args if a.startswith("--")}
        args = [a for i, a in enumerate(args) if a != "DROP" and not (i + 1 < len(args) and args[i + 1] == "DROP")]
        out, i = [], 0
        while i < len(BASE):
            if BASE[i] in given:
                i += 2
                continue
            out.append(BASE[i])
            i += 1
        return out + list(args)

    def uninterrupted(self, src, args, model=TINY):
        ref = self.path("ref.jsonl")
        r = run(["embed", src, "-o", ref, "--model", model, "--no-checkpoint"] + self.with_base(self.fill(args)))
        self.assertEqual(r.returncode, 0, r.stderr)
        return self.read("ref.jsonl")

    def check(self, kind, first, second, model_a=TINY, model_b=TINY, between=None):
        src, out = self.stopped_run(first, model_a)
        if between:
            between()
        r = run(["embed", src, "-o", out, "--model", model_b, "--resume"] + self.with_base(self.fill(second)))
        if kind == "refused":
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"cannot resume", r.stderr)
        else:
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.read("out.jsonl"), self.uninterrupted(src, second, model_b))

    def test_every_option_is_refused_or_changes_no_byte(self):
        listed = embed_options()
        self.assertEqual(listed - set(OPTIONS), set(), "options of embed this test does not classify")
        self.assertEqual(set(OPTIONS) - listed, set(), "options this test knows that embed no longer has")
        for name, (kind, first, second) in sorted(OPTIONS.items()):
            if kind in ("setup", "model", "prompts", "scale-out", "remote"):
                continue
            with self.subTest(option=name, kind=kind):
                self.check(kind, first, second)

    def test_the_model_is_compared_by_content_not_by_path(self):
        copy = self.path("tiny-copy")
        shutil.copytree(TINY, copy)
        with self.subTest("an identical copy elsewhere"):
            self.check("same", [], [], TINY, copy)

        def change_a_weight():
            with open(os.path.join(copy, "model.safetensors"), "r+b") as f:
                f.seek(-3, os.SEEK_END)
                b = f.read(1)
                f.seek(-3, os.SEEK_END)
                f.write(bytes([b[0] ^ 1]))

        with self.subTest("one weight byte changed in place"):
            self.check("refused", [], [], copy, copy, between=change_a_weight)

    def test_prompt_name_is_refused_when_it_changes_the_prompt(self):
        copy = self.path("tiny-prompts")
        shutil.copytree(TINY, copy)
        with open(os.path.join(copy, "config_sentence_transformers.json"), "w") as f:
            json.dump({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}, f)
        self.check("refused", [], ["--prompt-name", "query"], copy, copy)
        self.check("same", ["--prompt-name", "query"], ["--prompt", "query: "], copy, copy)

    def test_fix_the_bad_record_and_resume(self):
        src, out = self.stopped_run([])
        r = run(["embed", src, "-o", out, "--model", TINY, "--resume"] + BASE)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read("out.jsonl"), self.uninterrupted(src, []))

    def test_an_edit_before_the_checkpoint_is_refused_even_with_size_and_time_kept(self):
        src, out = self.stopped_run([])
        st = os.stat(src)
        data = bytearray(self.read("in.jsonl"))
        at = data.index(b"record 3 ")
        data[at + 7] = ord("4")  # same length
        self.write("in.jsonl", bytes(data))
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        before = self.read("out.jsonl")
        r = run(["embed", src, "-o", out, "--model", TINY, "--resume"] + BASE)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"the input was changed before the point the run had reached", r.stderr)
        self.assertEqual(self.read("out.jsonl"), before)

    def test_edited_checkpoints_are_refused(self):
        src, out = self.stopped_run([])
        with open(out + ".checkpoint") as f:
            good = json.load(f)
        size = os.path.getsize(src)
        out_before = self.read("out.jsonl")
        # The JSONL source's position: the offset after the last record done, its line, and the
        # hash of the bytes before the offset.
        offset, line, digest = good["input_position"].split(" ")
        offset, line = int(offset), int(line)

        def position(o=offset, n=line, h=digest):
            return {"input_position": "%d %d %s" % (o, n, h)}

        edits = {
            "input offset past the end": {"input_offset": size + 100},
            "position past the end": position(o=size + 100),
            "position 0": position(o=0),
            "position 2^64-1": position(o=2 ** 64 - 1),
            "position mid-line": position(o=offset - 5),
            "position line": position(n=line + 1),
            "position hash": position(h="0" * 16),
            "position not a number": {"input_position": "x %d %s" % (line, digest)},
            "position empty": {"input_position": ""},
            "output offset mid-line": {"output_offset": good["output_offset"] - 7},
            "output offset 0": {"output_offset": 0},
            "records done": {"records_done": good["records_done"] + 1},
            "completed": {"completed": good["completed"] - 1},
            "failed": {"failed": 1},
            "finished mid-run": {"finished": True},
            "output hash": {"output_hash": "0" * 16},
        }
        for what, change in edits.items():
            with self.subTest(what):
                with open(out + ".checkpoint", "w") as f:
                    json.dump({**good, **change}, f)
                r = run(["embed", src, "-o", out, "--model", TINY, "--resume"] + BASE)
                self.assertNotEqual(r.returncode, 0, r.stderr)
                self.assertIn(b"cannot resume", r.stderr)
                self.assertEqual(self.read("out.jsonl"), out_before)

    def test_bytes_added_to_a_finished_output_are_noticed(self):
        src = self.write("in.jsonl", records(20))
        out = self.path("out.jsonl")
        common = ["embed", src, "-o", out, "--model", TINY, "--progress", "never"]
        self.assertEqual(run(common).returncode, 0)
        self.assertEqual(run(common + ["--resume"]).returncode, 0)  # nothing to do
        with open(out, "ab") as f:
            f.write(b'{"added": true}\n')
        r = run(common + ["--resume"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"were added to the output", r.stderr)
        with open(src, "ab") as f:
            f.write(records(1))
        r = run(common + ["--resume"])
        self.assertNotEqual(r.returncode, 0, r.stderr)


class RunStateTest(Base):
    def test_numeric_options_outside_their_range_are_usage_errors(self):
        src = self.write("in.jsonl", records(5))
        for option, value in [("--max-in-flight", "0"), ("--max-in-flight-bytes", "0"), ("--max-in-flight", "-1"),
                              ("--max-in-flight-bytes", str(2 ** 64)), ("--sort-window", str(2 ** 64 - 1)),
                              ("--batch-size", "0"), ("--max-record-bytes", "0"), ("--dim", "-3"),
                              ("--checkpoint-every", "-1"), ("--max-batch-tokens", str(2 ** 40)),
                              ("--chunk-overlap", "-1"), ("--max-errors", "-2"), ("--threads", "-1")]:
            with self.subTest(option=option, value=value):
                r = run(["embed", src, "-o", self.path("out.jsonl"), "--model", TINY, option, value], timeout=60)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertRegex(r.stderr, rb"not in range|could not be converted|[Vv]alue")
        r = run(["embed", src, "-o", self.path("out.jsonl"), "--model", TINY, "--threads", "1000", "--progress",
                 "never"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"is more than this machine's", r.stderr)

    def test_a_failing_event_log_fails_the_run(self):
        src = self.write("in.jsonl", records(50))
        r = run(["embed", src, "-o", self.path("out.jsonl"), "--model", TINY, "--events", "/dev/full",
                 "--progress", "never"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"/dev/full: cannot write the event log", r.stderr)

    def test_summary_and_exit_status_agree_with_the_events(self):
        for bad_line in (0, 1, 5):
            with self.subTest(bad_record=bad_line):
                src = self.write("in.jsonl", records(12, bad={bad_line}))
                r = run(["embed", src, "-o", self.path("out.jsonl"), "--model", TINY, "--no-validate",
                         "--events", self.path("events.jsonl"), "--progress", "never"])
                events = [json.loads(l) for l in self.read("events.jsonl").splitlines()]
                failed_events = [e for e in events if e["type"] == "document_failed"]
                finished = [e for e in events if e["type"] == "pipeline_finished"][-1]
                self.assertEqual(len(failed_events), 1)
                self.assertEqual(finished["summary"]["failed"], 1, finished)
                self.assertEqual(r.returncode, 3, r.stderr)

    def test_the_final_checkpoint_always_says_finished(self):
        src = self.write("in.jsonl", records(3000))
        out = self.path("out.jsonl")
        r = run(["embed", src, "-o", out, "--model", TINY, "--progress", "never", "--checkpoint-every", "0",
                 "--sort-window", "64"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out + ".checkpoint") as f:
            cp = json.load(f)
        self.assertTrue(cp["finished"])
        self.assertEqual(cp["records_done"], 3000)
        # Stopped and continued at random moments: the same, every time.
        rng = random.Random(5)
        for trial in range(int(os.environ.get("SLUICE_SIGSTOP_TRIALS", "4"))):
            with self.subTest(trial=trial):
                os.remove(out)
                os.remove(out + ".checkpoint")
                p = subprocess.Popen([PIPELINE_RUN, "embed", src, "-o", out, "--model", TINY, "--progress", "never",
                                      "--checkpoint-every", "50", "--sort-window", "64"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                while p.poll() is None:
                    time.sleep(rng.uniform(0.0, 0.05))
                    try:
                        p.send_signal(signal.SIGSTOP)
                        time.sleep(rng.uniform(0.0, 0.05))
                        p.send_signal(signal.SIGCONT)
                    except ProcessLookupError:
                        break
                _, err = p.communicate(timeout=300)
                self.assertEqual(p.returncode, 0, err)
                with open(out + ".checkpoint") as f:
                    cp = json.load(f)
                self.assertTrue(cp["finished"], cp)
                self.assertEqual(cp["records_done"], 3000)



class InputTest(Base):
    def test_a_prompt_that_leaves_no_room_for_text_is_refused(self):
        src = self.write("in.jsonl", records(5))
        r = run(["embed", src, "-o", self.path("out.jsonl"), "--model", TINY, "--prompt", "river " * 2000])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"no room is left for the text", r.stderr)
        self.assertFalse(os.path.exists(self.path("out.jsonl")))

    def test_a_text_that_normalises_to_nothing_is_an_empty_text(self):
        data = ('{"text": "\u200b"}\n{"text": "ok then"}\n{"text": "\u200b\u200b\u00ad"}\n').encode()
        src = self.write("in.jsonl", data)
        r = run(["embed", src, "-o", self.path("out.jsonl"), "--model", TINY, "--on-error", "skip",
                 "--dead-letter", self.path("dead.jsonl"), "--progress", "never"])
        self.assertEqual(r.returncode, 4, r.stderr)
        dead = [json.loads(l) for l in self.read("dead.jsonl").splitlines()]
        self.assertEqual([d["line"] for d in dead], [1, 3])
        self.assertTrue(all(d["error"] == "empty_text" for d in dead), dead)
        self.assertEqual(len(self.read("out.jsonl").splitlines()), 1)

    def test_pipes_fifos_and_dev_stdin_are_read_like_standard_input(self):
        data = records(300, bad={7})
        src = self.write("in.jsonl", data)
        common = ["--model", TINY, "--progress", "never", "--on-error", "skip"]
        ref = run(["embed", src, "-o", self.path("ref.jsonl")] + common)
        self.assertEqual(ref.returncode, 4, ref.stderr)
        fifo = self.path("fifo")
        os.mkfifo(fifo)
        for name, cmd in [
            ("fifo", "cat '%s' > '%s' & exec '%s' embed '%s' -o '%s' %s" % (src, fifo, PIPELINE_RUN, fifo,
                                                                        self.path("out.jsonl"), " ".join(common))),
            ("/dev/stdin", "exec '%s' embed /dev/stdin -o '%s' %s < '%s'" % (PIPELINE_RUN, self.path("out.jsonl"),
                                                                          " ".join(common), src)),
            ("process substitution", "exec '%s' embed <(cat '%s') -o '%s' %s" % (PIPELINE_RUN, src,
                                                                               self.path("out.jsonl"),
                                                                               " ".join(common))),
            ("fail mode, no validation pass", "exec '%s' embed <(cat '%s') -o '%s' --model '%s' --progress never" % (
                PIPELINE_RUN, self.write("good.jsonl", records(50)), self.path("out.jsonl"), TINY)),
        ]:
            with self.subTest(name):
                if os.path.exists(self.path("out.jsonl")):
                    os.remove(self.path("out.jsonl"))
                r = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=300)
                if name.startswith("fail mode"):
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(len(self.read("out.jsonl").splitlines()), 50)
                    continue
                self.assertEqual(r.returncode, 4, r.stderr)
                self.assertEqual(self.read("out.jsonl"), self.read("ref.jsonl"))
        r = subprocess.run(["bash", "-c", "exec '%s' embed <(cat '%s') -o '%s' --model '%s' --resume" % (
            PIPELINE_RUN, src, self.path("out.jsonl"), TINY)], capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"not a regular file", r.stderr)

    def test_the_first_sigint_stops_within_one_model_call(self):
        # MiniLM on 4,000 records of about 100 tokens takes about a minute on 2 cores: a stop
        # that drained the whole in-flight window (8,192 records) would take about that long.
        words = "river delta sediment flows past the old mill while herons wait".split()
        src = self.write("in.jsonl", b"".join(
            b'{"id": %d, "text": "%s"}\n' % (i, " ".join(words[(i + k) % len(words)] for k in range(90)).encode())
            for i in range(4000)))
        out = self.path("out.jsonl")
        p = subprocess.Popen([PIPELINE_RUN, "embed", src, "-o", out, "--model", MINILM, "--progress", "never",
                              "--sort-window", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and not (os.path.exists(out) and os.path.getsize(out) > 0):
            time.sleep(0.05)
        err, took = interrupt(p)
        self.assertEqual(p.returncode, 130, err)
        self.assertLess(took, 10.0, "the stop took %.1f s" % took)
        with open(out + ".checkpoint") as f:
            cp = json.load(f)
        self.assertFalse(cp["finished"])
        self.assertLess(cp["records_done"], 4000)
        self.assertEqual(cp["records_done"] % 256, 0)
        self.assertEqual(len(self.read("out.jsonl")[:cp["output_offset"]].splitlines()), cp["records_done"])

    def test_sigint_stops_a_long_chunked_record_within_one_model_call(self):
        # One record of about 100,000 tokens with --long-input chunk: about 200 windows, some 25
        # model calls of 4,096 tokens, all on one worker, about 30 s. The stop must not wait for
        # the rest of the record.
        words = "river delta sediment flows past the old mill while herons wait".split()
        text = " ".join(words[k % len(words)] for k in range(100000))
        src = self.write("in.jsonl", b'{"id": 1, "text": "%s"}\n' % text.encode())
        out = self.path("out.jsonl")
        events = self.path("events.jsonl")
        p = subprocess.Popen([PIPELINE_RUN, "embed", src, "-o", out, "--model", MINILM, "--progress", "never",
                              "--long-input", "chunk", "--events", events],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Wait until the model has run (the tokens it has been given show in the progress).
        deadline = time.time() + 120
        started = False
        while time.time() < deadline and not started and p.poll() is None:
            time.sleep(0.2)
            if os.path.exists(events):
                with open(events) as f:
                    started = any('"type":"batch_progress"' in l and '"elapsed_s"' in l and
                                  json.loads(l)["elapsed_s"] > 3 for l in f if l.endswith("\n"))
        self.assertTrue(started, "the run never got going")
        err, took = interrupt(p)
        self.assertEqual(p.returncode, 130, err)
        self.assertLess(took, 5.0, "the stop took %.1f s" % took)


def peak_rss_mib(args):
    """Runs pipeline-run; returns (exit status, its peak RSS in MiB) from wait4."""
    p = subprocess.Popen([PIPELINE_RUN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, usage.ru_maxrss / 1024


class MemoryTest(Base):
    def test_large_records_make_short_windows_and_memory_stays_flat(self):
        # Records of 1 MiB: windows close by weight (--sort-window-bytes), so the in-flight
        # bound holds whatever the sort window's record count; peak RSS does not grow with the
        # number of records. Before windows closed by weight, 150 such records took 518 MB and
        # 600 took 1.35 GB at the defaults.
        words = "river delta sediment flows past the old mill while herons wait".split()
        text = " ".join(words[i % len(words)] for i in range((1 << 20) // 5))[: 1 << 20]
        line = json.dumps({"text": text}).encode() + b"\n"
        bounds = ["--max-in-flight-bytes", str(8 << 20), "--sort-window-bytes", str(4 << 20)]
        common = ["--model", TINY, "--progress", "never", "--no-checkpoint"] + bounds
        small = self.write("small.jsonl", records(3))
        rc, base = peak_rss_mib(["embed", small, "-o", self.path("out.jsonl")] + common)
        self.assertEqual(rc, 0)
        peaks = {}
        for n in (40, 160):
            src = self.write("big.jsonl", line * n)
            rc, peaks[n] = peak_rss_mib(["embed", src, "-o", self.path("out.jsonl")] + common)
            self.assertEqual(rc, 0)
            self.assertEqual(len(self.read("out.jsonl").splitlines()), n)
        # The bounds (8 + 4 MiB) and one record counted 3 times, plus what tokenising one 1 MiB
        # text takes (docs/architecture.md, "Memory bound"): about 60 MiB here in all.
        self.assertLess(peaks[160] - base, 96, (base, peaks))
        self.assertLess(abs(peaks[160] - peaks[40]), 16, (base, peaks))

    def test_one_15_mib_record_is_tokenised_in_memory_that_follows_the_tokens_kept(self):
        # The text is truncated to the model's 128 tokens: only a prefix of it is tokenised.
        # Before, tokenising the whole text took about 90 bytes per byte (1.5 GB for 16 MiB).
        words = "river delta sediment flows past the old mill while herons wait".split()
        text = " ".join(words[i % len(words)] for i in range(2_500_000))[: 15 << 20]
        src = self.write("big.jsonl", json.dumps({"text": text}).encode() + b"\n" + records(2))
        common = ["--model", TINY, "--progress", "never", "--no-checkpoint"]
        rc, base = peak_rss_mib(["embed", self.write("small.jsonl", records(3)), "-o", self.path("out.jsonl")] + common)
        self.assertEqual(rc, 0)
        rc, peak = peak_rss_mib(["embed", src, "-o", self.path("out.jsonl")] + common)
        self.assertEqual(rc, 0)
        self.assertEqual(len(self.read("out.jsonl").splitlines()), 3)
        # The record itself is held three times (its line, its JSON, its text: 45 MiB) and the
        # line buffer grows to hold it; the tokenizer adds little.
        self.assertLess(peak - base, 160, (base, peak))

    def test_15_mib_without_whitespace_and_tokenize_stats_follow_the_tokens(self):
        # No whitespace at all: words joined by punctuation. BERT's tokenizer may cut before
        # punctuation, RoBERTa's where a letter meets punctuation (1,001 MiB and 1,499 MiB peak
        # before, 375 and 336 MiB after, with small-input runs of 340 and 287 MiB). And
        # `tokenize --stats` on 15 MiB of words counts without keeping the tokens (788 MiB before).
        rng = random.Random(5)
        words = ["river", "delta", "x1", "mill", "heron", "value", "data"]
        puncts = [".", ",", ";", "(", ")", "=", "+", "/", "[", "]", ":"]
        parts, n = [], 0
        while n < 15 << 20:
            w = rng.choice(words) + rng.choice(puncts)
            parts.append(w)
            n += len(w)
        src = self.write("big.jsonl", json.dumps({"text": "".join(parts)}).encode() + b"\n" + records(2))
        small = self.write("small.jsonl", records(3))
        for model in (MINILM, os.path.join(MODELS, "roberta")):
            with self.subTest(model=os.path.basename(model)):
                common = ["--model", model, "--progress", "never", "--no-checkpoint"]
                rc, base = peak_rss_mib(["embed", small, "-o", self.path("out.jsonl")] + common)
                self.assertEqual(rc, 0)
                rc, peak = peak_rss_mib(["embed", src, "-o", self.path("out.jsonl")] + common)
                self.assertEqual(rc, 0)
                self.assertEqual(len(self.read("out.jsonl").splitlines()), 3)
                self.assertLess(peak - base, 160, (base, peak))
        spaced = self.write("spaced.jsonl", json.dumps({"text": " ".join(parts)[: 15 << 20]}).encode() + b"\n")
        rc, base = peak_rss_mib(["tokenize", small, "--model", MINILM, "--stats"])
        self.assertEqual(rc, 0)
        rc, peak = peak_rss_mib(["tokenize", spaced, "--model", MINILM, "--stats"])
        self.assertEqual(rc, 0)
        self.assertLess(peak - base, 100, (base, peak))


if __name__ == "__main__":
    unittest.main()
