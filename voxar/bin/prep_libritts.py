"""Recipe entry point: Kaldi data directories from a LibriTTS (or LibriTTS-R) tree (stages 0-1 of egs/libritts).

Usage::

    python -m voxar.bin.prep_libritts --db /data/LibriTTS --check [--train-subsets train-clean-100,train-clean-360]
    python -m voxar.bin.prep_libritts --db /data/LibriTTS --out data [--train-subsets ...] [--dev-subsets dev-clean] \\
        [--test-subsets test-clean] [--min-dur 0.5] [--max-dur 20] [--max-utts N] [--max-test-utts N]

``--check`` only verifies that ``--db`` holds the requested subsets (stage 0) and explains how to obtain LibriTTS
when it does not. Otherwise ``<out>/{train,dev,test}`` are written (names set by ``--train-name`` etc.), one Kaldi
directory per split, the subsets of a split combined:

- ``wav.scp`` (absolute paths to the 24 kHz wavs), ``utt2spk``/``spk2utt`` (the LibriTTS reader id; utterance ids
  ``<reader>_<chapter>_<para>_<sent>`` start with it, as Kaldi wants), ``utt2dur`` (seconds, from the file header);
- ``text``: the corpus's ``.normalized.txt`` put through :func:`voxar.text.normalize_text` (what the TTS reads);
  ``text.original``: the ``.original.txt`` text;
- ``spk2gender`` (``m``/``f``) when the tree has ``speakers.tsv`` or ``SPEAKERS.txt``.

Each directory is then validated (:func:`voxar.data.validate.validate_data_dir`, audio included); an error stops
the run.

Utterances shorter than ``--min-dur`` or longer than ``--max-dur`` seconds, or without a transcript, are left out
(counted in the log). ``--max-utts``/``--max-test-utts`` keep at most N utterances of a split, taken round-robin
over its speakers (sorted ids), so a small subset still covers every speaker. The layout read is
``<db>/<subset>/<reader>/<chapter>/<utt>.{wav,normalized.txt,original.txt}``; a chapter's ``*.trans.tsv``
(``utt<TAB>original<TAB>normalized``) supplies texts whose ``.txt`` files are missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from voxar.errors import VoxarDataError, VoxarError

logger = logging.getLogger("voxar.prep_libritts")

OBTAIN = """LibriTTS (CC BY 4.0, 585 h of English read speech at 24 kHz by 2,456 speakers) is not downloaded by this
recipe. Get it from OpenSLR resource 60, https://www.openslr.org/60/ (LibriTTS-R, the restored version with the same
layout, is resource 141, https://www.openslr.org/141/): download the subsets you need, e.g.
    train-clean-100.tar.gz dev-clean.tar.gz test-clean.tar.gz
extract them into one directory, e.g. `for f in *.tar.gz; do tar xzf "$f"; done`, which gives
    LibriTTS/{train-clean-100,dev-clean,test-clean}/<reader>/<chapter>/<utt>.wav
and pass that LibriTTS directory as --db. For a quick try without downloading anything, egs/synth writes a
LibriTTS-shaped corpus, egs/synth/data/LibriTTS:
    bash egs/synth/run.sh --size tiny --layout libritts --stop_stage 1"""


@dataclass(frozen=True)
class Utt:
    """One LibriTTS utterance found on disk."""

    utt: str
    spk: str
    wav: Path
    text: str
    original: str


def split_list(value: str) -> list[str]:
    """``"a,b c"`` -> ``["a", "b", "c"]`` (commas or spaces)."""
    return [s for s in value.replace(",", " ").split() if s]


def check_db(db: str | Path | None, subsets: list[str]) -> Path:
    """The corpus root, or :class:`VoxarDataError` explaining what is wrong and how to obtain LibriTTS."""
    if not db or not str(db).strip():
        raise VoxarDataError(f"no LibriTTS directory given: pass --db /path/to/LibriTTS.\n{OBTAIN}")
    root = Path(db)
    if not root.is_dir():
        raise VoxarDataError(f"--db {root}: directory not found.\n{OBTAIN}")
    missing = [s for s in subsets if not (root / s).is_dir()]
    if missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*/*/*.wav")))
        have = f"it holds {', '.join(found)}" if found else "it holds no LibriTTS subset"
        raise VoxarDataError(f"--db {root}: subset(s) {', '.join(missing)} not found ({have}).\n{OBTAIN}")
    empty = [s for s in subsets if not any((root / s).glob("*/*/*.wav"))]
    if empty:
        raise VoxarDataError(
            f"--db {root}: subset(s) {', '.join(empty)} hold no <reader>/<chapter>/*.wav files (still packed?).\n"
            f"{OBTAIN}"
        )
    return root


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _trans_tsv(chapter_dir: Path) -> dict[str, tuple[str, str]]:
    """``utt -> (original, normalized)`` from the chapter's ``*.trans.tsv`` files (empty when there is none)."""
    out: dict[str, tuple[str, str]] = {}
    for tsv in chapter_dir.glob("*.trans.tsv"):
        for line in tsv.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[0]] = (parts[1].strip(), parts[2].strip())
    return out


def scan_subset(root: Path, subset: str) -> tuple[list[Utt], int]:
    """Every utterance of ``root/subset`` with a usable transcript -> ``(utts, number left out for no text)``."""
    from voxar.text import normalize_text

    utts: list[Utt] = []
    no_text = 0
    for chapter_dir in sorted(p for p in (root / subset).glob("*/*") if p.is_dir()):
        spk = chapter_dir.parent.name
        tsv: dict[str, tuple[str, str]] | None = None
        for wav in sorted(chapter_dir.glob("*.wav")):
            name = wav.name[: -len(".wav")]
            normalized = _read_text(chapter_dir / f"{name}.normalized.txt")
            original = _read_text(chapter_dir / f"{name}.original.txt")
            if normalized is None or original is None:
                tsv = _trans_tsv(chapter_dir) if tsv is None else tsv
                orig_tsv, norm_tsv = tsv.get(name, (None, None))
                normalized = normalized if normalized is not None else norm_tsv
                original = original if original is not None else orig_tsv
            text = normalize_text(normalized or "")
            if not text:
                no_text += 1
                continue
            if not name.startswith(f"{spk}_"):
                name = f"{spk}_{name}"  # Kaldi: the speaker id is a prefix of the utterance id
            utts.append(Utt(name, spk, wav.resolve(), text, (original or normalized or "").replace("\n", " ")))
    return utts, no_text


def read_genders(root: Path) -> dict[str, str]:
    """Reader id -> ``m``/``f`` from ``speakers.tsv`` (LibriTTS) or ``SPEAKERS.txt`` (LibriSpeech style)."""
    out: dict[str, str] = {}
    tsv, txt = root / "speakers.tsv", root / "SPEAKERS.txt"
    if tsv.is_file():
        for line in tsv.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].strip().upper() in ("M", "F"):
                out[parts[0].strip()] = parts[1].strip().lower()
    elif txt.is_file():
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = [p.strip() for p in line.split("|")]
            if not line.startswith(";") and len(parts) >= 2 and parts[1].upper() in ("M", "F"):
                out[parts[0]] = parts[1].lower()
    return out


def round_robin(utts: list[Utt], limit: int) -> list[Utt]:
    """At most ``limit`` utterances (0: all), taken in turn from each speaker (sorted), sorted by id."""
    if limit <= 0 or len(utts) <= limit:
        return utts
    by_spk: dict[str, list[Utt]] = defaultdict(list)
    for u in sorted(utts, key=lambda u: u.utt):
        by_spk[u.spk].append(u)
    queues = [by_spk[s] for s in sorted(by_spk)]
    picked: list[Utt] = []
    depth = 0
    while len(picked) < limit:
        for q in queues:
            if depth < len(q) and len(picked) < limit:
                picked.append(q[depth])
        depth += 1
    return sorted(picked, key=lambda u: u.utt)


def write_split(utts: list[Utt], durations: dict[str, float], genders: dict[str, str], out: Path) -> None:
    """Write one Kaldi directory (see the module docstring)."""
    from voxar.data.kaldi import KaldiDir, write_data_dir, write_kv

    kd = KaldiDir(
        wav_scp={u.utt: str(u.wav) for u in utts},
        text={u.utt: u.text for u in utts},
        utt2spk={u.utt: u.spk for u in utts},
        utt2dur={u.utt: round(durations[u.utt], 4) for u in utts},
    )
    write_data_dir(kd, out)
    write_kv(out / "text.original", {u.utt: u.original or u.text for u in utts})
    spk2gender = {u.spk: genders[u.spk] for u in utts if u.spk in genders}
    if spk2gender:
        write_kv(out / "spk2gender", spk2gender)
    elif (out / "spk2gender").exists():
        (out / "spk2gender").unlink()


def check_split(path: Path, min_dur: float, max_dur: float) -> None:
    """Validate a written directory (:func:`voxar.data.validate.validate_data_dir`): warnings are logged, errors
    raise :class:`VoxarDataError`."""
    from voxar.data.validate import count_errors, validate_data_dir

    problems = validate_data_dir(path, min_dur=min_dur, max_dur=max_dur)
    errors, _ = count_errors(problems)
    for problem in problems:
        logger.warning("%s", problem)
    if errors:
        first = next(p for p in problems if p.severity == "error")
        raise VoxarDataError(f"{path}: {errors} validation error(s), the first: {first}")


def prepare(
    db: str | Path,
    out: str | Path,
    splits: dict[str, list[str]],
    *,
    min_dur: float = 0.5,
    max_dur: float = 20.0,
    max_utts: dict[str, int] | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Write ``out/<split>`` for each ``split -> [subset, ...]``; returns per-split counts (utts, speakers, hours,
    left_out)."""
    import soundfile as sf
    from tqdm import tqdm

    root = check_db(db, [s for subsets in splits.values() for s in subsets])
    genders = read_genders(root)
    summary: dict[str, dict[str, float]] = {}
    for split, subsets in splits.items():
        utts: list[Utt] = []
        no_text = 0
        for subset in subsets:
            found, missing_text = scan_subset(root, subset)
            utts += found
            no_text += missing_text
        dupes = [utt for utt, n in Counter(u.utt for u in utts).items() if n > 1]
        if dupes:
            dupe = dupes[0]
            raise VoxarDataError(f"{split}: utterance id {dupe} occurs twice in subsets {', '.join(subsets)}")
        durations: dict[str, float] = {}
        kept: list[Utt] = []
        out_of_range = 0
        for u in tqdm(utts, desc=f"{split} durations", unit="utt", file=sys.stderr, disable=not progress):
            try:
                seconds = float(sf.info(str(u.wav)).duration)
            except (RuntimeError, sf.LibsndfileError) as e:
                logger.warning("%s: unreadable audio, left out (%s)", u.wav, e)
                out_of_range += 1
                continue
            if not min_dur <= seconds <= max_dur:
                out_of_range += 1
                continue
            durations[u.utt] = seconds
            kept.append(u)
        kept = round_robin(kept, (max_utts or {}).get(split, 0))
        if not kept:
            where = ", ".join(subsets)
            raise VoxarDataError(f"{split}: no usable utterance in {where} (duration {min_dur}-{max_dur} s)")
        write_split(kept, durations, genders, Path(out) / split)
        check_split(Path(out) / split, min_dur, max_dur)
        hours = sum(durations[u.utt] for u in kept) / 3600
        speakers = len({u.spk for u in kept})
        summary[split] = {"utterances": len(kept), "speakers": speakers, "hours": round(hours, 4),
                          "left_out": no_text + out_of_range}  # fmt: skip
        logger.info(
            "%s (%s): %d utterances, %d speakers, %.2f h -> %s (left out: %d without text, %d outside %g-%g s)",
            split, "+".join(subsets), len(kept), speakers, hours, Path(out) / split, no_text, out_of_range,
            min_dur, max_dur,
        )  # fmt: skip
    return summary


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    p = argparse.ArgumentParser(prog="prep_libritts", description=__doc__.splitlines()[0])
    p.add_argument("--db", default="", help="LibriTTS root (holding train-clean-100/, dev-clean/, ...)")
    p.add_argument("--out", default="data", help="where the Kaldi dirs go (default: data)")
    p.add_argument("--check", action="store_true", help="only check --db (stage 0)")
    p.add_argument("--train-subsets", default="train-clean-100", help="comma-separated subsets of the train split")
    p.add_argument("--dev-subsets", default="dev-clean", help="subsets of the dev split")
    p.add_argument("--test-subsets", default="test-clean", help="subsets of the test split")
    p.add_argument("--train-name", default="train", help="name of the train split's directory")
    p.add_argument("--dev-name", default="dev", help="name of the dev split's directory")
    p.add_argument("--test-name", default="test", help="name of the test split's directory")
    p.add_argument("--min-dur", type=float, default=0.5, help="shortest utterance kept, seconds (default: 0.5)")
    p.add_argument("--max-dur", type=float, default=20.0, help="longest utterance kept, seconds (default: 20)")
    p.add_argument("--max-utts", type=int, default=0, help="at most N utterances in train and dev (0: all)")
    p.add_argument("--max-test-utts", type=int, default=0, help="at most N utterances in test (0: all)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the check or the preparation; returns the exit status (1 with a message on bad input)."""
    args = build_parser().parse_args(argv)
    from voxar.log import setup_logging

    setup_logging()
    splits = {
        args.train_name: split_list(args.train_subsets),
        args.dev_name: split_list(args.dev_subsets),
        args.test_name: split_list(args.test_subsets),
    }
    try:
        if len(set(splits)) != 3:
            raise VoxarError("--train-name, --dev-name and --test-name must differ")
        empty = [name for name, subsets in splits.items() if not subsets]
        if empty:
            raise VoxarError(f"no subsets given for split(s) {', '.join(empty)}")
        if args.check:
            root = check_db(args.db, [s for subsets in splits.values() for s in subsets])
            logger.info("%s: found %s", root, ", ".join(s for subsets in splits.values() for s in subsets))
            return 0
        limits = {args.train_name: args.max_utts, args.dev_name: args.max_utts, args.test_name: args.max_test_utts}
        prepare(args.db, args.out, splits, min_dur=args.min_dur, max_dur=args.max_dur, max_utts=limits,
                progress=not args.no_progress)  # fmt: skip
    except VoxarError as e:
        sys.stderr.write(f"prep_libritts: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
