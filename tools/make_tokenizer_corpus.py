# ruff: noqa: RUF001
"""Regenerate tests/data/tokenizer_corpus.json: >= 1,000 varied strings for the tokenizer parity
tests (tests/test_tokenizer.py), deterministic (fixed seed).

    python tools/make_tokenizer_corpus.py [OUT]

Hand-written seeds per category (English prompts and contractions, Chinese, Japanese, Korean,
Arabic, Hebrew, Devanagari, Thai, Cyrillic, Greek, Vietnamese and other combining-mark text in
NFC and NFD, emoji with skin tones / ZWJ sequences / flags / keycaps, code, long digit runs,
mixed whitespace and newlines, special and added tokens written inside the prompt, ...), then
seeded random mixtures of fragments with random separators, so the pre-tokenizer boundaries
between categories are exercised too.
"""

from __future__ import annotations

import json
import os
import random
import sys
import unicodedata

SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]

SEEDS = {
    "english": [
        "A cat holding a sign that says hello world",
        "dance monkey",
        " ",
        "",
        "A photorealistic portrait of an old fisherman, golden hour, 85mm lens, "
        "shallow depth of field",
        "a red bicycle leaning against a blue wall, with a small brown dog sitting next to it",
        "Watercolor painting of a lighthouse on a cliff during a storm; waves crashing!!!",
        "It's a beautiful day, isn't it? They're here, we've seen them, I'm sure you'll agree, "
        "he'd know.",
        "IT'S LOUD. THEY'RE HERE. WE'VE GOT IT. I'M DONE. YOU'LL SEE. HE'D SAY. SHE'S OK.",
        "don't won't can't shouldn't y'all ma'am o'clock rock'n'roll",
        "The quick brown fox jumps over the lazy dog.",
        "   leading spaces and trailing spaces   ",
        "Hello,World!How are you?I'm fine.",
        "e-mail: someone@example.com, url: https://example.com/path?q=1&lang=en#frag",
        "Mr. & Mrs. Smith -- 'quoted' \"double quoted\" (parenthesized) [bracketed] {braced}",
        "ALL CAPS TITLE: THE RETURN OF THE KING",
        "camelCaseWords and snake_case_words and kebab-case-words",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "a neon sign reading \"OPEN 24/7\" above a diner door",
        "text on the poster: 'SALE 50% OFF' in bold yellow letters",
        "’curly apostrophes’ and “smart quotes” — em dash – en dash … ellipsis",
        "It’s they’re we’ve I’m you’ll he’d",
    ],
    "chinese": [
        "一只猫拿着写有你好世界的牌子",
        "宫崎骏风格的动画场景，一个女孩站在开满鲜花的山坡上，远处是蓝天白云。",
        "中国传统水墨画，山水之间有一座小亭子，旁边有几棵松树。",
        "海报上写着“欢迎光临”四个大字，背景是红色的灯笼。",
        "价格：¥1999元，限时优惠！",
        "繁體中文：這是一個測試句子，包含臺灣和香港常用字。",
        "《红楼梦》第一回：甄士隐梦幻识通灵，贾雨村风尘怀闺秀",
        "Qwen-Image 是一个图像生成模型，擅长渲染中文文字。",
        "书法作品：“天道酬勤”，落款为二〇二四年春。",
        "𠮷野家 𡈽 𪚥 (CJK extension B characters)",
    ],
    "japanese": [
        "桜の木の下で本を読んでいる少女、アニメ風",
        "東京の夜景、ネオンサイン、雨に濡れた路面",
        "カタカナ・ひらがな・漢字が混ざった文章です。",
        "ｶﾀｶﾅ半角カナとＡＢＣ全角英数字１２３",
        "「こんにちは」と書かれた看板を持つ猫",
        "ラーメン屋の暖簾に「営業中」の文字",
        "が ぎ ぐ げ ご (NFD: \u304b\u3099 \u304d\u3099)",
    ],
    "korean": [
        "서울의 밤거리, 네온사인이 빛나는 골목",
        "한글로 '안녕하세요'라고 쓰인 간판",
        "김치찌개와 불고기가 차려진 한국 전통 밥상",
        # Hangul as conjoining jamo (NFD): NFC must compose them
        unicodedata.normalize("NFD", "한국어 자모 분해 테스트"),
        "ㄱㄴㄷㄹ ㅏㅑㅓㅕ compatibility jamo",
    ],
    "arabic": [
        "قطة تحمل لافتة مكتوب عليها مرحبا بالعالم",
        "مسجد جميل عند غروب الشمس مع سماء برتقالية",
        "العربية مع التشكيل: بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ",
        "أرقام عربية: ٠١٢٣٤٥٦٧٨٩ وفارسية: ۰۱۲۳۴۵۶۷۸۹",
        "mixed RTL \u200fعربي\u200e and LTR text",
        "שלום עולם, חתול מחזיק שלט",
        "فارسی: گربه‌ای با تابلوی سلام دنیا (ZWNJ)",
    ],
    "other_scripts": [
        "हिन्दी: एक बिल्ली जो नमस्ते दुनिया लिखा हुआ बोर्ड पकड़े है",
        "ภาษาไทย: แมวถือป้ายที่เขียนว่าสวัสดีชาวโลก",
        "Русский: кошка держит табличку с надписью «Привет, мир!»",
        "Ελληνικά: μια γάτα κρατά μια πινακίδα που γράφει Γεια σου κόσμε",
        "Tiếng Việt: một con mèo cầm tấm biển ghi xin chào thế giới",
        unicodedata.normalize("NFD", "Tiếng Việt có dấu: Hà Nội, Huế, Đà Nẵng"),
        unicodedata.normalize("NFD", "Crème brûlée, naïve café, Ångström, São Paulo, Zürich"),
        "Crème brûlée, naïve café, Ångström, São Paulo, Zürich",
        "e\u0301 a\u0300 o\u0308 n\u0303 (combining marks)",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324 zalgo text",
        "ქართული ენა, Հայերեն, አማርኛ, ᠮᠣᠩᠭᠣᠯ, ᏣᎳᎩ",
        "தமிழ் తెలుగు ಕನ್ನಡ മലയാളം বাংলা ગુજરાતી ਪੰਜਾਬੀ",
        "Türkçe: İstanbul, ığdır, ŞĞÜÖÇ",
        "Polski: Zażółć gęślą jaźń",
        "Deutsch: Größenwahn, Straße, ẞ",
        "Ωmega ℃ ℉ № ™ ℡ Ⅻ ⅔ ½ ¼",
    ],
    "emoji": [
        "😀😃😄😁😆😅😂🤣",
        "👍🏻👍🏼👍🏽👍🏾👍🏿 skin tones",
        "👨‍👩‍👧‍👦 family ZWJ sequence",
        "🏳️‍🌈 🏴‍☠️ 🧑‍🚀 👩‍💻 🧑🏽‍🍳 ❤️‍🔥",
        "🇯🇵🇺🇸🇨🇳🇰🇷🇸🇦 flags",
        "1️⃣ 2️⃣ #️⃣ *️⃣ keycaps",
        "a cat 🐱 holding a sign 🪧 that says hello 👋 world 🌍",
        "❤ ❤️ ☺ ☺️ ✌ ✌️ (with and without VS16)",
        "🧑‍🤝‍🧑 👩‍❤️‍💋‍👨 🫶🏾",
        "emoji at end of word:cat🐱dog🐶",
    ],
    "code": [
        "def f(x):\n    return x ** 2 + 1\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}",
        "#include <stdio.h>\nint main(void) { printf(\"hello\\n\"); return 0; }",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
        "<div class=\"container\"><p>Hello &amp; welcome</p></div>",
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%smith%';",
        "$ ls -la | grep \".py$\" && echo \"done\" >> log.txt 2>&1",
        "const re = /^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)$/i;",
        "x_1 = np.linspace(0, 1, 100); y = x_1**2 - 3*x_1 + 2",
        "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
        "    indented_line = True\n        deeper = [i for i in range(10)]\n",
        "a+=1;b-=2;c*=3;d/=4;e%=5;f<<=6;g>>=7;h&=8;i|=9;j^=10",
        "/* comment */ // another\n# python comment\n-- sql comment",
        "\\documentclass{article}\\begin{document}$E=mc^2$\\end{document}",
    ],
    "digits": [
        "1234567890",
        "3.14159265358979323846264338327950288419716939937510",
        "00000000000000000000000000000000",
        "Call 555-0123 or +1 (800) 555-0199 ext. 42",
        "Dates: 2024-01-31, 31/01/2024, 01.31.24; time 23:59:59.999",
        "1,000,000 and 1.000.000,50 and 1 000 000",
        "v1.2.3-rc.4+build.5678",
        "0x7fffffff 0b1010 1e-10 6.022e23 -42 +17",
        "99999999999999999999999999999999999999999999999999999999999999999999",
        "１２３４５ full-width digits ١٢٣ Arabic-Indic ½ ² ³",
        "a1b2c3d4e5f6g7h8i9j0",
        "Room 101, Floor 7, Building 42B, ZIP 90210",
    ],
    "whitespace": [
        "line one\nline two\n\nline four\n\n\n",
        "windows\r\nline endings\r\n\r\n",
        "old mac\rline endings\r",
        "tabs\tbetween\t\twords\t",
        "mixed \t \n \r\n  \n\t\t  spaces",
        "\n\n\nleading newlines",
        "trailing newlines\n\n\n",
        "   \n   \n   ",
        "nbsp\u00a0here and\u00a0\u00a0there",
        "ideographic\u3000space\u3000\u3000",
        "zero\u200bwidth\u200bspace and zwj\u200djoiner and bom\ufeff",
        "line\u2028separator and paragraph\u2029separator",
        "\x0bvertical tab\x0cform feed\x85next line",
        "a  b   c    d     e      f",
        "\t",
        "\n",
        "\r\n",
        "  ",
        "word \n",
        "word  \n  next",
    ],
    "specials": [
        "<|im_start|>user\nhello<|im_end|>",
        "a prompt with <|endoftext|> in the middle",
        "<|vision_start|><|image_pad|><|vision_end|>describe this",
        "<tool_call>{\"name\": \"f\"}</tool_call>",
        "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
        "<|repo_name|>qwen-edge<|file_sep|>README.md",
        "<|box_start|>(10,20),(30,40)<|box_end|> <|quad_start|>q<|quad_end|>",
        "<|object_ref_start|>the cat<|object_ref_end|>",
        "almost special: <|im_start| <im_start|> <|im_end |> <|IM_END|> <|unknown|>",
        "back to back<|im_end|><|im_end|><|endoftext|>",
        "space before <|im_end|> and after <|im_start|> x",
        "<|vision_pad|><|video_pad|>",
        "nested <|<|im_start|>|>",
    ],
    "misc": [
        "∑_{i=1}^{n} i² = n(n+1)(2n+1)/6 ≤ ∞ ± √2 ≈ 1.414 ∀x∈ℝ ∃y",
        "→ ← ↑ ↓ ⇒ ⇔ ★ ☆ ♠ ♣ ♥ ♦ ♪ ♫ © ® ° µ",
        "!!!???...,,,;;;:::---___===+++***###@@@$$$%%%^^^&&&",
        "((((nested)))) [[[[brackets]]]] {{{{braces}}}}",
        "~`!@#$%^&*()_+-={}|[]\\:\";'<>?,./",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ab" * 60,
        "=" * 100,
        "-" * 80 + "\n" + "#" * 40,
        "http://a.b/c?d=e&f=g#h https://www.example.org:8080/path/to/file.html",
        "C:\\Users\\name\\Documents\\file.txt and /usr/local/bin/python3",
        "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞß",
        "\x00\x01\x02\x1b[31mred\x1b[0m control chars",
        "\ufffd replacement char and \U0001d400\U0001d401 math bold",
        "ﬁ ﬂ ﬀ ligatures and Ⅳ roman and ㎏ squared",
    ],
}

FRAGMENT_SEPARATORS = [
    " ", "  ", "\n", "\n\n", "\t", "\r\n", "", ", ", ". ", "! ", "? ", " - ", " \n ", "\u3000",
    "\u00a0", "。", "、", "：", " | ", "\n    ", "'s ", "'LL ", "’s ",
]


def _words(rng: random.Random) -> str:
    """A short random fragment built from the seed strings."""
    cats = list(SEEDS)
    s = rng.choice(SEEDS[rng.choice(cats)])
    if not s:
        return s
    # a random slice, so fragments start and end at arbitrary characters
    i = rng.randrange(len(s))
    j = min(len(s), i + rng.randint(1, 40))
    return s[i:j]


def _digits(rng: random.Random) -> str:
    n = rng.choice([1, 2, 3, 4, 5, 7, 11, 16, 33, 64])
    return "".join(rng.choice("0123456789") for _ in range(n))


def _special(rng: random.Random) -> str:
    return rng.choice(SPECIALS)


def _emoji(rng: random.Random) -> str:
    return rng.choice(SEEDS["emoji"]).split(" ")[0]


def generate(n_random: int = 1000, seed: int = 20240531) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for cat in SEEDS:
        out.extend(SEEDS[cat])
    makers = [_words] * 6 + [_digits, _special, _emoji]
    for k in range(n_random):
        parts = []
        for _ in range(rng.randint(1, 8 if k % 10 else 40)):
            parts.append(rng.choice(makers)(rng))
            parts.append(rng.choice(FRAGMENT_SEPARATORS))
        if rng.random() < 0.5:
            parts.pop()
        out.append("".join(parts))
    seen = set()
    uniq = []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    out = argv[1] if len(argv) > 1 else os.path.join(here, "..", "tests", "data",
                                                     "tokenizer_corpus.json")
    strings = generate()
    doc = {
        "about": "Tokenizer parity corpus (tools/make_tokenizer_corpus.py); do not edit by hand.",
        "count": len(strings),
        "strings": strings,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=0)
        f.write("\n")
    print(f"wrote {len(strings)} strings to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
