"""What ``voxar eval`` scores: generated audio, its text, and optionally a reference recording and a speaker.

Two input forms are accepted (:func:`read_inputs` picks by whether the path is a directory):

**A list file** -- UTF-8, one utterance per line, fields separated by TAB characters::

    # utt<TAB>generated_wav<TAB>text[<TAB>reference_wav[<TAB>speaker]]
    utt001	out/utt001.wav	The quick brown fox.	refs/utt001.wav	spk1
    utt002	out/utt002.wav	Hello there, world!

``text`` may contain spaces (but no TAB). ``reference_wav`` and ``speaker`` are optional; an empty field or ``-``
means "none" (e.g. ``utt<TAB>gen.wav<TAB>text<TAB>-<TAB>spk1``). Relative paths are resolved against the directory
of the list file. Blank lines and lines whose first non-blank character is ``#`` are ignored.

**A Kaldi data directory** -- ``wav.scp`` (generated audio) and ``text`` are required; ``utt2spk`` (speakers) and
``ref.scp`` (``<utt> <reference wav path>``) are optional. Relative paths are resolved against the current working
directory, as in Kaldi. ``segments`` files are not supported (one audio file per utterance is needed).

With ``ref_dir`` (``voxar eval --ref-dir DIR``), the Kaldi directory ``DIR`` supplies reference recordings (its
``wav.scp``) and speakers (its ``utt2spk``, when present) for utterances with the same id; a reference or speaker given
explicitly in the input wins.

Bad lines never stop the run: each one (too few fields, empty transcript, missing or unreadable audio, duplicate
id, ...) is reported as an :class:`InputProblem` with its file and line number and the utterance is skipped. Only
when no valid utterance is left does :func:`read_inputs` raise :class:`voxar.errors.VoxarError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voxar.errors import VoxarDataError, VoxarError

log = logging.getLogger(__name__)

LIST_FIELDS = "utt<TAB>wav<TAB>text[<TAB>ref_wav[<TAB>spk]]"
_NONE_FIELDS = ("", "-")


@dataclass(frozen=True)
class Item:
    """One utterance to score: id, generated audio, its text, optional reference recording and speaker id."""

    utt: str
    wav: Path
    text: str
    ref: Path | None = None
    spk: str | None = None


@dataclass(frozen=True)
class InputProblem:
    """A problem with one input line: ``source`` file, 1-based ``line`` (None: not tied to a line), ``message``."""

    source: str
    line: int | None
    message: str
    utt: str | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


class _Collector:
    """Accumulates problems; ``add`` returns None so callers can ``return bad(...)``."""

    def __init__(self) -> None:
        self.problems: list[InputProblem] = []

    def add(self, source: Path | str, line: int | None, message: str, utt: str | None = None) -> None:
        self.problems.append(InputProblem(str(source), line, message, utt))


def _sorted(problems: list[InputProblem]) -> list[InputProblem]:
    """Problems ordered by file, then line (stable: same-line problems keep their order)."""
    return sorted(problems, key=lambda p: (p.source, p.line if p.line is not None else 0))


def _audio_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as audio (missing, not a file, unreadable header), or None when it looks fine."""
    from voxar.audio import duration
    from voxar.errors import VoxarAudioError

    if not path.exists():
        return f"audio file {path} not found"
    if not path.is_file():
        return f"audio path {path} is not a file"
    try:
        seconds = duration(path)
    except VoxarAudioError as e:
        return f"unreadable audio: {e}"
    if seconds <= 0:
        return f"audio file {path} has no samples"
    return None


def _text_problem(text: str) -> str | None:
    from voxar.eval.textnorm import normalize_for_wer

    if not text.strip():
        return "empty transcript"
    if not normalize_for_wer(text):
        return f"transcript {text.strip()!r} has no words after normalisation"
    return None


def read_list(path: str | Path) -> tuple[list[Item], list[InputProblem]]:
    """Read a TAB-separated list file (format in the module docstring) -> ``(items, problems)``.

    Raises :class:`voxar.errors.VoxarDataError` only when the file itself cannot be read.
    """
    from voxar.data.kaldi import iter_lines

    path = Path(path)
    base = path.parent
    bad = _Collector()
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, raw in iter_lines(path):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 3 or len(fields) > 5:
            hint = " (fields must be separated by TAB characters)" if "\t" not in line else ""
            bad.add(path, lineno, f"expected {LIST_FIELDS}, got {len(fields)} field(s){hint}; skipped")
            continue
        utt, wav, text = fields[:3]
        ref = fields[3] if len(fields) > 3 else ""
        spk = fields[4] if len(fields) > 4 else ""
        if not utt or any(c.isspace() for c in utt):
            bad.add(path, lineno, f"utterance id {utt!r} is empty or contains spaces; skipped")
            continue
        if utt in seen:
            bad.add(path, lineno, f"duplicate utterance id {utt!r} (first on line {seen[utt]}); skipped", utt)
            continue
        seen[utt] = lineno
        if not wav or wav == "-":
            bad.add(path, lineno, f"{utt}: no generated audio path; skipped", utt)
            continue
        problem = _text_problem(text)
        if problem:
            bad.add(path, lineno, f"{utt}: {problem}; skipped", utt)
            continue
        if spk and any(c.isspace() for c in spk):
            bad.add(path, lineno, f"{utt}: speaker id {spk!r} contains spaces; skipped", utt)
            continue
        items.append(
            Item(
                utt=utt,
                wav=base / wav,
                text=text,
                ref=None if ref in _NONE_FIELDS else base / ref,
                spk=None if spk in _NONE_FIELDS else spk,
            )
        )
    # Audio checks last, so every structural problem is reported even for items that also have missing files.
    lines = {it.utt: seen[it.utt] for it in items}
    items = _check_audio(items, bad, lambda it, _kind: (str(path), lines[it.utt]))
    return items, _sorted(bad.problems)


def _read_scp(path: Path, bad: _Collector, *, allow_empty: bool = False) -> dict[str, tuple[str, int]]:
    """``<key> <value>`` file -> ``{key: (value, line)}``; malformed and duplicate lines become problems."""
    from voxar.data.kaldi import iter_lines, split_kv

    out: dict[str, tuple[str, int]] = {}
    for lineno, line in iter_lines(path):
        key, value = split_kv(line)
        if not key:
            bad.add(path, lineno, "empty line; skipped")
        elif key in out:
            bad.add(path, lineno, f"duplicate id {key!r} (first on line {out[key][1]}); skipped", key)
        elif value is None and not allow_empty:
            bad.add(path, lineno, f"{key}: no value; skipped", key)
        else:
            out[key] = (value or "", lineno)
    return out


def _scp_path(value: str, key: str, source: Path, line: int, bad: _Collector) -> Path | None:
    from voxar.data.kaldi import resolve_wav

    try:
        return resolve_wav(value, key=key)
    except VoxarDataError as e:
        bad.add(source, line, f"{e}; skipped", key)
        return None


def read_kaldi(path: str | Path) -> tuple[list[Item], list[InputProblem]]:
    """Read a Kaldi data directory (``wav.scp`` + ``text``, optional ``utt2spk``/``ref.scp``) -> (items, problems).

    Raises :class:`voxar.errors.VoxarDataError` when a required file is missing or a ``segments`` file is present.
    """
    d = Path(path)
    for name in ("wav.scp", "text"):
        if not (d / name).is_file():
            raise VoxarDataError(f"{d}: required file {name} is missing (voxar eval needs wav.scp and text)")
    if (d / "segments").exists():
        raise VoxarDataError(f"{d}: has a segments file; voxar eval needs one audio file per utterance in wav.scp")
    bad = _Collector()
    wav_scp = _read_scp(d / "wav.scp", bad)
    text = _read_scp(d / "text", bad, allow_empty=True)
    utt2spk = _read_scp(d / "utt2spk", bad) if (d / "utt2spk").is_file() else {}
    ref_scp = _read_scp(d / "ref.scp", bad) if (d / "ref.scp").is_file() else {}
    for utt, (_, line) in text.items():
        if utt not in wav_scp:
            bad.add(d / "text", line, f"{utt}: no audio in wav.scp; skipped", utt)
    items: list[Item] = []
    where: dict[tuple[str, str], tuple[str, int]] = {}
    for utt, (value, line) in wav_scp.items():
        if utt not in text:
            bad.add(d / "wav.scp", line, f"{utt}: no transcript in text; skipped", utt)
            continue
        transcript, tline = text[utt]
        problem = _text_problem(transcript)
        if problem:
            bad.add(d / "text", tline, f"{utt}: {problem}; skipped", utt)
            continue
        wav = _scp_path(value, utt, d / "wav.scp", line, bad)
        if wav is None:
            continue
        ref = None
        if utt in ref_scp:
            ref_value, rline = ref_scp[utt]
            ref = _scp_path(ref_value, utt, d / "ref.scp", rline, bad)
            if ref is None:
                continue
            where[(utt, "ref")] = (str(d / "ref.scp"), rline)
        where[(utt, "wav")] = (str(d / "wav.scp"), line)
        spk = utt2spk[utt][0] if utt in utt2spk else None
        items.append(Item(utt=utt, wav=wav, text=transcript, ref=ref, spk=spk))
    items = _check_audio(items, bad, lambda it, kind: where[(it.utt, kind)])
    return items, _sorted(bad.problems)


def _check_audio(
    items: list[Item], bad: _Collector, locate: Callable[[Item, str], tuple[str, int | None]]
) -> list[Item]:
    """Drop items whose generated or reference audio is missing/unreadable, reporting each at ``locate(item, kind)``
    (kind ``"wav"`` or ``"ref"``)."""
    kept = []
    for it in items:
        problem = _audio_problem(it.wav)
        kind = "wav"
        if problem is None and it.ref is not None:
            problem = _audio_problem(it.ref)
            kind = "ref"
        if problem is not None:
            source, line = locate(it, kind)
            label = "generated" if kind == "wav" else "reference"
            bad.add(source, line, f"{it.utt}: {label} {problem}; skipped", it.utt)
            continue
        kept.append(it)
    return kept


def _apply_ref_dir(items: list[Item], ref_dir: Path, bad: _Collector) -> list[Item]:
    """Fill missing references/speakers from the Kaldi directory ``ref_dir`` (matching utterance ids)."""
    if not (ref_dir / "wav.scp").is_file():
        raise VoxarDataError(f"{ref_dir}: reference directory has no wav.scp")
    if (ref_dir / "segments").exists():
        raise VoxarDataError(f"{ref_dir}: has a segments file; voxar eval needs one reference file per utterance")
    wav_scp = _read_scp(ref_dir / "wav.scp", bad)
    utt2spk = _read_scp(ref_dir / "utt2spk", bad) if (ref_dir / "utt2spk").is_file() else {}
    out: list[Item] = []
    for it in items:
        ref, spk = it.ref, it.spk
        if spk is None and it.utt in utt2spk:
            spk = utt2spk[it.utt][0]
        if ref is None:
            if it.utt not in wav_scp:
                bad.add(ref_dir / "wav.scp", None, f"{it.utt}: no reference recording; kept without reference", it.utt)
            else:
                value, line = wav_scp[it.utt]
                ref = _scp_path(value, it.utt, ref_dir / "wav.scp", line, bad)
                if ref is None:
                    continue
                problem = _audio_problem(ref)
                if problem is not None:
                    bad.add(ref_dir / "wav.scp", line, f"{it.utt}: reference {problem}; skipped", it.utt)
                    continue
        out.append(Item(utt=it.utt, wav=it.wav, text=it.text, ref=ref, spk=spk))
    return out


def read_inputs(
    path: str | Path, *, ref_dir: str | Path | None = None, allow_empty: bool = False
) -> tuple[list[Item], list[InputProblem]]:
    """Read a list file or a Kaldi directory (see the module docstring) -> ``(items, problems)``, items in input order.

    ``ref_dir`` supplies references/speakers by utterance id. Raises :class:`voxar.errors.VoxarDataError` when
    ``path`` does not exist or a directory lacks required files, and :class:`voxar.errors.VoxarError` when no
    valid utterance is left (unless ``allow_empty``).
    """
    path = Path(path)
    if not path.exists():
        raise VoxarDataError(f"{path}: input not found (expected a list file or a Kaldi data directory)")
    items, problems = read_kaldi(path) if path.is_dir() else read_list(path)
    if ref_dir is not None:
        bad = _Collector()
        items = _apply_ref_dir(items, Path(ref_dir), bad)
        problems = problems + bad.problems
    problems = _sorted(problems)
    if not items and not allow_empty:
        first = f"; first problem: {problems[0]}" if problems else ""
        raise VoxarError(f"{path}: no usable utterances ({len(problems)} problem(s){first})")
    return items, problems
