#!/usr/bin/python3
"""Writes texts.jsonl, the reference text set: 1200 records {"id": N, "text": "..."}.

    /usr/bin/python3 tests/data/reference/make_texts.py [--out tests/data/reference/texts.jsonl]

Deterministic (only random.Random(seed).random() is used, whose sequence Python guarantees
across versions). The mix: English prose of 1 to ~300 words (about a quarter long enough to
pass 256 tokens, so truncation is exercised), source code, JSON, and text in other scripts
(accents, combining marks, Cyrillic, Greek, CJK, Arabic, Devanagari, emoji), odd whitespace,
punctuation runs, numbers and literal special tokens like [SEP].
"""

import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

COMMON = """the of and to in is was for on that with as by at from this be are it an or which his had
not but have they were their has been one all would there more when will who also can its her
into some other time two first new may only these about after over such years then could most
people water river city music language system world state school group family house small large
early often under between during several while part known later since where through each both
government history however number including public series found area used second three work
life national called well film game team season around long high until development united
following university war being without north south west east within based although city light
morning evening garden window kitchen bridge mountain forest island village station market
library museum hospital engine signal pattern channel stream batch token model vector memory
thread queue buffer record field value error result output input file path folder network
quickly slowly carefully quietly happily suddenly finally usually rarely nearly almost
red green blue yellow black white bright dark warm cold heavy empty full quiet loud simple
""".split()

RARE = """antidisestablishmentarianism photosynthesis thermodynamics electroencephalography
incomprehensibilities otorhinolaryngologist pseudopseudohypoparathyroidism floccinaucinihilipilification
spectrophotometer immunohistochemistry deoxyribonucleotide cryptocurrency hyperparameterization
microarchitectural counterintuitively interdisciplinarity bioluminescence xylophonist quixotically
zygomorphic kaleidoscopically juxtaposition onomatopoeia serendipitous sesquipedalian ultramicroscopic
tetrahydrocannabinol phenylketonuria supercalifragilisticexpialidocious transubstantiation
""".split()

NAMES = "Alice Bob Carol Dave Eve Mallory Trent Peggy Victor Walter Zoë Łukasz Søren José Ólafur Małgorzata".split()

FOREIGN = [
    "Le café était fermé, alors nous sommes allés au marché près de la gare.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein, sagte der Pilot.",
    "El niño comió una manzana y después jugó en el jardín con su perro.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλικο σκύλο.",
    "我们今天在图书馆学习了机器学习和自然语言处理。",
    "東京の天気は明日晴れるでしょう。カタカナとひらがなも使います。",
    "오늘 날씨가 정말 좋네요. 공원에 산책하러 갈까요?",
    "اللغة العربية تكتب من اليمين إلى اليسار.",
    "हिन्दी भारत की सबसे अधिक बोली जाने वाली भाषा है।",
    "Emoji: 😀 🚀 🎉 👩‍💻 🇺🇸 — and a thumbs up 👍🏽.",
    "Combining marks: e\u0301 a\u0308 o\u0302 n\u0303, and precomposed é ä ô ñ.",
    "Ligatures ﬁ ﬂ, full-width ＡＢＣ１２３, and super²script.",
    "Tabs\tand\tnew\nlines\r\nand non\u00a0breaking\u2003spaces.",
    "Zero\u200bwidth\u200bspaces and a soft\u00adhyphen.",
    "Mixed: naïve façade coöperate résumé Ångström Dvořák.",
]

CODE = [
    "def {f}(x, y):\n    return x * y + {n}\n",
    "for (int i = 0; i < {n}; ++i) {{\n  {f}(i);\n}}",
    "const {f} = async (items) => items.filter((x) => x.{g} > {n}).map(String);",
    "SELECT {g}, COUNT(*) FROM {f} WHERE score >= {n} GROUP BY {g} ORDER BY 2 DESC;",
    "#include <vector>\nstd::vector<float> {f}(std::size_t n) {{ return std::vector<float>(n, {n}.5f); }}",
    '{{"{g}": {n}, "{f}": [1, 2, 3], "nested": {{"ok": true, "value": null}}}}',
    "git commit -m \"{f}: fix {g} when n > {n}\" && git push origin main",
    "<div class=\"{g}\"><span id=\"{f}\">{n}</span></div>",
    "fn {f}(v: &[u32]) -> u32 {{ v.iter().map(|x| x * {n}).sum() }}",
    "$ curl -s https://example.com/api/{g}?limit={n} | jq '.{f}'",
]

IDENT = "parse_record embed_batch tokenize load_model flush_queue compute_mean normalize_rows read_header".split()
FIELDS = "score name tokens offset length batch_size hidden".split()


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def u(self):
        return self.rng.random()

    def pick(self, items):
        return items[int(self.u() * len(items))]

    def between(self, lo, hi):
        return lo + int(self.u() * (hi - lo + 1))

    def sentence(self, words, rare_rate):
        out = []
        for _ in range(words):
            r = self.u()
            if r < rare_rate:
                out.append(self.pick(RARE))
            elif r < rare_rate + 0.03:
                out.append(self.pick(NAMES))
            elif r < rare_rate + 0.06:
                out.append(str(self.between(0, 100000)))
            else:
                out.append(self.pick(COMMON))
        text = " ".join(out)
        return text[:1].upper() + text[1:] + self.pick([".", ".", ".", "!", "?", ";", "..."])

    def prose(self, words, rare_rate):
        parts, left = [], words
        while left > 0:
            n = min(left, self.between(4, 18))
            parts.append(self.sentence(n, rare_rate))
            left -= n
        return " ".join(parts)

    def code(self):
        lines = []
        for _ in range(self.between(1, 6)):
            lines.append(self.pick(CODE).format(f=self.pick(IDENT), g=self.pick(FIELDS), n=self.between(0, 999)))
        return "\n".join(lines)

    def record(self):
        r = self.u()
        if r < 0.30:
            return self.prose(self.between(1, 20), 0.02)
        if r < 0.55:
            return self.prose(self.between(20, 120), 0.04)
        if r < 0.75:
            # Long: 150-300 words with rare words, most pass 256 word pieces.
            return self.prose(self.between(150, 300), 0.15)
        if r < 0.85:
            return self.code()
        if r < 0.95:
            k = self.between(1, 4)
            return " ".join(self.pick(FOREIGN) for _ in range(k))
        # Odd ones.
        return self.pick([
            "a", "I", "?", "42", "3.14159", "!!!???...", "   leading and trailing   ",
            "UPPER CASE TEXT SHOULD BE LOWERED", "[CLS] literal special tokens [SEP] in the text [MASK]",
            "[PAD] [UNK] unknown ✓ ☃ ♞ symbols", "x" * 150, "ab" * 60 + " " + "cd" * 60,
            "e-mail: someone@example.com, url: https://example.org/a/b?c=d#e",
            "1,234,567.89 and 98.6°F and 100% and $5 and €7 and ¥9",
            "don't won't can't it's O'Reilly rock'n'roll",
        ]) + ("" if self.u() < 0.5 else " " + self.prose(self.between(1, 10), 0.0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "texts.jsonl"))
    ap.add_argument("--count", type=int, default=1200)
    args = ap.parse_args()
    gen = Gen(20240601)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for i in range(args.count):
            f.write(json.dumps({"id": i, "text": gen.record()}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
