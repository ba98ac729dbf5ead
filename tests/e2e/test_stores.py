"""Stores end to end: `pipeline-run embed -o sqlite:PATH` and `-o postgresql://...`, and `search`.

The same tests run against SQLite and PostgreSQL. PostgreSQL runs as a throwaway cluster that
tools/postgres.sh starts in a temporary folder (a Unix socket only, no TCP) and stops at the
end; SLUICE_TEST_POSTGRES_URI points the tests at another server instead (each test makes a
database of its own there). Without a PostgreSQL server on the machine the PostgreSQL class is
skipped, saying why. Standard library only (PostgreSQL is read back through psql).
"""

import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import time
import unittest
import uuid

from e2e_files import TempDirTest, killed_then_resumed

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
SOURCE_ROOT = os.environ.get("SLUICE_SOURCE_ROOT", ".")
TINY = os.path.join(MODELS, "tiny")
MINILM = os.path.join(MODELS, "minilm")
POSTGRES_SH = os.path.join(SOURCE_ROOT, "tools", "postgres.sh")


def run(args, timeout=300, env=None):
    return subprocess.run([PIPELINE_RUN] + args, capture_output=True, timeout=timeout, env=env)


def records(n, start=0):
    return b"".join(
        b'{"id": "r%d", "text": "record %d about rivers, deltas and the farmers of the plain %d", "n": %d}\n'
        % (i, i, i * 7 % 13, i) for i in range(start, start + n))


# --- the PostgreSQL server -------------------------------------------------------------------

_pg = {"dir": None, "uri": None, "why": None}


def setUpModule():
    if os.environ.get("SLUICE_TEST_POSTGRES_URI"):
        _pg["uri"] = os.environ["SLUICE_TEST_POSTGRES_URI"]
        return
    if not shutil.which("psql"):
        _pg["why"] = "psql is not installed (postgresql-15: bash tools/setup.sh)"
        return
    d = tempfile.mkdtemp(prefix="sluice-pg-")
    r = subprocess.run(["bash", POSTGRES_SH, "start", d], capture_output=True, timeout=120)
    if r.returncode == 3:
        _pg["why"] = r.stderr.decode().strip()
        shutil.rmtree(d, ignore_errors=True)
        return
    if r.returncode != 0:
        raise RuntimeError("tools/postgres.sh start failed: " + r.stderr.decode())
    _pg["dir"] = d
    _pg["uri"] = r.stdout.decode().strip()


def tearDownModule():
    if _pg["dir"]:
        subprocess.run(["bash", POSTGRES_SH, "stop", _pg["dir"]], capture_output=True, timeout=120)


def psql(uri, sql):
    r = subprocess.run(["psql", uri, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e",
                        "-c", sql], capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode())
    out = r.stdout.decode()
    return [row.split("\x1f") for row in out.split("\x1e") if row != ""]


def with_database(uri, name):
    """The URI with its database replaced by `name`."""
    return re.sub(r"^(postgres(?:ql)?://[^/]*/)([^?]*)", lambda m: m.group(1) + name, uri)


# --- the suite, for either store ---------------------------------------------------------------

class StoreSuite:
    """Mixed into a TempDirTest with: store_uri(name), rows(uri, table), exact_records."""

    def wait_for_rows(self, uri, process, seconds=120):
        """Until the run `process` has committed rows to the table (or ended)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if self.rows(uri):
                    return
            except Exception:
                pass  # the table does not exist yet
            time.sleep(0.1)

    def embed(self, src, uri, *extra, model=TINY):
        return run(["embed", src, "-o", uri, "--model", model, "--progress", "never", *extra])

    def jsonl_reference(self, src, *extra, model=TINY):
        out = self.path("ref-%s.jsonl" % uuid.uuid4().hex[:8])
        r = run(["embed", src, "-o", out, "--model", model, "--progress", "never", *extra])
        self.assertIn(r.returncode, (0, 4), r.stderr)
        with open(out, "rb") as f:
            return [json.loads(line) for line in f]

    def test_rows_match_the_jsonl_output_exactly(self):
        data = records(300) + b'{"text": "no id: its line number is its id"}\n' + b'{"id": 77, "text": "an integer id"}\n'
        src = self.write("in.jsonl", data)
        uri = self.store_uri("a")
        r = self.embed(src, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"verified: 302 rows of this run", r.stderr)
        rows = self.rows(uri)
        self.assertEqual(len(rows), 302)
        by_id = {row["id"]: row for row in rows}
        self.assertIn("301", by_id)  # the line number
        self.assertIn("77", by_id)   # an integer id, as text
        lines = data.splitlines()
        reference = self.jsonl_reference(src)
        for i, (line, ref) in enumerate(zip(lines, reference)):
            obj = json.loads(line)
            row = by_id[str(obj.get("id", i + 1))]
            self.assertEqual(row["line"], i + 1)
            if self.exact_records:
                self.assertEqual(row["record"], line.decode())
            else:
                self.assertEqual(json.loads(row["record"]), obj)
            # The stored float32 values are the JSONL output's numbers, bit for bit.
            self.assertEqual([struct.pack("<f", v) for v in row["embedding"]],
                             [struct.pack("<f", v) for v in ref["embedding"]], row["id"])

    def test_other_output_types_are_the_jsonl_values(self):
        data = records(40)
        src = self.write("in.jsonl", data)
        for kind in ("float16", "int8", "binary"):
            uri = self.store_uri("t" + kind)
            r = self.embed(src, uri, "--output-type", kind)
            self.assertEqual(r.returncode, 0, r.stderr)
            reference = self.jsonl_reference(src, "--output-type", kind)
            rows = {row["id"]: row for row in self.rows(uri, kind=kind)}
            for ref in reference:
                if kind == "float16":
                    # JSONL writes the half's value as the shortest float32 text that reads back as it.
                    self.assertEqual([struct.pack("<f", v) for v in rows[ref["id"]]["embedding"]],
                                     [struct.pack("<f", v) for v in ref["embedding"]], kind)
                else:
                    self.assertEqual(rows[ref["id"]]["embedding"], ref["embedding"], kind)

    def test_a_rerun_updates_rows_and_never_duplicates(self):
        src = self.write("in.jsonl", records(120))
        uri = self.store_uri("b")
        self.assertEqual(self.embed(src, uri).returncode, 0)
        first = self.rows(uri)
        src2 = self.write("in2.jsonl", records(60, 100))  # 20 ids again, 40 new
        r = self.embed(src2, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"verified: 60 rows of this run", r.stderr)
        rows = self.rows(uri)
        self.assertEqual(len(rows), 160)
        self.assertEqual(len({row["id"] for row in rows}), 160)
        runs = {row["id"]: row["run"] for row in rows}
        self.assertEqual(runs["r0"], 1)
        self.assertEqual(runs["r100"], 2)
        self.assertEqual({row["id"]: row["embedding"] for row in first}["r5"],
                         {row["id"]: row["embedding"] for row in rows}["r5"])

    def test_vectors_of_another_model_are_refused_naming_both(self):
        src = self.write("in.jsonl", records(10))
        uri = self.store_uri("c")
        self.assertEqual(self.embed(src, uri).returncode, 0)
        r = self.embed(src, uri, model=MINILM)
        self.assertEqual(r.returncode, 2, r.stderr)
        err = r.stderr.decode()
        self.assertIn("another model", err)
        self.assertIn("32 dimensions", err)
        self.assertIn("384 dimensions", err)
        self.assertEqual(len(self.rows(uri)), 10)
        # The same model with another pooling is another model too.
        r = self.embed(src, uri, "--pooling", "cls")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("pooling cls", r.stderr.decode())
        # Another table of the same store takes them.
        r = self.embed(src, uri, "--table", "mini", model=MINILM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.rows(uri, table="mini")), 10)

    def test_duplicate_and_bad_ids_are_bad_records_not_overwrites(self):
        data = (b'{"id": "a", "text": "first a"}\n'
                b'{"id": "b", "text": "b"}\n'
                b'{"id": "a", "text": "second a"}\n'
                b'{"id": 1.5, "text": "a float id"}\n'
                b'{"id": {"x": 1}, "text": "an object id"}\n'
                b'{"id": "c", "text": "c"}\n')
        src = self.write("in.jsonl", data)
        uri = self.store_uri("d")
        dead = self.path("dead.jsonl")
        r = self.embed(src, uri, "--on-error", "skip", "--dead-letter", dead)
        self.assertEqual(r.returncode, 4, r.stderr)
        rows = {row["id"]: row for row in self.rows(uri)}
        self.assertEqual(sorted(rows), ["a", "b", "c"])
        self.assertIn("first a", rows["a"]["record"])
        with open(dead) as f:
            letters = [json.loads(line) for line in f]
        self.assertEqual([(d["line"], d["error"]) for d in letters],
                         [(3, "duplicate_id"), (4, "invalid_id"), (5, "invalid_id")])
        self.assertIn("line 1", letters[0]["message"])
        # --on-error fail: the first such record fails the run.
        uri2 = self.store_uri("d2")
        r = self.embed(src, uri2)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn(b"id \"a\" was already written by line 1", r.stderr)

    def test_resume_after_sigkill_equals_an_uninterrupted_run(self):
        trials = int(os.environ.get("SLUICE_KILL_TRIALS", "3"))
        rng = random.Random(int(os.environ.get("SLUICE_KILL_SEED", "2")))
        data = records(2500) + b'{"text": 7}\n' + records(2500, 2500)
        src = self.write("in.jsonl", data)
        common = ["--on-error", "skip", "--sort-window", "256"]
        ref_uri = self.store_uri("ref")
        t0 = time.monotonic()
        r = self.embed(src, ref_uri, "--dead-letter", self.path("ref.dead"), *common)
        whole = time.monotonic() - t0
        self.assertEqual(r.returncode, 4, r.stderr)
        reference = [(row["id"], row["record"], row["embedding"], row["line"]) for row in self.rows(ref_uri)]
        self.assertEqual(len(reference), 5000)
        ref_dead = self.read("ref.dead")
        for trial in range(trials):
            uri = self.store_uri(f"k{trial}")
            dead = self.path(f"k{trial}.dead")
            cmd = [PIPELINE_RUN, "embed", src, "-o", uri, "--model", TINY, "--progress", "never",
                   "--dead-letter", dead, *common]
            kills = rng.randint(1, 4)
            rc, err = killed_then_resumed(cmd, rng, whole, kills)
            self.assertEqual(rc, 4, err)
            self.assertIn(b"verified: 5000 rows of this run", err)
            got = [(row["id"], row["record"], row["embedding"], row["line"]) for row in self.rows(uri)]
            self.assertEqual(len(got), len(reference), f"trial {trial} after {kills} kills")
            self.assertEqual(got, reference, f"trial {trial} after {kills} kills")
            self.assertEqual(self.read(f"k{trial}.dead"), ref_dead, f"trial {trial}")
            self.assertEqual(len({row_run for row_run in (row["run"] for row in self.rows(uri))}), 1)

    def test_sigint_stops_with_a_checkpoint_and_resume_finishes(self):
        src = self.write("in.jsonl", records(3000))
        uri = self.store_uri("e")
        opts = ["--sort-window", "256", "--batch-size", "16", "--threads", "1"]
        p = subprocess.Popen([PIPELINE_RUN, "embed", src, "-o", uri, "--model", MINILM, "--progress", "never", *opts],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_for_rows(uri, p)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        if p.returncode == 0:
            self.skipTest("the run finished within a second on this machine: nothing to stop")
        self.assertEqual(p.returncode, 130, err)
        self.assertIn(b"--resume", err)
        self.assertGreater(len(self.rows(uri)), 0)
        r = self.embed(src, uri, "--resume", *opts, model=MINILM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"verified: 3000 rows of this run", r.stderr)
        # A finished run resumed again does nothing.
        r = self.embed(src, uri, "--resume", *opts, model=MINILM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.rows(uri)), 3000)

    def test_resume_with_other_options_is_refused(self):
        src = self.write("in.jsonl", records(3000))
        uri = self.store_uri("f")
        p = subprocess.Popen([PIPELINE_RUN, "embed", src, "-o", uri, "--model", TINY, "--progress", "never",
                              "--batch-size", "8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Killed once a first commit has its checkpoint (not after a fixed time: a loaded
        # machine, or a sanitizer, may not have written anything by then).
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            try:
                if self.rows(uri):
                    break
            except Exception:  # the tables are not there yet
                pass
            time.sleep(0.02)
        p.kill()
        p.communicate()
        if len(self.rows(uri)) == 3000:
            self.skipTest("the run finished before it could be killed")
        r = self.embed(src, uri, "--resume", "--batch-size", "8", "--dim", "16")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_search_returns_the_brute_force_top_k(self):
        data = records(500)
        src = self.write("in.jsonl", data)
        uri = self.store_uri("g")
        self.assertEqual(self.embed(src, uri).returncode, 0)
        queries = ["farmers of the plain 3", "record 42 about rivers", "deltas"]
        qsrc = self.write("q.jsonl", b"".join(json.dumps({"text": q}).encode() + b"\n" for q in queries))
        r = run(["search", uri, "--queries", qsrc, "-k", "7", "--model", TINY])
        self.assertEqual(r.returncode, 0, r.stderr)
        hits = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(len(hits), 21)
        # The queries' vectors, as a JSONL run gives them, against every row.
        qvecs = [o["embedding"] for o in self.jsonl_reference(qsrc)]
        rows = self.rows(uri)

        def cos(a, b):
            return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

        for qi, q in enumerate(qvecs):
            scored = sorted(((cos(q, row["embedding"]), row["id"]) for row in rows), key=lambda t: (-t[0], t[1]))
            got = [h for h in hits if h["query"] == qi + 1]
            self.assertEqual([h["rank"] for h in got], list(range(1, 8)))
            for h, (score, rid) in zip(got, scored[:7]):
                self.assertAlmostEqual(h["score"], score, places=5)
            # The same rows, up to the order of scores equal to float precision.
            kth = scored[6][0]
            self.assertEqual({h["id"] for h in got if h["score"] > kth + 1e-5},
                             {rid for s, rid in scored[:7] if s > kth + 1e-5})
            self.assertIn("text", got[0]["record"])
        # The model the store recorded is used when --model is not given; another is refused.
        r = run(["search", uri, "-q", "deltas", "-k", "2"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 2)
        r = run(["search", uri, "-q", "deltas", "--model", MINILM])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"another model", r.stderr)

    def test_resume_never_continues_a_run_that_committed_no_checkpoint(self):
        uri = self.store_uri("nc")
        src = self.write("in.jsonl", records(30))
        self.assertEqual(self.embed(src, uri, "--no-checkpoint").returncode, 0)
        other = self.write("other.jsonl", records(6, 1000))
        r = self.embed(other, uri, "--resume")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"verified: 6 rows of this run", r.stderr)
        self.assertEqual({row["run"] for row in self.rows(uri) if row["id"] == "r1000"}, {2})

    def test_two_runs_cannot_write_one_table_at_once(self):
        uri = self.store_uri("two")
        src = self.write("in.jsonl", records(3000))
        p = subprocess.Popen([PIPELINE_RUN, "embed", src, "-o", uri, "--model", MINILM, "--progress", "never",
                              "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self.wait_for_rows(uri, p)  # the first run holds the table
            r = self.embed(self.write("b.jsonl", records(5)), uri, model=MINILM)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"another run is writing", r.stderr)
        finally:
            p.kill()
            p.communicate()

    def test_approximate_search_says_its_recall_and_is_rebuilt_when_the_table_changes(self):
        uri = self.store_uri("ann")
        src = self.write("in.jsonl", records(1500))
        self.assertEqual(self.embed(src, uri).returncode, 0)
        index = self.path("ann.hnsw")
        queries = ["farmers of the plain 3", "record 42 about rivers", "deltas"]
        args = ["search", uri, "-k", "10", "--model", TINY] + [a for q in queries for a in ("-q", q)]
        exact = [json.loads(line) for line in run(args).stdout.splitlines()]
        r = run(args + ["--approximate", "--index", index])
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(rb"(\d+) rows, recall@10 ([0-9.]+) against exact search over (\d+) rows", r.stderr)
        self.assertIsNotNone(m, r.stderr)
        self.assertEqual(int(m.group(1)), 1500)
        self.assertGreaterEqual(float(m.group(2)), 0.9)
        self.assertIn(b"built now", r.stderr)
        approx = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(len(approx), 30)
        for q in (1, 2, 3):
            want = {h["id"] for h in exact if h["query"] == q}
            got = [h for h in approx if h["query"] == q]
            self.assertGreaterEqual(len(want & {h["id"] for h in got}), 8)
            self.assertEqual([h["rank"] for h in got], list(range(1, 11)))
            self.assertTrue(all("text" in h["record"] for h in got))
        # Opened again: not rebuilt. After another run into the table: rebuilt, with its rows.
        r = run(args + ["--approximate", "--index", index])
        self.assertNotIn(b"built now", r.stderr)
        self.assertEqual(self.embed(self.write("more.jsonl", records(100, 5000)), uri).returncode, 0)
        r = run(args + ["--approximate", "--index", index])
        self.assertIn(b"built now", r.stderr)
        self.assertIn(b"1600 rows", r.stderr)

    def test_a_table_not_made_by_sluice_is_refused_before_the_model_loads(self):
        uri = self.store_uri("h")
        self.make_foreign_table(uri, "notes")
        src = self.write("in.jsonl", records(3))
        r = self.embed(src, uri, "--table", "notes")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"not made by sluice", r.stderr)
        self.assertNotIn(b"loading", r.stderr)
        r = self.embed(src, uri, "--table", "bad-name")
        self.assertEqual(r.returncode, 2, r.stderr)


class SqliteStoreTest(StoreSuite, TempDirTest):
    exact_records = True

    def store_uri(self, name):
        return "sqlite:" + self.path(name + ".db")

    def rows(self, uri, table="embeddings", kind="float32"):
        db = sqlite3.connect(uri[len("sqlite:"):])
        try:
            (dims, otype), = db.execute("SELECT dimensions, output_type FROM sluice_tables WHERE name = ?", (table,))
            out = []
            for rid, record, blob, line, run_ in db.execute(
                    f'SELECT id, record, embedding, line, run FROM "{table}" ORDER BY id'):
                if otype == "float32":
                    emb = list(struct.unpack("<%df" % dims, blob))
                elif otype == "float16":
                    emb = list(struct.unpack("<%de" % dims, blob))
                elif otype == "int8":
                    emb = list(struct.unpack("<%db" % dims, blob))
                else:
                    emb = list(blob)
                out.append({"id": rid, "record": record, "embedding": emb, "line": line, "run": run_})
            return out
        finally:
            db.close()

    def make_foreign_table(self, uri, table):
        db = sqlite3.connect(uri[len("sqlite:"):])
        db.execute(f"CREATE TABLE {table} (x)")
        db.commit()
        db.close()

    def test_an_unwritable_store_is_refused_before_the_model_loads(self):
        os.mkdir(self.path("ro"))
        os.chmod(self.path("ro"), 0o500)
        src = self.write("in.jsonl", records(3))
        r = self.embed(src, "sqlite:" + self.path("ro/x.db"))
        if os.geteuid() == 0:
            # root writes anywhere; a missing folder fails the same way.
            r = self.embed(src, "sqlite:" + self.path("nofolder/x.db"))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"cannot open", r.stderr)

    def test_search_reads_only(self):
        uri = self.store_uri("ro")
        src = self.write("in.jsonl", records(20))
        # A relative model folder is recorded absolute: search finds it from anywhere.
        r = subprocess.run([PIPELINE_RUN, "embed", src, "-o", uri, "--model", os.path.basename(TINY),
                            "--progress", "never"], capture_output=True, cwd=os.path.dirname(TINY))
        self.assertEqual(r.returncode, 0, r.stderr)
        path = uri[len("sqlite:"):]
        os.chmod(path, 0o444)
        r = run(["search", uri, "-q", "rivers", "-k", "3"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 3)
        # A path that does not exist is an error, not a new empty store.
        missing = self.path("nope.db")
        r = run(["search", "sqlite:" + missing, "-q", "rivers"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertFalse(os.path.exists(missing))

    def test_the_approximate_index_cannot_be_the_store(self):
        uri = self.store_uri("idx")
        src = self.write("in.jsonl", records(5))
        self.assertEqual(self.embed(src, uri).returncode, 0)
        before = open(uri[len("sqlite:"):], "rb").read()
        r = run(["search", uri, "-q", "rivers", "--approximate", "--index", uri[len("sqlite:"):], "--model", TINY])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"approximate index", r.stderr)
        self.assertEqual(open(uri[len("sqlite:"):], "rb").read(), before)

    def test_the_store_cannot_be_the_input(self):
        src = self.write("in.jsonl", records(3))
        r = self.embed(src, "sqlite:" + src)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(self.read("in.jsonl"), records(3))


@unittest.skipUnless(shutil.which("psql") or os.environ.get("SLUICE_TEST_POSTGRES_URI"),
                     "PostgreSQL is not installed (postgresql-15: bash tools/setup.sh)")
class PostgresStoreTest(StoreSuite, TempDirTest):
    exact_records = False  # jsonb keeps the record's JSON value, not its bytes

    def setUp(self):
        super().setUp()
        if not _pg["uri"]:
            self.skipTest(_pg["why"] or "no PostgreSQL server")
        self.databases = []

    def tearDown(self):
        for uri in self.databases:
            name = uri.split("/")[-1].split("?")[0]
            try:
                psql(with_database(_pg["uri"], "postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except RuntimeError:
                pass
        super().tearDown()

    def store_uri(self, name):
        db = f"t_{uuid.uuid4().hex[:12]}_{name}".lower()
        psql(with_database(_pg["uri"], "postgres"), f'CREATE DATABASE "{db}"')
        uri = with_database(_pg["uri"], db)
        self.databases.append(uri)
        return uri

    def rows(self, uri, table="embeddings", kind="float32"):
        out = []
        for rid, record, emb, line, run_ in psql(
                uri, f'SELECT id, record::text, embedding::text, line, run FROM "{table}" ORDER BY id COLLATE "C"'):
            values = [float(v) for v in emb.strip("{}").split(",")] if emb != "{}" else []
            if kind in ("int8", "binary"):
                values = [int(v) for v in values]
            out.append({"id": rid, "record": record, "embedding": values, "line": int(line), "run": int(run_)})
        return out

    def make_foreign_table(self, uri, table):
        psql(uri, f"CREATE TABLE {table} (x int)")

    def test_a_password_never_shows(self):
        src = self.write("in.jsonl", records(3))
        bad = "postgresql://sluice:s3cr3tpw@127.0.0.1:1/nodb"
        events = self.path("events.jsonl")
        r = self.embed(src, bad, "--events", events)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"cannot connect", r.stderr)
        self.assertNotIn(b"s3cr3tpw", r.stderr + r.stdout)
        self.assertIn(b"***", r.stderr)

    def test_a_record_the_database_refuses_is_a_bad_record(self):
        # jsonb has no \u0000: the server refuses that row; the transaction is run again row by
        # row, and only that record fails.
        data = records(20) + b'{"id": "nul", "text": "a text", "note": "a\\u0000b"}\n' + records(20, 100)
        src = self.write("in.jsonl", data)
        uri = self.store_uri("rej")
        dead = self.path("dead.jsonl")
        r = self.embed(src, uri, "--on-error", "skip", "--dead-letter", dead)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"verified: 40 rows of this run", r.stderr)
        with open(dead) as f:
            letters = [json.loads(line) for line in f]
        self.assertEqual([(d["line"], d["error"]) for d in letters], [(21, "store_rejected")])
        self.assertEqual(len(self.rows(uri)), 40)

    def test_a_server_restart_mid_run_is_retried_and_the_run_completes(self):
        if not _pg["dir"]:
            self.skipTest("the server is not this test's own (SLUICE_TEST_POSTGRES_URI)")
        src = self.write("in.jsonl", records(6000))
        uri = self.store_uri("restart")
        ctl = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        pg_ctl = sorted(p for p in os.listdir("/usr/lib/postgresql"))[-1]
        pg_ctl = f"/usr/lib/postgresql/{pg_ctl}/bin/pg_ctl"
        data = os.path.join(_pg["dir"], "data")
        p = subprocess.Popen([PIPELINE_RUN, "embed", src, "-o", uri, "--model", TINY, "--progress", "never",
                              "--batch-size", "8", "--sort-window", "64"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.7)
        subprocess.run(ctl + [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        time.sleep(0.5)
        subprocess.run(ctl + [pg_ctl, "-D", data, "-l", os.path.join(_pg["dir"], "server.log"), "-w", "-o",
                              f"-c listen_addresses='' -c unix_socket_directories='{_pg['dir']}'", "start"],
                       capture_output=True, timeout=60)
        _, err = p.communicate(timeout=300)
        if p.returncode != 0:
            # Past its retries the run stops with a consistent checkpoint; --resume finishes it.
            self.assertEqual(p.returncode, 1, err)
            r = self.embed(src, uri, "--resume", "--batch-size", "8", "--sort-window", "64")
            self.assertEqual(r.returncode, 0, r.stderr)
            err = r.stderr
        self.assertIn(b"verified: 6000 rows of this run", err)
        self.assertEqual(len(self.rows(uri)), 6000)


if __name__ == "__main__":
    unittest.main(verbosity=2)
