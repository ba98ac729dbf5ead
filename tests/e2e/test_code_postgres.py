"""`pipeline-run index DIR -o postgresql://...` end to end: a small tree (Python, JavaScript, C,
an ignored file, a binary one) indexed into a PostgreSQL store, then again unchanged, after an
edit and after a deletion; `search --table chunks` on the same store; a run killed at random
moments then run again; a file PostgreSQL cannot hold (a NUL byte, a path that is not UTF-8)
failing alone; a table `files` of someone else's; two writers at once. The graph: imports,
calls and bases resolved, fan-in, PageRank, `pipeline-run graph` (top chunks, GraphML, DOT),
and the same graph as a SQLite store's of the same tree, in a database that sorts text by its
locale (ICU en-US where the server has it) where SQLite compares bytes; a table `chunks` made by
`embed` refused.

PostgreSQL runs as the throwaway cluster test_stores.py starts (tools/postgres.sh: a Unix socket
only), or SLUICE_TEST_POSTGRES_URI; each test makes a database of its own. Without a server on
the machine every test is skipped, saying why. Standard library only (rows are read back
through psql).
"""

import hashlib
import json
import os
import random
import re
import sqlite3
import struct
import subprocess
import time
import unittest
import uuid
import xml.etree.ElementTree as ET

import test_stores as pg
from e2e_files import TempDirTest

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
MINILM = os.path.join(MODELS, "minilm")
BUDGET = 128  # --chunk-tokens


def run(args, timeout=300):
    return subprocess.run([PIPELINE_RUN] + args, capture_output=True, timeout=timeout)


GRAPH_LINE = re.compile(rb"graph: (\d+) edges, (\d+) resolved to chunks \((\d+) of (\d+) imports\); PageRank over "
                        rb"(\d+) chunks")


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

# test_code.py's graph project (test_the_graph_resolves_imports_calls_and_bases).
GRAPH_PROJECT = {
    "pkg/__init__.py": "",
    "pkg/util.py": "def helper(x):\n    return x + 1\n\n\ndef unused():\n    return 0\n",
    "pkg/base.py": "class Base:\n    def run(self):\n        return 1\n",
    "app.py": "from pkg import util\nimport pkg.base\nfrom pkg.base import Base\n\n\n"
              "class App(Base):\n    def go(self):\n        return util.helper(1) + local()\n\n\n"
              "def local():\n    print('x')\n    return helper(2)\n",
    "other.py": "from pkg.util import helper\n\n\ndef twice(x):\n    return helper(helper(x))\n",
    "web/main.js": "import { f } from './lib.js';\nfunction main() { return f(1); }\n",
    "web/lib.js": "export function f(x) { return x; }\n",
}

# More, for the comparison with SQLite: names whose order differs between bytes and a locale
# ("Zeta.py" before "alpha.py" bytewise, after it in en-US); calls that two imported files
# define (the first file by path wins); a function cut into parts (one name, several chunks);
# JavaScript classes, an index file and a bare package.
GRAPH_MORE = {
    "Zeta.py": "def shared():\n    return 'Z'\n\n\ndef twin():\n    return 1\n",
    "alpha.py": "def shared():\n    return 'a'\n\n\ndef twin():\n    return 2\n",
    "mix.py": "import alpha\nimport Zeta\n\n\ndef both():\n    return shared() + str(twin)\n\n\n"
              "def again():\n    return twin() + huge(1)\n",
    "big.py": "".join("def small_%d():\n    return %d\n\n\n" % (i, i) for i in range(9)) + "def huge(a):\n" + "".join(
        "    value_%d = a + %d  # statement %d of a function longer than the budget\n" % (i, i, i)
        for i in range(60)) + "    return a\n",
    "web/shapes/index.js": "import { Base } from '../base.js';\nexport class Square extends Base {\n"
                           "  area() { return this.side * this.side; }\n}\n",
    "web/base.js": "export class Base {\n  describe() { return 'a shape'; }\n}\n",
    "web/Use.js": "import { Square } from './shapes';\nimport lodash from 'lodash';\n"
                  "function use() { const s = new Square(); return lodash.max([s.area(), f(2)]); }\n",
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

    def store_uri(self, name, locale=False):
        """A new database. With `locale`, one whose text sorts by ICU's en-US where the server
        can (PostgreSQL 15, built with ICU), else by the server's default: returns the URI and
        "icu" or "default"."""
        db = f"c_{uuid.uuid4().hex[:12]}_{name}".lower()
        admin = pg.with_database(pg._pg["uri"], "postgres")
        sorted_by = "default"
        if locale:
            try:
                psql(admin, f'CREATE DATABASE "{db}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE \'en-US\'')
                sorted_by = "icu"
            except RuntimeError:
                pass
        if sorted_by == "default":
            psql(admin, f'CREATE DATABASE "{db}"')
        self.databases.append(db)
        uri = pg.with_database(pg._pg["uri"], db)
        return (uri, sorted_by) if locale else uri

    def write_tree(self, name, files):
        root = self.path(name)
        for rel, text in files.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
        return root

    def edges(self, uri):
        """The edges as (source_id, target_id or "", target_name, kind, source_path, target_path or "")."""
        return [tuple(row) for row in psql(uri, "SELECT source_id, coalesce(target_id, ''), target_name, kind, "
                                                "source_path, coalesce(target_path, '') FROM edges")]

    def metrics(self, uri):
        """chunk_id -> (fan_in, fan_out, pagerank)."""
        return {row[0]: (int(row[1]), int(row[2]), float(row[3]))
                for row in psql(uri, "SELECT chunk_id, fan_in, fan_out, pagerank FROM chunk_metrics")}

    def graph_line(self, stderr):
        """The counts of the summary's graph line: edges, resolved, imports resolved, imports, chunks."""
        m = GRAPH_LINE.search(stderr)
        self.assertTrue(m, stderr)
        return tuple(int(v) for v in m.groups())

    @staticmethod
    def graph_counts(uri):
        """The same counts, from the store."""
        return tuple(int(v) for v in psql(uri, "SELECT count(*), count(target_id), count(target_id) FILTER (WHERE kind "
                                               "= 'imports'), count(*) FILTER (WHERE kind = 'imports'), (SELECT "
                                               "count(*) FROM chunks) FROM edges")[0])

    @staticmethod
    def graphml(path):
        """The nodes (id, attributes) and the edges (source, target, kind) of a GraphML file, in order."""
        ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
        graph = ET.parse(path).getroot().find("g:graph", ns)
        nodes = [(n.get("id"), {d.get("key"): d.text or "" for d in n.findall("g:data", ns)})
                 for n in graph.findall("g:node", ns)]
        links = [(e.get("source"), e.get("target"), e.find("g:data", ns).text) for e in graph.findall("g:edge", ns)]
        return nodes, links

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
        want_edges, want_metrics = sorted(self.edges(whole_uri)), self.metrics(whole_uri)

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
        # And the same graph: a run killed before resolving it left it to the next.
        self.assertEqual(sorted(self.edges(uri)), want_edges)
        self.assertEqual(psql(uri, "SELECT value FROM sluice_code_state WHERE key = 'graph_stale'"), [["0"]])
        got_metrics = self.metrics(uri)
        self.assertEqual(got_metrics.keys(), want_metrics.keys())
        for cid, m in got_metrics.items():
            self.assertEqual(m[:2], want_metrics[cid][:2], cid)
            self.assertAlmostEqual(m[2], want_metrics[cid][2], delta=1e-9, msg=cid)
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

    def test_the_graph_resolves_imports_calls_and_bases(self):
        root = self.write_tree("proj", GRAPH_PROJECT)
        uri = self.store_uri("graph")
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.graph_line(r.stderr), self.graph_counts(uri))
        edges = {e[:4] for e in self.edges(uri)}
        ids = {name: cid for cid, name in psql(uri, "SELECT id, name FROM chunks")}
        helper, base, app_go, local, twice = (ids["pkg.util.helper"], ids["pkg.base.Base"], ids["app.App"],
                                               ids["app.local"], ids["other.twice"])
        first = {p: cid for cid, p in psql(uri, "SELECT id, path FROM chunks WHERE ordinal = 0")}
        self.assertIn((app_go, helper, "helper", "calls"), edges)        # through the import of pkg.util
        self.assertIn((first["app.py"], first["pkg/util.py"], "pkg.util", "imports"), edges)  # from pkg import util
        self.assertIn((app_go, local, "local", "calls"), edges)          # the same file
        self.assertIn((app_go, base, "Base", "inherits"), edges)
        self.assertIn((local, helper, "helper", "calls"), edges)         # the only definition of that name
        self.assertIn((local, "", "print", "calls"), edges)              # unresolved: kept by name
        self.assertIn((twice, helper, "helper", "calls"), edges)
        self.assertIn((first["other.py"], first["pkg/util.py"], "pkg.util", "imports"), edges)
        self.assertIn((first["app.py"], first["pkg/base.py"], "pkg.base", "imports"), edges)
        self.assertIn((first["web/main.js"], first["web/lib.js"], "./lib.js", "imports"), edges)
        self.assertIn((ids["web.main.main"], ids["web.lib.f"], "f", "calls"), edges)
        # An import resolved names the file it resolved to; one unresolved names none.
        self.assertIn(("other.py#0", "pkg/util.py#0", "pkg.util", "imports", "other.py", "pkg/util.py"),
                      self.edges(uri))
        self.assertIn(("app.py#0", "", "pkg", "imports", "app.py", ""), self.edges(uri))  # __init__.py is empty
        self.assertEqual(psql(uri, "SELECT symbol FROM chunks WHERE id = '%s'" % helper), [["helper"]])
        metrics = self.metrics(uri)
        self.assertEqual(set(metrics), {cid for (cid,) in psql(uri, "SELECT id FROM chunks")})
        # App.go, local, twice (twice calls it twice: one edge), and the imports of pkg.util in
        # other.py and app.py, whose target is that file's first chunk: helper.
        self.assertEqual(metrics[helper][:2], (5, 0))
        self.assertEqual(metrics[app_go][:2], (0, 3))
        self.assertAlmostEqual(sum(m[2] for m in metrics.values()), 1.0, places=6)
        self.assertEqual(psql(uri, "SELECT value FROM sluice_code_state WHERE key = 'graph_stale'"), [["0"]])

        # The most central chunk is the one everything calls.
        r = run(["graph", uri, "--top", "3", "--format", "json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        top = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual([t["rank"] for t in top], [1, 2, 3])
        self.assertEqual(top[0]["id"], helper)
        self.assertEqual((top[0]["path"], top[0]["start_line"], top[0]["end_line"]), ("pkg/util.py", 1, 2))
        self.assertEqual((top[0]["fan_in"], top[0]["fan_out"]), (5, 0))
        self.assertAlmostEqual(top[0]["pagerank"], metrics[helper][2], places=8)
        self.assertTrue(top[0]["pagerank"] >= top[1]["pagerank"] >= top[2]["pagerank"])
        # Exports that graph tools read: every chunk a node, every resolved edge.
        r = run(["graph", uri, "--export", "graphml", "-o", self.path("g.graphml")])
        self.assertEqual(r.returncode, 0, r.stderr)
        nodes, links = self.graphml(self.path("g.graphml"))
        self.assertEqual(sorted(n for n, _ in nodes), sorted(metrics))
        self.assertEqual(sorted(links), sorted((s, t, k) for s, t, _, k in edges if t))
        self.assertIn((local, helper, "calls"), links)
        self.assertEqual(dict(nodes)[helper]["fan_in"], "5")
        r = run(["graph", uri, "--export", "dot"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(b"digraph code {"))
        self.assertIn(('"%s" -> "%s"' % (local, helper)).encode(), r.stdout)

        # Nothing changed: the graph is not resolved again. A run killed before resolving
        # leaves the store stale (as set here), and the next run resolves it.
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(b"graph: ", r.stderr)
        psql(uri, "UPDATE sluice_code_state SET value = '1' WHERE key = 'graph_stale'")
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.graph_line(r.stderr), self.graph_counts(uri))
        self.assertEqual(psql(uri, "SELECT value FROM sluice_code_state WHERE key = 'graph_stale'"), [["0"]])

        # A rename in one file: the callers, unchanged, no longer resolve to it.
        with open(os.path.join(root, "pkg/util.py"), "w") as f:
            f.write("def assist(x):\n    return x + 1\n")
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(psql(uri, "SELECT count(*) FROM edges WHERE target_name = 'helper' AND target_id IS NOT "
                                   "NULL"), [["0"]])
        # Into pkg/util.py's first chunk now: the imports of pkg.util only.
        imports = [e for e in self.edges(uri) if e[1] == "pkg/util.py#0"]
        self.assertTrue(imports)
        self.assertEqual({e[3] for e in imports}, {"imports"})
        self.assertEqual(self.metrics(uri)["pkg/util.py#0"][:2], (len(imports), 0))
        # A file removed: its edges go, and those into it no longer resolve.
        os.remove(os.path.join(root, "pkg/base.py"))
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"1 files removed", r.stderr)
        self.assertIn(b"graph: ", r.stderr)
        after = self.edges(uri)
        self.assertFalse([e for e in after if "pkg/base.py" in (e[4], e[5]) or e[1].startswith("pkg/base.py")])
        self.assertIn((app_go, "", "Base", "inherits"), {e[:4] for e in after})
        self.assertFalse([c for c in self.metrics(uri) if c.startswith("pkg/base.py")])
        self.assertAlmostEqual(sum(m[2] for m in self.metrics(uri).values()), 1.0, places=6)

    def test_the_same_graph_as_a_sqlite_store(self):
        root = self.write_tree("proj", {**GRAPH_PROJECT, **GRAPH_MORE})
        uri, sorted_by = self.store_uri("samegraph", locale=True)
        db = self.path("graph.db")
        stderr = {}
        for store in (uri, "sqlite:" + db):
            r = self.index(root, store)
            self.assertEqual(r.returncode, 0, r.stderr)
            stderr[store] = r.stderr
        if sorted_by == "icu":
            # The database sorts text by its locale: what COLLATE "C" is there for.
            self.assertEqual(psql(uri, "SELECT x FROM unnest(ARRAY['Zeta.py', 'alpha.py']) x ORDER BY x"),
                             [["alpha.py"], ["Zeta.py"]])
        else:
            print("(no ICU collation on this server: the database sorts text by its default)")
        # The same counts: edges, resolved, imports, chunks.
        self.assertEqual(self.graph_line(stderr[uri]), self.graph_line(stderr["sqlite:" + db]))
        self.assertEqual(self.graph_line(stderr[uri]), self.graph_counts(uri))

        con = sqlite3.connect(db)
        try:
            want_edges = [tuple("" if v is None else v for v in row) for row in con.execute(
                "SELECT source_id, target_id, target_name, kind, source_path, target_path FROM edges")]
            want_metrics = {row[0]: row[1:] for row in con.execute(
                "SELECT chunk_id, fan_in, fan_out, pagerank FROM chunk_metrics")}
            want_symbols = sorted(con.execute("SELECT id, symbol FROM chunks"))
        finally:
            con.close()
        got_edges = self.edges(uri)
        self.assertEqual(sorted(got_edges), sorted(want_edges))
        self.assertEqual(sorted(tuple(r) for r in psql(uri, "SELECT id, symbol FROM chunks")), want_symbols)
        got_metrics = self.metrics(uri)
        self.assertEqual(sorted(got_metrics), sorted(want_metrics))
        for cid, (fan_in, fan_out, rank) in got_metrics.items():
            self.assertEqual((fan_in, fan_out), want_metrics[cid][:2], cid)
            self.assertAlmostEqual(rank, want_metrics[cid][2], delta=1e-9, msg=cid)
        self.assertAlmostEqual(sum(m[2] for m in got_metrics.values()), 1.0, places=6)

        # The tie-breaks, bytewise: a call that both imported files define goes to the first by
        # bytes ("Zeta.py" < "alpha.py"); a function cut into parts is named by its first part.
        edges = {e[:4] for e in got_edges}
        ids = {}
        for cid, name in psql(uri, "SELECT id, name FROM chunks ORDER BY id COLLATE \"C\""):
            ids.setdefault(name, cid)
        self.assertIn((ids["mix.both"], ids["Zeta.shared"], "shared", "calls"), edges)
        self.assertIn((ids["mix.again"], ids["Zeta.twin"], "twin", "calls"), edges)
        parts = sorted(cid for cid, name in psql(uri, "SELECT id, name FROM chunks") if name == "big.huge")
        self.assertGreater(len(parts), 1)
        self.assertIn((ids["mix.again"], parts[0], "huge", "calls"), edges)
        self.assertIn((ids["web.shapes.index.Square"], ids["web.base.Base"], "Base", "inherits"), edges)
        self.assertIn(("web/Use.js#0", "web/shapes/index.js#0", "./shapes", "imports"), edges)
        self.assertIn(("web/Use.js#0", "", "lodash", "imports"), edges)

        # What `graph` exports, in the same order: nodes by id, edges by source, target and
        # kind, bytewise; the same top chunk.
        for store, name in ((uri, "pg.graphml"), ("sqlite:" + db, "sqlite.graphml")):
            r = run(["graph", store, "--export", "graphml", "-o", self.path(name)])
            self.assertEqual(r.returncode, 0, r.stderr)
        got_nodes, got_links = self.graphml(self.path("pg.graphml"))
        want_nodes, want_links = self.graphml(self.path("sqlite.graphml"))
        self.assertEqual([n for n, _ in got_nodes], [n for n, _ in want_nodes])
        self.assertEqual([n for n, _ in got_nodes], sorted((n for n, _ in got_nodes), key=lambda s: s.encode()))
        self.assertEqual(got_links, want_links)
        for (n, got), (_, want) in zip(got_nodes, want_nodes):
            self.assertEqual({k: v for k, v in got.items() if k != "pagerank"},
                             {k: v for k, v in want.items() if k != "pagerank"}, n)
            self.assertAlmostEqual(float(got["pagerank"]), float(want["pagerank"]), delta=1e-8, msg=n)
        arrows = [[l for l in run(["graph", store, "--export", "dot"]).stdout.splitlines() if b" -> " in l]
                  for store in (uri, "sqlite:" + db)]
        self.assertEqual(arrows[0], arrows[1])
        self.assertTrue(arrows[0])
        top = []
        for store in (uri, "sqlite:" + db):
            r = run(["graph", store, "--top", "3", "--format", "json"])
            self.assertEqual(r.returncode, 0, r.stderr)
            top.append([json.loads(l) for l in r.stdout.splitlines()])
        self.assertEqual(len(top[0]), 3)
        self.assertEqual(top[0][0]["id"], top[1][0]["id"])

    def test_an_index_made_before_the_graph_is_upgraded(self):
        root = self.write_tree("proj", GRAPH_PROJECT)
        fresh, uri = self.store_uri("fresh"), self.store_uri("old")
        for store in (fresh, uri):
            r = self.index(root, store)
            self.assertEqual(r.returncode, 0, r.stderr)
        # What the index was before the graph (commit 2367f86): no symbol, ctime, edges, metrics
        # or state.
        psql(uri, "ALTER TABLE chunks DROP COLUMN symbol; ALTER TABLE files DROP COLUMN ctime_ns; DROP TABLE edges, "
                  "chunk_metrics, sluice_code_state")
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.graph_line(r.stderr), self.graph_counts(uri))
        self.assertEqual(sorted(self.edges(uri)), sorted(self.edges(fresh)))
        self.assertEqual(psql(uri, "SELECT value FROM sluice_code_state WHERE key = 'graph_stale'"), [["0"]])
        self.assertEqual(psql(uri, "SELECT count(*) FROM files WHERE ctime_ns IS NULL"), [["0"]])
        want = self.metrics(fresh)
        for cid, m in self.metrics(uri).items():
            self.assertEqual(m[:2], want[cid][:2], cid)
            self.assertAlmostEqual(m[2], want[cid][2], delta=1e-9, msg=cid)
        # Then as any index: nothing to do.
        r = self.index(root, uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"0 indexed, 0 partial, 7 unchanged", r.stderr)
        self.assertNotIn(b"graph: ", r.stderr)

    def test_a_chunks_table_of_embed_is_refused(self):
        root = self.build_tree()
        uri = self.store_uri("embedded")
        with open(self.path("in.jsonl"), "w") as f:
            f.write('{"id": "a", "text": "hello"}\n{"id": "b", "text": "world"}\n')
        r = run(["embed", self.path("in.jsonl"), "-o", uri, "--table", "chunks", "--model", MINILM, "--progress",
                 "never"])
        self.assertEqual(r.returncode, 0, r.stderr)
        for args in (["index", root, "-o", uri, "--model", MINILM, "--progress", "never"], ["graph", uri]):
            r = run(args)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"its table \"chunks\" was made by pipeline-run embed, not by index", r.stderr)
        # Left as it was.
        self.assertEqual(psql(uri, "SELECT id FROM chunks ORDER BY id"), [["a"], ["b"]])
        self.assertEqual(psql(uri, "SELECT to_regclass('files') IS NULL, to_regclass('edges') IS NULL"), [["t", "t"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
