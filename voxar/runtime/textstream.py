"""Incremental text for streaming TTS: when has enough text arrived to start speaking?

Text may arrive in pieces (tokens from an LLM, lines from stdin). :class:`TextSegmenter` buffers them and releases
*segments*, each spoken as one LM utterance. **The rule** (documented in the README and ``voxar tts --help``):

1. A segment ends at a **sentence end**: ``.``, ``!``, ``?`` or ``…`` (with any closing quotes/brackets) followed by
   whitespace, or a line break. It is released as soon as the whitespace after it has arrived.
2. Before that, a **clause break** (``,``, ``;``, ``:``, ``—``) followed by whitespace ends a segment when at least
   ``min_chars`` characters precede it (default 40; ``first_min_chars``, default 20, for the very first segment, so
   the first audio comes sooner).
3. A buffer that reaches ``max_chars`` (default 200) without either is cut at its last whitespace (or at
   ``max_chars`` when it has none), so a run-on text never stalls the stream.
4. At the end of the input whatever is left is one last segment.

A segment with nothing pronounceable (e.g. ``"..."``) is dropped by the engine. Segments are the unit of prosody:
the engine speaks them one after another with a short pause between them, exactly as offline synthesis speaks the
sentences of a whole text. For a complete string the engine uses :func:`voxar.text.split_sentences`, as offline
synthesis does, so the two give the same audio.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|\n")
CLAUSE_END = re.compile(r"[,;:\u2014]+[\"'\u201d\u2019)\]]*(?=\s)")


class TextSegmenter:
    """Buffers text pieces and releases segments by the rule in the module docstring.

    ``feed(piece)`` returns the segments that became complete; ``finish()`` returns the rest.
    """

    def __init__(self, min_chars: int = 40, first_min_chars: int = 20, max_chars: int = 200) -> None:
        if not 0 < first_min_chars <= max_chars or not 0 < min_chars <= max_chars:
            raise ValueError(
                f"need 0 < min_chars, first_min_chars <= max_chars; got {min_chars}, {first_min_chars}, {max_chars}"
            )
        self.min_chars = min_chars
        self.first_min_chars = first_min_chars
        self.max_chars = max_chars
        self.buffer = ""
        self.released = 0

    def _cut(self) -> int | None:
        """Index after the end of the next complete segment in the buffer, or None."""
        m = SENTENCE_END.search(self.buffer)
        if m is not None:
            return m.end()
        floor = self.first_min_chars if self.released == 0 else self.min_chars
        for m in CLAUSE_END.finditer(self.buffer):
            if m.end() >= floor:
                return m.end()
        if len(self.buffer) >= self.max_chars:
            space = self.buffer.rfind(" ", 0, self.max_chars)
            return space + 1 if space > 0 else self.max_chars
        return None

    def _pop(self, end: int) -> str | None:
        segment, self.buffer = self.buffer[:end].strip(), self.buffer[end:]
        if not segment:
            return None
        self.released += 1
        return segment

    def feed(self, piece: str) -> list[str]:
        """Add ``piece``; return the segments now complete (possibly none)."""
        if not isinstance(piece, str):
            raise TypeError(f"text pieces must be str, got {type(piece).__name__}")
        self.buffer += piece
        out: list[str] = []
        while (end := self._cut()) is not None:
            segment = self._pop(end)
            if segment is not None:
                out.append(segment)
            elif not self.buffer.strip():
                break
        return out

    def finish(self) -> list[str]:
        """End of input: the rest of the buffer as a last segment (none if it is blank)."""
        segment = self._pop(len(self.buffer))
        return [segment] if segment is not None else []


def segments(pieces: Iterable[str], **kwargs: int) -> Iterator[str]:
    """Segments of an iterator of text pieces, released as soon as the rule allows (see :class:`TextSegmenter`)."""
    seg = TextSegmenter(**kwargs)
    for piece in pieces:
        yield from seg.feed(piece)
    yield from seg.finish()
