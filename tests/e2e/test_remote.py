"""`pipeline-run embed --remote` end to end (docs/remote.md): the remote API backend against
`pipeline-run serve` on 127.0.0.1, directly and through a fault-injecting proxy (this file's
FaultProxy) that answers chosen requests with 429 and Retry-After, 500s, slow answers, dropped
connections, malformed JSON, the wrong number of vectors, rate-limit headers, 400 for a poison
input, or 401 without the right key.

The output must equal a local run's (`pipeline-run embed --model`): the same records, fields and
order byte for byte, and vectors within cosine 0.99999; nothing lost or twice; the rate limits
hold on the proxy's own request timestamps; a run SIGKILLed mid-way and resumed sends no request
for a record its checkpoint holds; the API key never shows in output, events or checkpoint.

Standard library only.
"""

import http.client
import http.server
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_files import TempDirTest, wait_for_size  # noqa: E402
from test_serve import Serve  # noqa: E402

PIPELINE_RUN = os.environ.get("PIPELINE_RUN", "build/apps/pipeline-run/pipeline-run")
MODELS = os.environ.get("SLUICE_TEST_MODELS", "build/tests/test-models")
MINILM = os.path.join(MODELS, "minilm")
KEY = "sk-test-0123456789-secret"

WORDS = ("river stone light paper window garden music table winter bridge cloud engine letter forest silver "
         "market number signal planet harbor orange yellow quiet simple").split()


def make_input(path, n, seed=1, poison=()):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.choice((1, 3, 8, 20, 60))))
            if i in poison:
                text = "POISON " + text
            f.write(json.dumps({"id": i, "text": text, "meta": {"k": i % 5, "s": "é\u2028"}}, ensure_ascii=False) + "\n")


class FaultProxy:
    """An HTTP server on 127.0.0.1 that forwards POST /v1/embeddings to `upstream` (a serve
    port), and answers request number N (from 1) as faults[N] says instead. Records each
    request's time and inputs."""

    def __init__(self, upstream, faults=None, key=None):
        self.upstream, self.faults, self.key = upstream, dict(faults or {}), key
        self.log = []  # (time, inputs, answer) per request
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                inputs = json.loads(body).get("input", [])
                with proxy.lock:
                    n = len(proxy.log) + 1
                    fault = proxy.faults.get(n, "ok")
                    entry = [time.time(), inputs, fault]
                    proxy.log.append(entry)
                if proxy.key is not None and self.headers.get("Authorization") != f"Bearer {proxy.key}":
                    entry[2] = "401"
                    return self.reply(401, {"error": {"message": "Incorrect API key provided", "type": "auth"}})
                if any("POISON" in t for t in inputs):
                    entry[2] = "400"
                    return self.reply(400, {"error": {"message": "this input is refused", "type": "invalid"}})
                if fault == "429":
                    return self.reply(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "1"})
                if fault == "500":
                    return self.reply(500, {"error": {"message": "upstream exploded"}})
                if fault == "503":
                    return self.reply(503, b"<html>busy</html>")
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    entry.append(time.time())
                    return
                if fault.startswith("slow"):
                    time.sleep(float(fault[4:]))
                status, payload, headers = proxy.forward(body)
                entry.append(time.time())  # when the answer went
                if fault == "malformed" and status == 200:
                    return self.reply(200, b'{"object":"list","data":[{"embedding":[0.1,')
                if fault == "short" and status == 200:
                    answer = json.loads(payload)
                    answer["data"] = answer["data"][:-1]
                    return self.reply(200, answer)
                extra = {}
                if fault == "ratelimit-headers":
                    extra = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
                return self.reply(status, payload, extra)

            def reply(self, status, payload, headers=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client that gave up (a timeout it was meant to hit) leaves a broken pipe: not news.
        self.server.handle_error = lambda request, address: None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=300)
        try:
            conn.request("POST", "/v1/embeddings", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read(), {}
        finally:
            conn.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def same_output(test, got, want):
    got_lines, want_lines = got.splitlines(), want.splitlines()
    test.assertEqual(len(got_lines), len(want_lines))
    for g, w in zip(got_lines, want_lines):
        gj, wj = json.loads(g), json.loads(w)
        ge, we = gj.pop("embedding"), wj.pop("embedding")
        test.assertEqual(gj, wj)
        test.assertEqual(len(ge), len(we))
        dot = sum(a * b for a, b in zip(ge, we))
        test.assertGreaterEqual(dot / (math.sqrt(sum(a * a for a in ge)) * math.sqrt(sum(b * b for b in we))), 0.99999)
        # Every field before the vector, byte for byte.
        test.assertEqual(g[:g.rindex(b',"embedding"')], w[:w.rindex(b',"embedding"')])


class RemoteTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.serve = Serve(self.path("serve.log"), "--truncate")
        self.proxy = None
        self.input = self.path("in.jsonl")

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        rc = self.serve.stop()
        self.assertEqual(rc, 0, self.serve.log()[-3000:])
        super().tearDown()

    def local(self, name="local.jsonl"):
        out = self.path(name)
        r = subprocess.run([PIPELINE_RUN, "embed", self.input, "-o", out, "--model", MINILM, "--progress", "never",
                            "--no-checkpoint"], capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return self.read(name)

    def remote_cmd(self, out, url, *extra):
        return [PIPELINE_RUN, "embed", self.input, "-o", out, "--remote", url, "--remote-model", "minilm",
                "--model", MINILM, "--progress", "never", "--remote-key-env", "SLUICE_TEST_KEY"] + list(extra)

    def run_remote(self, url, *extra, expect=0, env_key=KEY):
        out = self.path("remote.jsonl")
        env = dict(os.environ, SLUICE_TEST_KEY=env_key)
        r = subprocess.run(self.remote_cmd(out, url, "--events", self.path("ev.jsonl"), *extra), capture_output=True,
                           timeout=600, env=env)
        self.assertEqual(r.returncode, expect, r.stderr.decode())
        return r

    def events(self):
        with open(self.path("ev.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_against_serve_the_output_is_the_local_runs(self):
        make_input(self.input, 300)
        self.run_remote(f"http://127.0.0.1:{self.serve.port}/v1", "--remote-max-inputs", "32")
        same_output(self, self.read("remote.jsonl"), self.local())
        usage = [e for e in self.events() if e["type"] == "remote_usage"][-1]
        self.assertEqual(usage["inputs"], 300)
        self.assertGreater(usage["tokens_billed"], 0)
        self.assertEqual(usage["retries"], 0)

    def test_a_store_made_through_the_api_is_searched_through_it(self):
        make_input(self.input, 60, seed=9)
        url = f"http://127.0.0.1:{self.serve.port}/v1"
        store = "sqlite:" + self.path("store.db")
        env = dict(os.environ, SLUICE_TEST_KEY=KEY)
        r = subprocess.run([PIPELINE_RUN, "embed", self.input, "-o", store, "--remote", url, "--remote-model", "minilm",
                            "--model", MINILM, "--progress", "never", "--remote-key-env", "SLUICE_TEST_KEY"],
                           capture_output=True, timeout=600, env=env)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(self.input, encoding="utf-8") as f:
            first = json.loads(f.readline())
        # Without the API: a clear refusal, not a folder that does not exist.
        r = subprocess.run([PIPELINE_RUN, "search", store, "-q", first["text"], "--format", "json"],
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr.decode())
        self.assertIn("--remote", r.stderr.decode())
        # Through the same API, counted the same way: the record itself comes first.
        r = subprocess.run([PIPELINE_RUN, "search", store, "-q", first["text"], "--format", "json", "-k", "3",
                            "--remote", url, "--remote-model", "minilm", "--model", MINILM,
                            "--remote-key-env", "SLUICE_TEST_KEY"], capture_output=True, timeout=120, env=env)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        # Lines end with "\n" only: the records hold U+2028, which str.splitlines() would cut at.
        hits = [json.loads(line) for line in r.stdout.decode().split("\n") if line.strip()]
        self.assertTrue(hits, r.stdout.decode())
        self.assertEqual(hits[0]["record"]["id"], 0)
        # Counted another way (no tokenizer folder): another model, refused.
        r = subprocess.run([PIPELINE_RUN, "search", store, "-q", first["text"], "--remote", url, "--remote-model",
                            "minilm"], capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr.decode())
        self.assertIn("another model", r.stderr.decode())

    def test_with_the_models_tokenizer_a_long_text_is_sent_cut_as_a_local_run_cuts_it(self):
        rng = random.Random(10)
        with open(self.input, "w", encoding="utf-8") as f:
            for i in range(6):
                words = 400 if i % 2 else 5  # 400 words: past MiniLM's 256 tokens
                f.write(json.dumps({"id": i, "text": " ".join(rng.choice(WORDS) for _ in range(words))}) + "\n")
        self.proxy = FaultProxy(self.serve.port)
        self.run_remote(self.proxy.url)
        same_output(self, self.read("remote.jsonl"), self.local())
        with open(self.input, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        sent = [t for entry in self.proxy.log[1:] for t in entry[1]]
        self.assertEqual(len(sent), 6)
        for t in sent:
            # Every word is one token here; [CLS] and [SEP] take two of the 256.
            self.assertLessEqual(len(t.split()), 254)
            self.assertTrue(any(full.startswith(t) for full in texts), t[:80])
        self.assertEqual(sum(len(t.split()) == 254 for t in sent), 3)

    def test_without_a_tokenizer_the_tokens_are_estimated(self):
        make_input(self.input, 120, seed=2)
        out = self.path("remote.jsonl")
        cmd = [a for a in self.remote_cmd(out, f"http://127.0.0.1:{self.serve.port}/v1") if a not in ("--model", MINILM)]
        r = subprocess.run(cmd + ["--remote-max-inputs", "16"], capture_output=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        same_output(self, self.read("remote.jsonl"), self.local())
        self.assertIn("remote API: ", r.stderr.decode())

    def test_faults_are_retried_and_change_nothing(self):
        make_input(self.input, 200, seed=3)
        # A dropped connection is tried again once by libcurl itself when it was a reused one,
        # hence two drops in a row.
        faults = {2: "429", 4: "500", 5: "503", 7: "drop", 8: "drop", 10: "malformed", 12: "short", 14: "slow3",
                  16: "500"}
        self.proxy = FaultProxy(self.serve.port, faults, key=KEY)
        r = self.run_remote(self.proxy.url, "--remote-max-inputs", "16", "--remote-concurrency", "1",
                            "--remote-timeout", "1.5")
        same_output(self, self.read("remote.jsonl"), self.local())
        retries = [e for e in self.events() if e["type"] == "remote_retry"]
        # drop and slow3 (past --remote-timeout) got no answer; malformed and short came as 200s.
        self.assertEqual(sorted(e["status"] for e in retries), [0, 0, 200, 200, 429, 500, 500, 503])
        # The 429's Retry-After (1 s) was honoured before the next request.
        t = [entry[0] for entry in self.proxy.log]
        self.assertGreaterEqual(t[2] - t[1], 0.95)
        usage = [e for e in self.events() if e["type"] == "remote_usage"][-1]
        self.assertEqual(usage["retries"], 8)
        # libcurl's own resends on a dropped reused connection reach the proxy but are not
        # requests of the run's.
        self.assertTrue(len(self.proxy.log) - 2 <= usage["requests"] <= len(self.proxy.log),
                        (usage, len(self.proxy.log)))
        self.assertIn("remote API: ", r.stderr.decode())
        self.assertIn("(8 retries)", r.stderr.decode())
        self.assertGreaterEqual(usage["throttled_s"], 0.95)  # the 429's second
        # The key never shows: not in the output, the events, the checkpoint, the messages.
        for name in os.listdir(self.dir):
            if os.path.isfile(self.path(name)):
                self.assertNotIn(KEY.encode(), self.read(name), name)
        self.assertNotIn(KEY, r.stderr.decode())

    def test_a_poison_input_fails_only_its_record(self):
        make_input(self.input, 100, seed=4, poison=(17,))
        self.proxy = FaultProxy(self.serve.port)
        self.run_remote(self.proxy.url, "--remote-max-inputs", "16", "--on-error", "skip", "--dead-letter",
                        self.path("dead.jsonl"), expect=4)
        dead = [json.loads(line) for line in self.read("dead.jsonl").splitlines()]
        self.assertEqual([d["line"] for d in dead], [18])
        self.assertIn("this input is refused", dead[0]["message"])
        want = [line for i, line in enumerate(self.local().splitlines()) if i != 17]
        same_output(self, self.read("remote.jsonl"), b"\n".join(want) + b"\n")

    def test_a_wrong_key_fails_at_once_and_never_shows(self):
        make_input(self.input, 20, seed=5)
        self.proxy = FaultProxy(self.serve.port, key=KEY)
        r = self.run_remote(self.proxy.url, env_key="sk-wrong-key-456", expect=1)
        err = r.stderr.decode()
        self.assertIn("HTTP 401", err)
        self.assertIn("Incorrect API key", err)
        self.assertNotIn("sk-wrong-key-456", err)
        self.assertEqual(len(self.proxy.log), 1)  # the probe, and nothing more

    def test_the_rate_limits_hold(self):
        make_input(self.input, 120, seed=6)
        self.proxy = FaultProxy(self.serve.port, {3: "ratelimit-headers"})
        self.run_remote(self.proxy.url, "--remote-max-inputs", "8", "--rate-limit-rpm", "240", "--remote-concurrency",
                        "4")
        t = [entry[0] for entry in self.proxy.log]
        self.assertEqual(len(t), 1 + 15)  # the probe, then 120 / 8
        # 4 a second, a second's worth at once: any span of s seconds has at most 4 (s + 1).
        for i in range(len(t)):
            for j in range(i + 1, len(t)):
                self.assertLessEqual(j - i + 1, 4 * (t[j] - t[i] + 1) + 1, (i, j, t[j] - t[i]))
        # x-ratelimit-remaining-requests: 0 with a reset of 1 s: no request went in the second after
        # that answer.
        answered = self.proxy.log[2][3]
        self.assertFalse([x for x in t if answered < x < answered + 0.95], (answered, t))
        usage = [e for e in self.events() if e["type"] == "remote_usage"][-1]
        self.assertGreater(usage["throttled_s"], 1.0)
        same_output(self, self.read("remote.jsonl"), self.local())

    def test_killed_and_resumed_sends_nothing_twice_that_was_kept(self):
        make_input(self.input, 400, seed=7)
        self.proxy = FaultProxy(self.serve.port, {n: "slow0.15" for n in range(1, 200)})
        out = self.path("remote.jsonl")
        cmd = self.remote_cmd(out, self.proxy.url, "--remote-max-inputs", "10", "--remote-concurrency", "1",
                              "--checkpoint-every", "20", "--sort-window", "20")
        env = dict(os.environ, SLUICE_TEST_KEY=KEY)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_for_size(out, 60_000, 120, 0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        with open(out + ".checkpoint", encoding="utf-8") as f:
            done = json.load(f)["records_done"]
        self.assertGreater(done, 0)
        before = len(self.proxy.log)
        r = subprocess.run(cmd + ["--resume"], capture_output=True, timeout=600, env=env)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        same_output(self, self.read("remote.jsonl"), self.local())
        # After the resume's probe, no request holds a record the checkpoint had kept.
        with open(self.input, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        kept = set(texts[:done]) - set(texts[done:])
        for entry in self.proxy.log[before + 1:]:
            self.assertFalse(kept & set(entry[1]), "a kept record was sent again")

    def test_options_that_do_not_apply_are_refused(self):
        make_input(self.input, 5, seed=8)
        url = f"http://127.0.0.1:{self.serve.port}/v1"
        for extra, words in ((["--long-input", "chunk"], "--long-input chunk"), (["--pooling", "cls"], "--pooling"),
                             (["--batch-size", "8"], "--remote-max-inputs"), (["--precision", "bf16"], "--precision")):
            r = subprocess.run(self.remote_cmd(self.path("o.jsonl"), url, *extra), capture_output=True, timeout=120)
            self.assertEqual(r.returncode, 2, (extra, r.stderr.decode()))
            self.assertIn(words, r.stderr.decode())
        cmd = [PIPELINE_RUN, "embed", self.input, "-o", self.path("o.jsonl"), "--remote", url]
        r = subprocess.run(cmd, capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--remote-model", r.stderr.decode())
        # The key file is never another of the run's files (the output would overwrite it).
        key = self.write("key.txt", KEY.encode())
        r = subprocess.run(self.remote_cmd(key, url, "--remote-key-file", key), capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr.decode())
        with open(key, "rb") as f:
            self.assertEqual(f.read(), KEY.encode())
        # A resume may not change the endpoint (so vectors of two models are never mixed).
        out = self.path("o.jsonl")
        p = subprocess.Popen(self.remote_cmd(out, url, "--remote-max-inputs", "1", "--checkpoint-every", "1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait()
        self.proxy = FaultProxy(self.serve.port)
        with open(out + ".checkpoint", "r+", encoding="utf-8") as f:
            cp = json.load(f)
        self.assertTrue(cp["finished"])
        r = subprocess.run(self.remote_cmd(out, self.proxy.url, "--resume"), capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr.decode())
        self.assertIn(self.proxy.url, r.stderr.decode())
        # Nor the batches, nor how tokens are counted; the pace and the retries may change.
        base = self.remote_cmd(out, url, "--remote-max-inputs", "1", "--checkpoint-every", "1", "--resume")
        no_tokenizer = [a for a in base if a not in ("--model", MINILM)]
        for cmd, code in ((base + ["--remote-max-tokens", "5"], 2), (no_tokenizer, 2),
                          (base + ["--remote-concurrency", "2", "--rate-limit-rpm", "600", "--remote-retries", "1",
                                   "--remote-timeout", "30"], 0)):
            r = subprocess.run(cmd, capture_output=True, timeout=120)
            self.assertEqual(r.returncode, code, (cmd, r.stderr.decode()))
            if code == 2:
                self.assertIn("cannot resume", r.stderr.decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
