#!/usr/bin/python3
"""Writes lib/src/tokenizer/unicode_exceptions.inc: the code points where the Hugging Face
tokenizers' character classes differ from utf8proc's.

    /usr/bin/python3 tools/reference/make_unicode_exceptions.py [--check]

Hugging Face `tokenizers` takes general categories (control, punctuation, nonspacing mark) from
the `unicode_categories` crate, whose tables are Unicode 8.0, lowercasing from Rust's std
(a newer Unicode than utf8proc's), NFD, NFKD and combining marks (StripAccents) from
`unicode-normalization-alignments` (an older Unicode), \w from the `regex` crate and ByteLevel's
\p{L} and \p{N} from Oniguruma (Unicode 16). The byte-level classes and NFKD come from
tests/data/tokenizer/unicode_forms.tsv (unicode_forms_reference.mjs). sluice uses
utf8proc for all of these, plus this short list of exceptions. The list is computed from
tests/data/tokenizer/unicode_reference.tsv (written by unicode_reference.mjs from the Hugging Face
tokenizer itself) and the utf8proc library on this machine (through ctypes), predicting what
sluice does without exceptions exactly as lib/src/tokenizer/unicode.cpp does. Standard library
only. --check only verifies that the committed file is current.
"""

import argparse
import ctypes
import ctypes.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TSV = os.path.join(ROOT, "tests/data/tokenizer/unicode_reference.tsv")
FORMS = os.path.join(ROOT, "tests/data/tokenizer/unicode_forms.tsv")
OUT = os.path.join(ROOT, "lib/src/tokenizer/unicode_exceptions.inc")

lib = ctypes.CDLL(ctypes.util.find_library("utf8proc") or "libutf8proc.so.2")
lib.utf8proc_category.restype = ctypes.c_int
lib.utf8proc_category.argtypes = [ctypes.c_int32]
lib.utf8proc_tolower.restype = ctypes.c_int32
lib.utf8proc_tolower.argtypes = [ctypes.c_int32]
lib.utf8proc_decompose_char.restype = ctypes.c_ssize_t
lib.utf8proc_decompose_char.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32), ctypes.c_ssize_t,
                                        ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
lib.utf8proc_version.restype = ctypes.c_char_p
lib.utf8proc_unicode_version.restype = ctypes.c_char_p
DECOMPOSE = 1 << 4
COMPAT = 1 << 2
CC, CF, CO, MN, ZS, ZL, ZP = 26, 27, 29, 6, 23, 24, 25
PUNCT = range(12, 19)


def is_whitespace(c):  # Rust's char::is_whitespace (White_Space), as unicode.cpp
    return c == 0x20 or 0x09 <= c <= 0x0D or c == 0x85 or (c >= 0x80 and lib.utf8proc_category(c) in (ZS, ZL, ZP))


def ascii_punct(c):
    return 33 <= c <= 47 or 58 <= c <= 64 or 91 <= c <= 96 or 123 <= c <= 126


def u_control(c):
    return lib.utf8proc_category(c) in (CC, CF, CO)


def u_punct(c):
    return ascii_punct(c) or lib.utf8proc_category(c) in PUNCT


def u_mn(c):
    return lib.utf8proc_category(c) == MN


def u_mark(c):
    return lib.utf8proc_category(c) in (6, 7, 8)


def u_word(c):  # regex \w as unicode.cpp approximates it: L*, M*, Nd, Nl, Pc, ZWNJ, ZWJ
    return 1 <= lib.utf8proc_category(c) <= 9 or lib.utf8proc_category(c) in (10, 12) or c in (0x200C, 0x200D)


def u_letter(c):  # regex \p{L} as unicode.cpp takes it: L*
    return 1 <= lib.utf8proc_category(c) <= 5


def u_number(c):  # regex \p{N}: N*
    return 9 <= lib.utf8proc_category(c) <= 11


def u_nfkd(c, no_decomposition):
    """NFKD of one code point as unicode.cpp computes it (no reordering needed for one)."""
    if c < 0xA0 or no_decomposition:
        return [c]
    buf = (ctypes.c_int32 * 32)()
    last = ctypes.c_int(0)
    n = lib.utf8proc_decompose_char(c, buf, 32, DECOMPOSE | COMPAT, ctypes.byref(last))
    return [c] if n <= 0 else list(buf[:n])


def read_forms():
    """({cp: 'L'|'N'|'S'|'O'}, {form: {cp: output}}) from unicode_forms.tsv."""
    classes, forms = {}, {"NFC": {}, "NFKC": {}, "NFKD": {}, "nonstarter": set()}
    with open(FORMS, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            kind, key, value = line.split()
            if kind == "class":
                first, _, last = key.partition("..")
                for cp in range(int(first, 16), int(last, 16) + 1):
                    classes[cp] = value
            elif kind == "nonstarter":
                first, _, last = key.partition("..")
                forms["nonstarter"].update(range(int(first, 16), int(last, 16) + 1))
            else:
                forms[kind][int(key, 16)] = value
    return classes, forms


lib.utf8proc_get_property.restype = ctypes.POINTER(ctypes.c_int16 * 3)
lib.utf8proc_get_property.argtypes = [ctypes.c_int32]


def u_ccc(c):  # utf8proc_property_t starts with int16 category, combining_class
    return lib.utf8proc_get_property(c).contents[1]


def u_lower(c):
    return lib.utf8proc_tolower(c)


def u_nfd(c):
    buf = (ctypes.c_int32 * 32)()
    last = ctypes.c_int(0)
    n = lib.utf8proc_decompose_char(c, buf, 32, DECOMPOSE, ctypes.byref(last))
    return [c] if n <= 0 else list(buf[:n])


def read_reference():
    """{cp: (clean, chinese, strip, lower, pretok, mark, nfd, word)} for every code point that is not the identity."""
    ref = {}
    with open(TSV, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            key, *fields = line.rstrip("\n").split("\t")
            first, _, last = key.partition("..")
            for cp in range(int(first, 16), int(last or first, 16) + 1):
                ref[cp] = tuple(fields)
    return ref


def field(c, cps):
    if cps == [c]:
        return "="
    return ",".join(f"{x:x}" for x in cps) if cps else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    ref = read_reference()
    classes, forms = read_forms()
    identity = ("=", "0", "=", "=", "1", "=", "=", "1")
    # Pass 1: Hugging Face's truth for the properties unicode.cpp takes from utf8proc.
    hf = {}
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        clean, _, strip, lower, pretok, mark, nfd, word = ref.get(c, identity)
        # clean_text drops NUL, U+FFFD and controls, keeps \t \n \r whatever their category.
        hf_control = u_control(c) if c in (0, 9, 10, 13, 0xFFFD) else clean == "-"
        hf_mn = strip == "-"
        hf_lower = c if lower == "=" else (int(lower, 16) if "," not in lower else None)
        if word == "2" and not is_whitespace(c):
            sys.exit(f"U+{c:04X}: \\s in Hugging Face but not White_Space here")
        if (classes[c] == "S") != is_whitespace(c):
            sys.exit(f"U+{c:04X}: ByteLevel \\s and White_Space disagree")
        hf[c] = dict(control=hf_control, punct=pretok == "3", mn=hf_mn, lower=hf_lower, strip=strip,
                     mark=mark == "-", nfd=nfd, word=word == "1", letter=classes[c] == "L",
                     number=classes[c] == "N", nfkd=forms["NFKD"].get(c, "="),
                     starter=c not in forms["nonstarter"])
    # Pass 2: where utf8proc's answer differs, an exception with Hugging Face's values.
    exceptions = []  # (cp, control, punct, mn, mark, word, no_decomposition, no_compat, letter, number, lower_delta)
    for c, h in hf.items():
        ours_nfd = field(c, u_nfd(c))
        no_decomp = h["nfd"] != ours_nfd
        if no_decomp and h["nfd"] != "=":
            sys.exit(f"U+{c:04X}: NFD gives {h['nfd']}, utf8proc {ours_nfd}: not an exception we model")
        decomposition = [c] if no_decomp else u_nfd(c)
        ours_strip = field(c, [x for x in decomposition if not hf[x]["mn"]])
        if ours_strip != h["strip"]:
            sys.exit(f"U+{c:04X}: strip_accents gives {h['strip']}, predicted {ours_strip}")
        lower = h["lower"]
        if lower is None and c != 0x130:
            sys.exit(f"U+{c:04X}: multi-character lowercase other than U+0130")
        lower_differs = lower is not None and lower != u_lower(c)
        ours_nfkd = field(c, u_nfkd(c, no_decomp))
        no_compat = h["nfkd"] != ours_nfkd
        if no_compat and h["nfkd"] != "=":
            sys.exit(f"U+{c:04X}: NFKD gives {h['nfkd']}, utf8proc {ours_nfkd}: not an exception we model")
        # The probe only sees code points that NFD leaves alone; the others are decomposed first.
        probed = h["nfd"] == "="
        if probed and not h["starter"] and u_ccc(c) == 0:
            sys.exit(f"U+{c:04X}: a non-starter for Hugging Face but not for utf8proc")
        starter = probed and h["starter"] and u_ccc(c) != 0
        if (h["control"] != u_control(c) or h["punct"] != u_punct(c) or h["mn"] != u_mn(c) or
                h["mark"] != u_mark(c) or h["word"] != u_word(c) or no_decomp or lower_differs or no_compat or
                h["letter"] != u_letter(c) or h["number"] != u_number(c) or starter):
            if lower is None:
                sys.exit(f"U+{c:04X}: an exception with a multi-character lowercase")
            exceptions.append((c, h["control"], h["punct"], h["mn"], h["mark"], h["word"], no_decomp, no_compat,
                               h["letter"], h["number"], starter, lower - c))
    ranges = []
    for c, *props in exceptions:
        if ranges and ranges[-1][1] == c - 1 and ranges[-1][2] == props:
            ranges[-1][1] = c
        else:
            ranges.append([c, c, props])
    version = lib.utf8proc_version().decode()
    unicode_version = lib.utf8proc_unicode_version().decode()
    lines = [
        "// Generated by tools/reference/make_unicode_exceptions.py: do not edit.",
        f"// Code points where Hugging Face tokenizers' character classes differ from utf8proc {version}",
        f"// (Unicode {unicode_version}): {len(exceptions)} code points in {len(ranges)} ranges.",
        "// {first, last, control, punctuation, nonspacing mark, mark, word, no decomposition,",
        "//  no compatibility decomposition, letter, number, starter (combining class 0), lowercase delta}",
    ]
    for first, last, (control, punct, mn, mark, word, no_decomp, no_compat, letter, number, starter, delta) in ranges:
        lines.append(f"{{0x{first:X}, 0x{last:X}, {int(control)}, {int(punct)}, {int(mn)}, {int(mark)}, {int(word)}, "
                     f"{int(no_decomp)}, {int(no_compat)}, {int(letter)}, {int(number)}, {int(starter)}, {delta}}},")
    text = "\n".join(lines) + "\n"
    if args.check:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{OUT} is out of date: run {sys.argv[0]}")
        print(f"{OUT} is current")
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{len(exceptions)} code points in {len(ranges)} ranges -> {OUT}")


if __name__ == "__main__":
    main()
