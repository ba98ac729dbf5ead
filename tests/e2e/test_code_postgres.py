"""`pipeline-run index DIR -o postgresql://...` end to end: a small tree (Python, JavaScript, C,
an ignored file, a binary one) indexed into a PostgreSQL store, then again unchanged, after an
edit and after a deletion; `search --table chunks` on the same store; a run killed at random
moments then run again; a file PostgreSQL cannot hold (a NUL byte, a path that is not UTF-8)
failing alone; a table `files` of someone else's; two writers at once.

PostgreSQL runs as the throwaway cluster test_stores.py starts (tools/postgres.sh: a Unix socket
only), or SLUICE_TEST_POSTGRES_URI; each test makes a database of its own. Without a server on
the machine every test is skipped, saying why. Standard library only (rows are read back
through psql).
"""

import hashlib
import json
import os
import random
import sqlite3
import struct
import subprocess
import time
import unittest
import uuid

import test_stores as pg
from e2e_files import TempDirTest

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
MINILM = os.path.join(MODELS, "minilm")
BUDGET = 128  # --chunk-tokens


def run(args, timeout=300):
    return subprocess.run([PIPELINE_RUN] + args, capture_output=True, timeout=timeout)


def psql(uri, sql):
    """The rows of `sql` as lists of text (pg.psql, without the newline psql ends with)."""
    r = subprocess.run(["psql", uri, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e",
                        "-c", sql], capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode())
    out = r.stdout.decode()
    if out.endswith("\n"):
        out = out[:-1]
    return [row.split("\x1f") for row in out.split("\x1e") if row != ""]


def setUpModule():
    pg.setUpModule()


def tearDownModule():
    pg.tearDownModule()


SOURCES = {
    "app/main.py": '''import os


def greet(name):
    """Says hello."""
    return "hello " + name


class Counter:
    """Counts."""

    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n


if __name__ == "__main__":
    print(greet("world"))
''',
    "web/app.js": "// Adds.\nfunction add(a, b) {\n  return a + b;\n}\n\nclass Box {\n  get() {\n    return 1;\n  }\n}\n\n"
                  "function twice(f, x) {\n  return f(f(x));\n}\n",
    "src/util.c": "#include <stdio.h>\n\nint add(int a, int b) {\n  return a + b;\n}\n\nint main(void) {\n"
                  "  printf(\"%d\\n\", add(1, 2));\n  return 0;\n}\n",
    "README.md": "# Tree\n\nA small tree to index: ünïcödé text as well.\n\n## Usage\n\nRun it.\n",
    "config.toml": "[server]\nport = 8080\nname = \"x\"\n",
    "keep.log": "this log is kept by a negated rule\n",
}

IGNORED = {
    "debug.log": "ignored by *.log\n",
    "secret/key.py": "KEY = 1\n",
}


class CodePostgresTest(TempDirTest):
    def setUp(self):
        super().setUp()
        if not pg._pg["uri"]:
            self.skipTest(pg._pg["why"] or "no PostgreSQL server")
        self.databases = []

    def tearDown(self):
        for name in self.databases:
            try:
                psql(pg.with_database(pg._pg["uri"], "postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except RuntimeError:
                pass
        super().tearDown()

    # --- helpers ---------------------------------------------------------------------------

    def store_uri(self, name):
        db = f"c_{uuid.uuid4().hex[:12]}_{name}".lower()
        psql(pg.with_database(pg._pg["uri"], "postgres"), f'CREATE DATABASE "{db}"')
        self.databases.append(db)
        return pg.with_database(pg._pg["uri"], db)

    def build_tree(self):
        root = self.path("tree")
        for rel, text in {**SOURCES, **IGNORED}.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
        with open(os.path.join(root, ".gitignore"), "w") as f:
            f.write("*.log\n!keep.log\nsecret/\n")
        with open(os.path.join(root, "image.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
        return root

    def index(self, root, uri, *extra, timeout=600):
        return run(["index", root, "-o", uri, "--model", MINILM, "--chunk-tokens", str(BUDGET), "--progress", "never"]
                   + list(extra), timeout=timeout)

    def files(self, uri):
        """path -> (size, mtime_ns, inode, sha256, language, status, reason, chunks)."""
        out = {}
        for row in psql(uri, "SELECT path, coalesce(size::text, ''), coalesce(mtime_ns::text, ''), "
                                "coalesce(inode::text, ''), sha256, language, status, reason, chunks FROM files"):
            out[row[0]] = tuple(row[1:8]) + (int(row[8]),)
        return out

    def chunks(self, uri):
        """id -> dict of the chunk's columns, its vector as floats."""
        out = {}
        for row in psql(uri, "SELECT id, path, ordinal, kind, name, start_line, end_line, start_byte, end_byte, "
                                "content, content_hash, text_hash, tokens, embedding::text, record::text, run, line "
                                "FROM chunks ORDER BY id COLLATE \"C\""):
            (cid, path, ordinal, kind, name, sl, el, sb, eb, content, ch, th, tokens, emb, record, run_,
             line) = row
            out[cid] = {
                "path": path, "ordinal": int(ordinal), "kind": kind, "name": name, "start_line": int(sl),
                "end_line": int(el), "start_byte": int(sb), "end_byte": int(eb), "content": content,
                "content_hash": ch, "text_hash": th, "tokens": int(tokens),
                "embedding": [float(v) for v in emb.strip("{}").split(",")], "record": json.loads(record),
                "run": int(run_), "line": int(line),
            }
        return out

    # --- tests ------------------------------------------------------------------------------

    def test_index_rerun_edit_delete_and_search(self):
        root = self.build_tree()
        uri = self.store_uri("tree")
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"8 files: 7 indexed, 0 partial, 0 unchanged, 1 skipped (1 binary), 0 failed", r.stderr)
        self.assertIn(b"2 ignored", r.stderr)
        self.assertIn(b"postgresql://", r.stderr)

        files = self.files(uri)
        self.assertEqual(set(files), set(SOURCES) | {"image.png", ".gitignore"})
        self.assertEqual(files["image.png"][5], "skipped")
        self.assertIn("binary", files["image.png"][6])
        self.assertEqual(files["image.png"][7], 0)
        languages = {"app/main.py": "python", "web/app.js": "javascript", "src/util.c": "c"}
        for rel, text in SOURCES.items():
            size, mtime, inode, sha, language, status, reason, n = files[rel]
            data = text.encode()
            st = os.stat(os.path.join(root, rel))
            self.assertEqual((status, reason), ("indexed", ""), rel)
            self.assertEqual((int(size), int(mtime), int(inode)), (len(data), st.st_mtime_ns, st.st_ino), rel)
            self.assertEqual(sha, hashlib.sha256(data).hexdigest(), rel)
            if rel in languages:
                self.assertEqual(language, languages[rel], rel)
            self.assertGreater(n, 0, rel)

        chunks = self.chunks(uri)
        per_file = {}
        for cid, c in chunks.items():
            per_file[c["path"]] = per_file.get(c["path"], 0) + 1
            self.assertEqual(cid, "%s#%d" % (c["path"], c["ordinal"]))
            self.assertEqual(len(c["embedding"]), 384, cid)
            self.assertEqual(c["line"], c["start_line"], cid)
            self.assertEqual(c["content_hash"], hashlib.sha256(c["content"].encode()).hexdigest(), cid)
            self.assertEqual(c["record"], {"path": c["path"], "start_line": c["start_line"],
                                           "end_line": c["end_line"], "name": c["name"], "kind": c["kind"],
                                           "text": c["content"]}, cid)
            if c["kind"] != "skeleton":
                with open(os.path.join(root, c["path"]), "rb") as f:
                    data = f.read()
                self.assertEqual(data[c["start_byte"]:c["end_byte"]].decode(), c["content"], cid)
        self.assertEqual(per_file, {rel: f[7] for rel, f in files.items() if f[7]})
        names = {c["name"] for c in chunks.values()}
        for name in ["app.main.greet", "app.main.Counter", "web.app.add", "web.app.Box", "src.util.add",
                     "src.util.main"]:
            self.assertIn(name, names)
        # The catalog: the chunks table and this run.
        meta = psql(uri, "SELECT dimensions, output_type, normalized FROM sluice_tables WHERE name = 'chunks'")
        self.assertEqual(meta, [["384", "float32", "t"]])
        self.assertEqual(psql(uri, "SELECT count(*) FROM sluice_runs WHERE table_name = 'chunks'"), [["1"]])

        # search --table chunks finds a chunk by its own embedded text (the test models have
        # random weights: only the exact text is sure to be nearest).
        add = next(c for c in chunks.values() if c["name"] == "web.app.add")
        query = "web/app.js: web.app.add\n" + add["content"]
        r = run(["search", uri, "--table", "chunks", "-q", query, "-k", "2", "--format", "json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        best = json.loads(r.stdout.splitlines()[0])
        self.assertEqual(best["id"], "web/app.js#%d" % add["ordinal"])
        self.assertAlmostEqual(best["score"], 1.0, places=4)
        self.assertEqual((best["record"]["path"], best["record"]["start_line"], best["record"]["end_line"]),
                         ("web/app.js", add["start_line"], add["end_line"]))
        r = run(["search", uri, "--table", "chunks", "-q", query, "-k", "1", "--format", "table"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"web/app.js:%d-%d" % (add["start_line"], add["end_line"]), r.stdout)

        # Again, nothing changed: nothing read or embedded, the same rows.
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"0 indexed, 0 partial, 8 unchanged", r.stderr)
        self.assertIn(b"0 embedded", r.stderr)
        self.assertEqual(self.files(uri), files)
        self.assertEqual(self.chunks(uri), chunks)

        # One function edited: that file read again, only its edited chunk embedded; the
        # others of the file keep their vectors.
        p = os.path.join(root, "web/app.js")
        with open(p) as f:
            text = f.read()
        with open(p, "w") as f:
            f.write(text.replace("return a + b;", "return a + b + 0;"))
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"1 indexed, 0 partial, 7 unchanged", r.stderr)
        self.assertIn(b"(1 embedded", r.stderr)
        after = self.chunks(uri)
        self.assertEqual(set(after), set(chunks))
        changed = [cid for cid in chunks if after[cid]["embedding"] != chunks[cid]["embedding"]]
        self.assertEqual(changed, [best["id"]])
        self.assertIn("a + b + 0", after[best["id"]]["content"])
        for cid, c in after.items():
            if c["path"] != "web/app.js":
                self.assertEqual(c, chunks[cid], cid)
        self.assertEqual(self.files(uri)["web/app.js"][3],
                         hashlib.sha256(text.replace("return a + b;", "return a + b + 0;").encode()).hexdigest())

        # A file deleted: its rows go.
        os.remove(os.path.join(root, "config.toml"))
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"1 files removed", r.stderr)
        self.assertNotIn("config.toml", self.files(uri))
        self.assertFalse([c for c in self.chunks(uri).values() if c["path"] == "config.toml"])
        self.assertEqual(len(self.files(uri)), 7)

    def test_the_same_rows_as_a_sqlite_store(self):
        root = self.build_tree()
        uri = self.store_uri("same")
        db = self.path("index.db")
        for store in (uri, "sqlite:" + db):
            r = self.index(root, store)
            self.assertEqual(r.returncode, 0, r.stderr)
        con = sqlite3.connect(db)
        try:
            want_files = {row[0]: tuple("" if v is None else str(v) for v in row[1:8]) + (row[8],)
                          for row in con.execute("SELECT path, size, mtime_ns, inode, sha256, language, status, "
                                                 "reason, chunks FROM files")}
            want_chunks = {}
            for row in con.execute("SELECT id, path, ordinal, kind, name, start_line, end_line, start_byte, end_byte, "
                                   "content, content_hash, text_hash, tokens, embedding, record FROM chunks"):
                keys = ["path", "ordinal", "kind", "name", "start_line", "end_line", "start_byte", "end_byte",
                        "content", "content_hash", "text_hash", "tokens"]
                c = dict(zip(keys, row[1:13]))
                c["embedding"] = row[13]
                c["record"] = json.loads(row[14])
                want_chunks[row[0]] = c
        finally:
            con.close()
        self.assertEqual(self.files(uri), want_files)
        got = self.chunks(uri)
        self.assertEqual(sorted(got), sorted(want_chunks))
        for cid, c in got.items():
            w = want_chunks[cid]
            self.assertEqual({k: c[k] for k in w if k != "embedding"}, {k: v for k, v in w.items() if k != "embedding"},
                             cid)
            # Stored as real[] and read back: the same float32 bits (the batches are the same).
            self.assertEqual(struct.pack("<%df" % len(c["embedding"]), *c["embedding"]), w["embedding"], cid)

    def test_killed_at_any_moment_then_run_again_gives_the_store_of_one_run(self):
        root = self.build_tree()
        # More files, so that kills land between files as well as inside them.
        for i in range(30):
            with open(os.path.join(root, "app", "m%02d.py" % i), "w") as f:
                f.write("".join("def f%d_%d(x):\n    return x * %d\n\n\n" % (i, j, j) for j in range(8)))
        whole_uri = self.store_uri("whole")
        t0 = time.time()
        r = self.index(root, whole_uri, "--batch-size", "8")
        self.assertEqual(r.returncode, 0, r.stderr)
        whole = time.time() - t0
        want_files, want_chunks = self.files(whole_uri), self.chunks(whole_uri)

        uri = self.store_uri("killed")
        rng = random.Random(int(os.environ.get("SLUICE_TEST_SEED", "7")))
        cmd = [PIPELINE_RUN, "index", root, "-o", uri, "--model", MINILM, "--chunk-tokens", str(BUDGET),
               "--progress", "never", "--batch-size", "8"]
        for _ in range(5):
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                p.wait(timeout=rng.uniform(0.02, 1.1) * whole)
            except subprocess.TimeoutExpired:
                p.kill()  # SIGKILL
            p.communicate()
        r = subprocess.run(cmd, capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.files(uri), want_files)
        got = self.chunks(uri)
        self.assertEqual(list(got), list(want_chunks))
        skip = {"embedding", "run"}
        for cid, c in got.items():
            w = want_chunks[cid]
            self.assertEqual({k: v for k, v in c.items() if k not in skip},
                             {k: v for k, v in w.items() if k not in skip}, cid)
            # Vectors: the same, up to the last bits that another batching of the same texts gives.
            for x, y in zip(c["embedding"], w["embedding"]):
                self.assertAlmostEqual(x, y, delta=1e-4, msg=cid)
        # One more run: nothing left to do.
        r = subprocess.run(cmd, capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"0 indexed, 0 partial, %d unchanged" % len(want_files), r.stderr)

    def test_what_postgresql_cannot_hold_fails_its_file_alone(self):
        root = self.build_tree()
        uri = self.store_uri("nul")
        # A NUL byte past the first 8 KiB (so not taken for binary): valid UTF-8, but no
        # PostgreSQL text holds it.
        body = "".join("def f%d(x):\n    return x + %d\n\n\n" % (i, i) for i in range(600))
        self.assertGreater(len(body), 8192)
        nul_line = body.count("\n") + 1
        with open(os.path.join(root, "nul.py"), "w") as f:
            f.write(body)
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        before = {cid: c for cid, c in self.chunks(uri).items() if c["path"] == "nul.py"}
        self.assertEqual(self.files(uri)["nul.py"][5:], ("indexed", "", len(before)))
        with open(os.path.join(root, "nul.py"), "w") as f:
            f.write(body + "s = 'a\0b'\n")
        # And a file whose name is not UTF-8 (the store cannot hold its path).
        with open(os.path.join(os.fsencode(root), b"bad\xff.py"), "wb") as f:
            f.write(b"def g():\n    return 1\n")
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"0 indexed, 0 partial, 8 unchanged, 0 skipped, 2 failed", r.stderr)
        self.assertIn(b"failed: nul.py: ", r.stderr)
        self.assertIn(b"line %d holds a NUL byte" % nul_line, r.stderr)
        self.assertIn(b"failed: bad", r.stderr)
        files = self.files(uri)
        # The failed file keeps its old chunks; its row says why, without a stat (read again
        # next time).
        size, mtime, inode, sha, language, status, reason, n = files["nul.py"]
        self.assertEqual((size, mtime, inode, sha, status, n), ("", "", "", "", "failed", len(before)))
        self.assertIn("NUL byte", reason)
        self.assertEqual({cid: c for cid, c in self.chunks(uri).items() if c["path"] == "nul.py"}, before)
        self.assertFalse([p for p in files if p.startswith("bad")])
        self.assertEqual(len(files), 9)
        # Fixed: indexed again.
        with open(os.path.join(root, "nul.py"), "w") as f:
            f.write(body + "s = 'ab'\n")
        os.remove(os.path.join(os.fsencode(root), b"bad\xff.py"))
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.files(uri)["nul.py"][5:7], ("indexed", ""))

    def test_a_table_files_not_of_sluice_is_refused(self):
        root = self.build_tree()
        uri = self.store_uri("foreign")
        psql(uri, "CREATE TABLE files (x int)")
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"not a code index of sluice's", r.stderr)
        self.assertEqual(psql(uri, "SELECT count(*) FROM files"), [["0"]])
        self.assertEqual(psql(uri, "SELECT to_regclass('chunks') IS NULL"), [["t"]])

    def test_one_writer_at_a_time(self):
        root = self.build_tree()
        uri = self.store_uri("lock")
        self.assertEqual(self.index(root, uri).returncode, 0)
        # Another session holds the store's lock (as a run writing it does).
        holder = subprocess.Popen(["psql", uri, "-X", "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("SELECT pg_advisory_lock(hashtext('sluice table chunks'));\n\\echo held\n")
            holder.stdin.flush()
            self.assertEqual(holder.stdout.readline().strip(), "")  # the SELECT's empty value
            self.assertEqual(holder.stdout.readline().strip(), "held")
            r = self.index(root, uri)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"another run is writing", r.stderr)
        finally:
            holder.communicate(timeout=60)  # its end of input: psql ends, the lock with it
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
