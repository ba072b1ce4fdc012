#!/usr/bin/env python3
"""Writes the reference fixtures the tokenizer tests compare against.

The expected ids come from the `tokenizers` package (the Rust tokenizer Hugging Face ships), built from the
GGUF file's own vocabulary and merges with the pre-tokenizer SmolLM2's tokenizer.json declares:
Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]).
Pre-tokenizer splits for the gpt2 / qwen2 / llama3 rules come from the `regex` package running the
original patterns. Chat renderings come from jinja2 running the template stored in the GGUF file.

    pip install gguf tokenizers regex jinja2
    python3 Scripts/make-tokenizer-reference.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf] [path/to/tiny.gguf]

Outputs (in Tests/Fixtures/):
    tokenizer-smollm2.json      strings -> ids (special tokens parsed and not parsed)
    tokenizer-pretokenize.json  strings -> pieces for each regex pre-tokenizer
    tokenizer-chat.json         message lists -> rendered prompt, for the model's template and test templates
    tokenizer-tiny.json         the small vocabulary of Tests/Fixtures/tiny-a.gguf (448 tokens) itself, with
                                strings -> ids, so byte-level BPE is checked where the real model is absent
"""

import json
import os
import sys

import gguf
import jinja2
import regex
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")

PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
             r"|\s+(?!\S)|\s+",
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def test_strings():
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "a", "A", "Hello", "Hello world",
        "Hello, world!", " Hello", "Hello ", "Hello  ", "Hello   world", "Hello\tworld", "Hello\nworld",
        "Hello\n\nworld", "Hello \n world", "trailing spaces   ", "   leading spaces", "\t\tindented\ttabs\t",
        "line one\nline two\n", "  \n\n  \t x", "x \t\n", "word  \n", "a\u00a0b", "a\u3000b", "a\u2028b",
        "I'm", "you're", "we've", "they'll", "she'd", "it's", "don't", "DON'T", "I'M", "Let's go", "'s", "''",
        "rock 'n' roll", "O'Neil's", "it''s", " 's", "'ll've",
        "0", "7", "42", "123", "2024", "3.14159", "1,000,000", "12345678901234567890", "-17", "+1e-10",
        "v1.2.3", "x86_64", "CO2", "H2O", "1st 2nd 3rd", "abc123def", " 123", "a 1", "a  1", "100%",
        "$9.99", "10:30am", "٣٤٥", "१२३", "½ ⅓ ¾", "Ⅻ", "①②③", "²³",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX", "tHiS iS mIxEd CaSe",
        "Supercalifragilisticexpialidocious", "antidisestablishmentarianism",
        "café", "naïve résumé", "Ångström", "Straße", "ﬁ ligature", "e\u0301", "cafe\u0301",
        "n\u0303o\u0308", "a\u0300\u0301\u0302", "\u0301 alone",
        # Canonically equivalent pairs with different bytes must stay apart (precomposed Hangul vs jamo).
        "한국", "\u1112\u1161\u11ab\u1100\u116e\u11a8", "Å", "\u212b",
        "日本語のテキスト", "中文测试", "你好，世界！", "한국어 텍스트", "Привет, мир!", "Γειά σου Κόσμε",
        "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "ภาษาไทย", "Tiếng Việt có dấu",
        "mixed 日本 and English", "emoji 😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "❤️", "★☆", "→ ← ↑ ↓",
        "∑∫∂√∞", "≤≥≠", "©®™", "…", "–—", "«quotes»", "“smart quotes”", "‘single’", "¿Qué?", "¡Hola!",
        "\u200b", "zero\u200bwidth", "\ufeffbom", "\u00ad", "tab\u000bvt", "ff\u000cff", "\x1cfs\x1dgs",
        "\x00nul", "\x7f", "\u0085nel",
        # \s is White_Space: NEL, NBSP, LS, VT are; FS, ZWSP, MVS, BOM are not.
        "!\x1c!", "!\x85!", "!\xa0!", "!\u200b!", "!\u2028!", "!\x0b!", "!\u180e!", "!\ufeff!", "x\u2029\u3000 y",
        "def foo(x):\n    return x + 1\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "if x == 1:\n        pass", "print(\"Hello, world!\")", "let x: [Int] = [1, 2, 3]",
        "<div class=\"a\">text</div>", "https://example.com/path?q=1&r=2#frag", "user@example.com",
        "#include <stdio.h>", "/* comment */", "// comment", "a->b", "x => x * 2", "a::b::c", "$HOME/.config",
        "SELECT * FROM t WHERE id = 1;", "{\"key\": [1, 2.5, null, true]}", "```python\nprint(1)\n```",
        "    four spaces", "        eight spaces", "\t\ttwo tabs", "\n    indented after newline",
        "camelCaseIdentifier", "snake_case_identifier", "SCREAMING_SNAKE", "kebab-case-word", "__init__",
        "!!!", "???", "...", "---", "***", "!?!?", "a!b?c.", "(parenthetical)", "[brackets]", "{braces}",
        "<angle>", "@#$%^&*", "~`|\\", " !", "  !", " ! ", "a , b", "end.\n",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n",
        "text<|im_end|>more", " <|im_end|> ", "<|im_start|><|im_end|>", "<|im_start", "im_end|>",
        "<repo_name>mope<file_sep>", "<jupyter_code>x = 1<jupyter_output>", "<|endoftext|><|endoftext|>",
        "<<|im_end|>>", "<|im_end|>\n\n", "\n<|im_start|>",
    ]
    # Generated variety: whitespace runs in every position, digits next to letters and spaces.
    for ws in [" ", "  ", "\t", "\n", " \t", "\t ", " \n", "\n ", "   \n\n"]:
        s.append("a" + ws + "b")
        s.append("a" + ws)
        s.append(ws + "b")
        s.append("1" + ws + "2")
        s.append("." + ws + ",")
    for n in ["7", "42", "1234", "3.5", "10000000"]:
        s.append("Number " + n + " here")
        s.append("x" + n + "y")
        s.append(" " + n)
    long_text = (
        "In 1969, Apollo 11 landed on the Moon. Neil Armstrong said: \"That's one small step for [a] man, one "
        "giant leap for mankind.\" The mission lasted 8 days, 3 hours, 18 minutes and 35 seconds.\n\n"
        "Temperatures: -173°C to 127°C. 🌕🚀"
    )
    s.append(long_text)
    s.append(" ".join(["word"] * 50))
    s.append("\n".join(["line %d" % i for i in range(20)]))
    s.append(" " * 40)
    s.append("ab" * 60)
    s.append("日本" * 30)
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def pre_splits(strings):
    cases = []
    for text in strings:
        if "<|" in text or "<repo" in text or "<jupyter" in text:
            continue
        cases.append({"text": text, "pieces": {name: regex.findall(p, text) for name, p in PATTERNS.items()}})
    return cases


def build_reference(path):
    reader = gguf.GGUFReader(path)
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    assert field(reader, "tokenizer.ggml.model") == "gpt2" and field(reader, "tokenizer.ggml.pre") == "smollm", path
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = []
    for m in merges:
        cut = m.index(" ", 1)
        pairs.append((m[:cut], m[cut + 1:]))
    # As SmolLM2's tokenizer.json: no unknown token in the BPE model, so bytes the vocabulary lacks are dropped.
    tok = Tokenizer(models.BPE(vocab, pairs, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return reader, tok


def encode_cases(tok, strings):
    cases = []
    for text in strings:
        tok.encode_special_tokens = False
        with_special = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        without_special = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": with_special, "idsNoSpecial": without_special})
    tok.encode_special_tokens = False
    return cases


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "MOPE_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    tiny = sys.argv[2] if len(sys.argv) > 2 else os.path.join(FIXTURES, "tiny-a.gguf")
    reader, tok = build_reference(model)
    strings = test_strings()

    with open(os.path.join(FIXTURES, "tokenizer-smollm2.json"), "w", encoding="utf-8") as f:
        json.dump({"model": "SmolLM2-135M-Instruct", "cases": encode_cases(tok, strings)}, f, ensure_ascii=False,
                  indent=0)
        f.write("\n")

    if os.path.exists(tiny):
        tiny_reader, tiny_tok = build_reference(tiny)
        with open(os.path.join(FIXTURES, "tokenizer-tiny.json"), "w", encoding="utf-8") as f:
            json.dump({
                "pre": field(tiny_reader, "tokenizer.ggml.pre"),
                "tokens": field(tiny_reader, "tokenizer.ggml.tokens"),
                "tokenTypes": [int(t) for t in field(tiny_reader, "tokenizer.ggml.token_type")],
                "merges": field(tiny_reader, "tokenizer.ggml.merges"),
                "bosTokenID": int(field(tiny_reader, "tokenizer.ggml.bos_token_id")),
                "eosTokenID": int(field(tiny_reader, "tokenizer.ggml.eos_token_id")),
                "cases": encode_cases(tiny_tok, strings),
            }, f, ensure_ascii=False, indent=0)
            f.write("\n")

    with open(os.path.join(FIXTURES, "tokenizer-pretokenize.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": pre_splits(strings)}, f, ensure_ascii=False, indent=0)
        f.write("\n")

    # Chat templates: the model's own, plus small templates of each recognised shape written for these tests.
    templates = [
        ("smollm2", field(reader, "tokenizer.chat_template"), ""),
        ("chatml-default-before-loop",
         "{%- if messages and messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
         "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a careful assistant. Don\\'t guess."
         "<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if not (message['role'] == 'system' and "
         "loop.first) %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
         "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
         ""),
        ("chatml-plain",
         "{% for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + "
         "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
         ""),
        ("llama3",
         "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
         "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
         "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
         "<|begin_of_text|>"),
    ]
    conversations = [
        [],
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "And 3+3?"}],
        [{"role": "system", "content": "Be concise.\nUse lists."}, {"role": "user", "content": "Plan a trip."},
         {"role": "assistant", "content": "1. Pack\n2. Go"}, {"role": "user", "content": "Thanks  "}],
        [{"role": "user", "content": "  spaces kept \n"}, {"role": "assistant", "content": ""}],
        [{"role": "system", "content": ""}, {"role": "user", "content": "empty system"}],
        [{"role": "user", "content": "first"}, {"role": "system", "content": "late system"}],
        [{"role": "user", "content": "日本語 😀 <b>tags</b> {{ not jinja }}"}],
    ]
    rendered_templates = []
    for name, source, bos in templates:
        template = jinja2.Environment().from_string(source)
        chats = []
        for messages in conversations:
            for gen in (False, True):
                chats.append({
                    "messages": messages, "addGenerationPrompt": gen,
                    "rendered": template.render(messages=messages, add_generation_prompt=gen, bos_token=bos),
                })
        rendered_templates.append({"name": name, "source": source, "bosText": bos, "cases": chats})
    with open(os.path.join(FIXTURES, "tokenizer-chat.json"), "w", encoding="utf-8") as f:
        json.dump({"templates": rendered_templates}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    chats = [c for t in rendered_templates for c in t["cases"]]
    print("wrote %d encode cases, %d chat cases" % (len(strings), len(chats)))


if __name__ == "__main__":
    main()
