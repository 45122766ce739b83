"""Tests of the text frontend: normalisation, sentence splitting, symbol tables, phonemiser and tokenizers."""

from __future__ import annotations

import json
import random
import stat
import sys
from pathlib import Path

import pytest

from voxar.errors import VoxarTextError
from voxar.text import (
    MAX_TEXT_CHARS,
    CharTokenizer,
    PhonemeTokenizer,
    Phonemizer,
    SymbolTable,
    espeak_available,
    load_tokenizer,
    normalize_text,
    number_to_words,
    ordinal_to_words,
    split_sentences,
    tokenizer_from_dict,
    year_to_words,
)
from voxar.text.tokenizers import DEFAULT_PHONEME_SYMBOLS

needs_espeak = pytest.mark.skipif(
    not espeak_available(), reason="espeak-ng binary not found (apt-get install espeak-ng, or set VOXAR_ESPEAK)"
)

WORDS = "the quick brown fox jumps over a lazy dog while seven happy zebras quietly sing about justice".split()


def random_text(n_chars: int, seed: int = 0) -> str:
    """English-like text of about ``n_chars`` with sentences, clauses and abbreviations."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 60))]
        for i in range(4, len(words), rng.randint(4, 12)):
            words[i] += rng.choice([",", ";", ":"])
        if rng.random() < 0.2:
            words.insert(0, "Dr. Smith said")
        sentence = " ".join(words).capitalize() + rng.choice([".", "!", "?", "..."])
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (110, "one hundred ten"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (1234, "one thousand two hundred thirty-four"),
        (1_000_000, "one million"),
        (2_000_300_004, "two billion three hundred thousand four"),
        (-15, "minus fifteen"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (8, "eighth"), (9, "ninth"), (11, "eleventh"),
     (12, "twelfth"), (20, "twentieth"), (21, "twenty-first"), (42, "forty-second"), (100, "one hundredth"),
     (103, "one hundred third"), (1000, "one thousandth")],
)  # fmt: skip
def test_ordinal_to_words(n: int, words: str) -> None:
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [(1999, "nineteen ninety-nine"), (1900, "nineteen hundred"), (1905, "nineteen oh five"), (2000, "two thousand"),
     (2005, "two thousand five"), (2010, "twenty ten"), (2024, "twenty twenty-four"), (1100, "eleven hundred")],
)  # fmt: skip
def test_year_to_words(n: int, words: str) -> None:
    assert year_to_words(n) == words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # cardinals, negatives, separators, decimals
        ("I have 3 cats.", "I have three cats."),
        ("It was -5 outside", "It was minus five outside"),
        ("1,234 people", "one thousand two hundred thirty-four people"),
        ("1,000,000", "one million"),
        ("Pi is 3.14.", "Pi is three point one four."),
        ("0.5 and .5", "zero point five and point five"),
        ("12345", "twelve thousand three hundred forty-five"),
        ("agent 007", "agent zero zero seven"),
        # years (4 digits, 1100-2099, no separator/fraction/sign)
        ("In 1999 we met.", "In nineteen ninety-nine we met."),
        ("in 2005", "in two thousand five"),
        ("in 1905", "in nineteen oh five"),
        ("in 2100", "in two thousand one hundred"),
        ("in 1099", "in one thousand ninety-nine"),
        ("19999", "nineteen thousand nine hundred ninety-nine"),
        ("1999.5", "one thousand nine hundred ninety-nine point five"),
        ("1,999", "one thousand nine hundred ninety-nine"),
        ("the 1990s and '80s", "the nineteen nineties and eighties"),
        ("1990\u20131995", "nineteen ninety to nineteen ninety-five"),
        # ordinals
        ("the 21st century", "the twenty-first century"),
        ("2nd, 3rd and 11th", "second, third and eleventh"),
        ("the 100th time", "the one hundredth time"),
        # currency
        ("$5.50", "five dollars fifty cents"),
        ("$1", "one dollar"),
        ("$0.99", "ninety-nine cents"),
        ("$1.01", "one dollar one cent"),
        ("$5.00", "five dollars"),
        ("$2.5 million", "two point five million dollars"),
        ("$1,000,000", "one million dollars"),
        ("£5.50", "five pounds fifty pence"),
        ("€3", "three euros"),
        ("€1.20", "one euro twenty cents"),
        ("-$3", "minus three dollars"),
        # percent
        ("50%", "fifty percent"),
        ("3.5 %", "three point five percent"),
        ("-2%", "minus two percent"),
        # times, versions, digits glued to letters
        ("at 10:30", "at ten thirty"),
        ("at 9:05", "at nine oh five"),
        ("at 12:00", "at twelve o'clock"),
        ("version 1.2.3", "version one point two point three"),
        ("MP3 and 100km", "MP three and one hundred km"),
    ],
)
def test_normalize_numbers(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith and Mrs. Jones", "Mister Smith and Missus Jones"),
        ("Dr. Who", "Doctor Who"),
        ("St. Louis", "Saint Louis"),
        ("on Main St. today", "on Main Street today"),
        ("cats vs. dogs", "cats versus dogs"),
        ("apples, pears, etc. Then we left.", "apples, pears, et cetera. Then we left."),
        ("fruit, e.g., apples", "fruit, for example, apples"),
        ("cats, i.e. felines", "cats, that is felines"),
        ("No. 5 is here", "number five is here"),
        ("No. I won't.", "No. I won't."),
        ("issue #7", "issue number seven"),
        ("Tom & Jerry", "Tom and Jerry"),
        ("2 + 2 = 4", "two plus two equals four"),
        ("mail me @ home", "mail me at home"),
    ],
)
def test_normalize_abbreviations_and_symbols(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u201cHello\u201d \u2014 she said\u2026 \u2018it\u2019s fine\u2019", "\"Hello\" - she said... 'it's fine'"),
        ("wait . . . what", "wait... what"),
        ("  lots \t of\n\n  space  ", "lots of space"),
        ("bell\x07 and\u200b zero\ufeffwidth", "bell and zerowidth"),
        ("\uff26\uff55\uff4c\uff4c width", "Full width"),
        ("hello \U0001f600 world \U0001f44d\U0001f3fd!", "hello world!"),
        ("caf\u00e9 na\u00efve", "caf\u00e9 na\u00efve"),
        ("hello (world) again. (Hi) there.", "hello, world, again. Hi, there."),
        ("Really?! Yes; no: maybe.", "Really?! Yes; no: maybe."),
    ],
)
def test_normalize_unicode_and_punctuation(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_normalize_keeps_cjk_and_handles_huge_numbers() -> None:
    assert "\u65e5\u672c\u8a9e" in normalize_text("\u65e5\u672c\u8a9e 2")
    words = normalize_text("9" * 5000).split()  # beyond int() string limits: read digit by digit
    assert len(words) == 5000 and set(words) == {"nine"}
    assert normalize_text("\U0001f600\U0001f600") == ""
    assert normalize_text("3 cats", lang="de") == "3 cats"  # other languages: clean-up only, digits kept


# ------------------------------------------------------------------------------------------- sentence split


def test_split_sentence_boundaries() -> None:
    text = "Dr. Smith paid 3.14 dollars. Then he left! Did he? Yes... ok. Mr. J. K. Rowling wrote books etc. And more."
    assert split_sentences(text) == [
        "Dr. Smith paid 3.14 dollars.",
        "Then he left!",
        "Did he?",
        "Yes...",
        "ok.",
        "Mr. J. K. Rowling wrote books etc.",
        "And more.",
    ]


def test_split_paragraphs_and_quotes() -> None:
    text = 'first paragraph without a dot\n\nHe said "stop." Then\nwent   home.'
    assert split_sentences(text) == ["first paragraph without a dot", 'He said "stop."', "Then went home."]


def test_split_empty() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\t \n\n ") == []
    with pytest.raises(VoxarTextError):
        split_sentences("hello", max_chars=0)


def test_split_long_sentence_at_clauses_then_words() -> None:
    sentence = "alpha beta, gamma delta; epsilon zeta: " + " ".join(["eta"] * 30)
    pieces = split_sentences(sentence, max_chars=25)
    assert pieces[:3] == ["alpha beta, gamma delta;", "epsilon zeta:", "eta eta eta eta eta eta"]
    assert all(0 < len(p) <= 25 and p == p.strip() for p in pieces)
    assert " ".join(pieces).split() == sentence.split()


def test_split_word_longer_than_max() -> None:
    pieces = split_sentences("short " + "x" * 25, max_chars=10)
    assert pieces == ["short", "x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("max_chars", [40, 300])
def test_split_very_long_text(max_chars: int) -> None:
    text = random_text(50_000)
    assert len(text) >= 50_000
    pieces = split_sentences(text, max_chars=max_chars)
    assert len(pieces) > 50_000 // max_chars
    assert all(0 < len(p) <= max_chars and p == p.strip() for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert not any(p.endswith("Dr.") for p in pieces)  # "Dr. Smith" is never cut after the title


# ------------------------------------------------------------------------------------------------- symbols


def test_symbol_table_basics() -> None:
    table = SymbolTable(["a", "b", "c"])
    assert table.symbols[:4] == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert table.index("<pad>") == 0 and table.index("<unk>") == 1
    assert " " in table and table.space_id == 4  # the word boundary is added when missing
    assert len(table) == 8
    assert [table.symbol(table.index(s)) for s in "abc "] == list("abc ")
    assert table.index("zzz") == SymbolTable.UNK_ID
    with pytest.raises(VoxarTextError):
        table.symbol(len(table))
    with pytest.raises(VoxarTextError):
        SymbolTable(["a", "a"])
    with pytest.raises(VoxarTextError):
        SymbolTable(["a", "<pad>"])
    assert SymbolTable(["a", " "]).space_id == 5  # an explicitly placed space keeps its place
    assert SymbolTable(["a", "b"]) == SymbolTable(["a", "b"]) != SymbolTable(["b", "a"])


def test_symbol_table_save_load(tmp_path: Path) -> None:
    table = SymbolTable(["a", "\u0259", "\u02c8", "\u0303"])
    path = tmp_path / "sub" / "symbols.json"
    table.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["symbols.json"]  # no temporary file left behind
    loaded = SymbolTable.load(path)
    assert loaded == table
    assert [loaded.index(s) for s in table] == list(range(len(table)))
    assert SymbolTable.from_dict(table.to_dict()) == table


@pytest.mark.parametrize(
    "content",
    [
        {"symbols": ["<pad>", "<unk>", "<bos>", "<eos>", " ", "a", "a"]},  # duplicate
        {"symbols": ["<unk>", "<pad>", "<bos>", "<eos>", " ", "a"]},  # specials out of place
        {"symbols": [" ", "a", "b"]},  # specials missing
        {"symbols": ["<pad>", "<unk>", "<bos>", "<eos>", "a"]},  # word boundary missing
        {"tokens": ["a"]},
        ["<pad>"],
    ],
)
def test_symbol_table_load_rejects_bad_files(tmp_path: Path, content: object) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(VoxarTextError, match="bad.json"):
        SymbolTable.load(path)


def test_symbol_table_load_missing_or_corrupt(tmp_path: Path) -> None:
    with pytest.raises(VoxarTextError, match="not found"):
        SymbolTable.load(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(VoxarTextError, match="broken.json"):
        SymbolTable.load(tmp_path / "broken.json")


# ---------------------------------------------------------------------------------------- char tokenizer


@pytest.mark.parametrize(
    "text",
    ["Hello, world!", 'It\'s 5:30; Dr. Smith paid $5.50 - or "so" he said?', "The 21st of May, 1999."],
)
def test_char_roundtrip(text: str) -> None:
    tok = CharTokenizer()
    ids = tok.encode(text)
    assert SymbolTable.UNK_ID not in ids
    assert tok.decode(ids) == normalize_text(text).lower()


def test_char_unicode() -> None:
    tok = CharTokenizer()
    folded = tok.decode(tok.encode("Caf\u00e9 na\u00efve Stra\u00dfe \u00c5NGSTR\u00d6M"))
    assert folded == "cafe naive strasse angstrom"
    ids = tok.encode("hello \U0001f600 world")  # emoji dropped by normalisation
    assert tok.decode(ids) == "hello world" and SymbolTable.UNK_ID not in ids
    ids = tok.encode("I love \u65e5\u672c!")  # CJK -> one <unk> per character
    assert ids.count(SymbolTable.UNK_ID) == 2
    assert tok.decode(ids) == "i love <unk><unk>!"
    assert tok.encode("\u201cquoted\u201d \u2014 text") == tok.encode('"quoted" - text')


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\U0001f600\U0001f44d"])
def test_encode_rejects_empty(text: str) -> None:
    with pytest.raises(VoxarTextError):
        CharTokenizer().encode(text)


def test_encode_length_guard() -> None:
    tok = CharTokenizer()
    long_ok = random_text(20_000, seed=1)  # far beyond a sentence but under the guard: fine
    assert len(tok.encode(long_ok)) > 20_000
    with pytest.raises(VoxarTextError, match="split_sentences"):
        tok.encode("a" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(VoxarTextError):
        tok.encode(123)  # type: ignore[arg-type]


def test_char_bos_eos_and_batch() -> None:
    tok = CharTokenizer()
    ids = tok.encode("hi there", add_bos=True, add_eos=True)
    assert ids[0] == SymbolTable.BOS_ID and ids[-1] == SymbolTable.EOS_ID
    assert tok.decode(ids) == "hi there"
    texts = ["One.", "Two and 2!", "three?"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    with pytest.raises(VoxarTextError):
        tok.decode([len(tok.symbols)])


def test_char_tokenizer_save_load(tmp_path: Path) -> None:
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    custom = CharTokenizer(SymbolTable(list(letters + " .,")), lowercase=False)
    for tok in (CharTokenizer(), custom):
        path = tmp_path / f"{tok.lowercase}.json"
        tok.save(path)
        loaded = load_tokenizer(path)
        assert type(loaded) is CharTokenizer and loaded == tok
        text = "Hello World, 1999 and \u00e9t\u00e9 \u65e5."
        assert loaded.encode(text) == tok.encode(text)
        assert tokenizer_from_dict(tok.to_dict()).encode(text) == tok.encode(text)
    assert custom.decode(custom.encode("Hello World")) == "Hello World"


@pytest.mark.parametrize(
    "data",
    [
        {"type": "bpe", "symbols": []},
        {"type": "char", "symbols": list(CharTokenizer().symbols), "extra": 1},
        {"type": "char", "symbols": list(CharTokenizer().symbols), "lowercase": "yes"},
        {"type": "char", "symbols": ["a", "b"]},
        "char",
    ],
)
def test_tokenizer_from_dict_rejects(data: object) -> None:
    with pytest.raises(VoxarTextError):
        tokenizer_from_dict(data)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- phonemes (espeak)


def test_missing_espeak_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOXAR_ESPEAK", "/nonexistent/espeak-ng")
    with pytest.raises(VoxarTextError, match="apt-get install espeak-ng"):
        Phonemizer()
    # a phoneme tokenizer loads without espeak-ng (it only needs it to encode)
    path = tmp_path / "tok.json"
    PhonemeTokenizer(voice="en-gb").save(path)
    tok = load_tokenizer(path)
    assert isinstance(tok, PhonemeTokenizer) and tok.voice == "en-gb"
    with pytest.raises(VoxarTextError, match="espeak-ng not found"):
        tok.encode("hello")


def _fake_espeak(tmp_path: Path, misalign: bool) -> Path:
    """An executable that answers like espeak-ng (one upper-cased line per input line), or misaligns batches."""
    script = tmp_path / "fake-espeak"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "lines = sys.stdin.read().splitlines()\n"
        f"if {misalign} and len(lines) > 1:\n"
        "    lines = [' '.join(lines)]\n"
        "print('\\n'.join(line.upper() for line in lines))\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.parametrize("misalign", [False, True])
def test_phonemizer_batching_punctuation_and_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, misalign: bool
) -> None:
    monkeypatch.setenv("VOXAR_ESPEAK", str(_fake_espeak(tmp_path, misalign)))
    ph = Phonemizer()
    calls: list[str] = []
    run = ph._run
    monkeypatch.setattr(ph, "_run", lambda text: calls.append(text) or run(text))
    texts = ["Hello, world!", 'He said "no" - twice...', "pi is 3.14", "", "*", "hello"]
    out = ph.phonemize(texts)
    assert out == ["HELLO, WORLD!", 'HE SAID "NO" - TWICE...', "PI IS 3.14", "", "", "HELLO"]
    n_chunks = 7  # Hello, world, He said, no, twice, pi is 3.14, hello
    assert len(calls) == (1 + n_chunks if misalign else 1)  # misaligned output -> one process per chunk
    assert ph.phonemize(texts) == out and len(calls) == (1 + n_chunks if misalign else 1)  # all cached
    with pytest.raises(TypeError):
        ph.phonemize("hello")  # type: ignore[arg-type]


@needs_espeak
def test_phonemize_hello_world() -> None:
    tok = PhonemeTokenizer()
    ipa = tok.phonemize("hello world")
    assert len(ipa.split(" ")) == 2
    assert "ˈ" in ipa and ipa.startswith("h") and "w" in ipa
    assert all(ch in "ˈˌː abcdefhijklmnoprstuvwxzæðŋɐɑɒɔəɚɛɜɡɪɹɾʃʊʌʒθᵻ" for ch in ipa)
    ids = tok.encode("hello world")
    assert SymbolTable.UNK_ID not in ids
    assert tok.decode(ids) == ipa


@needs_espeak
def test_phonemize_punctuation_batch_and_inventory() -> None:
    ph = Phonemizer()
    texts = [
        "Hello, world! How are you?",
        "The quick brown fox jumps over the lazy dog; it was thirty-three degrees.",
        "Mister Smith bought a croissant and a vase: amazing, isn't it?",
        "She sells seashells by the seashore, and thinks about measure, beige and garage.",
        "Button, kitten, little bottle -- rhythm and bottom.",
        '"Quoted" words... and more.',
    ]
    batch = ph.phonemize(texts)
    assert batch == [Phonemizer().phonemize([t])[0] for t in texts]  # batched output aligns with single calls
    assert batch[0].count(",") == 1 and batch[0].endswith("?") and "!" in batch[0]
    assert batch[5].startswith('"') and "..." in batch[5]
    inventory = set(DEFAULT_PHONEME_SYMBOLS)
    assert set("".join(batch)) <= inventory
    long_out = ph.phonemize([" ".join(["banana"] * 120)])[0]  # > 700 chars: sent to espeak in chunks
    assert len(long_out.split(" ")) == 120 and len(set(long_out.split(" "))) == 1


@needs_espeak
def test_phoneme_tokenizer_save_load_and_batch(tmp_path: Path) -> None:
    tok = PhonemeTokenizer()
    texts = ["Dr. Smith paid $5.50 in 1999!", "Hello there, caf\u00e9 friend.", "I'm 21st \U0001f600 in line."]
    ids = tok.encode_batch(texts, add_eos=True)
    assert all(seq[-1] == SymbolTable.EOS_ID and SymbolTable.UNK_ID not in seq for seq in ids)
    assert ids == [tok.encode(t, add_eos=True) for t in texts]
    tok.save(tmp_path / "tok.json")
    loaded = load_tokenizer(tmp_path / "tok.json")
    assert type(loaded) is PhonemeTokenizer and loaded == tok
    assert loaded.encode_batch(texts, add_eos=True) == ids
    assert "!" in tok.decode(ids[0]) and "dˈɑːktɚ" in tok.decode(ids[0])


@needs_espeak
def test_espeak_override_and_bad_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXAR_ESPEAK", "espeak-ng")  # a command name is looked up on PATH
    assert Phonemizer().phonemize(["yes"])[0].startswith("j")
    with pytest.raises(VoxarTextError, match="voice"):
        Phonemizer(voice="xx-nonexistent").phonemize(["hello"])
