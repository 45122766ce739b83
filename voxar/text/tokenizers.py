"""Tokenizers: text -> token ids for the acoustic models, saved as JSON next to their weights.

Two implementations of one interface, :class:`Tokenizer`:

* :class:`CharTokenizer` -- normalised, lower-cased characters; accented letters folded to ASCII. No dependency.
* :class:`PhonemeTokenizer` -- IPA from espeak-ng (:class:`~voxar.text.phonemize.Phonemizer`), one symbol per
  Unicode code point: stress marks (ˈ ˌ) and the length mark (ː) are symbols of their own, and a diphthong is its
  letters in sequence ("aɪ" -> "a", "ɪ"), which keeps the inventory small and needs no phoneme dictionary.

``tok.to_dict()`` (``{"type": "char" | "phoneme", "symbols": [...], ...}``) is what a model stores;
``tokenizer_from_dict`` / ``load_tokenizer`` rebuild the same class with identical ids.
"""

from __future__ import annotations

import logging
import os
import string
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from voxar.errors import VoxarTextError
from voxar.text.normalize import normalize_text
from voxar.text.phonemize import Phonemizer
from voxar.text.symbols import SPACE, SymbolTable, read_json, write_json_atomic

__all__ = [
    "DEFAULT_CHAR_SYMBOLS",
    "DEFAULT_PHONEME_SYMBOLS",
    "IPA_PHONES",
    "MAX_TEXT_CHARS",
    "PUNCTUATION_SYMBOLS",
    "CharTokenizer",
    "PhonemeTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "tokenizer_from_dict",
]

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 100_000  # longer text must be split first (voxar.text.split_sentences)

PUNCTUATION_SYMBOLS = [".", ",", "!", "?", ";", ":", "-", '"']
DEFAULT_CHAR_SYMBOLS = [SPACE, *string.ascii_lowercase, "'", *PUNCTUATION_SYMBOLS]

# espeak-ng 1.51 English IPA inventory, found by phonemising ~42k CMU-dictionary words and three licence texts with
# the en-us voice (en-gb adds only "ɒ"; "ʍ" is added for Scottish-style voices). U+0329 (syllabic) and U+0303
# (nasalised, in French loanwords) are combining marks that espeak-ng attaches to the preceding letter.
IPA_PHONES = [
    # vowels
    "a", "e", "i", "o", "u", "æ", "ɐ", "ɑ", "ɒ", "ɔ", "ə", "ɚ", "ɛ", "ɜ", "ɪ", "ʊ", "ʌ", "ᵻ",
    # consonants
    "b", "d", "f", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "x", "z",
    "ð", "ŋ", "ɡ", "ɬ", "ɹ", "ɾ", "ʃ", "ʒ", "ʔ", "ʍ", "θ",
    # modifiers
    "ʲ", "\u0329", "\u0303",
]  # fmt: skip
STRESS_SYMBOLS = ["ˈ", "ˌ"]
LENGTH_SYMBOLS = ["ː"]
DEFAULT_PHONEME_SYMBOLS = [SPACE, *PUNCTUATION_SYMBOLS, *STRESS_SYMBOLS, *LENGTH_SYMBOLS, *IPA_PHONES]

_ASCII_FOLD = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "þ": "th", "ð": "d", "ı": "i"}


class Tokenizer(ABC):
    """Text -> ids and back. Subclasses turn normalised text into symbols; the table turns symbols into ids.

    Args:
        symbols: the symbol table (ids); each subclass has a default.
        lang: language of :func:`~voxar.text.normalize_text` (English gets numbers etc. spelled out).
    """

    type_name: ClassVar[str] = ""

    def __init__(self, symbols: SymbolTable, lang: str = "en") -> None:
        self._symbols = symbols
        self.lang = lang
        self._unknown_seen: set[str] = set()

    @property
    def symbols(self) -> SymbolTable:
        """The symbol table; ``len(tok.symbols)`` is the embedding size a model needs."""
        return self._symbols

    @property
    def vocab_size(self) -> int:
        return len(self._symbols)

    @property
    def pad_id(self) -> int:
        return SymbolTable.PAD_ID

    @abstractmethod
    def _symbolize(self, texts: list[str]) -> list[list[str]]:
        """Normalised texts -> their symbol sequences (symbols outside the table are allowed; they become <unk>)."""

    def _check(self, text: str) -> str:
        """Type, size and emptiness checks, then normalisation; returns the normalised text."""
        if not isinstance(text, str):
            raise VoxarTextError(f"text must be a string, got {type(text).__name__}")
        if len(text) > MAX_TEXT_CHARS:
            raise VoxarTextError(
                f"text is {len(text)} characters, over the {MAX_TEXT_CHARS} limit of one encode(); "
                "split it first with voxar.text.split_sentences and synthesise the pieces"
            )
        if not text.strip():
            raise VoxarTextError("text is empty or whitespace only; nothing to speak")
        normalized = normalize_text(text, self.lang)
        if not normalized:
            raise VoxarTextError(f"text {_preview(text)} has nothing to speak after normalisation")
        return normalized

    def normalize(self, text: str) -> str:
        """The normalised text that :meth:`encode` tokenises."""
        return self._check(text)

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Normalise ``text`` and return its ids ``(T,)``; ``<bos>``/``<eos>`` are added on request.

        Raises:
            VoxarTextError: empty or whitespace-only text, text with nothing speakable, text over ``MAX_TEXT_CHARS``.
        """
        return self.encode_batch([text], add_bos=add_bos, add_eos=add_eos)[0]

    def encode_batch(self, texts: Sequence[str], *, add_bos: bool = False, add_eos: bool = False) -> list[list[int]]:
        """:meth:`encode` for B texts (the phoneme tokenizer runs espeak-ng once for all); ragged ``B x (T_b,)``."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of strings, not a single string")
        normalized = [self._check(t) for t in texts]
        out = []
        for text, syms in zip(texts, self._symbolize(normalized), strict=True):
            ids = [self._id(s) for s in syms]
            if not ids:
                raise VoxarTextError(f"text {_preview(text)} has nothing to speak after normalisation")
            out.append(([SymbolTable.BOS_ID] if add_bos else []) + ids + ([SymbolTable.EOS_ID] if add_eos else []))
        return out

    def _id(self, sym: str) -> int:
        i = self._symbols.index(sym)
        if i == SymbolTable.UNK_ID and sym not in self._unknown_seen:
            self._unknown_seen.add(sym)
            log.debug("%s tokenizer: %r (U+%04X) is not in the table; using <unk>", self.type_name, sym, ord(sym[0]))
        return i

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text (symbols joined): ``<pad>``/``<bos>``/``<eos>`` dropped, ``<unk>`` shown as ``<unk>``.

        Raises:
            VoxarTextError: an id outside the table.
        """
        skip = (SymbolTable.PAD_ID, SymbolTable.BOS_ID, SymbolTable.EOS_ID)
        return "".join(self._symbols.symbol(i) for i in (int(i) for i in ids) if i not in skip)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description that :func:`tokenizer_from_dict` turns back into an identical tokenizer."""
        return {"type": self.type_name, "symbols": list(self._symbols.symbols), "lang": self.lang}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON (atomic write)."""
        write_json_atomic(path, self.to_dict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tokenizer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._symbols)} symbols, lang={self.lang!r})"


class CharTokenizer(Tokenizer):
    """Characters of the normalised text, lower-cased (``lowercase=True``), accents folded to ASCII.

    A character not in the table is folded (``é`` -> ``e``, ``ß`` -> ``ss``, via Unicode decomposition) and becomes
    ``<unk>`` only if that fails (CJK, symbols); each unknown character is logged once at debug level.
    Default symbols: space, ``a``-``z``, apostrophe and ``. , ! ? ; : - "``.
    """

    type_name = "char"

    def __init__(self, symbols: SymbolTable | None = None, lang: str = "en", lowercase: bool = True) -> None:
        super().__init__(symbols if symbols is not None else SymbolTable(DEFAULT_CHAR_SYMBOLS), lang)
        self.lowercase = lowercase

    def _symbolize(self, texts: list[str]) -> list[list[str]]:
        return [self._chars(t) for t in texts]

    def _chars(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        out: list[str] = []
        for ch in text:
            if ch in self._symbols or ch.isspace():
                out.append(SPACE if ch.isspace() else ch)
                continue
            folded = _fold(ch)
            if folded and all(c in self._symbols for c in folded):
                out.extend(folded)
            elif folded:
                out.append(ch)  # not in the table: becomes <unk>
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "lowercase": self.lowercase}


def _fold(ch: str) -> str:
    """ASCII-ish form of one character: "é" -> "e", "ß" -> "ss"; a lone combining mark -> ""."""
    if ch in _ASCII_FOLD:
        return _ASCII_FOLD[ch]
    decomposed = unicodedata.normalize("NFKD", ch)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped if stripped != decomposed or not stripped else ch


class PhonemeTokenizer(Tokenizer):
    """IPA symbols from espeak-ng: one symbol per code point, the space as word boundary, punctuation kept.

    espeak-ng is only needed when encoding: a saved phoneme tokenizer loads without it. Symbols espeak-ng emits
    that are missing from the table (other voices) become ``<unk>`` and are logged once at debug level.

    Args:
        symbols: the table; default :data:`DEFAULT_PHONEME_SYMBOLS` (English espeak-ng inventory).
        voice: espeak-ng voice.
        lang: normalisation language; default: the voice's language ("en-us" -> "en").
        phonemizer: a ready :class:`Phonemizer` to share (not saved); default: made on first use.
    """

    type_name = "phoneme"

    def __init__(
        self,
        symbols: SymbolTable | None = None,
        voice: str = "en-us",
        lang: str | None = None,
        phonemizer: Phonemizer | None = None,
    ) -> None:
        super().__init__(
            symbols if symbols is not None else SymbolTable(DEFAULT_PHONEME_SYMBOLS),
            lang if lang is not None else voice.split("-")[0],
        )
        self.voice = voice
        self._phonemizer = phonemizer

    @property
    def phonemizer(self) -> Phonemizer:
        """The espeak-ng wrapper (created on first use; raises VoxarTextError if espeak-ng is missing)."""
        if self._phonemizer is None:
            self._phonemizer = Phonemizer(self.voice)
        return self._phonemizer

    def phonemize(self, text: str) -> str:
        """The IPA string that :meth:`encode` tokenises (normalised first)."""
        return self.phonemizer.phonemize([self._check(text)])[0]

    def _symbolize(self, texts: list[str]) -> list[list[str]]:
        return [[SPACE if ch.isspace() else ch for ch in ipa] for ipa in self.phonemizer.phonemize(texts)]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "voice": self.voice}


_TOKENIZERS: dict[str, type[Tokenizer]] = {"char": CharTokenizer, "phoneme": PhonemeTokenizer}
_OPTIONS: dict[str, dict[str, type]] = {
    "char": {"lang": str, "lowercase": bool},
    "phoneme": {"lang": str, "voice": str},
}


def tokenizer_from_dict(data: dict[str, Any], *, where: str = "tokenizer") -> Tokenizer:
    """Rebuild the tokenizer described by ``data`` (from :meth:`Tokenizer.to_dict`), same class and same ids.

    Raises:
        VoxarTextError: unknown type, unknown keys, wrong value types, or an invalid symbol list.
    """
    if not isinstance(data, dict):
        raise VoxarTextError(f"{where}: expected a mapping, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in _TOKENIZERS:
        raise VoxarTextError(f"{where}: unknown tokenizer type {kind!r}; expected one of {sorted(_TOKENIZERS)}")
    options = _OPTIONS[kind]
    unknown = sorted(set(data) - {"type", "symbols", *options})
    if unknown:
        raise VoxarTextError(f"{where}: unknown key(s) {', '.join(unknown)} for a {kind} tokenizer")
    kwargs: dict[str, Any] = {}
    for key, tp in options.items():
        if key in data:
            if not isinstance(data[key], tp):
                raise VoxarTextError(f"{where}: {key} must be {tp.__name__}, got {type(data[key]).__name__}")
            kwargs[key] = data[key]
    symbols = SymbolTable.from_dict({"symbols": data.get("symbols")}, where=where)
    return _TOKENIZERS[kind](symbols=symbols, **kwargs)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a tokenizer JSON written by :meth:`Tokenizer.save`."""
    return tokenizer_from_dict(read_json(path), where=str(path))


def _preview(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")
