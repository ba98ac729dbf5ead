"""`pipeline-run chunk` end to end: a tree built here with every case the code index must get
right (ignore rules with negation, vendored folders, binary, huge, minified, a symlink loop, a
FIFO, invalid UTF-8, syntax errors, a class and a function larger than the budget, nested
classes, decorators) in every language, chunked with MiniLM's own tokenizer; then the chunks
embedded into a store and found by search. Python's boundaries are checked against Python's
own ast. Standard library only.
"""

import ast
import json
import os
import random
import shutil
import sqlite3
import subprocess
import time
import unittest

from e2e_files import TempDirTest

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
MINILM = os.path.join(MODELS, "minilm")
BUDGET = 128  # --chunk-tokens: with the special tokens and the header line
TINY = os.path.join(MODELS, "tiny")
SANITIZED = any(v in os.environ for v in ("ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"))


def run(args, timeout=300):
    return subprocess.run([PIPELINE_RUN] + args, capture_output=True, timeout=timeout)


def big_python_class(methods):
    body = "".join(
        "    @staticmethod\n    def method_%d(x):\n        \"\"\"Method %d multiplies x by a constant, checks the result "
        "against the bounds of the table and returns it.\"\"\"\n        return x * %d\n\n"
        % (i, i, i) for i in range(methods))
    return "class Big:\n    \"\"\"A class larger than the budget.\"\"\"\n    size = 1\n\n" + body


def long_python_function(statements):
    return "def long_function(a):\n" + "".join(
        "    value_%d = a + %d  # statement %d\n" % (i, i, i) for i in range(statements)) + "    return a\n"


PYTHON = '''import os
from typing import List


# Attached to the decorated function.
@decorator
def decorated(x: int) -> int:
    return x + 1


class Outer:
    """Nested classes."""

    class Inner:
        def inner_method(self):
            return "inner"

    def outer_method(self):
        return self.Inner()


''' + big_python_class(4) + "\n\n" + long_python_function(60) + '''

if __name__ == "__main__":
    print(decorated(1))
'''

SOURCES = {
    "app/main.py": PYTHON,
    "web/app.js": "import x from 'y';\n\n// Adds.\nfunction add(a, b) {\n  return a + b;\n}\n\nclass Box {\n"
                  "  get() {\n    return 1;\n  }\n}\n",
    "web/types.ts": "interface Named { name: string }\n\nexport class Person implements Named {\n  name = '';\n}\n",
    "web/view.tsx": "function View() {\n  return <div/>;\n}\n",
    "cmd/main.go": "package main\n\nfunc main() {\n\tprintln(1)\n}\n",
    "src/lib.rs": "/// A point.\n#[derive(Debug)]\npub struct Point {\n    x: i32,\n}\n\nfn main() {}\n",
    "src/util.c": "int add(int a, int b) {\n  return a + b;\n}\n",
    "src/shape.cpp": "class Shape {\n public:\n  int area() const { return 1; }\n};\n",
    "src/Main.java": "public class Main {\n  public static void main(String[] a) {}\n}\n",
    "docs/guide.md": "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n",
    "config.toml": "[server]\nport = 8080\n",
    "broken.py": "def fine():\n    return 1\n\n\ndef broken(:\n    pass\n",
}


class TreeTest(TempDirTest):
    """Builds the tree of every case."""

    def build_tree(self):
        root = self.path("tree")
        for rel, text in SOURCES.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)

        def put(rel, data):
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)

        put(".gitignore", b"*.log\n!keep.log\nsecret/\n/generated.py\n")
        put("debug.log", b"ignored\n")
        put("keep.log", b"kept by negation\n")
        put("secret/key.py", b"KEY = 1\n")
        put("generated.py", b"x = 1\n")
        put("node_modules/pkg/index.js", b"module.exports = 1;\n")
        put("build/out.c", b"int x;\n")
        put("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00")
        put("huge.py", b"x = 1\n" * 300000)
        put("bundle.min.js", b"var a=" + b"1," * 20000 + b"2;")
        put("latin1.py", b"name = 'caf\xe9'\n")
        os.symlink("loop_b", os.path.join(root, "loop_a"))
        os.symlink("loop_a", os.path.join(root, "loop_b"))
        os.symlink("/etc", os.path.join(root, "outside"))
        os.mkfifo(os.path.join(root, "pipe"))
        return root


class ChunkTest(TreeTest):
    def test_a_tree_of_every_case(self):
        root = self.build_tree()
        out, files = self.path("chunks.jsonl"), self.path("files.jsonl")
        r = run(["chunk", root, "--model", MINILM, "--chunk-tokens", str(BUDGET), "-o", out, "--files", files])
        self.assertEqual(r.returncode, 0, r.stderr)
        status = {}
        with open(files) as f:
            for line in f:
                o = json.loads(line)
                status[o["path"]] = (o["status"], o["reason"])
        chunks = [json.loads(l) for l in open(out)]
        by_path = {}
        for c in chunks:
            by_path.setdefault(c["path"], []).append(c)

        # Left out, not recorded: ignored, vendored.
        for rel in ["debug.log", "secret/key.py", "generated.py", "node_modules/pkg/index.js", "build/out.c"]:
            self.assertNotIn(rel, status)
        self.assertIn(b"3 ignored", r.stderr)  # debug.log, generated.py, the folder secret/
        self.assertIn(b"2 vendored folders", r.stderr)
        # Recorded with their reasons.
        expect = {
            "image.png": "binary", "huge.py": "over --max-file-bytes", "bundle.min.js": "minified",
            "latin1.py": "invalid UTF-8 at byte 11", "loop_a": "loop", "outside": "out of the tree",
            "pipe": "not a regular file",
        }
        for rel, why in expect.items():
            self.assertEqual(status[rel][0], "skipped", rel)
            self.assertIn(why, status[rel][1], rel)
        self.assertEqual(status["keep.log"][0], "indexed")
        self.assertEqual(status["broken.py"], ("partial", "syntax error at line 5"))

        # Every language has its definitions by name.
        names = {c["name"] for c in chunks}
        for name in ["app.main.decorated", "app.main.Outer", "app.main.Big", "app.main.Big.method_3",
                     "app.main.long_function", "web.app.add", "web.app.Box", "web.types.Person", "web.view.View",
                     "cmd.main.main", "src.lib.Point", "src.util.add", "src.shape.Shape", "src.Main.Main",
                     "broken.fine"]:
            self.assertIn(name, names)
        kinds = {(c["name"], c["kind"]) for c in chunks}
        self.assertIn(("app.main.Big", "skeleton"), kinds)
        self.assertIn(("app.main.long_function", "part"), kinds)
        self.assertIn(("app.main.Big.method_3", "method"), kinds)

        # Every chunk within the budget as the model counts it; every non-blank line covered;
        # chunk text is the header line then the file's bytes.
        for rel, cs in by_path.items():
            with open(os.path.join(root, rel), "rb") as f:
                data = f.read()
            lines = data.decode().split("\n")
            covered = set()
            for c in cs:
                self.assertLessEqual(c["tokens"], BUDGET, c["id"])
                header, _, content = c["text"].partition("\n")
                self.assertTrue(header.startswith(rel), c["id"])
                if c["kind"] != "skeleton":
                    self.assertEqual(data[c["start_byte"]:c["end_byte"]].decode(), content, c["id"])
                covered.update(range(c["start_line"], c["end_line"] + 1))
            for n, line in enumerate(lines, 1):
                if line.strip():
                    self.assertIn(n, covered, "%s:%d not in any chunk" % (rel, n))

        # Python: each top-level definition that fits is one chunk with ast's lines (from its
        # first decorator, or comments right above).
        tree = ast.parse(PYTHON)
        main = {c["name"]: c for c in by_path["app/main.py"]}
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            c = main.get("app.main." + node.name)
            self.assertIsNotNone(c, node.name)
            if c["kind"] in ("skeleton", "part"):
                continue
            self.assertEqual(c["end_line"], node.end_lineno, node.name)
            self.assertLessEqual(c["start_line"], first, node.name)
            for n in range(c["start_line"], first):
                self.assertTrue(PYTHON.split("\n")[n - 1].startswith("#"), node.name)

        # The chunks go into a store as any JSONL does, and search finds them.
        db = self.path("code.db")
        r = run(["embed", out, "-o", "sqlite:" + db, "--model", MINILM, "--progress", "never"], timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        # The test models have random weights: a chunk's own text is the query that must find it.
        point = next(c for c in chunks if c["name"] == "src.lib.Point")
        r = run(["search", "sqlite:" + db, "-q", point["text"], "-k", "3", "--format", "json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        best = json.loads(r.stdout.splitlines()[0])
        self.assertEqual(best["id"], point["id"])
        self.assertAlmostEqual(best["score"], 1.0, places=4)
        self.assertEqual((best["record"]["start_line"], best["record"]["end_line"]), (1, 5))

    def test_a_rerun_gives_the_same_bytes(self):
        root = self.build_tree()
        a, b = self.path("a.jsonl"), self.path("b.jsonl")
        self.assertEqual(run(["chunk", root, "--model", MINILM, "-o", a]).returncode, 0)
        self.assertEqual(run(["chunk", root, "--model", MINILM, "-o", b]).returncode, 0)
        self.assertEqual(self.read("a.jsonl"), self.read("b.jsonl"))


def store_rows(db):
    """The index's rows as comparable values: files without the run that saw them last, and
    chunks with their vectors as floats."""
    con = sqlite3.connect(db)
    try:
        files = sorted(con.execute(
            "SELECT path, size, mtime_ns, inode, sha256, language, status, reason, chunks FROM files"))
        chunks = []
        for row in con.execute("SELECT id, path, ordinal, kind, name, start_line, end_line, start_byte, end_byte, "
                               "content, content_hash, text_hash, tokens, embedding FROM chunks ORDER BY id"):
            blob = row[-1]
            floats = [int.from_bytes(blob[i:i + 4], "little") for i in range(0, len(blob), 4)]
            chunks.append((row[:-1], floats))
        edges = sorted(con.execute("SELECT source_id, coalesce(target_id, ''), target_name, kind FROM edges"))
        metrics = sorted((c, i, o, round(r, 9)) for c, i, o, r in con.execute("SELECT * FROM chunk_metrics"))
        return files, chunks, edges, metrics
    finally:
        con.close()


def as_floats(words):
    import struct
    return struct.unpack("<%df" % len(words), b"".join(w.to_bytes(4, "little") for w in words))


class IndexTest(TreeTest):
    """`pipeline-run index`: the same tree into a SQLite store, then again after changes."""

    def index(self, root, db, *extra, timeout=600):
        return run(["index", root, "-o", "sqlite:" + db, "--model", MINILM, "--chunk-tokens", str(BUDGET),
                    "--progress", "never"] + list(extra), timeout=timeout)

    def test_index_a_tree_of_every_case(self):
        root = self.build_tree()
        db = self.path("index.db")
        r = self.index(root, db)
        self.assertEqual(r.returncode, 0, r.stderr)
        con = sqlite3.connect(db)
        status = {p: (s, why) for p, s, why in con.execute("SELECT path, status, reason FROM files")}
        for rel in ["debug.log", "secret/key.py", "generated.py", "node_modules/pkg/index.js", "build/out.c"]:
            self.assertNotIn(rel, status)
        self.assertIn(b"3 ignored", r.stderr)
        self.assertIn(b"2 vendored folders", r.stderr)
        expect = {
            "image.png": "binary", "huge.py": "over --max-file-bytes", "bundle.min.js": "minified",
            "latin1.py": "invalid UTF-8 at byte 11", "loop_a": "loop", "outside": "out of the tree",
            "pipe": "not a regular file",
        }
        for rel, why in expect.items():
            self.assertEqual(status[rel][0], "skipped", rel)
            self.assertIn(why, status[rel][1], rel)
        self.assertEqual(status["keep.log"][0], "indexed")
        self.assertEqual(status["broken.py"], ("partial", "syntax error at line 5"))
        for rel in SOURCES:
            self.assertIn(status[rel][0], ("indexed", "partial"), rel)

        # The chunks are those `chunk` gives, with the same lines and bytes, and each file's
        # row counts them.
        out = self.path("chunks.jsonl")
        self.assertEqual(run(["chunk", root, "--model", MINILM, "--chunk-tokens", str(BUDGET), "-o", out]).returncode, 0)
        want = sorted((c["path"], c["kind"], c["name"], c["start_line"], c["end_line"], c["start_byte"],
                       c["end_byte"], c["tokens"]) for c in map(json.loads, open(out)))
        got = sorted(con.execute("SELECT path, kind, name, start_line, end_line, start_byte, end_byte, tokens "
                                 "FROM chunks"))
        self.assertEqual(got, want)
        for path, n in con.execute("SELECT path, chunks FROM files"):
            self.assertEqual(n, con.execute("SELECT count(*) FROM chunks WHERE path = ?", (path,)).fetchone()[0])
        # Every non-blank line of every indexed file is in a chunk; content is the file's bytes.
        for (rel,) in con.execute("SELECT path FROM files WHERE status IN ('indexed', 'partial')"):
            with open(os.path.join(root, rel), "rb") as f:
                data = f.read()
            covered = set()
            for kind, start, end, sb, eb, content in con.execute(
                    "SELECT kind, start_line, end_line, start_byte, end_byte, content FROM chunks WHERE path = ?",
                    (rel,)):
                if kind != "skeleton":
                    self.assertEqual(data[sb:eb].decode(), content, rel)
                covered.update(range(start, end + 1))
            for n, line in enumerate(data.decode().split("\n"), 1):
                if line.strip():
                    self.assertIn(n, covered, "%s:%d not in any chunk" % (rel, n))
        import hashlib
        for rel, sha in con.execute("SELECT path, sha256 FROM files WHERE status = 'indexed'"):
            with open(os.path.join(root, rel), "rb") as f:
                self.assertEqual(sha, hashlib.sha256(f.read()).hexdigest(), rel)

        # search --table chunks finds a chunk by its own text (random weights) and shows where it is.
        text, cid = con.execute("SELECT content, id FROM chunks WHERE name = 'src.lib.Point'").fetchone()
        con.close()
        r = run(["search", "sqlite:" + db, "--table", "chunks", "-q", "src/lib.rs: src.lib.Point\n" + text, "-k", "2",
                 "--format", "json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        best = json.loads(r.stdout.splitlines()[0])
        self.assertEqual(best["id"], cid)
        self.assertAlmostEqual(best["score"], 1.0, places=4)
        self.assertEqual((best["record"]["path"], best["record"]["start_line"], best["record"]["end_line"]),
                         ("src/lib.rs", 1, 5))
        r = run(["search", "sqlite:" + db, "--table", "chunks", "-q", "src/lib.rs: src.lib.Point\n" + text, "-k", "1",
                 "--format", "table"])
        self.assertIn(b"src/lib.rs:1-5", r.stdout)
        self.assertIn(b"src.lib.Point", r.stdout)

    def test_each_file_has_its_events(self):
        root = self.build_tree()
        db = self.path("index.db")
        r = self.index(root, db, "--events", self.path("events.jsonl"))
        self.assertEqual(r.returncode, 0, r.stderr)
        events = [json.loads(l) for l in open(self.path("events.jsonl"))]
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[-1]["type"], "pipeline_finished")
        con = sqlite3.connect(db)
        rows = {p: (st, why, n) for p, st, why, n in con.execute("SELECT path, status, reason, chunks FROM files")}
        con.close()
        started = {e["path"]: e["seq"] for e in events if e["type"] == "file_started"}
        ended = {}
        for e in events:
            if e["type"] in ("file_indexed", "file_skipped", "file_failed"):
                self.assertNotIn(e["path"], ended)
                ended[e["path"]] = e
        self.assertEqual(set(started), set(rows))
        self.assertEqual(set(ended), set(rows))
        for path, (status, reason, n) in rows.items():
            e = ended[path]
            self.assertLess(started[path], e["seq"], path)
            if status == "skipped":
                self.assertEqual((e["type"], e["reason"]), ("file_skipped", reason), path)
            else:
                self.assertEqual((e["type"], e["status"], e["chunks"], e["chunks_embedded"]),
                                 ("file_indexed", status, n, n), path)
        # Again, nothing changed: every file unchanged.
        r = self.index(root, db, "--events", self.path("again.jsonl"))
        self.assertEqual(r.returncode, 0, r.stderr)
        again = [json.loads(l) for l in open(self.path("again.jsonl"))]
        self.assertEqual({e["path"]: e["status"] for e in again if e["type"] == "file_indexed"},
                         {p: "unchanged" for p in rows})

    def test_a_rerun_reads_only_what_changed(self):
        root = self.build_tree()
        db = self.path("index.db")
        self.assertEqual(self.index(root, db).returncode, 0)
        first = store_rows(db)
        # Nothing changed: nothing read, nothing embedded, the same rows.
        r = self.index(root, db)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"0 indexed, 0 partial, %d unchanged" % len(first[0]), r.stderr)
        self.assertIn(b"0 embedded", r.stderr)
        self.assertEqual(store_rows(db), first)
        # One function edited: that file read again, only the edited chunk embedded.
        p = os.path.join(root, "web/app.js")
        with open(p) as f:
            text = f.read()
        with open(p, "w") as f:
            f.write(text.replace("return a + b;", "return a + b + 0;"))
        r = self.index(root, db)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"1 indexed", r.stderr)
        self.assertIn(b"(1 embedded", r.stderr)
        # A file deleted, and one newly ignored: their rows go.
        os.remove(os.path.join(root, "config.toml"))
        with open(os.path.join(root, ".gitignore"), "a") as f:
            f.write("docs/\n")
        r = self.index(root, db)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"2 files removed", r.stderr)
        con = sqlite3.connect(db)
        paths = {p for (p,) in con.execute("SELECT path FROM chunks")} | {p for (p,) in con.execute("SELECT path FROM files")}
        con.close()
        self.assertNotIn("config.toml", paths)
        self.assertNotIn("docs/guide.md", paths)
        self.assertIn("web/app.js", paths)

    def test_the_graph_resolves_imports_calls_and_bases(self):
        root = self.path("proj")
        files = {
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
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        db = self.path("g.db")
        r = self.index(root, db)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"graph: ", r.stderr)
        con = sqlite3.connect(db)
        edges = set(con.execute("SELECT source_id, coalesce(target_id, ''), target_name, kind FROM edges"))
        ids = {name: cid for cid, name in con.execute("SELECT id, name FROM chunks")}
        helper, base, app_go, local, twice = (ids["pkg.util.helper"], ids["pkg.base.Base"], ids["app.App"],
                                               ids["app.local"], ids["other.twice"])
        first = {p: cid for cid, p in con.execute("SELECT id, path FROM chunks WHERE ordinal = 0")}
        self.assertIn((app_go, helper, "helper", "calls"), edges)        # the only definition of that name
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
        fan_in, fan_out, rank = con.execute("SELECT fan_in, fan_out, pagerank FROM chunk_metrics WHERE chunk_id = ?",
                                            (helper,)).fetchone()
        # App.go, local, twice (twice calls it twice: one edge), and the imports of pkg.util in
        # other.py and app.py, whose target is that file's first chunk: helper.
        self.assertEqual(fan_in, 5)
        self.assertEqual(fan_out, 0)
        total = con.execute("SELECT sum(pagerank) FROM chunk_metrics").fetchone()[0]
        self.assertAlmostEqual(total, 1.0, places=6)
        con.close()
        # The most central chunk is the one everything calls.
        r = run(["graph", "sqlite:" + db, "--top", "3", "--format", "json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        top = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual(top[0]["id"], helper)
        self.assertEqual((top[0]["path"], top[0]["start_line"], top[0]["end_line"]), ("pkg/util.py", 1, 2))
        # Exports that graph tools read.
        import xml.etree.ElementTree as ET
        r = run(["graph", "sqlite:" + db, "--export", "graphml", "-o", self.path("g.graphml")])
        self.assertEqual(r.returncode, 0, r.stderr)
        ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
        graph = ET.parse(self.path("g.graphml")).getroot().find("g:graph", ns)
        nodes = {n.get("id") for n in graph.findall("g:node", ns)}
        links = [(e.get("source"), e.get("target")) for e in graph.findall("g:edge", ns)]
        self.assertIn(helper, nodes)
        self.assertIn((local, helper), links)
        self.assertTrue(all(a in nodes and b in nodes for a, b in links))
        r = run(["graph", "sqlite:" + db, "--export", "dot"])
        self.assertTrue(r.stdout.startswith(b"digraph code {"))
        self.assertIn(('"%s" -> "%s"' % (local, helper)).encode(), r.stdout)
        # A rename in one file: the callers, unchanged, no longer resolve to it.
        with open(os.path.join(root, "pkg/util.py"), "w") as f:
            f.write("def assist(x):\n    return x + 1\n")
        r = self.index(root, db)
        self.assertEqual(r.returncode, 0, r.stderr)
        con = sqlite3.connect(db)
        self.assertEqual(con.execute("SELECT count(*) FROM edges WHERE target_name = 'helper' AND target_id IS NOT "
                                     "NULL").fetchone()[0], 0)
        con.close()

    @unittest.skipIf(os.geteuid() == 0, "runs as root, who can read a file without permission")
    def test_an_unreadable_file_fails_alone_and_keeps_its_rows(self):
        root = self.build_tree()
        db = self.path("index.db")
        self.assertEqual(self.index(root, db).returncode, 0)
        p = os.path.join(root, "src/util.c")
        with open(p, "a") as f:
            f.write("\n")
        os.chmod(p, 0)
        r = self.index(root, db)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"failed: src/util.c: cannot read", r.stderr)
        con = sqlite3.connect(db)
        self.assertEqual(con.execute("SELECT status FROM files WHERE path = 'src/util.c'").fetchone()[0], "failed")
        self.assertGreater(con.execute("SELECT count(*) FROM chunks WHERE path = 'src/util.c'").fetchone()[0], 0)

    def test_another_model_is_refused(self):
        root = self.build_tree()
        db = self.path("index.db")
        self.assertEqual(self.index(root, db).returncode, 0)
        r = run(["index", root, "-o", "sqlite:" + db, "--model", os.path.join(MODELS, "tiny"), "--progress", "never"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"another model", r.stderr)

    def test_other_options_read_every_file_again_and_another_folder_is_refused(self):
        root = self.build_tree()
        db = self.path("index.db")
        self.assertEqual(self.index(root, db).returncode, 0)
        con = sqlite3.connect(db)
        before = con.execute("SELECT count(*) FROM chunks").fetchone()[0]
        con.close()
        # A smaller budget: every file read again (the stats are unchanged), more chunks.
        r = run(["index", root, "-o", "sqlite:" + db, "--model", MINILM, "--chunk-tokens", "80", "--progress",
                 "never"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b" 0 unchanged", r.stderr)
        con = sqlite3.connect(db)
        self.assertGreater(con.execute("SELECT count(*) FROM chunks").fetchone()[0], before)
        self.assertLessEqual(con.execute("SELECT max(tokens) FROM chunks").fetchone()[0], 80)
        con.close()
        r = run(["index", root, "-o", "sqlite:" + db, "--model", MINILM, "--chunk-tokens", "80", "--progress",
                 "never"])
        self.assertIn(b" 0 indexed", r.stderr)
        # Another folder into the same store would remove every row: refused.
        other = self.path("other")
        os.makedirs(other)
        r = self.index(other, db)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"holds the index of", r.stderr)

    def test_outputs_inside_the_tree_are_not_indexed(self):
        for absolute, store, events in ((True, "idx[1].db", "ev[1].jsonl"), (False, "idx.db", "ev.jsonl")):
            root = self.build_tree()
            if absolute:
                store, events = os.path.join(root, store), os.path.join(root, events)
            uri = "sqlite:" + store if absolute else "sqlite://" + store
            for _ in range(2):  # the first run creates them, the second finds them
                r = subprocess.run([os.path.abspath(PIPELINE_RUN), "index", ".", "-o", uri, "--model",
                                    os.path.abspath(MINILM), "--chunk-tokens", str(BUDGET), "--progress", "never",
                                    "--events", events], capture_output=True, timeout=600, cwd=root)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(b" 0 files removed", r.stderr)
                con = sqlite3.connect(os.path.join(root, store))
                paths = {p for (p,) in con.execute("SELECT path FROM files")}
                con.close()
                self.assertFalse([p for p in paths if p.startswith(("idx", "ev"))], paths)
                self.assertIn("app/main.py", paths)
            # The graph's export never goes over the store.
            db = os.path.join(root, store)
            r = run(["graph", "sqlite:" + db, "--export", "dot", "-o", db])
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"same file", r.stderr)
            shutil.rmtree(root)

    def test_a_store_whose_tables_are_not_an_index_is_refused(self):
        root = self.build_tree()
        db = self.path("embedded.db")
        src = self.path("in.jsonl")
        with open(src, "w") as f:
            f.write('{"id": "a", "text": "hello"}\n')
        r = run(["embed", src, "-o", "sqlite:" + db, "--table", "chunks", "--model", MINILM, "--progress", "never"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.index(root, db)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"made by pipeline-run embed", r.stderr)
        other = self.path("other.db")
        con = sqlite3.connect(other)
        con.execute("CREATE TABLE files (name TEXT)")
        con.commit()
        con.close()
        r = self.index(root, other)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"not a code index", r.stderr)

    @unittest.skipIf(SANITIZED, "a sanitizer's own memory and time are not the program's")
    def test_peak_rss_is_flat_in_the_tree_and_a_rerun_of_10000_files_is_fast(self):
        def tree(n):
            root = self.path("t%d" % n)
            for k in range(n):
                d = os.path.join(root, "pkg%03d" % (k // 100))
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "mod%05d.py" % k), "w") as f:
                    f.write("def f%d(x):\n    return x + %d\n" % (k, k))
            return root

        def index(root, db):
            p = subprocess.Popen([PIPELINE_RUN, "index", root, "-o", "sqlite:" + db, "--model", TINY, "--progress",
                                  "never"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            t0 = time.monotonic()
            _, status, usage = os.wait4(p.pid, 0)
            took = time.monotonic() - t0
            err = p.stderr.read()
            self.assertEqual(os.waitstatus_to_exitcode(status), 0, err)
            return usage.ru_maxrss / 1024, took, err

        small, _, _ = index(tree(1000), self.path("small.db"))
        large, _, err = index(tree(10000), self.path("large.db"))
        self.assertIn(b"10000 indexed", err)
        # A tree 10 times larger: at most 10 % more peak RSS (measured: about 5 %).
        self.assertLess(large, small * 1.10, (small, large))
        # Nothing changed: every file only compared by its stat.
        _, took, err = index(self.path("t10000"), self.path("large.db"))
        self.assertIn(b"10000 unchanged", err)
        self.assertLess(took, 2.0, err)

    def test_killed_at_any_moment_then_run_again_gives_the_store_of_one_run(self):
        root = self.build_tree()
        # More files, so that kills land between files as well as inside them.
        for i in range(40):
            with open(os.path.join(root, "app", "m%02d.py" % i), "w") as f:
                f.write("".join("def f%d_%d(x):\n    return x * %d\n\n\n" % (i, j, j) for j in range(8)))
        whole_db = self.path("whole.db")
        t0 = time.time()
        self.assertEqual(self.index(root, whole_db, "--batch-size", "8").returncode, 0)
        whole = time.time() - t0
        want = store_rows(whole_db)
        rng = random.Random(int(os.environ.get("SLUICE_KILL_SEED", "7")))
        db = self.path("killed.db")
        cmd = [PIPELINE_RUN, "index", root, "-o", "sqlite:" + db, "--model", MINILM, "--chunk-tokens", str(BUDGET),
               "--progress", "never", "--batch-size", "8"]
        for _ in range(int(os.environ.get("SLUICE_KILL_TRIALS", "5"))):
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                p.wait(timeout=rng.uniform(0.02, 1.1) * whole)
            except subprocess.TimeoutExpired:
                p.kill()
            p.communicate()
        r = subprocess.run(cmd, capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = store_rows(db)
        self.assertEqual(got[0], want[0])
        self.assertEqual(got[2], want[2])
        self.assertEqual(got[3], want[3])
        self.assertEqual([c[0] for c in got[1]], [c[0] for c in want[1]])
        # Vectors: the same, up to the last bits that another batching of the same texts gives.
        for (key, a), (_, b) in zip(got[1], want[1]):
            for x, y in zip(as_floats(a), as_floats(b)):
                self.assertAlmostEqual(x, y, delta=1e-4, msg=key[0])


if __name__ == "__main__":
    unittest.main()
