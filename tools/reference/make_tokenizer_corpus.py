#!/usr/bin/python3
"""Builds the tokenizer parity corpus: tests/data/tokenizer/corpus.jsonl ({"text": ...} lines).

    /usr/bin/python3 tools/reference/make_tokenizer_corpus.py [--out PATH] [--count 6000]

Deterministic (fixed seed, sorted file lists). Mixes prose in many scripts, real source code
lines from this Debian machine (/usr/include, /usr/lib/python3*), and hostile text: accents
and combining marks, emoji sequences, control and zero-width characters, Unicode spaces, very
long words, literal special-token text, full-width forms and ligatures.
"""

import argparse
import glob
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map text to vectors; similar meanings land close together.",
    "Don't stop—keep going! It's 3:45 p.m., isn't it?",
    "Café naïve façade jalapeño résumé coöperate Zoë Brontë.",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein. Straße, Maß, Fußgänger.",
    "Tiếng Việt có nhiều dấu: ă â đ ê ô ơ ư, và thanh điệu.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "أبجد هوز حطي كلمن سعفص قرشت ثخذ ضظغ",
    "עברית היא שפה שמית מקבוצת השפות הכנעניות.",
    "हिन्दी भारत की एक प्रमुख भाषा है।",
    "ภาษาไทยเป็นภาษาที่มีวรรณยุกต์",
    "中文信息处理是自然语言处理的一个分支。",
    "日本語の文章には漢字、ひらがな、カタカナが混在します。",
    "한국어는 한글로 표기합니다. 안녕하세요!",
    "İstanbul ıslak İzmir ılık; TÜRKÇE büyük harf İ ve küçük ı.",
    "ǅemal ǈubljana ǋ ß ẞ ﬁ ﬂ ﬀ ﬃ Ⅻ ½ ² ℃ ™",
    "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ、ＡＢＣ１２３！",
    "Emoji: 😀 😂 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 🇯🇵 ❤️ 🥰 🫠",
    "Math: ∑ᵢ xᵢ² ≤ ∞, ∀x ∈ ℝ, α+β=γ, √2 ≈ 1.414",
    "URL https://example.com/path?q=1&x=y#frag and e-mail someone@example.org",
    "Prices: $5.99, €4,50, £3, ¥500, ₹100, 50% off!!!",
    "Numbers 1234567890 3.14159 -42 1e-10 0x1F 1,000,000",
    "Tabs\tand\nnewlines\r\nand\u000bvertical\u000cfeed",
    "Zero\u200bwidth\u200cjoiner\u200dspace\ufeffbom\u2060word",
    "Non\u00a0breaking\u2002en\u2003em\u2009thin\u3000ideographic\u202fspace",
    "Control \u0001\u0002\u0003\u007f\u0085 chars",
    "Combining: e\u0301 a\u0300 o\u0308 n\u0303 c\u0327 A\u030a \u1e9b\u0323",
    "[CLS] literal [SEP] tokens [MASK] and [PAD] x [UNK] y",
    "[cls] lower [sep] and [CLS][SEP][MASK]",
    "Private use \ue000\uf8ff and replacement \ufffd char",
    "Surrogate-ish 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕋𝕖𝕩𝕥 𝒮𝒸𝓇𝒾𝓅𝓉 𐍈 𓀀",
    "CJK ext: 𠀀 𪜀 𫝀 𫠠 𬺰 𮯠 豈 兀",
    "Hangul jamo ᄀᄁᄂ and compat ㄱㄴㄷ and syllables 가각간",
    "Punctuation: «quotes» „low“ ‘single’ — – … · • ¿¡ 。、「」『』【】",
]

LONG_WORDS = [
    "supercalifragilisticexpialidocious" * 4,
    "a" * 101,
    "b" * 100,
    "x" * 99,
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "é" * 120,
]

FRAGMENTS = [
    "", " ", "  ", "\t", "\n", ".", ",", "!", "?", "-", "—", "_", "'", "\"", "(", ")", "[", "]", "{", "}",
    "😀", "👍🏽", "👨‍👩‍👧", "🇩🇪", "\u200b", "\u00a0", "\u0301", "\u0000", "\u0007", "\u00ad", "\u2028",
    "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "##ing", "##", "İ", "ı", "ß", "ﬁ", "Å", "Ω", "µ",
    "中", "文", "の", "한", "ह", "ا", "1", "42", "3.5", "$", "%", "&", "#", "@", "^", "~", "`", "|", "<", ">",
]


def code_lines(limit):
    files = sorted(glob.glob("/usr/include/*.h"))[:80] + sorted(glob.glob("/usr/lib/python3*/json/*.py"))
    files += sorted(glob.glob("/usr/lib/python3*/asyncio/*.py"))[:10]
    out = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if line.strip():
                        out.append(line)
        except (UnicodeDecodeError, OSError):
            continue
    rng = random.Random(7)
    rng.shuffle(out)
    return out[:limit]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/tokenizer/corpus.jsonl"))
    ap.add_argument("--count", type=int, default=6000)
    args = ap.parse_args()
    rng = random.Random(12345)
    texts = []
    texts += PROSE
    texts += LONG_WORDS
    texts += FRAGMENTS
    # Whole code lines and multi-line blocks.
    code = code_lines(2500)
    texts += code[:1500]
    for i in range(0, 1000, 4):
        texts.append("\n".join(code[1500 + i:1504 + i]))
    # Random mixtures of everything above.
    pool = PROSE + LONG_WORDS + FRAGMENTS + code[:300]
    while len(texts) < args.count:
        k = rng.randint(1, 6)
        parts = [rng.choice(pool) for _ in range(k)]
        if rng.random() < 0.3:
            # Cut inside a string at a code point boundary: words split in odd places.
            p = rng.choice(PROSE)
            a = rng.randint(0, len(p))
            parts.append(p[a:a + rng.randint(1, 30)])
        sep = rng.choice([" ", "", "\n", "\t", " \u00a0", "\u3000", "  "])
        text = sep.join(parts)
        if rng.random() < 0.2:
            text = text.upper()
        texts.append(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for t in texts[:args.count]:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    print(f"{min(len(texts), args.count)} strings -> {args.out}")


if __name__ == "__main__":
    main()
