#!/usr/bin/python3
"""sluice benchmark: pipeline-run end to end against the raw model forward on the same batches.

    /usr/bin/python3 tools/bench/bench.py --model build/tests/test-models/minilm --records 2000
    /usr/bin/python3 tools/bench/bench.py --rss --model build/tests/test-models/tiny --sizes 20000 400000

The corpus is built from real source files on a Debian machine (C headers under /usr/include,
Python modules under /usr/lib/python3*): heavy-tailed lengths, not synthetic sentences. Both
runs see the same records, the same batch size and the same thread count; the ratio is taken
from one invocation. Prints a markdown table. Standard library only.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")


def source_chunks():
    """Yields (path, text) chunks of real source files, in a fixed order."""
    files = sorted(glob.glob("/usr/include/**/*.h", recursive=True))
    files += sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                src = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        # Blocks separated by blank lines, as a code chunker would cut them.
        block = []
        for line in src.split("\n"):
            if line.strip() == "" and block:
                text = "\n".join(block)
                block = []
                if len(text) >= 20:
                    yield path, text[:8000]
            elif line.strip():
                block.append(line)


def short_sentences():
    """Yields (source, text): short prose-like records of 5 to 20 words, in a fixed order."""
    words = ("river delta stream memory record vector model batch token queue window checkpoint "
             "order byte field engine thread loop event source sink").split()
    i = 0
    while True:
        k = 5 + i % 16
        yield "short", " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(k)) + f" {i}."
        i += 1


def make_corpus(path, records, kind="code"):
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        while n < records:
            for src, text in (source_chunks() if kind == "code" else short_sentences()):
                out.write(json.dumps({"id": n, "path": src, "text": text}) + "\n")
                n += 1
                if n >= records:
                    break
    return os.path.getsize(path)


def run_timed(cmd):
    """Runs cmd; returns (wall seconds, peak RSS in MiB of that child, completed process)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.monotonic() - t0
    # wait4 already reaped it inside communicate(); RUSAGE_CHILDREN keeps the max over children,
    # so each measurement runs in its own wrapper process (see peak_rss()).
    if p.returncode not in (0, 4):
        sys.stderr.write(err.decode(errors="replace"))
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    return wall, out, err


def peak_rss(cmd):
    """Peak RSS (MiB) of one command, measured in a fresh wrapper so earlier runs don't count."""
    code = ("import resource,subprocess,sys;"
            "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
    out = subprocess.run([sys.executable, "-c", code] + cmd, capture_output=True, check=True).stdout.split()
    if int(out[1]) not in (0, 4):
        raise SystemExit(f"command failed ({out[1]}): {' '.join(cmd)}")
    return int(out[0]) / 1024.0


def pipeline_cmd(args, corpus, out, events=None):
    cmd = [os.path.join(BUILD, "apps/pipeline-run/pipeline-run"), "embed", corpus, "-o", out,
           "--model", args.model, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--progress", "never", "--no-checkpoint"]
    if events:
        cmd += ["--events", events]
    return cmd


def bench_throughput(args, tmp):
    corpus = os.path.join(tmp, "corpus.jsonl")
    size = make_corpus(corpus, args.records)
    raw_cmd = [os.path.join(BUILD, "tools/bench/raw-forward"), args.model, corpus,
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    _, raw_out, _ = run_timed(raw_cmd)
    raw = json.loads(raw_out.decode().strip().splitlines()[-1])
    events = os.path.join(tmp, "events.jsonl")
    wall, _, _ = run_timed(pipeline_cmd(args, corpus, os.path.join(tmp, "out.jsonl"), events))
    summary = None
    with open(events) as f:
        for line in f:
            e = json.loads(line)
            if e["type"] == "pipeline_finished":
                summary = e["summary"]
    docs_s = summary["completed"] / wall
    tokens_s = summary["tokens"] / wall
    print(f"corpus: {args.records} records from real source files, {size / 1e6:.1f} MB, "
          f"model {args.model}, batch size {args.batch_size}, threads {args.threads}\n")
    print("| measure | raw model forward | pipeline-run end to end | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| docs/s | {raw['docs_per_s']:.1f} | {docs_s:.1f} | {docs_s / raw['docs_per_s']:.3f} |")
    print(f"| tokens/s (real) | {raw['tokens_per_s']:.0f} | {tokens_s:.0f} | {tokens_s / raw['tokens_per_s']:.3f} |")
    print(f"| seconds | {raw['seconds']:.2f} (forward only) | {wall:.2f} (whole process: load, read, "
          f"tokenise, embed, write) | |")
    print(f"| padding efficiency | {raw['tokens'] / raw['padded_tokens']:.3f} | same batches | |")
    print(f"| records, tokens | {raw['records']}, {raw['tokens']} | {summary['completed']}, {summary['tokens']} | |")


def bench_rss(args, tmp):
    print(f"model {args.model}, corpus {args.corpus}, batch size {args.batch_size}, threads {args.threads}\n")
    print("| records | input MB | peak RSS MiB | seconds |")
    print("| --- | --- | --- | --- |")
    rows = []
    for n in args.sizes:
        corpus = os.path.join(tmp, f"corpus-{n}.jsonl")
        size = make_corpus(corpus, n, args.corpus)
        out = os.path.join(tmp, f"out-{n}.jsonl")
        t0 = time.monotonic()
        rss = peak_rss(pipeline_cmd(args, corpus, out))
        wall = time.monotonic() - t0
        rows.append((n, rss))
        print(f"| {n} | {size / 1e6:.1f} | {rss:.1f} | {wall:.1f} |")
        os.remove(out)
        os.remove(corpus)
    if len(rows) >= 2:
        print(f"\npeak RSS difference, {rows[-1][0]} vs {rows[0][0]} records: {rows[-1][1] - rows[0][1]:+.1f} MiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rss", action="store_true", help="measure peak RSS at --sizes instead")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 400000])
    ap.add_argument("--corpus", choices=["code", "short"], default="code",
                    help="code: chunks of real source files; short: sentences of 5-20 words")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        if args.rss:
            bench_rss(args, tmp)
        else:
            bench_throughput(args, tmp)


if __name__ == "__main__":
    main()
