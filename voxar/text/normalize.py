"""English text normalisation for TTS: Unicode clean-up, then numbers, currency and abbreviations spelled out.

``normalize_text`` turns raw user text into the words a speaker would say, keeping the sentence punctuation
(``. , ! ? ; :``) that drives prosody. Number-to-words is implemented here (no dependency):

* cardinals ``-1,234`` -> "minus one thousand two hundred thirty-four"; decimals ``3.14`` -> "three point one four";
* ordinals ``21st`` -> "twenty-first"; decades ``1990s`` -> "nineteen nineties";
* years: a bare 4-digit number in 1100-2099 (no sign, separator or fraction) -> ``1999`` -> "nineteen ninety-nine",
  ``2005`` -> "two thousand five", ``1905`` -> "nineteen oh five";
* currency ``$5.50`` -> "five dollars fifty cents" (also ``£``, ``€``, ``¥``, and "$2.5 million");
* percent ``50%`` -> "fifty percent"; clock times ``10:30`` -> "ten thirty"; versions ``1.2.3`` -> "one point two
  point three"; numbers with a leading zero or longer than 21 digits are read digit by digit.

For a language other than English only the language-independent clean-up runs (digits are left for the phonemiser).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = [
    "OTHER_ABBREVIATIONS",
    "TITLE_ABBREVIATIONS",
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
    "year_to_words",
]

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion")
_MAX_WORDS_DIGITS = 3 * len(_SCALES)  # longer numbers are read digit by digit
_MAX_WORDS_NUMBER = 10**_MAX_WORDS_DIGITS
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}

# Abbreviations that precede a name and never end a sentence (lower-case, without the final dot).
TITLE_ABBREVIATIONS: dict[str, str] = {
    "mr": "Mister",
    "mrs": "Missus",
    "ms": "Miz",
    "dr": "Doctor",
    "prof": "Professor",
    "mt": "Mount",
    "capt": "Captain",
    "gen": "General",
    "lt": "Lieutenant",
    "col": "Colonel",
    "sgt": "Sergeant",
    "rev": "Reverend",
}
# Abbreviations that may end a sentence (the dot is kept when the next word is capitalised or the text ends).
OTHER_ABBREVIATIONS: dict[str, str] = {
    "vs": "versus",
    "etc": "et cetera",
    "e.g": "for example",
    "i.e": "that is",
    "jr": "Junior",
    "sr": "Senior",
    "approx": "approximately",
    "no": "number",  # only before a number, see _expand_abbreviations
    "st": "Street",  # "Saint" before a capitalised word
}

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "`": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2039": '"',
        "\u203a": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2212": "-",
        "\u2043": "-",
        "\u2026": "...",
    }
)
_LONG_DASHES = "\u2013\u2014\u2015\u2e3a\u2e3b"
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
}
_INT = r"\d{1,3}(?:,\d{3})+|\d+"  # "1,234,567" or "1234567"

_RE_VERSION = re.compile(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w])")
_RE_TIME = re.compile(r"(?<![\d:.,])([01]?\d|2[0-4]):([0-5]\d)(?![\d:])")
_RE_CURRENCY = re.compile(
    rf"(?P<sign>(?<![\w-])-)?(?P<cur>[$£€¥])\s?(?P<int>{_INT})(?:\.(?P<frac>\d+))?(?![\d])"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion)\b)?",
    re.IGNORECASE,
)
_RE_PERCENT = re.compile(rf"(?P<sign>(?<![\w-])-)?(?<![\d,.])(?P<int>{_INT})(?:\.(?P<frac>\d+))?\s?%")
_RE_ORDINAL = re.compile(rf"(?<![\d,.])(?P<int>{_INT})(?P<suf>st|nd|rd|th)\b", re.IGNORECASE)
_RE_DECADE = re.compile(r"(?<![\w.,])'?(?P<int>\d{2}|\d{4})s\b")
_RE_NUMBER = re.compile(rf"(?P<sign>(?<![\w.-])-)?(?<![\d,.])(?P<int>{_INT})(?:\.(?P<frac>\d+))?(?![\d])")
_RE_LEADING_DOT = re.compile(r"(?<![\w.])\.(\d+)(?![\d])")
_RE_DIGITS = re.compile(r"\d+")
_RE_HASH_NUMBER = re.compile(r"#\s?(?=\d)")
_RE_NO_NUMBER = re.compile(r"\b(No|no|NO)\.\s?(?=\d)")
_RE_EG_IE = re.compile(r"\b([eE])\.\s?([gG])\.|\b([iI])\.\s?([eE])\.")
_RE_ABBREV = re.compile(
    r"\b(?P<abbr>" + "|".join(sorted({*TITLE_ABBREVIATIONS, *OTHER_ABBREVIATIONS} - {"e.g", "i.e", "no"})) + r")\.",
    re.IGNORECASE,
)
_RE_BRACKETS = re.compile(r"[()\[\]{}]")
_RE_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[,.!?;:])")
_RE_COMMA_BEFORE_PUNCT = re.compile(r",\s*(?=[,.!?;:])")
_RE_COMMA_AFTER_PUNCT = re.compile(r"(?<=[.!?;:]),")
_RE_LEADING_COMMAS = re.compile(r"^[\s,;:]+")
_RE_WS = re.compile(r"\s+")


def number_to_words(n: int) -> str:
    """Cardinal in American English words: ``-1234`` -> "minus one thousand two hundred thirty-four"."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n >= _MAX_WORDS_NUMBER:
        return _digits_to_words(str(n))
    groups = []  # three-digit groups, least significant first
    while n:
        n, rest = divmod(n, 1000)
        groups.append(rest)
    words = []
    for scale, group in reversed(list(enumerate(groups))):
        if group:
            words.append(_below_thousand(group) + (" " + _SCALES[scale] if scale else ""))
    return " ".join(words)


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [_ONES[hundreds] + " hundred"] if hundreds else []
    if rest:
        if rest < 20:
            parts.append(_ONES[rest])
        else:
            tens, ones = divmod(rest, 10)
            parts.append(_TENS[tens] + ("-" + _ONES[ones] if ones else ""))
    return " ".join(parts)


def _digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def ordinal_to_words(n: int) -> str:
    """Ordinal words: ``21`` -> "twenty-first", ``100`` -> "one hundredth"."""
    words = number_to_words(n)
    head, sep, last = max(words.rpartition(" "), words.rpartition("-"), key=lambda p: len(p[0]))
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year_to_words(n: int) -> str:
    """A year read in pairs: 1999 -> "nineteen ninety-nine", 1905 -> "nineteen oh five", 2005 -> "two thousand five"."""
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009:
        return number_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return number_to_words(high) + " hundred"
    if low < 10:
        return number_to_words(high) + " oh " + _ONES[low]
    return number_to_words(high) + " " + number_to_words(low)


def _pluralize(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _int_words(digits: str) -> str:
    """Words for an integer string as written (thousands separators allowed; leading zeros read digit by digit)."""
    digits = digits.replace(",", "")
    if len(digits) > 1 and digits.startswith("0") or len(digits) > _MAX_WORDS_DIGITS:
        return _digits_to_words(digits)
    return number_to_words(int(digits))


def _decimal_words(int_part: str, frac: str | None, sign: str | None = None) -> str:
    words = _int_words(int_part)
    if frac:
        words += " point " + _digits_to_words(frac)
    return ("minus " if sign else "") + words


def _currency(m: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[m["cur"]]
    sign = "minus " if m["sign"] else ""
    int_part, frac, scale = m["int"], m["frac"], m["scale"]
    if scale:
        return f"{sign}{_decimal_words(int_part, frac)} {scale.lower()} {many}"
    if frac and (len(frac) > 2 or not sub_one):
        return f"{sign}{_decimal_words(int_part, frac)} {many}"
    if len(int_part.replace(",", "")) > _MAX_WORDS_DIGITS:
        return f"{sign}{_decimal_words(int_part, frac)} {many}"
    major = int(int_part.replace(",", ""))
    minor = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if major or not minor:
        parts.append(f"{_int_words(int_part)} {one if major == 1 else many}")
    if minor:
        parts.append(f"{number_to_words(minor)} {sub_one if minor == 1 else sub_many}")
    return sign + " ".join(parts)


def _number(m: re.Match[str]) -> str:
    int_part, frac, sign = m["int"], m["frac"], m["sign"]
    if not sign and not frac and len(int_part) == 4 and int_part.isdigit() and 1100 <= int(int_part) <= 2099:
        return year_to_words(int(int_part))
    return _decimal_words(int_part, frac, sign)


def _ordinal(m: re.Match[str]) -> str:
    digits = m["int"].replace(",", "")
    if len(digits) > _MAX_WORDS_DIGITS:
        return _digits_to_words(digits) + " " + m["suf"]
    return ordinal_to_words(int(digits))


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m[1]), int(m[2])
    if minute == 0:
        return f"{number_to_words(hour)} o'clock" if hour <= 12 else f"{number_to_words(hour)} hundred"
    return f"{number_to_words(hour)} {'oh ' if minute < 10 else ''}{number_to_words(minute)}"


def _decade(m: re.Match[str]) -> str:
    n = int(m["int"])
    if n % 10:
        return m[0]
    words = year_to_words(n) if len(m["int"]) == 4 else number_to_words(n)
    return _pluralize(words)


def _expand_numbers(text: str) -> str:
    text = _RE_HASH_NUMBER.sub("number ", text)
    text = _sub_words(_RE_VERSION, lambda m: " point ".join(_int_words(p) for p in m[0].split(".")), text)
    text = _sub_words(_RE_TIME, _time, text)
    text = _sub_words(_RE_CURRENCY, _currency, text)
    text = _sub_words(_RE_PERCENT, lambda m: _decimal_words(m["int"], m["frac"], m["sign"]) + " percent", text)
    text = _sub_words(_RE_ORDINAL, _ordinal, text)
    text = _sub_words(_RE_DECADE, _decade, text)
    text = _sub_words(_RE_NUMBER, _number, text)
    text = _sub_words(_RE_LEADING_DOT, lambda m: "point " + _digits_to_words(m[1]), text)
    return _sub_words(_RE_DIGITS, lambda m: _int_words(m[0]), text)  # any digits left over


def _sub_words(pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], text: str) -> str:
    """``pattern.sub`` that puts a space between the words and a letter glued to the match ("100km", "MP3")."""

    def padded(m: re.Match[str]) -> str:
        words = repl(m)
        before = m.string[m.start() - 1] if m.start() else ""
        after = m.string[m.end()] if m.end() < len(m.string) else ""
        return (" " if before.isalnum() else "") + words + (" " if after.isalnum() else "")

    return pattern.sub(padded, text)


def _abbreviation(m: re.Match[str]) -> str:
    abbr = m["abbr"].lower()
    rest = m.string[m.end() :]
    next_word_capital = re.match(r"\s+[A-Z]", rest) is not None
    if abbr == "st" and next_word_capital:
        return "Saint"
    if abbr in TITLE_ABBREVIATIONS:
        return TITLE_ABBREVIATIONS[abbr] + ("." if not rest.strip() else "")
    # A sentence-final abbreviation keeps its dot (heuristic: the text ends or the next word is capitalised).
    keep_dot = not rest.strip() or next_word_capital
    return OTHER_ABBREVIATIONS[abbr] + ("." if keep_dot else "")


def _expand_abbreviations(text: str) -> str:
    text = _RE_NO_NUMBER.sub("number ", text)
    text = _RE_EG_IE.sub(lambda m: "for example" if m[1] else "that is", text)
    return _RE_ABBREV.sub(_abbreviation, text)


def _clean_unicode(text: str) -> str:
    """NFKC; control/format characters and emoji/pictographs dropped; quotes, dashes and ellipses unified."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    out = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
            continue
        cat = unicodedata.category(ch)
        if cat[0] == "C" or cat in ("So", "Sk"):
            continue  # controls, format chars (ZWJ, BOM), private use, unassigned, emoji, pictographs, modifiers
        if ch in _LONG_DASHES:
            out.append(" - ")
            continue
        out.append(ch)
    text = "".join(out)
    text = re.sub(r"(?<=\d) - (?=\d)", " to ", text)  # "1990–1995" -> "1990 to 1995"
    return re.sub(r"\.(?:\s?\.){2,}", "...", text)  # ". . ." / "...." -> "..."


def normalize_text(text: str, lang: str = "en") -> str:
    """Normalise raw ``text`` into speakable words, keeping sentence punctuation (``. , ! ? ; :``).

    English (``lang="en"``, any ``en-*``): Unicode NFKC, control characters and emoji dropped, quotes/dashes/
    ellipses unified, brackets turned into commas, numbers/currency/percent/ordinals/years/times spelled out,
    common abbreviations (Mr., Mrs., Dr., St., vs., etc., e.g., i.e., No.) expanded, ``&`` -> "and", ``+`` -> "plus",
    ``@`` -> "at", ``=`` -> "equals", a stray ``%`` -> "percent", markdown ``*``/``_`` removed, whitespace
    collapsed. Case is preserved.
    Other languages get only the Unicode and whitespace clean-up. The result may be empty (e.g. emoji only).
    """
    text = _clean_unicode(text)
    if lang.lower().split("-")[0].split("_")[0] == "en":
        text = _expand_abbreviations(text)
        text = _expand_numbers(text)
        text = text.replace("&", " and ").replace("+", " plus ").replace("@", " at ").replace("=", " equals ")
        text = text.replace("%", " percent ")
        text = text.replace("*", " ").replace("_", " ")
        text = _RE_BRACKETS.sub(" , ", text)
    text = _RE_WS.sub(" ", text)
    text = _RE_SPACE_BEFORE_PUNCT.sub("", text)
    text = _RE_COMMA_BEFORE_PUNCT.sub("", text)
    text = _RE_COMMA_AFTER_PUNCT.sub("", text)
    text = _RE_LEADING_COMMAS.sub("", text)
    return text.strip()
