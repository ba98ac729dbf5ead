#!/usr/bin/python3
"""Builds the tokenizer parity corpus: tests/data/tokenizer/corpus.jsonl ({"text": ...} lines).

    /usr/bin/python3 tools/reference/make_tokenizer_corpus.py [--out PATH] [--count 8000]

Deterministic (fixed seeds, sorted file lists). Mixes prose in many scripts, real source code
lines in a dozen languages from this Debian machine (see CODE_GLOBS; another machine has other
files, so the committed corpus is the reference), and hostile text: accents and combining marks,
emoji sequences, control and zero-width characters, Unicode spaces, very long words, literal
special-token text, full-width forms, ligatures, characters from every plane (assigned or not)
and characters that tell Unicode versions apart.
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
    "The committee's 2023 report (pp. 14–17) found no evidence; see also §4.2.",
    "She said: \"I'll be there at 10:30 a.m. — don't wait!\"",
    "L'été dernier, nous sommes allés à Montréal ; c'était très agréable, n'est-ce pas ?",
    "Où est la bibliothèque ? Elle se trouve près de l'hôpital, à côté du théâtre.",
    "Die Prüfung war schwierig, aber die Schüler haben sich gut vorbereitet. Grüße aus Köln!",
    "Ärger, Öl und Übermut: Änderungen vorbehalten. GROSSSCHREIBUNG und Großschreibung.",
    "Người Việt Nam rất hiếu khách. Phở bò là món ăn nổi tiếng nhất.",
    "Hôm nay trời đẹp quá, chúng ta đi dạo công viên nhé!",
    "Москва — столица России. Ёжик в тумане. ПРИВЕТ, МИР!",
    "Αθήνα είναι η πρωτεύουσα της Ελλάδας. ΟΔΥΣΣΕΥΣ, ὁ πολύτροπος ἀνήρ. Σίσυφος ΣΊΣΥΦΟΣ",
    "اللغة العربية جميلة جداً، وهي لغة القرآن الكريم. مَرْحَبًا بِكُمْ!",
    "שלום עולם! בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם.",
    "नमस्ते दुनिया! मैं हिंदी सीख रहा हूँ। क्या आप मेरी मदद करेंगे?",
    "สวัสดีครับ วันนี้อากาศดีมาก เราไปเที่ยวทะเลกันเถอะ",
    "我们今天去北京大学参观，然后去天安门广场。你好吗？我很好，谢谢！",
    "東京スカイツリーは世界一高いタワーです。ありがとうございました！",
    "서울은 대한민국의 수도입니다. 감사합니다! 오늘 날씨가 좋네요.",
    "Türkçe: Iğdır'da ılık bir gün; İÇİNDE ışık var. DİYARBAKIR, ılgın.",
    "Español: ¿Dónde está el niño? ¡Qué día tan bonito! Mañana será otro día.",
    "Português: Não há coração que não se alegre com a canção. Ação, atenção!",
    "Polski: Zażółć gęślą jaźń. Łódź, Kraków, Gdańsk.",
    "Čeština: Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Dansk/Norsk: Blåbærsyltetøy og rødgrøt med fløte. Ærø, Øresund, Åland.",
    "Íslenska: Þetta er ðæmi um íslensku. Ísland, Þingvellir.",
    "Română: Știință și țară; ȘTIINȚĂ ȘI ȚARĂ. Ş ş Ţ ţ (cedilla) vs Ș ș Ț ț.",
    "Georgian: ქართული ენა. Mtavruli: ᲥᲐᲠᲗᲣᲚᲘ. Armenian: Հայերեն ԼԵԶՈՒ.",
    "Cherokee: ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ; lowercase ꮳꮃꭹ. Deseret: 𐐔𐐯𐑅𐐨𐑉𐐯𐐻.",
    "Amharic: ሰላም ዓለም። Tamil: வணக்கம் உலகம். Bengali: ওহে বিশ্ব।",
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


# Texts for the added tokens of the variant tokenizers (tools/reference/make_tokenizer_variants.py).
ADDED_TOKEN_TEXT = [
    "Hello World! hello world, HELLO WORLD; hello  world; helloworld; Hello Worlds",
    "ok? ok! okay book ok_ok ok- -ok OK Ok ok1 1ok ok\u0301 «ok» ok",
    "été ÉTÉ Été etete été-été summer été",
    "a <sep/> b<sep/>c <sep/><sep/> <sep/ > </sep/>",
    "x <eos> y  <eos>\t<eos>\u3000z<eos><eos> <eos>",
    "x xx x-x _x x_ x.x (x) x\u0301 éx x",
    "[MASK]x  [MASK]  y [MASK][MASK]\t[MASK]\n[MASK] x[MASK]",
    "[CLS][SEP] [cls] [Cls] [CLS]] [[CLS] [SEP [MASK ] [PAD] x",
]

# Characters that tell Unicode versions apart: Hugging Face takes general categories from
# Unicode 8.0 tables, lowercasing from Rust's std, NFD from unicode-normalization-alignments.
UNICODE_EDGE = [
    "Punctuation added after Unicode 8: a\u2e43b a\u2e4fb a\u2e50b a\u2e52b \U00011c41 \U00016e97",
    "Marks added after Unicode 8: e\u1ac1x a\u0898b o\u08cax \u0c3c\u0d3b \U00011f00",
    "Format controls added after Unicode 8: a\u0890b c\u0891d \U00013430\U00013438 \U000110cd",
    "Changed categories: \u166d \U000111c9 \u1734 \U00011938 x\u166dy",
    "Unicode 16 case pairs: \u1c89 \ua7cb \ua7cc \ua7dc \U00010d50\U00010d65 \U00016ea0\U00016eb8",
    "Unassigned: \u0378 \u0379 \u05ff \U0002fffe \U000e0080 a\u0378b",
    "Private use \ue000 \U000f0000 \U0010fffd; noncharacters \ufdd0 \ufffe \uffff",
    "Tags and variation selectors: \U000e0041\U000e0042 \U000e0100 a\ufe0fb \u2764\ufe0e",
    "CJK edges: \u3400 \u4dbf \u4e00 \u9fff \U0002b81f \U0002b820 \U0002b91f \U0002b920 \U0002ceaf "
    "\U0002ceb0 \U00030000 \U00031350",
    "Compatibility ideographs decompose: \uf900 \uf901 \ufa6d \U0002f800 \U0002fa1d",
    "Final sigma: ΟΔΟΣ ΟΔΟΣ. ὈΔΥΣΣΕΎΣ ΣΑΣ Σ",
    "Canonical order: a\u0301\u0323 a\u0323\u0301 q\u0307\u0323\u0301 \u1e0b\u0323 \u0344\u0345",
    "Hangul: \uac00\ud7a3\ud7a4 \u1100\u1161\u11a8 \u3131\u314f",
    "Ligatures and compatibility: ﬀ ﬃ ﬄ ﬅ ﬆ Ǆ ǅ ǆ Ǳ ǲ ǳ ㎏ ㍱ ℡ ™ ① ⑴ ⒜",
    "Letterlike: ℌ ℑ ℜ ℭ ℵ Ω K Å ℮ ⅓ Ⅸ ⅸ ↉",
    "Circled letters: Ⓐ ⓐ \U0001f130 \U0001f150 \U0001f170 🅰",
    "Bidi and joiners: \u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2069 \u200c\u200d \u2060\u180e",
    "Line and paragraph separators: a\u2028b\u2029c\u0085d\u000be\u000cf\u001cg\u001fh",
    "Emoji: 🫠 🥹 🫶🏾 🧑🏽‍🤝‍🧑🏿 👩🏻‍❤️‍💋‍👨🏼 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f 🇺🇳 #️⃣ 1️⃣",
]

# Code point ranges for random strings.
RANGES = [
    (0x20, 0x7E), (0x00, 0x1F), (0x80, 0xFF), (0x100, 0x24F), (0x250, 0x2FF), (0x300, 0x36F),
    (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x700, 0x8FF),
    (0x900, 0xDFF), (0xE00, 0xEFF), (0xF00, 0xFFF), (0x1000, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x2BFF),
    (0x2C00, 0x2E7F), (0x2E80, 0x2FFF), (0x3000, 0x30FF), (0x3100, 0x33FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xA000, 0xABFF), (0xAC00, 0xD7FF), (0xE000, 0xE0FF), (0xF900, 0xFAFF), (0xFB00, 0xFDFF), (0xFE00, 0xFFFF),
    (0x10000, 0x107FF), (0x10800, 0x10FFF), (0x11000, 0x11FFF), (0x12000, 0x16FFF), (0x17000, 0x1BFFF),
    (0x1D000, 0x1DFFF), (0x1E000, 0x1EFFF), (0x1F000, 0x1FAFF), (0x20000, 0x2FFFF), (0x30000, 0x3FFFF),
    (0xE0000, 0xE01EF), (0xF0000, 0x10FFFF),
]
COMBINING = [(0x300, 0x36F), (0x483, 0x489), (0x591, 0x5BD), (0x64B, 0x65F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF),
             (0x20D0, 0x20FF), (0xFE20, 0xFE2F)]


def random_char(rng, ranges):
    while True:
        lo, hi = rng.choice(ranges)
        c = rng.randint(lo, hi)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def random_unicode(rng, n):
    out = []
    for i in range(n):
        if i % 3 == 0:  # combining sequences: a base and 1 to 5 marks, for canonical ordering
            s = "".join(random_char(rng, [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x391, 0x3C9)])
                        + "".join(random_char(rng, COMBINING) for _ in range(rng.randint(1, 5)))
                        for _ in range(rng.randint(1, 4)))
        elif i % 3 == 1:  # runs of characters from a few ranges, with spaces and punctuation
            ranges = [rng.choice(RANGES) for _ in range(rng.randint(1, 3))]
            s = "".join(random_char(rng, ranges) if rng.random() < 0.85 else rng.choice(" .,-!") for _ in
                        range(rng.randint(1, 24)))
        else:  # any code point at all
            s = "".join(random_char(rng, [(0, 0x10FFFF)]) for _ in range(rng.randint(1, 8)))
        out.append(s)
    return out


# Source files on this Debian machine: (glob, files to take, language).
CODE_GLOBS = [
    ("/usr/include/*.h", 80, "c"),
    ("/usr/include/c++/*/bits/stl_*.h", 15, "c++"),
    ("/usr/lib/python3*/json/*.py", 10, "python"),
    ("/usr/lib/python3*/asyncio/*.py", 10, "python"),
    ("/usr/lib/node_modules/npm/lib/commands/*.js", 25, "javascript"),
    ("/usr/share/perl/5*/File/*.pm", 10, "perl"),
    ("/etc/init.d/*", 10, "shell"),
    ("/usr/share/cmake-*/Modules/Check*.cmake", 15, "cmake"),
    ("/usr/share/doc/git/contrib/persistent-https/*.go", 4, "go"),
    ("/root/.rustup/toolchains/stable-*/share/doc/rust/html/error_codes/*.rs", 1, "rust"),
    ("/root/.rustup/toolchains/stable-*/share/doc/rust/html/static.files/*.css", 2, "css"),
    ("/usr/share/doc/libffi8/html/*.html", 6, "html"),
    ("/usr/share/postgresql-common/t/foo/foo-123/sql/*.sql", 2, "sql"),
]


def code_lines(limit):
    """Lines of real source code, a share from each language, shuffled."""
    by_lang = {}
    for pattern, count, lang in CODE_GLOBS:
        for path in sorted(glob.glob(pattern))[:count]:
            try:
                with open(path, encoding="utf-8") as f:
                    lines = [line.rstrip("\n") for line in f if line.strip()]
            except (UnicodeDecodeError, OSError):
                continue
            by_lang.setdefault(lang, []).extend(lines)
    rng = random.Random(7)
    share = limit // max(1, len(by_lang))
    out = []
    for lang in sorted(by_lang):
        lines = by_lang[lang]
        rng.shuffle(lines)
        out += lines[:share]
    rng.shuffle(out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/tokenizer/corpus.jsonl"))
    ap.add_argument("--count", type=int, default=8000)
    args = ap.parse_args()
    rng = random.Random(12345)
    texts = []
    texts += PROSE
    texts += LONG_WORDS
    texts += FRAGMENTS
    texts += UNICODE_EDGE
    texts += ADDED_TOKEN_TEXT
    texts += random_unicode(random.Random(99), 900)
    # Whole code lines and multi-line blocks.
    code = code_lines(2500)
    texts += code[:1500]
    for i in range(0, 1000, 4):
        texts.append("\n".join(code[1500 + i:1504 + i]))
    # Random mixtures of everything above.
    pool = PROSE + LONG_WORDS + FRAGMENTS + UNICODE_EDGE + ADDED_TOKEN_TEXT + code[:300]
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
