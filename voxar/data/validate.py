"""Validate a Kaldi data directory and report every problem found (not only the first).

Each :class:`Problem` names the file, the line (when known), the key, and what is wrong; ``severity`` is
``"error"`` (the directory cannot be used as is) or ``"warning"`` (suspicious but usable). Only errors fail
``voxar data validate``. Most errors are repaired by ``voxar data fix``, which drops inconsistent utterances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from voxar.data.kaldi import REQUIRED_FILES, is_piped, iter_lines, resolve_wav, split_kv
from voxar.errors import VoxarDataError

Severity = Literal["error", "warning"]
# Slack (seconds) allowed between a segment's end and the end of its recording before warning.
SEGMENT_END_SLACK = 0.01


@dataclass(frozen=True)
class Problem:
    """One finding: ``file`` is the name inside the data directory (``text``, ``wav.scp``, ...)."""

    file: str
    line: int | None
    key: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.key}" if self.key else ""
        return f"{self.severity.upper()} {where}{key} {self.message}"

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)


@dataclass
class _Entry:
    line: int
    value: str | None


class _Report:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, file: str, line: int | None, key: str | None, message: str) -> None:
        self.problems.append(Problem(file, line, key, message, "error"))

    def warn(self, file: str, line: int | None, key: str | None, message: str) -> None:
        self.problems.append(Problem(file, line, key, message, "warning"))


def count_errors(problems: list[Problem]) -> tuple[int, int]:
    """``(errors, warnings)`` in ``problems``."""
    errors = sum(p.severity == "error" for p in problems)
    return errors, len(problems) - errors


def _scan(
    path: Path, rep: _Report, *, empty_value: str = "line has no value (expected '<key> <value>')"
) -> dict[str, _Entry]:
    """Parse a ``<key> <value>`` file, reporting blank/malformed lines, CRLF, duplicates and sort order."""
    name = path.name
    entries: dict[str, _Entry] = {}
    try:
        lines = list(iter_lines(path))
    except VoxarDataError as e:
        rep.error(name, None, None, str(e).split(": ", 1)[-1])
        return entries
    prev: str | None = None
    unsorted: list[tuple[int, str, str]] = []
    for lineno, line in lines:
        if "\r" in line:
            rep.error(name, lineno, None, "carriage return in line (Windows line endings); convert with dos2unix")
        key, value = split_kv(line)
        if not key:
            rep.error(name, lineno, None, "empty line")
            continue
        if line[:1].isspace():
            rep.error(name, lineno, key, "line starts with whitespace")
        if value is None:
            rep.error(name, lineno, key, empty_value)
        if key in entries:
            rep.error(name, lineno, key, f"duplicate key (first on line {entries[key].line})")
        else:
            entries[key] = _Entry(lineno, value)
        if prev is not None and key < prev:
            unsorted.append((lineno, key, prev))
        prev = key
    if unsorted:
        lineno, key, before = unsorted[0]
        rep.error(
            name,
            lineno,
            key,
            f"file is not sorted: {key!r} comes after {before!r} ({len(unsorted)} line(s) out of order; "
            "run `voxar data fix`)",
        )
    return entries


def _check_values(name: str, entries: dict[str, _Entry], rep: _Report, check: Callable[[str], str | None]) -> None:
    for key, entry in entries.items():
        if entry.value is not None:
            message = check(entry.value)
            if message:
                rep.error(name, entry.line, key, message)


def _one_token(value: str) -> str | None:
    return None if len(value.split()) == 1 else f"expected one speaker id, got {value!r}"


def _segment_fields(value: str) -> tuple[str, float, float] | None:
    fields = value.split()
    if len(fields) != 3:
        return None
    try:
        return fields[0], float(fields[1]), float(fields[2])
    except ValueError:
        return None


def _check_segment(value: str) -> str | None:
    seg = _segment_fields(value)
    if seg is None:
        return f"malformed segment {value!r} (expected '<utt> <reco> <start> <end>')"
    _, start, end = seg
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or start >= end:
        return f"bad segment times: need 0 <= start < end, got start={start} end={end}"
    return None


def _check_dur(value: str) -> str | None:
    try:
        dur = float(value)
    except ValueError:
        return f"duration is not a number: {value!r}"
    return None if math.isfinite(dur) and dur > 0 else f"duration must be > 0, got {value}"


def validate_data_dir(
    path: str | Path, *, check_audio: bool = True, min_dur: float = 0.1, max_dur: float = 60.0
) -> list[Problem]:
    """All problems of the data directory at ``path`` (empty list: valid).

    Checks file presence, line format, sorting, duplicate keys, cross-file consistency (text / utt2spk / wav.scp /
    segments / spk2utt / utt2dur), speaker-id prefixes (warning), empty transcripts, segment times, and with
    ``check_audio`` that each audio file exists, is readable, and that utterance durations lie in
    ``[min_dur, max_dur]`` seconds. A missing directory raises :class:`VoxarDataError`.
    """
    path = Path(path)
    if not path.is_dir():
        raise VoxarDataError(f"{path}: data directory not found")
    rep = _Report()
    present = {name: (path / name).is_file() for name in REQUIRED_FILES}
    for name, ok in present.items():
        if not ok:
            rep.error(name, None, None, f"required file {name} is missing")

    wav = _scan(path / "wav.scp", rep) if present["wav.scp"] else {}
    text = _scan(path / "text", rep, empty_value="empty transcript") if present["text"] else {}
    utt2spk = _scan(path / "utt2spk", rep) if present["utt2spk"] else {}
    segments = _scan(path / "segments", rep) if (path / "segments").is_file() else None
    spk2utt = _scan(path / "spk2utt", rep) if (path / "spk2utt").is_file() else None
    utt2dur = _scan(path / "utt2dur", rep) if (path / "utt2dur").is_file() else None

    _check_values("utt2spk", utt2spk, rep, _one_token)
    _check_values("wav.scp", wav, rep, _check_piped)
    if segments is not None:
        _check_values("segments", segments, rep, _check_segment)
    if utt2dur is not None:
        _check_values("utt2dur", utt2dur, rep, _check_dur)

    _check_consistency(rep, present, wav, text, utt2spk, segments)
    if spk2utt is not None:
        _check_spk2utt(rep, spk2utt, utt2spk)
    _check_speaker_prefixes(rep, utt2spk)
    if utt2dur is not None:
        for utt in sorted(set(utt2dur) - set(utt2spk)):
            rep.warn("utt2dur", utt2dur[utt].line, utt, "utterance not in utt2spk")
        for utt in sorted(set(utt2spk) - set(utt2dur)):
            rep.warn("utt2spk", utt2spk[utt].line, utt, "utterance has no duration in utt2dur")
    if check_audio:
        _check_audio(rep, wav, segments, min_dur, max_dur)
    return rep.problems


def _check_piped(value: str) -> str | None:
    if is_piped(value):
        return "piped commands ('... |') are not supported (voxar does not run shell commands); convert to files"
    return None


def _check_consistency(
    rep: _Report,
    present: dict[str, bool],
    wav: dict[str, _Entry],
    text: dict[str, _Entry],
    utt2spk: dict[str, _Entry],
    segments: dict[str, _Entry] | None,
) -> None:
    if present["text"] and present["utt2spk"]:
        for utt in sorted(set(text) - set(utt2spk)):
            rep.error("text", text[utt].line, utt, "utterance has no speaker (not in utt2spk)")
        for utt in sorted(set(utt2spk) - set(text)):
            rep.error("utt2spk", utt2spk[utt].line, utt, "utterance has no transcript (not in text)")
    utts: dict[str, tuple[str, int]] = {u: ("utt2spk", e.line) for u, e in utt2spk.items()}  # utt -> where seen
    for utt, entry in text.items():
        utts.setdefault(utt, ("text", entry.line))
    if not present["wav.scp"]:
        return
    if segments is None:
        for utt in sorted(set(utts) - set(wav)):
            name, line = utts[utt]
            rep.error(name, line, utt, "utterance has no audio (not in wav.scp)")
        for utt in sorted(set(wav) - set(utts)):
            rep.error("wav.scp", wav[utt].line, utt, "utterance not in utt2spk or text")
        return
    for utt in sorted(set(utts) - set(segments)):
        name, line = utts[utt]
        rep.error(name, line, utt, "utterance not in segments")
    used: set[str] = set()
    for utt, entry in segments.items():
        if utt not in utts:
            rep.error("segments", entry.line, utt, "segment not in utt2spk or text")
        seg = _segment_fields(entry.value or "")
        if seg is None:
            continue
        used.add(seg[0])
        if seg[0] not in wav:
            rep.error("segments", entry.line, utt, f"recording {seg[0]!r} not in wav.scp")
    for reco in sorted(set(wav) - used):
        rep.warn("wav.scp", wav[reco].line, reco, "recording not used by any segment")


def _check_spk2utt(rep: _Report, spk2utt: dict[str, _Entry], utt2spk: dict[str, _Entry]) -> None:
    seen: dict[str, str] = {}
    for spk, entry in spk2utt.items():
        for utt in (entry.value or "").split():
            if utt in seen:
                rep.error("spk2utt", entry.line, spk, f"utterance {utt!r} listed twice (also under {seen[utt]!r})")
                continue
            seen[utt] = spk
            if utt not in utt2spk:
                rep.error("spk2utt", entry.line, spk, f"utterance {utt!r} not in utt2spk")
                continue
            actual = (utt2spk[utt].value or "").strip()
            if actual != spk:
                rep.error("spk2utt", entry.line, spk, f"utterance {utt!r} belongs to speaker {actual!r} in utt2spk")
    for utt in sorted(set(utt2spk) - set(seen)):
        rep.error("utt2spk", utt2spk[utt].line, utt, "utterance missing from spk2utt (run `voxar data fix`)")


def _check_speaker_prefixes(rep: _Report, utt2spk: dict[str, _Entry]) -> None:
    bad = [(u, e) for u, e in utt2spk.items() if e.value and not u.startswith(e.value.split()[0])]
    if bad:
        utt, entry = bad[0]
        rep.warn(
            "utt2spk",
            entry.line,
            utt,
            f"speaker id {entry.value!r} is not a prefix of the utterance id ({len(bad)} utterance(s)); "
            "Kaldi-style sorting expects utterance ids to start with the speaker id",
        )


def _check_audio(
    rep: _Report, wav: dict[str, _Entry], segments: dict[str, _Entry] | None, min_dur: float, max_dur: float
) -> None:
    import soundfile as sf

    durations: dict[str, float] = {}
    for key, entry in wav.items():
        if entry.value is None or is_piped(entry.value):
            continue
        file = resolve_wav(entry.value, key=key)
        if not file.is_file():
            rep.error("wav.scp", entry.line, key, f"audio file not found: {file}")
            continue
        try:
            info = sf.info(str(file))
        except Exception as e:  # soundfile raises several types for unreadable files
            rep.error("wav.scp", entry.line, key, f"unreadable audio file {file}: {str(e).strip()}")
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            rep.error("wav.scp", entry.line, key, f"empty audio file: {file}")
            continue
        durations[key] = info.frames / info.samplerate
        if segments is None:
            _check_range(rep, "wav.scp", entry.line, key, durations[key], min_dur, max_dur)
    if segments is None:
        return
    for utt, entry in segments.items():
        seg = _segment_fields(entry.value or "")
        if seg is None or _check_segment(entry.value or "") is not None:
            continue
        reco, start, end = seg
        _check_range(rep, "segments", entry.line, utt, end - start, min_dur, max_dur)
        if reco in durations:
            total = durations[reco]
            if start >= total:
                message = f"segment starts at {start} s, after the end of the recording ({total:.3f} s)"
                rep.error("segments", entry.line, utt, message)
            elif end > total + SEGMENT_END_SLACK:
                message = f"segment ends at {end} s, after the end of the recording ({total:.3f} s)"
                rep.warn("segments", entry.line, utt, message)


def _check_range(rep: _Report, name: str, line: int, key: str, dur: float, min_dur: float, max_dur: float) -> None:
    if dur < min_dur:
        rep.error(name, line, key, f"too short: {dur:.3f} s < min {min_dur} s")
    elif dur > max_dur:
        rep.error(name, line, key, f"too long: {dur:.3f} s > max {max_dur} s")
