"""Kaldi-style data directories: read, write, fix, subset and combine.

A data directory holds plain ``<key> <value>`` text files, each sorted by key in C-locale byte order:

- ``wav.scp``: ``<reco> <path>`` (the key is the utterance id when there is no ``segments`` file);
- ``text``: ``<utt> <transcript with spaces>``;
- ``utt2spk``: ``<utt> <spk>``; ``spk2utt`` (``<spk> <utt1> <utt2> ...``) is derived from it;
- optional ``segments``: ``<utt> <reco> <start_s> <end_s>``; optional ``utt2dur``: ``<utt> <seconds>``.

wav.scp values are file paths; relative paths are resolved against the current working directory, as Kaldi does.
Piped commands (``sox ... |``) are not executed: :func:`resolve_wav` rejects them.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from voxar.errors import VoxarDataError

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("wav.scp", "text", "utt2spk")
OPTIONAL_FILES = ("segments", "utt2dur", "spk2utt")


@dataclass
class KaldiDir:
    """In-memory Kaldi data directory.

    ``wav_scp`` is keyed by recording id (equal to the utterance id when ``segments`` is None); ``text``,
    ``utt2spk``, ``segments`` and ``utt2dur`` are keyed by utterance id. ``segments`` maps
    ``utt -> (reco, start_s, end_s)``.
    """

    wav_scp: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    segments: dict[str, tuple[str, float, float]] | None = None
    utt2dur: dict[str, float] | None = None

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """Speaker -> sorted utterance ids, derived from ``utt2spk`` (speakers sorted too)."""
        out: dict[str, list[str]] = {}
        for utt in sorted(self.utt2spk):
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return dict(sorted(out.items()))

    @property
    def utts(self) -> list[str]:
        """Sorted utterance ids (the keys of ``utt2spk``)."""
        return sorted(self.utt2spk)

    def recording_of(self, utt: str) -> tuple[str, float | None, float | None]:
        """``(reco, start_s, end_s)`` of ``utt``; start/end are None when the whole file is the utterance."""
        if self.segments is not None:
            reco, start, end = self.segments[utt]
            return reco, start, end
        return utt, None, None

    def wav_path(self, utt: str) -> Path:
        """Audio file of ``utt`` (see :func:`resolve_wav`)."""
        reco = self.recording_of(utt)[0]
        if reco not in self.wav_scp:
            raise VoxarDataError(f"wav.scp: no entry for recording {reco!r} (utterance {utt!r})")
        return resolve_wav(self.wav_scp[reco], key=reco)

    def restrict(self, utts: Iterable[str]) -> KaldiDir:
        """A copy holding only ``utts`` (and the recordings they use); unknown ids are ignored."""
        keep = set(utts) & set(self.utt2spk)
        segments = None if self.segments is None else {u: s for u, s in self.segments.items() if u in keep}
        if segments is None:
            wav = {k: v for k, v in self.wav_scp.items() if k in keep}
        else:
            recos = {s[0] for s in segments.values()}
            wav = {k: v for k, v in self.wav_scp.items() if k in recos}
        return KaldiDir(
            wav_scp=wav,
            text={u: t for u, t in self.text.items() if u in keep},
            utt2spk={u: s for u, s in self.utt2spk.items() if u in keep},
            segments=segments,
            utt2dur=None if self.utt2dur is None else {u: d for u, d in self.utt2dur.items() if u in keep},
        )


def is_piped(value: str) -> bool:
    """Whether a wav.scp value is a shell pipeline (``cmd args |``), which voxar does not execute."""
    return value.rstrip().endswith("|")


def resolve_wav(value: str, *, key: str = "") -> Path:
    """Path of a wav.scp value; relative paths are resolved against the CWD. Pipelines raise VoxarDataError."""
    if is_piped(value):
        raise VoxarDataError(
            f"wav.scp: entry {key!r} is a piped command ({value.strip()!r}); voxar does not execute shell commands,"
            " convert the audio to files first (e.g. with sox) and list their paths"
        )
    return Path(value.strip())


# ----------------------------------------------------------------------------------------------- line-level I/O


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for each line of a UTF-8 text file, line numbers from 1, newline stripped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VoxarDataError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VoxarDataError(f"{path}: not valid UTF-8 (byte {e.start})") from e
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()  # the empty string after the final newline (or of an empty file)
    yield from enumerate(lines, start=1)


def split_kv(line: str) -> tuple[str, str | None]:
    """``(key, value)`` of a ``<key> <value>`` line; the value keeps inner spaces, None when absent."""
    parts = line.strip().split(maxsplit=1)
    if not parts:
        return "", None
    return parts[0], (parts[1].strip() if len(parts) > 1 else None)


def read_kv(path: str | Path, *, allow_empty: bool = False, strict: bool = True) -> dict[str, str]:
    """Read a ``<key> <value>`` file into a dict (file order kept).

    With ``strict`` (default) blank lines, lines without a value (unless ``allow_empty``) and duplicate keys raise
    :class:`VoxarDataError` naming ``file:line``; otherwise they are logged and skipped (the first duplicate wins).
    """
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in iter_lines(path):
        key, value = split_kv(line)
        problem = ""
        if not key:
            problem = "empty line"
        elif value is None and not allow_empty:
            problem = f"line for {key!r} has no value"
        elif key in out:
            problem = f"duplicate key {key!r}"
        if problem:
            if strict:
                raise VoxarDataError(f"{path}:{lineno}: {problem}")
            logger.warning("%s:%d: %s (skipped)", path, lineno, problem)
            continue
        out[key] = value or ""
    return out


def _atomic_write(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def _check_token(kind: str, token: str) -> None:
    if not token or any(c.isspace() for c in token):
        raise VoxarDataError(f"{kind} {token!r} is empty or contains whitespace")


def write_kv(path: str | Path, data: dict[str, object]) -> None:
    """Write ``<key> <value>`` lines sorted by key (C-locale byte order), atomically (temp file + rename)."""
    lines = []
    for key in sorted(data):
        _check_token("key", key)
        value = str(data[key])
        if "\n" in value or "\r" in value:
            raise VoxarDataError(f"{path}: value of {key!r} contains a newline")
        lines.append(f"{key} {value}".rstrip(" "))
    _atomic_write(Path(path), lines)


def _parse_segments(path: Path, strict: bool) -> dict[str, tuple[str, float, float]]:
    out: dict[str, tuple[str, float, float]] = {}
    for key, value in read_kv(path, strict=strict).items():
        fields = value.split()
        try:
            if len(fields) != 3:
                raise ValueError
            out[key] = (fields[0], float(fields[1]), float(fields[2]))
        except ValueError:
            if strict:
                raise VoxarDataError(f"{path}: line for {key!r} is not '<utt> <reco> <start> <end>'") from None
            logger.warning("%s: malformed line for %r (skipped)", path, key)
    return out


def _parse_utt2dur(path: Path, strict: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in read_kv(path, strict=strict).items():
        try:
            out[key] = float(value)
        except ValueError:
            if strict:
                raise VoxarDataError(f"{path}: duration of {key!r} is not a number: {value!r}") from None
            logger.warning("%s: bad duration for %r (skipped)", path, key)
    return out


# ----------------------------------------------------------------------------------------------- directories


def read_data_dir(path: str | Path, *, strict: bool = True) -> KaldiDir:
    """Read a data directory. Missing required files always raise :class:`VoxarDataError`.

    ``strict`` also rejects malformed lines and duplicate keys (use :func:`voxar.data.validate.validate_data_dir`
    for a full report); with ``strict=False`` they are skipped with a warning. Cross-file consistency is not checked.
    """
    path = Path(path)
    if not path.is_dir():
        raise VoxarDataError(f"{path}: data directory not found")
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise VoxarDataError(f"{path}: required file {name} is missing")
    kd = KaldiDir(
        wav_scp=read_kv(path / "wav.scp", strict=strict),
        text=read_kv(path / "text", allow_empty=True, strict=strict),
        utt2spk=read_kv(path / "utt2spk", strict=strict),
    )
    if (path / "segments").is_file():
        kd.segments = _parse_segments(path / "segments", strict)
    if (path / "utt2dur").is_file():
        kd.utt2dur = _parse_utt2dur(path / "utt2dur", strict)
    return kd


def write_data_dir(kd: KaldiDir, path: str | Path) -> None:
    """Write ``kd`` to ``path`` (created if needed): sorted files, spk2utt derived from utt2spk, each atomic.

    Optional files absent from ``kd`` (segments, utt2dur) are removed from ``path`` so they cannot go stale.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for utt, spk in kd.utt2spk.items():
        _check_token(f"speaker of {utt!r}", spk)
    write_kv(path / "wav.scp", kd.wav_scp)
    write_kv(path / "text", kd.text)
    write_kv(path / "utt2spk", kd.utt2spk)
    write_kv(path / "spk2utt", {spk: " ".join(utts) for spk, utts in kd.spk2utt.items()})
    if kd.segments is not None:
        for utt, (reco, _, _) in kd.segments.items():
            _check_token(f"recording of {utt!r}", reco)
        write_kv(path / "segments", {u: f"{r} {_fmt_time(s)} {_fmt_time(e)}" for u, (r, s, e) in kd.segments.items()})
    else:
        (path / "segments").unlink(missing_ok=True)
    if kd.utt2dur is not None:
        write_kv(path / "utt2dur", {u: _fmt_time(d) for u, d in kd.utt2dur.items()})
    else:
        (path / "utt2dur").unlink(missing_ok=True)


def _fmt_time(t: float) -> str:
    """Shortest exact text of a time/duration in seconds (``2`` not ``2.0``)."""
    return str(int(t)) if math.isfinite(t) and t == int(t) else repr(float(t))


class FixReport(NamedTuple):
    """Outcome of :func:`fix_data_dir`."""

    kept: int
    dropped: int
    dropped_utts: list[str]


def fix_data_dir(path: str | Path) -> FixReport:
    """Keep only utterances present in every required file, sort all files and regenerate spk2utt.

    Malformed lines and duplicate keys are dropped (first occurrence wins). Utterances whose recording is missing
    from wav.scp are dropped, and so are recordings no utterance uses. The original files are copied to
    ``path/.backup/`` first.
    """
    path = Path(path)
    kd = read_data_dir(path, strict=False)
    all_utts = set(kd.text) | set(kd.utt2spk) | (set(kd.segments) if kd.segments is not None else set(kd.wav_scp))
    keep = set(kd.text) & set(kd.utt2spk)
    if kd.segments is not None:
        keep &= {u for u, (reco, _, _) in kd.segments.items() if reco in kd.wav_scp}
    else:
        keep &= set(kd.wav_scp)
    fixed = kd.restrict(keep)
    backup = path / ".backup"
    backup.mkdir(exist_ok=True)
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        if (path / name).is_file():
            shutil.copy2(path / name, backup / name)
    write_data_dir(fixed, path)
    dropped = sorted(all_utts - keep)
    if dropped:
        logger.warning("%s: dropped %d of %d utterances (e.g. %s)", path, len(dropped), len(all_utts), dropped[0])
    return FixReport(kept=len(keep), dropped=len(dropped), dropped_utts=dropped)


def read_id_list(path: str | Path) -> list[str]:
    """First field of each non-blank line of a list file (utterance or speaker ids)."""
    return [line.split()[0] for _, line in iter_lines(path) if line.strip()]


def subset_data_dir(
    src: str | Path,
    dst: str | Path,
    *,
    first: int | None = None,
    last: int | None = None,
    utt_list: str | Path | Iterable[str] | None = None,
    spk_list: str | Path | Iterable[str] | None = None,
    random_n: int | None = None,
    seed: int = 0,
) -> KaldiDir:
    """Write to ``dst`` a subset of ``src`` chosen by exactly one selector; returns the subset.

    ``first``/``last``: the first/last N utterances in sorted order; ``utt_list``/``spk_list``: ids (an iterable or
    a file with one id per line); ``random_n``: N utterances drawn with ``seed``. N larger than the directory keeps
    everything (with a warning).
    """
    chosen = [x is not None for x in (first, last, utt_list, spk_list, random_n)]
    if sum(chosen) != 1:
        raise VoxarDataError("subset: give exactly one of first, last, utt_list, spk_list, random")
    if Path(src).resolve() == Path(dst).resolve():
        raise VoxarDataError(f"subset: source and destination are the same directory ({src})")
    kd = read_data_dir(src)
    utts = kd.utts
    n = next((x for x in (first, last, random_n) if x is not None), None)
    if n is not None:
        if n < 0:
            raise VoxarDataError(f"subset: N must be >= 0, got {n}")
        if n > len(utts):
            logger.warning("subset: asked for %d utterances but %s has only %d", n, src, len(utts))
    if first is not None:
        keep = utts[:first]
    elif last is not None:
        keep = utts[len(utts) - min(last, len(utts)) :]
    elif random_n is not None:
        keep = random.Random(seed).sample(utts, min(random_n, len(utts)))
    else:
        ids_src = utt_list if utt_list is not None else spk_list
        ids = read_id_list(ids_src) if isinstance(ids_src, (str, Path)) else list(ids_src or [])
        known = set(kd.utt2spk) if utt_list is not None else set(kd.utt2spk.values())
        missing = [i for i in ids if i not in known]
        if missing:
            kind = "utterance" if utt_list is not None else "speaker"
            logger.warning("subset: %d %s id(s) not in %s (e.g. %s)", len(missing), kind, src, missing[0])
        wanted = set(ids)
        keep = [u for u in utts if (u if utt_list is not None else kd.utt2spk[u]) in wanted]
    sub = kd.restrict(keep)
    write_data_dir(sub, dst)
    return sub


def combine_data_dirs(dst: str | Path, srcs: Iterable[str | Path]) -> KaldiDir:
    """Merge data directories into ``dst``. Duplicate utterance ids (or one recording id with two paths) raise.

    Either all sources have ``segments`` or none; ``utt2dur`` is kept only if every source has it.
    """
    srcs = [Path(s) for s in srcs]
    if not srcs:
        raise VoxarDataError("combine: no source directories given")
    if any(s.resolve() == Path(dst).resolve() for s in srcs):
        raise VoxarDataError(f"combine: destination {dst} is also a source")
    dirs = [read_data_dir(s) for s in srcs]
    with_segments = [d.segments is not None for d in dirs]
    if any(with_segments) and not all(with_segments):
        names = ", ".join(str(s) for s, w in zip(srcs, with_segments, strict=True) if not w)
        raise VoxarDataError(f"combine: some sources have a segments file and others ({names}) do not")
    out = KaldiDir(segments={} if all(with_segments) else None)
    keep_dur = all(d.utt2dur is not None for d in dirs)
    if not keep_dur and any(d.utt2dur is not None for d in dirs):
        logger.warning("combine: not every source has utt2dur; the combined directory will have none")
    out.utt2dur = {} if keep_dur else None
    origin: dict[str, Path] = {}
    for src, kd in zip(srcs, dirs, strict=True):
        utts = set(kd.utt2spk) | set(kd.text)
        for utt in sorted(utts):
            if utt in origin:
                raise VoxarDataError(f"combine: utterance id {utt!r} is in both {origin[utt]} and {src}")
            origin[utt] = src
        for reco, wav in kd.wav_scp.items():
            if reco in out.wav_scp and out.wav_scp[reco] != wav:
                raise VoxarDataError(f"combine: recording {reco!r} has different paths in {src} and an earlier source")
            out.wav_scp[reco] = wav
        out.text.update(kd.text)
        out.utt2spk.update(kd.utt2spk)
        if out.segments is not None and kd.segments is not None:
            out.segments.update(kd.segments)
        if out.utt2dur is not None and kd.utt2dur is not None:
            out.utt2dur.update(kd.utt2dur)
    write_data_dir(out, dst)
    return out
