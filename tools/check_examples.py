#!/usr/bin/env python3
"""Compiles every C++ example in the docs and the public headers.

Examples are the ```cpp blocks of README.md and docs/*.md, and the \\code ... \\endcode blocks
of lib/include/sluice/*.hpp. Each becomes the body of a function in a translation unit that
includes every public header, compiled with -Wall -Wextra -Werror -D_GLIBCXX_ASSERTIONS
(syntax and types only: nothing is linked or run). Conventions an example may rely on:

- `{ ... }` stands for the reader's own code and compiles as an empty block;
- names an example uses without declaring them come from the context below (an `options`,
  a `pipeline`, a `loop`, a sink class `MySink`, subscriber functions `on_event` and
  `write_event_line`, a file descriptor `fd`);
- a block whose every line is a declaration of sluice's API (`<!-- example: declarations -->`
  on the line before the fence) is compiled as redeclarations inside namespace sluice, so a
  wrong return type or parameter type fails;
- header examples run with `using namespace sluice;`, as code next to the header would.

    tools/check_examples.py --cxx c++ --include lib/include [--root .]
"""

import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

CONTEXT = r"""
#include <sluice/error.hpp>
#include <sluice/event_stream.hpp>
#include <sluice/events.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/model.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record.hpp>
#include <sluice/record_stream.hpp>
#include <sluice/safetensors.hpp>
#include <sluice/sink.hpp>
#include <sluice/source.hpp>
#include <sluice/store.hpp>
#include <sluice/tokenizer.hpp>
#include <sluice/validate.hpp>
#include <sluice/vector_format.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <unistd.h>
#include <uv.h>

namespace example_context {
struct MySink : sluice::Sink {
  void write(std::span<const sluice::EmbeddedRecord>) override {}
};
void on_event(const sluice::PipelineEvent&) {}
void write_event_line(const sluice::PipelineEvent&) {}
sluice::PipelineOptions options, options_a;
sluice::Pipeline* pipeline_ptr = nullptr;
sluice::Pipeline& pipeline = *pipeline_ptr;
uv_loop_t* loop = nullptr;
int fd = 1;
}  // namespace example_context
"""


def markdown_examples(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```cpp", "```c++"):
            declarations = i > 0 and lines[i - 1].strip() == "<!-- example: declarations -->"
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            yield start, "\n".join(lines[start:j]), declarations, False
            i = j
        i += 1


def header_examples(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == r"/// \code":
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != r"/// \endcode":
                j += 1
            body = "\n".join(re.sub(r"^\s*///", "", l) for l in lines[start:j])
            yield start, body, False, True
            i = j
        i += 1


def translation_unit(examples):
    out = [CONTEXT]
    for n, (path, line, body, declarations, in_header) in enumerate(examples):
        body = body.replace("{ ... }", "{}")
        out.append(f'#line {line} "{path}"')  # the next line is the one before the example
        if declarations:
            out.append("namespace sluice {\n" + body + "\n}")
        else:
            using = "using namespace sluice; " if in_header else ""
            out.append(f"[[maybe_unused]] static void example_{n}() {{ using namespace example_context; {using}\n{body}\n}}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cxx", required=True, help="the C++ compiler command (may hold several words)")
    ap.add_argument("--include", action="append", default=[], help="include folder (repeatable)")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = ap.parse_args()
    root = os.path.abspath(args.root)

    sources = [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    headers = sorted(glob.glob(os.path.join(root, "lib", "include", "sluice", "*.hpp")))
    examples = []
    for path in sources:
        examples += [(os.path.relpath(path, root), *e) for e in markdown_examples(path)]
    for path in headers:
        examples += [(os.path.relpath(path, root), *e) for e in header_examples(path)]
    if not examples:
        print("no examples found", file=sys.stderr)
        return 1

    uv = subprocess.run(["pkg-config", "--cflags", "libuv"], capture_output=True, text=True).stdout.split()
    flags = ["-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
             "-Wno-unused-variable",  # `{ ... }` leaves a loop's variable unused
             "-D_GLIBCXX_ASSERTIONS", *uv] + [f"-I{os.path.abspath(d)}" for d in args.include]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="sluice-examples-") as tmp:
        # One translation unit per example, so one example's error never hides another's.
        for n, example in enumerate(examples):
            src = os.path.join(tmp, f"example_{n}.cpp")
            with open(src, "w", encoding="utf-8") as f:
                f.write(translation_unit([example]))
            r = subprocess.run(shlex.split(args.cxx) + flags + [src], capture_output=True, text=True, cwd=root)
            where = f"{example[0]}:{example[1]}"
            if r.returncode != 0:
                failed += 1
                print(f"FAIL {where}\n{r.stderr}")
            else:
                print(f"ok   {where}")
    print(f"{len(examples) - failed} of {len(examples)} examples compile")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
