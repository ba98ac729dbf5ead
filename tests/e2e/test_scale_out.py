"""Scale-out end to end (docs/scale-out.md): `pipeline-run embed --nats` with model workers
(`pipeline-run worker`) on this machine, through a NATS JetStream server each test starts on
127.0.0.1 with a temporary store folder and stops at the end.

The output of a run on workers must be the output of a run in one process: the same records,
order and bytes. That holds with two workers of different sizes; when one worker is killed
with SIGKILL mid-run (its batch goes to the other); when a worker with another model joins (it
takes nothing, and the run says so); when the run itself is killed at random moments and
resumed; when the NATS server is killed and started again mid-run. A batch that kills every
worker that takes it (SLUICE_WORKER_DIE_ON_TOKEN) is abandoned after --nats-max-deliveries and
tried record by record, so only its bad record fails, in the dead letters. A run is not resumed
across a change of backend, a server that is not there is a clear error, and a password in the
URL is never printed.

Without nats-server on the machine every test is skipped, saying why (tools/setup.sh installs
it). Standard library only.
"""

import json
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_files import TempDirTest, killed_then_resumed, wait_for_size  # noqa: E402

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
MINILM = os.path.join(MODELS, "minilm")
RARE = "zebra"  # in the MiniLM vocabulary, in no record but the one that kills workers

WORDS = ("river stone light paper window garden music table winter bridge cloud engine letter forest silver "
         "market number signal planet harbor orange yellow quiet simple").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_input(path, records, seed=7, rare_at=()):
    """`records` lines of random words; those at `rare_at` hold RARE: the first a short text, the
    others a long one (so that they fall in other batches than the first)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(records):
            n = rng.choice((3, 8, 20, 60, 150))
            text = " ".join(rng.choice(WORDS) for _ in range(n))
            if i in rare_at:
                text = f"a {RARE} in the text" if i == min(rare_at) else f"{text} {RARE}"
            f.write(json.dumps({"id": i, "text": text, "meta": {"k": i % 7}}) + "\n")


def token_id(word):
    with open(os.path.join(MINILM, "vocab.txt"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if line.rstrip("\n") == word:
                return i
    raise AssertionError(f"{word} is not in the vocabulary")


class NatsServer:
    """nats-server -js on 127.0.0.1, its store in `folder`; kill() and start() again keep the store."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = None
        self.log = open(os.path.join(folder, "nats-server.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd",
                                      os.path.join(self.folder, "js")], stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Worker:
    """`pipeline-run worker` in the background, its standard error in a file; with `restart`, a
    supervisor starts it again whenever it dies (as systemd's Restart=always would)."""

    def __init__(self, folder, name, url, extra=(), env=None, restart=False):
        self.log_path = os.path.join(folder, f"worker-{name}.log")
        cmd = [PIPELINE_RUN, "worker", "--nats", url, "--model", MINILM, "--name", name] + list(extra)
        if restart:
            quoted = " ".join("'" + c.replace("'", "'\\''") + "'" for c in cmd)
            cmd = ["bash", "-c", f"while true; do {quoted}; sleep 0.2; done"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_serving(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "serving sluice.work." in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError("the worker ended: " + self.log())
            time.sleep(0.05)
        raise AssertionError("the worker did not start serving: " + self.log())

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def events(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def same_records(test, got, want, cosine=None):
    """Line for line: every field byte for byte; the embedding too, or, with `cosine`, within it."""
    got_lines, want_lines = got.splitlines(), want.splitlines()
    test.assertEqual(len(got_lines), len(want_lines))
    for g, w in zip(got_lines, want_lines):
        if cosine is None:
            test.assertEqual(g, w)
            continue
        gj, wj = json.loads(g), json.loads(w)
        ge, we = gj.pop("embedding"), wj.pop("embedding")
        test.assertEqual(gj, wj)
        dot = sum(a * b for a, b in zip(ge, we))
        test.assertGreaterEqual(dot / (math.sqrt(sum(a * a for a in ge)) * math.sqrt(sum(b * b for b in we))), cosine)


_reference = {}


def setUpModule():
    if not shutil.which("nats-server"):
        raise unittest.SkipTest("nats-server is not installed (Debian nats-server: bash tools/setup.sh)")


class ScaleOutTest(TempDirTest):
    prefix = "sluice-scale-out-"
    records = 1500

    def setUp(self):
        super().setUp()
        self.server = NatsServer(self.dir)
        self.server.start()
        self.workers = []
        self.input = self.path("in.jsonl")
        make_input(self.input, self.records)

    def tearDown(self):
        for w in self.workers:
            w.stop()
        self.server.stop()
        super().tearDown()

    def worker(self, name, extra=(), env=None, restart=False, wait=True):
        w = Worker(self.dir, name, self.server.url, extra, env, restart)
        self.workers.append(w)
        if wait:
            w.wait_serving()
        return w

    def local(self, *options):
        """The single-process output for the same input and batching options (made once)."""
        key = (self.input, os.path.getsize(self.input)) + options
        if key not in _reference:
            out = self.path("local.jsonl")
            r = subprocess.run([PIPELINE_RUN, "embed", self.input, "-o", out, "--model", MINILM, "--no-checkpoint",
                                "--progress", "never"] + list(options), capture_output=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stderr.decode())
            with open(out, "rb") as f:
                _reference[key] = f.read()
        return _reference[key]

    def embed_cmd(self, out, *extra):
        return [PIPELINE_RUN, "embed", self.input, "-o", out, "--model", MINILM, "--nats", self.server.url,
                "--progress", "never", "--nats-ack-wait", "2"] + list(extra)

    def test_two_workers_give_the_single_process_output(self):
        self.worker("w1")
        self.worker("w2", ["--threads", "1"])
        out = self.path("out.jsonl")
        r = subprocess.run(self.embed_cmd(out, "--events", self.path("ev.jsonl")), capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(self.read("out.jsonl"), self.local())
        ev = events(self.path("ev.jsonl"))
        joined = sorted(e["worker"] for e in ev if e["type"] == "worker_joined")
        self.assertEqual(joined, ["w1", "w2"])
        summary = [e for e in ev if e["type"] == "pipeline_finished"][0]["summary"]
        self.assertEqual((summary["status"], summary["completed"], summary["failed"]), ("completed", self.records, 0))
        # Both took batches: each worker's log counts what it answered.
        for w in self.workers:
            w.stop()
        counts = [int(w.log().split(" stopped: ")[1].split(" batches")[0]) for w in self.workers]
        self.assertEqual(len(counts), 2)
        self.assertGreater(sum(counts), 0)

    def test_a_worker_killed_mid_run_loses_nothing(self):
        # Long enough that the run outlasts the 5 s after which a silent worker has left.
        self.input = self.path("long.jsonl")
        make_input(self.input, 4000, seed=3)
        w1 = self.worker("w1")
        self.worker("w2")
        out = self.path("out.jsonl")
        p = subprocess.Popen(self.embed_cmd(out, "--events", self.path("ev.jsonl"), "--batch-size", "32"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Killed once it has answered a batch or two, while it holds others.
        wait_for_size(out, 200_000, 60, 0.05)
        w1.kill()
        _, err = p.communicate(timeout=600)
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertEqual(self.read("out.jsonl"), self.local("--batch-size", "32"))
        ev = events(self.path("ev.jsonl"))
        left = [e for e in ev if e["type"] == "worker_left"]
        self.assertTrue(any(e["worker"] == "w1" and e["reason"].startswith("silent") for e in left), left)
        # Its calls were busy (8 batches on the wire for 4 calls): what it held came back.
        redelivered = [e for e in ev if e["type"] == "batch_redelivered"]
        self.assertTrue(redelivered)
        self.assertTrue(all(not e["abandoned"] and e["deliveries"] >= 2 for e in redelivered), redelivered)

    def test_a_worker_with_another_model_takes_nothing(self):
        other = self.worker("other", ["--pooling", "cls"])
        self.worker("good")
        out = self.path("out.jsonl")
        r = subprocess.run(self.embed_cmd(out, "--events", self.path("ev.jsonl")), capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(self.read("out.jsonl"), self.local())
        refused = [e for e in events(self.path("ev.jsonl")) if e["type"] == "worker_refused"]
        self.assertEqual([e["worker"] for e in refused], ["other"])
        self.assertIn("pooling cls", refused[0]["worker_model"])
        self.assertIn("pooling mean", refused[0]["run_model"])
        other.stop()
        log = other.log()
        self.assertIn("refusing run", log)
        self.assertIn("stopped: 0 batches", log)

    def test_the_run_killed_and_resumed_gives_the_same_output(self):
        self.worker("w1")
        self.worker("w2")
        want = self.local("--batch-size", "32")
        out = self.path("out.jsonl")
        cmd = self.embed_cmd(out, "--batch-size", "32", "--checkpoint-every", "64")
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, timeout=600)
        whole = time.time() - t0
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        seed = int(os.environ.get("SLUICE_KILL_SEED", random.randrange(1 << 30)))
        for trial in range(int(os.environ.get("SLUICE_KILL_TRIALS", 3))):
            os.remove(out)
            os.remove(out + ".checkpoint")
            code, err = killed_then_resumed(cmd, random.Random(seed + trial), whole, kills=2)
            self.assertEqual(code, 0, f"seed {seed + trial}: " + err.decode())
            self.assertEqual(self.read("out.jsonl"), want, f"seed {seed + trial}")

    def test_the_nats_server_restarted_mid_run(self):
        self.worker("w1")
        self.worker("w2")
        out = self.path("out.jsonl")
        p = subprocess.Popen(self.embed_cmd(out, "--batch-size", "32"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        wait_for_size(out, 100_000, 60, 0.05)
        self.server.kill()
        time.sleep(1.5)
        self.server.start()
        _, err = p.communicate(timeout=600)
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertEqual(self.read("out.jsonl"), self.local("--batch-size", "32"))

    def test_the_nats_options_change_no_byte_on_resume(self):
        # test_adversarial.py classifies every option of embed; these it leaves to this file.
        self.worker("w1")
        out = self.path("out.jsonl")
        first = self.embed_cmd(out, "--batch-size", "32", "--checkpoint-every", "32", "--nats-in-flight", "2")
        p = subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_size(out, 200_000, 60, 0.02)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 130, err.decode())
        second = [PIPELINE_RUN, "embed", self.input, "-o", out, "--model", MINILM, "--nats", self.server.url,
                  "--progress", "never", "--batch-size", "32", "--checkpoint-every", "32", "--nats-in-flight", "16",
                  "--nats-ack-wait", "7", "--nats-max-deliveries", "5", "--nats-timeout", "60", "--resume"]
        r = subprocess.run(second, capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(self.read("out.jsonl"), self.local("--batch-size", "32"))

    def test_the_run_suspended_past_the_workers_patience(self):
        # Workers drop the batches of a run silent for 10 s. The run and its workers suspended
        # for 12 s (Ctrl-Z, a host frozen), the workers woken first: they drop what is queued,
        # and the run, woken a moment later, gets it back (it sends it again, told by the
        # workers and by its own silence).
        self.worker("w1")
        self.worker("w2")
        out = self.path("out.jsonl")
        p = subprocess.Popen(self.embed_cmd(out, "--batch-size", "32", "--events", self.path("ev.jsonl")),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_size(out, 100_000, 60, 0.02)
        everyone = [w.proc.pid for w in self.workers]
        for pid in everyone:
            os.killpg(pid, signal.SIGSTOP)
        p.send_signal(signal.SIGSTOP)
        time.sleep(12)
        for pid in everyone:
            os.killpg(pid, signal.SIGCONT)
        time.sleep(1.5)
        p.send_signal(signal.SIGCONT)
        _, err = p.communicate(timeout=600)
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertEqual(self.read("out.jsonl"), self.local("--batch-size", "32"))
        for w in self.workers:
            w.stop()
        dropped = sum(int(w.log().split(" failed, ")[1].split(" dropped")[0]) for w in self.workers)
        self.assertGreater(dropped, 0, "the workers dropped nothing: the run was not silent long enough")

    def test_batches_that_kill_every_worker_fail_only_their_bad_records(self):
        # Two poison batches, one of short texts and one of long ones: each worker death also
        # counts a delivery of every batch the worker held, and none of those may be blamed.
        bad = (37, 211)
        self.input = self.path("rare.jsonl")
        make_input(self.input, 300, seed=11, rare_at=bad)
        env = dict(os.environ, SLUICE_WORKER_DIE_ON_TOKEN=str(token_id(RARE)))
        self.worker("d1", env=env, restart=True)
        self.worker("d2", env=env, restart=True)
        out = self.path("out.jsonl")
        r = subprocess.run(self.embed_cmd(out, "--events", self.path("ev.jsonl"), "--on-error", "skip",
                                          "--dead-letter", self.path("dead.jsonl")),
                           capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 4, r.stderr.decode())  # finished; some records failed
        dead = [json.loads(line) for line in self.read("dead.jsonl").splitlines()]
        self.assertEqual([d["line"] for d in dead], [b + 1 for b in bad])
        for d in dead:
            self.assertIn("no worker answered", d["message"])
        # Every other record, in order; the bad records' batch-mates were embedded one by one,
        # so their vectors may differ from the batched ones in the last bits.
        want = [line for i, line in enumerate(self.local().splitlines()) if i not in bad]
        same_records(self, self.read("out.jsonl"), b"\n".join(want) + b"\n", cosine=0.99999)
        ev = events(self.path("ev.jsonl"))
        self.assertTrue(any(e["type"] == "batch_redelivered" and e["abandoned"] for e in ev))
        self.assertIn("no worker answered", r.stderr.decode())

    def test_no_resume_across_a_change_of_backend(self):
        self.worker("w1")
        out = self.path("out.jsonl")
        local = [PIPELINE_RUN, "embed", self.input, "-o", out, "--model", MINILM, "--progress", "never",
                 "--batch-size", "16", "--checkpoint-every", "16", "--threads", "1"]
        p = subprocess.Popen(local, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_size(out, 50_000, 60, 0.02)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 130, err.decode())
        r = subprocess.run(local + ["--nats", self.server.url, "--resume"], capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr.decode())
        self.assertIn("NATS JetStream workers", r.stderr.decode())
        # The same command as the first finishes it, in one process.
        r = subprocess.run(local + ["--resume"], capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(self.read("out.jsonl"), self.local("--batch-size", "16"))


    def test_index_on_workers_gives_the_local_index(self):
        self.worker("w1")
        tree = self.path("tree")
        rng = random.Random(5)
        for f in range(12):
            body = "".join(f"def f{f}_{i}(x):\n    \"\"\"{' '.join(rng.choice(WORDS) for _ in range(12))}\"\"\"\n"
                           f"    return x + {i}\n\n\n" for i in range(rng.randint(1, 30)))
            os.makedirs(os.path.join(tree, f"pkg{f % 3}"), exist_ok=True)
            with open(os.path.join(tree, f"pkg{f % 3}", f"m{f}.py"), "w") as out:
                out.write(body)
        rows = {}
        for name, extra in (("local", []), ("remote", ["--nats", self.server.url])):
            store = self.path(f"{name}.db")
            r = subprocess.run([PIPELINE_RUN, "index", tree, "-o", "sqlite:" + store, "--model", MINILM, "--progress",
                                "never"] + extra, capture_output=True, timeout=600)
            if name == "local" and r.returncode == 2 and b"index" in r.stderr:
                self.skipTest("this build has no code index (-Dcode_index=disabled)")
            self.assertEqual(r.returncode, 0, r.stderr.decode())
            with sqlite3.connect(store) as db:
                rows[name] = db.execute("SELECT path, start_line, end_line, text_hash, embedding FROM chunks "
                                        "ORDER BY path, ordinal").fetchall()
        self.assertGreater(len(rows["local"]), 12)
        self.assertEqual(rows["remote"], rows["local"])


class NoServerTest(TempDirTest):
    def test_an_unreachable_server_is_a_clear_error_and_hides_the_password(self):
        make_input(self.path("in.jsonl"), 10)
        url = f"nats://someone:s3cret-pass@127.0.0.1:{free_port()}"
        r = subprocess.run([PIPELINE_RUN, "embed", self.path("in.jsonl"), "-o", self.path("out.jsonl"), "--model",
                            MINILM, "--nats", url, "--progress", "never"], capture_output=True, timeout=120)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("cannot connect to the NATS server at nats://***@127.0.0.1:", err)
        self.assertNotIn("s3cret", err)
        r = subprocess.run([PIPELINE_RUN, "worker", "--nats", url, "--model", MINILM], capture_output=True,
                           timeout=120)
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertNotIn("s3cret", r.stderr.decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
