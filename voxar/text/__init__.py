"""Text frontend: normalisation, sentence splitting, symbol tables, espeak-ng phonemes and tokenizers.

Typical use::

    from voxar.text import CharTokenizer, split_sentences

    tok = CharTokenizer()
    for piece in split_sentences(long_text):
        ids = tok.encode(piece)  # (T,) list of ints
"""

from voxar.text.normalize import normalize_text, number_to_words, ordinal_to_words, year_to_words
from voxar.text.phonemize import Phonemizer, espeak_available, find_espeak
from voxar.text.split import split_sentences
from voxar.text.symbols import SymbolTable
from voxar.text.tokenizers import (
    MAX_TEXT_CHARS,
    CharTokenizer,
    PhonemeTokenizer,
    Tokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)

__all__ = [
    "MAX_TEXT_CHARS",
    "CharTokenizer",
    "PhonemeTokenizer",
    "Phonemizer",
    "SymbolTable",
    "Tokenizer",
    "espeak_available",
    "find_espeak",
    "load_tokenizer",
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
    "split_sentences",
    "tokenizer_from_dict",
    "year_to_words",
]
