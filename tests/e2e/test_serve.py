"""`pipeline-run serve` end to end (docs/serve.md): the OpenAI-compatible POST /v1/embeddings,
GET /health, /metrics and /v1/models, on 127.0.0.1 with a port the server picks.

The vectors a request gets are the vectors `pipeline-run embed` writes for the same texts (the
batches differ, so within cosine 0.99999), in the request's order, for every request of many
concurrent clients (dynamic batching must never mix two requests' rows); base64 is the float
answer's bytes; `dimensions` is the first values renormalised. Every bad request gets a clear
error in OpenAI's shape with the right status; the bounds answer 429 (queue), 413 (body), 431
(headers), 408 (a request too slow to arrive) and 503 (connections); keep-alive and pipelined
requests are answered in order; SIGTERM answers the requests received and then exits 0.

Standard library only.
"""

import base64
import http.client
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_files import TempDirTest  # noqa: E402

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
MINILM = os.path.join(MODELS, "minilm")

WORDS = ("river stone light paper window garden music table winter bridge cloud engine letter forest silver "
         "market number signal planet harbor orange yellow quiet simple").split()


def texts(n, seed, long_every=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.choice((1, 3, 8, 20, 60))
        if long_every and i % long_every == 0:
            k = 150
        out.append(" ".join(rng.choice(WORDS) for _ in range(k)))
    return out


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


class Serve:
    """`pipeline-run serve` on 127.0.0.1, a port of its choosing (read from its banner)."""

    def __init__(self, log_path, *extra):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([PIPELINE_RUN, "serve", "--model", MINILM, "--listen", "127.0.0.1:0"]
                                         + list(extra), stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 60
        while time.time() < deadline:
            log = self.log()
            if "serving " in log:
                self.port = int(log.split("http://127.0.0.1:")[1].split("/")[0])
                return
            if self.proc.poll() is not None:
                raise AssertionError("serve ended: " + log)
            time.sleep(0.05)
        raise AssertionError("serve did not start: " + self.log())

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=dict({"Content-Type": "application/json"}, **(headers or {})))
            r = conn.getresponse()
            payload = r.read()
            return r.status, dict(r.getheaders()), payload
        finally:
            conn.close()

    def embed(self, body, **kw):
        status, headers, payload = self.request("POST", "/v1/embeddings", body, **kw)
        return status, headers, json.loads(payload) if payload else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class ServeTest(TempDirTest):
    server = None

    def start(self, *extra):
        self.server = Serve(self.path(f"serve-{random.random()}.log"), *extra)
        return self.server

    def tearDown(self):
        if self.server:
            # A clean stop, every time: exit 0 (a sanitizer's report would change it).
            rc = self.server.stop()
            self.assertEqual(rc, 0, self.server.log()[-3000:])
        super().tearDown()

    def reference(self, items):
        """`pipeline-run embed`'s vectors for these texts (the in-process pipeline)."""
        src = self.path("ref.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            for t in items:
                f.write(json.dumps({"text": t}) + "\n")
        out = self.path("ref-out.jsonl")
        r = subprocess.run([PIPELINE_RUN, "embed", src, "-o", out, "--model", MINILM, "--progress", "never",
                            "--no-checkpoint"], capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(out, encoding="utf-8") as f:
            return [json.loads(line)["embedding"] for line in f]

    def assert_error(self, status, headers, body, want_status, words):
        self.assertEqual(status, want_status, body)
        self.assertIn("error", body)
        self.assertIn(words, body["error"]["message"])
        self.assertIn("type", body["error"])

    def test_vectors_are_the_pipelines_in_request_order(self):
        s = self.start()
        items = texts(40, seed=1, long_every=7)
        want = self.reference(items)
        status, _, body = s.embed({"input": items, "model": "minilm"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["object"], "list")
        self.assertEqual(body["model"], "minilm")
        self.assertEqual([d["index"] for d in body["data"]], list(range(len(items))))
        for d, w in zip(body["data"], want):
            self.assertEqual(d["object"], "embedding")
            self.assertEqual(len(d["embedding"]), 384)
            self.assertGreaterEqual(cosine(d["embedding"], w), 0.99999)
        # usage counts the tokens the model was given, special tokens included.
        tok = self.path("tok.jsonl")
        with open(tok, "w", encoding="utf-8") as f:
            for t in items:
                f.write(json.dumps({"text": t}) + "\n")
        r = subprocess.run([PIPELINE_RUN, "tokenize", tok, "-o", self.path("ids.jsonl"), "--model", MINILM],
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(self.path("ids.jsonl"), encoding="utf-8") as f:
            n = sum(min(len(json.loads(line)["input_ids"]), 256) for line in f)
        self.assertEqual(body["usage"], {"prompt_tokens": n, "total_tokens": n})
        # A single string is one input.
        status, _, one = s.embed({"input": items[3]})
        self.assertEqual(status, 200, one)
        self.assertEqual(len(one["data"]), 1)
        self.assertGreaterEqual(cosine(one["data"][0]["embedding"], want[3]), 0.99999)

    def test_base64_and_dimensions(self):
        s = self.start()
        items = texts(5, seed=2)
        _, _, floats = s.embed({"input": items})
        status, _, b64 = s.embed({"input": items, "encoding_format": "base64"})
        self.assertEqual(status, 200, b64)
        for f, b in zip(floats["data"], b64["data"]):
            raw = base64.b64decode(b["embedding"])
            self.assertEqual(list(struct.unpack(f"<{len(raw) // 4}f", raw)),
                             [struct.unpack("<f", struct.pack("<f", x))[0] for x in f["embedding"]])
        status, _, cut = s.embed({"input": items, "dimensions": 32})
        self.assertEqual(status, 200, cut)
        for f, c in zip(floats["data"], cut["data"]):
            head = f["embedding"][:32]
            norm = math.sqrt(sum(x * x for x in head))
            self.assertEqual(len(c["embedding"]), 32)
            for x, y in zip(head, c["embedding"]):
                self.assertAlmostEqual(x / norm, y, places=6)
            self.assertAlmostEqual(sum(y * y for y in c["embedding"]), 1.0, places=5)

    def test_concurrent_clients_each_get_their_own_vectors(self):
        s = self.start("--batch-size", "16", "--max-batch-tokens", "2048")
        pool = texts(120, seed=3, long_every=9)
        want = dict(zip(pool, self.reference(pool)))
        failures = []

        def client(seed):
            rng = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=300)
            try:
                for _ in range(6):
                    items = rng.sample(pool, rng.randint(1, 12))
                    conn.request("POST", "/v1/embeddings", body=json.dumps({"input": items}),
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    body = json.loads(r.read())
                    if r.status != 200:
                        failures.append((r.status, body))
                        continue
                    for item, d in zip(items, body["data"]):
                        if cosine(d["embedding"], want[item]) < 0.99999:
                            failures.append(("wrong vector", item))
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        # More than one request's rows shared a model call: fewer calls than inputs' requests.
        _, _, metrics = s.request("GET", "/metrics")
        m = dict(line.rsplit(" ", 1) for line in metrics.decode().splitlines() if line and not line.startswith("#"))
        self.assertEqual(int(m['sluice_http_requests_total{path="/v1/embeddings",code="200"}']), 72)
        self.assertLess(int(m["sluice_model_calls_total"]), 72)

    def test_bad_requests_get_clear_errors(self):
        s = self.start("--max-inputs", "4", "--max-request-bytes", "4096")
        status, h, body = s.request("POST", "/v1/embeddings", b"{not json")
        self.assert_error(status, h, json.loads(body), 400, "not valid JSON")
        self.assert_error(*s.embed({"inputs": "x"}), 400, "'input' is missing")
        self.assert_error(*s.embed({"input": ["a", 7]}), 400, "'input'[1] is not a string")
        self.assert_error(*s.embed({"input": [[101, 102]]}), 400, "not token ids")
        self.assert_error(*s.embed({"input": ["a", ""]}), 400, "'input'[1] is an empty string")
        self.assert_error(*s.embed({"input": ""}), 400, "empty string")
        self.assert_error(*s.embed({"input": []}), 400, "empty array")
        self.assert_error(*s.embed({"input": ["a"] * 5}), 400, "at most 4")
        self.assert_error(*s.embed({"input": "a", "encoding_format": "int8"}), 400, "encoding_format")
        self.assert_error(*s.embed({"input": "a", "dimensions": 0}), 400, "'dimensions'")
        self.assert_error(*s.embed({"input": "a", "dimensions": 385}), 400, "from 1 to 384")
        status, h, body = s.embed({"input": "a", "model": "text-embedding-3-small"})
        self.assert_error(status, h, body, 404, "not served here")
        self.assertEqual(body["error"]["code"], "model_not_found")
        status, h, body = s.request("GET", "/v1/embeddings")
        self.assertEqual(status, 405)
        self.assertEqual(h.get("Allow"), "POST")
        status, _, body = s.request("GET", "/nowhere")
        self.assertEqual(status, 404)
        self.assertIn("POST /v1/embeddings", json.loads(body)["error"]["message"])
        # A body over --max-request-bytes: 413, said before it is read.
        status, _, body = s.request("POST", "/v1/embeddings", json.dumps({"input": "x" * 5000}).encode())
        self.assert_error(status, {}, json.loads(body), 413, "at most 4096")
        # An input longer than the model takes: 400 naming it, unless truncation is asked for.
        long = " ".join(["river"] * 400)
        self.assert_error(*s.embed({"input": ["short", long]}), 400, "'input'[1] has")
        status, _, body = s.embed({"input": ["short", long], "truncate": True})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["usage"]["prompt_tokens"], 3 + 256)
        # The server still answers after all that.
        self.assertEqual(s.request("GET", "/health")[0], 200)

    def test_truncate_flag_and_other_routes(self):
        s = self.start("--truncate", "--name", "my-model")
        status, _, body = s.embed({"input": " ".join(["river"] * 400), "model": "my-model"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["model"], "my-model")
        self.assertEqual(body["usage"]["prompt_tokens"], 256)
        status, _, body = s.embed({"input": " ".join(["river"] * 400), "truncate": False})
        self.assertEqual(status, 400, body)
        status, _, body = s.request("GET", "/health")
        self.assertEqual((status, json.loads(body)["status"]), (200, "ok"))
        status, _, body = s.request("GET", "/v1/models")
        self.assertEqual(json.loads(body)["data"][0]["id"], "my-model")
        status, h, body = s.request("GET", "/metrics")
        self.assertTrue(h["Content-Type"].startswith("text/plain"))
        self.assertIn("sluice_embeddings_request_seconds_bucket", body.decode())

    def test_a_full_queue_answers_429_and_the_rest_are_right(self):
        s = self.start("--max-queue-rows", "24", "--threads", "1", "--batch-size", "8")
        pool = texts(24, seed=4, long_every=2)
        want = self.reference(pool)
        results = []

        def client():
            results.append(s.embed({"input": pool[:12]}))

        threads = [threading.Thread(target=client) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in results)
        self.assertIn(429, statuses)
        self.assertIn(200, statuses)
        for status, headers, body in results:
            if status == 429:
                self.assertEqual(headers.get("Retry-After"), "1")
                self.assertIn("--max-queue-rows 24", body["error"]["message"])
                self.assertEqual(body["error"]["type"], "rate_limit_error")
            else:
                self.assertEqual(status, 200)
                for d, w in zip(body["data"], want[:12]):
                    self.assertGreaterEqual(cosine(d["embedding"], w), 0.99999)
        _, _, metrics = s.request("GET", "/metrics")
        self.assertIn(f"sluice_rejected_total {statuses.count(429)}\n", metrics.decode())

    def test_keep_alive_and_pipelined_requests_are_answered_in_order(self):
        s = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        for k in range(3):
            conn.request("POST", "/v1/embeddings", body=json.dumps({"input": [f"word {k}"]}))
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Connection"), "keep-alive")
            r.read()
        conn.close()
        # Three requests in one write; three answers, in order, on one connection.
        items = ["river", "stone light", "paper window garden"]
        want = self.reference(items)
        raw = b""
        for t in items:
            body = json.dumps({"input": t}).encode()
            raw += (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        with socket.create_connection(("127.0.0.1", s.port), timeout=60) as sock:
            sock.sendall(raw)
            f = sock.makefile("rb")
            for w in want:
                status = f.readline()
                self.assertIn(b" 200 ", status)
                length = 0
                while True:
                    line = f.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = json.loads(f.read(length))
                self.assertGreaterEqual(cosine(body["data"][0]["embedding"], w), 0.99999)

    def test_malformed_slow_and_too_many(self):
        s = self.start("--request-timeout", "1", "--max-connections", "3")
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            reply = sock.recv(65536)
            self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply)
            self.assertIn(b"malformed HTTP request", reply)
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nX-" + b"a" * 20000 + b": 1\r\n\r\n")
            reply = sock.recv(65536)
            self.assertTrue(reply.startswith(b"HTTP/1.1 431 "), reply)
        # A request that never finishes arriving: 408 after --request-timeout, then closed.
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp")
            t0 = time.time()
            reply = sock.recv(65536)
            self.assertTrue(reply.startswith(b"HTTP/1.1 408 "), reply)
            self.assertLess(time.time() - t0, 10)
            self.assertEqual(sock.recv(65536), b"")
        # Past --max-connections: 503 and closed; the others still served.
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=30) for _ in range(3)]
        try:
            extra = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            reply = extra.recv(65536)
            self.assertTrue(reply.startswith(b"HTTP/1.1 503 "), reply)
            extra.close()
        finally:
            for k in socks:
                k.close()
        time.sleep(0.3)
        self.assertEqual(s.embed({"input": "still here"})[0], 200)

    def test_sigterm_answers_what_was_received_then_exits_0(self):
        s = self.start("--threads", "1", "--batch-size", "4")
        pool = texts(48, seed=5, long_every=1)
        results = []

        def client():
            results.append(s.embed({"input": pool}))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        # Wait until the four requests are in (the queue holds their rows), then stop.
        deadline = time.time() + 60
        while time.time() < deadline:
            _, _, metrics = s.request("GET", "/metrics")
            queued = [line for line in metrics.decode().splitlines() if line.startswith("sluice_queue_rows ")]
            if queued and int(queued[0].split()[1]) >= 4 * 48 - 8:
                break
            time.sleep(0.02)
        s.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        self.assertEqual(s.proc.wait(timeout=120), 0, s.log())
        self.assertEqual([r[0] for r in results], [200] * 4)
        for r in results:
            self.assertEqual(len(r[2]["data"]), 48)
        self.assertIn("stopped: ", s.log())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=5)

    def test_a_client_that_leaves_does_not_hurt_the_server(self):
        s = self.start("--threads", "1")
        pool = texts(64, seed=6, long_every=1)
        for _ in range(5):
            body = json.dumps({"input": pool}).encode()
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        status, _, body = s.embed({"input": "after"})
        self.assertEqual(status, 200, body)
        self.assertIsNone(s.proc.poll())

    def read_answers(self, sock, count, timeout=60):
        """Reads `count` HTTP answers from `sock`: [(status line, headers dict, body)]."""
        f = sock.makefile("rb")
        out = []
        for _ in range(count):
            status = f.readline()
            if not status:
                break
            if b" 100 " in status:
                f.readline()
                status = f.readline()
            headers = {}
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                k, v = line.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            out.append((status, headers, f.read(int(headers.get("content-length", 0)))))
        return out

    def test_a_client_that_does_not_read_holds_one_answer_not_all(self):
        s = self.start("--threads", "1")
        body = json.dumps({"input": texts(256, seed=9)}).encode()
        request = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() +
                   b"\r\n\r\n" + body)
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.sendall(request * 40)  # 40 answers of about 1 MB each, none read
            time.sleep(4)
            _, _, metrics = s.request("GET", "/metrics")
            m = dict(line.rsplit(" ", 1) for line in metrics.decode().splitlines() if line and not line.startswith("#"))
            done = int(m.get('sluice_http_requests_total{path="/v1/embeddings",code="200"}', 0))
            # The answers not read stop the connection: a few are made, not 40.
            self.assertLess(done, 10, done)
        finally:
            sock.close()

    def test_expect_100_continue_half_close_upgrade_and_head(self):
        s = self.start("--max-request-bytes", "4096")
        body = json.dumps({"input": ["river stone"]}).encode()
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
                         str(len(body)).encode() + b"\r\n\r\n")
            self.assertTrue(sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n"))
            sock.sendall(body)
            (status, _, answer), = self.read_answers(sock, 1)
            self.assertIn(b" 200 ", status)
            self.assertEqual(len(json.loads(answer)["data"]), 1)
        # Too large, and said so before the body is sent.
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Content-Length: 100000\r\n\r\n")
            (status, headers, _), = self.read_answers(sock, 1)
            self.assertIn(b" 413 ", status)
            self.assertEqual(headers["connection"], "close")
        # A client that half-closes after its request still reads its whole answer.
        big = json.dumps({"input": texts(64, seed=10)}).encode()
        s2 = self.server
        with socket.create_connection(("127.0.0.1", s2.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(big)).encode() +
                         b"\r\n\r\n" + big[:4000])
        # (over the 4096-byte limit: refused; the half-close case uses a fitting body below)
        small = json.dumps({"input": texts(8, seed=11)}).encode()
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(small)).encode() +
                         b"\r\n\r\n" + small)
            sock.shutdown(socket.SHUT_WR)
            (status, _, answer), = self.read_answers(sock, 1)
            self.assertIn(b" 200 ", status)
            self.assertEqual(len(json.loads(answer)["data"]), 8)
        # An Upgrade request is answered once, as HTTP/1.1; the connection goes on.
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                         b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
                         b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answers = self.read_answers(sock, 3)
            self.assertEqual([a[0].split(b" ")[1] for a in answers], [b"200", b"200"])
        # HEAD: the GET's length, no body.
        _, get_headers, get_body = s.request("GET", "/health")
        status, head_headers, head_body = s.request("HEAD", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(head_headers["Content-Length"], str(len(get_body)))
        self.assertEqual(head_body, b"")

    def test_connection_close_and_thousands_of_pipelined_requests(self):
        s = self.start()
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = self.read_answers(sock, 2)
            self.assertEqual(len(answers), 1)
            self.assertEqual(answers[0][1]["connection"], "close")
        # 4,000 requests in a few writes: each answered, in order, without the server recursing.
        n = 4000
        with socket.create_connection(("127.0.0.1", s.port), timeout=60) as sock:
            sender = threading.Thread(target=sock.sendall, args=(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" * n,))
            sender.start()
            answers = self.read_answers(sock, n)
            sender.join()
            self.assertEqual(len(answers), n)
            self.assertTrue(all(b" 404 " in a[0] for a in answers))
        self.assertEqual(s.request("GET", "/health")[0], 200)

    def test_sigterm_finishes_writing_a_large_answer_to_a_slow_reader(self):
        s = self.start()
        body = json.dumps({"input": texts(1500, seed=12)}).encode()
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
        time.sleep(0.5)
        s.proc.send_signal(signal.SIGTERM)
        # Not read for a while: the answer (7 MB, more than the sockets' buffers) waits to be written.
        time.sleep(3)
        (status, headers, answer), = self.read_answers(sock, 1)
        sock.close()
        self.assertIn(b" 200 ", status)
        self.assertEqual(len(answer), int(headers["content-length"]))
        self.assertEqual(len(json.loads(answer)["data"]), 1500)
        self.assertEqual(s.proc.wait(timeout=60), 0)

    def test_a_bad_listen_address_is_a_usage_error(self):
        for listen in ("127.0.0.1:99999", "nohost:80", "[::1]8080"):
            r = subprocess.run([PIPELINE_RUN, "serve", "--model", MINILM, "--listen", listen], capture_output=True,
                               timeout=120)
            self.assertEqual(r.returncode, 2, (listen, r.stderr.decode()))
            self.assertIn("--listen" if listen != "nohost:80" else "not an IP address", r.stderr.decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
