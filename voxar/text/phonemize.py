"""IPA phonemes from the espeak-ng binary, many sentences per process call, with punctuation kept.

How espeak-ng is driven (espeak-ng 1.51):

* ``espeak-ng -q -b 1 --ipa -v <voice>`` with the text on stdin: ``-q`` makes no sound, ``-b 1`` reads UTF-8,
  ``--ipa`` writes IPA to stdout. Plain ``--ipa`` is the clean form for per-character tokenisation: phonemes are
  not separated and diphthongs carry no tie (``--ipa=3`` puts a zero-width joiner inside multi-letter phonemes, and
  ``--sep``/``--tie`` add separators), so the output is just IPA letters, stress marks and length marks.
* Without ``--stdin`` espeak-ng reads stdin line by line and writes one output line per input line, so one process
  phonemises a whole batch: one chunk per line. espeak-ng also ends an output line at clause punctuation and inside
  very long clauses (around 700 characters), so chunks contain no clause punctuation and at most
  ``_MAX_CHUNK_CHARS`` characters; when the output line count still differs from the input's, every chunk of that
  batch is phonemised in its own process instead (slow but always correctly aligned).
* espeak-ng drops punctuation, which TTS needs for prosody: the text is split at punctuation, the pieces between
  are phonemised, and the punctuation is put back verbatim where it was (``"Hello, world!"`` ->
  ``"həlˈoʊ, wˈɜːld!"``).

Pass normalised text (:func:`voxar.text.normalize_text`): espeak-ng reads digits and abbreviations itself, but
they may be cut at their dots before it sees them. Words are separated by one space; espeak-ng sometimes merges
short function words ("I am" -> "aɪɐm").
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from voxar.errors import VoxarTextError

__all__ = ["ESPEAK_ENV", "Phonemizer", "espeak_available", "find_espeak"]

log = logging.getLogger(__name__)

ESPEAK_ENV = "VOXAR_ESPEAK"
_INSTALL_HINT = "install it with 'apt-get install espeak-ng'"
_MIN_CHUNKS_PER_JOB = 32  # smaller batches are not worth another process
_MAX_CHUNK_CHARS = 200  # well under the ~700 characters where espeak-ng starts a new output line mid-clause

# Punctuation kept as symbols: a run of . , : ; ! ? ending a word (so "3.14", "1,000" and "10:30" stay intact),
# ; ! ? anywhere, quotes/brackets/inverted marks, and a dash standing alone between spaces.
_RE_PUNCT = re.compile(r"""[.,:;!?]+(?=[\s"()\[\]¡¿]|$)|[;!?]+|["()\[\]¡¿]|(?<!\S)-+(?!\S)""")
_RE_LANG_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)?\)")  # "(fr)" marks a language switch in espeak output
_RE_WS = re.compile(r"\s+")
_TIES = str.maketrans("", "", "\u200d\u200c\u0361\u035c")


def find_espeak() -> str:
    """Path of the espeak-ng binary: ``$VOXAR_ESPEAK`` when set (a path or a command name), else ``espeak-ng`` on PATH.

    Raises:
        VoxarTextError: the binary cannot be found (the message says how to install it).
    """
    override = os.environ.get(ESPEAK_ENV)
    if override:
        path = shutil.which(override)
        if path is None:
            raise VoxarTextError(f"espeak-ng not found: {ESPEAK_ENV}={override} is not an executable; {_INSTALL_HINT}")
        return path
    path = shutil.which("espeak-ng")
    if path is None:
        raise VoxarTextError(f"espeak-ng not found on PATH; {_INSTALL_HINT} (or set {ESPEAK_ENV} to the binary)")
    return path


def espeak_available() -> bool:
    """Whether :func:`find_espeak` would succeed."""
    try:
        find_espeak()
    except VoxarTextError:
        return False
    return True


class Phonemizer:
    """Text -> IPA with espeak-ng, batched into one process call per :meth:`phonemize`, with an LRU cache.

    Args:
        voice: espeak-ng voice (``espeak-ng --voices`` lists them), e.g. ``"en-us"``, ``"en-gb"``.
        cache_size: how many distinct text chunks keep their IPA in memory.
        jobs: espeak-ng processes run in parallel for big batches (each gets a contiguous share of the lines).

    Raises:
        VoxarTextError: espeak-ng is missing (checked here, so a missing binary fails early).
    """

    def __init__(self, voice: str = "en-us", cache_size: int = 20_000, jobs: int = 1) -> None:
        self.voice = voice
        self.executable = find_espeak()
        self.cache_size = cache_size
        self.jobs = max(1, int(jobs))
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def phonemize(self, texts: Sequence[str]) -> list[str]:
        """IPA for each text: words separated by one space, punctuation kept verbatim as separate symbols.

        Args:
            texts: B strings (ideally normalised); empty strings give empty strings.

        Returns:
            B IPA strings, aligned with ``texts``.

        Raises:
            VoxarTextError: espeak-ng fails (e.g. unknown voice) or does not answer in time.
        """
        if isinstance(texts, str):
            raise TypeError("Phonemizer.phonemize takes a list of strings, not a single string")
        segmented = [_segment(text) for text in texts]
        wanted = {chunk for segments in segmented for _, core in segments for chunk in _chunks(core)}
        with self._lock:
            missing = [c for c in sorted(wanted) if c not in self._cache]
            if missing:
                for chunk, ipa in zip(missing, self._run_batch(missing), strict=True):
                    self._remember(chunk, ipa)
            lookup = {}
            for chunk in wanted:  # read (and refresh) every needed entry while holding the lock
                lookup[chunk] = self._cache.get(chunk)
                if lookup[chunk] is None:  # evicted by this very batch (cache smaller than the batch)
                    lookup[chunk] = self._run_batch([chunk])[0]
                else:
                    self._cache.move_to_end(chunk)
        out = []
        for segments in segmented:
            parts = []
            for punct, core in segments:
                if punct is not None:
                    parts.append(punct)
                else:  # whitespace around the text part survives as one space around its IPA
                    ipa = " ".join(lookup[c] for c in _chunks(core))
                    parts.append(" " * core[:1].isspace() + ipa + " " * core[-1:].isspace())
            out.append(_RE_WS.sub(" ", "".join(parts)).strip())
        return out

    def _remember(self, chunk: str, ipa: str) -> None:
        self._cache[chunk] = ipa
        self._cache.move_to_end(chunk)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _run_batch(self, chunks: list[str]) -> list[str]:
        """IPA for ``chunks``: split over ``jobs`` parallel processes when the batch is big enough."""
        jobs = min(self.jobs, len(chunks) // _MIN_CHUNKS_PER_JOB)
        if jobs <= 1:
            return self._run_lines(chunks)
        step = -(-len(chunks) // jobs)  # ceil division
        shares = [chunks[i : i + step] for i in range(0, len(chunks), step)]
        with ThreadPoolExecutor(max_workers=len(shares)) as pool:
            return [ipa for share in pool.map(self._run_lines, shares) for ipa in share]

    def _run_lines(self, chunks: list[str]) -> list[str]:
        """One espeak-ng process for all ``chunks`` (one per line); per-chunk processes if lines do not align."""
        lines = self._run("\n".join(chunks) + "\n")
        if len(lines) == len(chunks):
            return [_clean(line) for line in lines]
        log.debug("espeak-ng gave %d lines for %d chunks; phonemising one chunk per call", len(lines), len(chunks))
        return [_clean(" ".join(self._run(chunk + "\n"))) for chunk in chunks]

    def _run(self, text: str) -> list[str]:
        cmd = [self.executable, "-q", "-b", "1", "--ipa", "-v", self.voice]
        try:
            proc = subprocess.run(
                cmd, input=text.encode("utf-8"), capture_output=True, timeout=30 + len(text) / 500, check=False
            )
        except subprocess.TimeoutExpired:
            raise VoxarTextError(f"espeak-ng did not answer in time for {len(text)} characters of text") from None
        except OSError as e:
            raise VoxarTextError(f"cannot run espeak-ng at {self.executable}: {e}; {_INSTALL_HINT}") from None
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            detail = stderr.splitlines()[0] if stderr else f"exit status {proc.returncode}"
            raise VoxarTextError(f"espeak-ng failed with voice {self.voice!r}: {detail}")
        return proc.stdout.decode("utf-8", "replace").splitlines()


def _segment(text: str) -> list[tuple[str | None, str]]:
    """Split ``text`` into ``(punct, "")`` and ``(None, piece)`` pairs in order; pieces keep their whitespace."""
    parts: list[tuple[str | None, str]] = []
    pos = 0
    for m in _RE_PUNCT.finditer(text):
        if m.start() > pos:
            parts.append((None, text[pos : m.start()]))
        parts.append((m.group(), ""))
        pos = m.end()
    if pos < len(text):
        parts.append((None, text[pos:]))
    return parts


def _chunks(core: str) -> list[str]:
    """Words of ``core`` packed into chunks of at most ``_MAX_CHUNK_CHARS`` (a longer single word stays whole).

    A piece without any letter or digit (stray symbols) gives no chunk, hence no phonemes.
    """
    if not any(ch.isalnum() for ch in core):
        return []
    words = core.split()
    chunks: list[str] = []
    for word in words:
        if chunks and len(chunks[-1]) + 1 + len(word) <= _MAX_CHUNK_CHARS:
            chunks[-1] += " " + word
        else:
            chunks.append(word)
    return chunks


def _clean(line: str) -> str:
    """espeak-ng IPA line -> plain IPA: language-switch marks and tie characters removed, spaces collapsed."""
    line = _RE_LANG_SWITCH.sub("", line).translate(_TIES)
    return _RE_WS.sub(" ", line).strip()
