"""Splitting long text into sentence-sized pieces that a TTS model can synthesise one at a time."""

from __future__ import annotations

import re

from voxar.errors import VoxarTextError
from voxar.text.normalize import OTHER_ABBREVIATIONS, TITLE_ABBREVIATIONS

__all__ = ["split_sentences"]

# A sentence end candidate: a run of . ! ? (plus closing quotes/brackets) followed by whitespace or the end.
_RE_END = re.compile(r"[.!?]+[\"')\]\u201d\u2019]*(?=\s|$)")
_RE_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_RE_CLAUSE = re.compile(r"(?<=[,;:])\s+")
_RE_WS = re.compile(r"\s+")
_RE_WORD_BEFORE = re.compile(r"[\w.]+$")


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Split ``text`` into pieces of at most ``max_chars`` characters, at the most natural boundary available.

    This is the function to use before synthesising long text (``Tokenizer.encode`` refuses text over
    ``MAX_TEXT_CHARS``, and models work best one sentence at a time). The rule, in order:

    1. A blank line (paragraph break) always ends a sentence.
    2. A run of ``.``, ``!`` or ``?`` (optionally followed by closing quotes/brackets) that is followed by whitespace
       or the end of the text ends a sentence, except a single ``.`` that ends

       * a title abbreviation (``Mr. Mrs. Ms. Dr. Prof. Mt. Capt. Gen. Lt. Col. Sgt. Rev.``): never a boundary;
       * another abbreviation (``etc. vs. e.g. i.e. Jr. Sr. approx. No. St.``): a boundary only when the next
         word starts with an upper-case letter;
       * a single upper-case initial (``J. Smith``, so also "plan B. Then"): never a boundary.

       Decimals (``3.14``) and dotted words never split since no whitespace follows the dot.
    3. A sentence longer than ``max_chars`` is split after clause punctuation (``,`` ``;`` ``:`` followed by
       whitespace), packing consecutive clauses greedily into pieces of at most ``max_chars``.
    4. A clause still longer than ``max_chars`` is split at whitespace, packing words greedily; a single word longer
       than ``max_chars`` is cut into ``max_chars``-sized chunks (the only case where a word is broken).

    Whitespace inside a piece is collapsed to single spaces; pieces are stripped and never empty, so
    ``" ".join(pieces).split() == text.split()`` whenever no word exceeds ``max_chars``.

    Args:
        text: raw or normalised text of any length.
        max_chars: the longest piece allowed (>= 1).

    Returns:
        The pieces in order (empty list for empty or whitespace-only text).
    """
    if max_chars < 1:
        raise VoxarTextError(f"split_sentences: max_chars must be >= 1, got {max_chars}")
    pieces: list[str] = []
    for paragraph in _RE_PARAGRAPH.split(text):
        for sentence in _sentences(paragraph):
            sentence = _RE_WS.sub(" ", sentence).strip()
            if not sentence:
                continue
            if len(sentence) <= max_chars:
                pieces.append(sentence)
            else:
                pieces.extend(_split_long(sentence, max_chars))
    return pieces


def _sentences(paragraph: str) -> list[str]:
    out = []
    start = 0
    for m in _RE_END.finditer(paragraph):
        if _is_boundary(paragraph, m):
            out.append(paragraph[start : m.end()])
            start = m.end()
    out.append(paragraph[start:])
    return out


def _is_boundary(text: str, m: re.Match[str]) -> bool:
    punct = m.group().rstrip("\"')]\u201d\u2019")
    if punct != ".":
        return True  # "!", "?", "...", "?!" always end a sentence
    word_match = _RE_WORD_BEFORE.search(text[max(0, m.start() - 32) : m.start()])  # the word the dot ends
    if word_match is None:
        return True
    word = word_match.group().strip(".")
    abbr = word.lower()
    if abbr in TITLE_ABBREVIATIONS or (len(word) == 1 and word.isupper()):
        return False
    if abbr in OTHER_ABBREVIATIONS:
        next_char = text[m.end() :].lstrip()[:1]
        return next_char.isupper()
    return True


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Pack clauses, then words, then character chunks into pieces of at most ``max_chars``."""
    pieces: list[str] = []
    for clause in _pack(_RE_CLAUSE.split(sentence), max_chars):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        for chunk in _pack(clause.split(" "), max_chars):
            if len(chunk) <= max_chars:
                pieces.append(chunk)
            else:  # one word longer than max_chars
                pieces.extend(chunk[i : i + max_chars] for i in range(0, len(chunk), max_chars))
    return [p for p in (p.strip() for p in pieces) if p]


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Join consecutive ``parts`` with spaces while the result stays within ``max_chars`` (longer parts pass as-is)."""
    out: list[str] = []
    current = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if current and len(current) + 1 + len(part) <= max_chars:
            current += " " + part
        else:
            if current:
                out.append(current)
            current = part
    if current:
        out.append(current)
    return out
