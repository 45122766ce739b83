"""Text normalisation applied to references *and* ASR hypotheses before word error rate is computed.

WER counts word-level edits, so two transcripts that differ only in case, punctuation or the way a number is written
must compare equal. :func:`normalize_for_wer` maps both sides to a canonical form:

1. numbers, currency, abbreviations, etc. are spelled out with :func:`voxar.text.normalize.normalize_text`
   (``"Dr. Smith paid $5"`` -> ``"Doctor Smith paid five dollars"``); if that module cannot be imported the digits are
   left as they are (a warning is logged once) and utterances with digits will score worse than they should;
2. everything is lower-cased (``str.casefold`` after Unicode NFKC) and typographic apostrophes become ``'``;
3. every character that is neither a letter, a digit nor an apostrophe becomes a space -- so hyphenated words split
   (``"twenty-one"`` -> ``"twenty one"``, as the ASR lexicon spells them);
4. apostrophes are kept only *inside* a word (``"don't"``, ``"o'clock"``); leading/trailing ones are quotes and go;
5. whitespace is collapsed to single spaces and the result stripped.

The result may be the empty string (text made of punctuation only).
"""

from __future__ import annotations

import logging
import re
import unicodedata

log = logging.getLogger(__name__)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u0060": "'", "\u00b4": "'"})
_NOT_WORD = re.compile(r"[^\w']|_")  # \w is Unicode letters/digits/underscore; underscore is punctuation here
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")  # apostrophes not between two word characters
_WS = re.compile(r"\s+")

_warned_no_normalizer = False


def _expand(text: str) -> str:
    """Spell out numbers/abbreviations with voxar's TTS normaliser; identity when it is not importable."""
    global _warned_no_normalizer
    try:
        from voxar.text.normalize import normalize_text
    except ImportError:
        if not _warned_no_normalizer:
            log.warning("voxar.text.normalize is not importable: numbers are not spelled out before WER")
            _warned_no_normalizer = True
        return text
    return normalize_text(text)


def normalize_for_wer(text: str) -> str:
    """Canonical lower-case word string of ``text`` for WER scoring (see the module docstring for the steps).

    >>> normalize_for_wer("Hello, World! It's 3 o'clock.")
    "hello world it's three o'clock"
    """
    text = _expand(unicodedata.normalize("NFKC", text))
    text = text.translate(_APOSTROPHES).casefold()
    text = _NOT_WORD.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return _WS.sub(" ", text).strip()
