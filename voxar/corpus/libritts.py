"""Write the synthetic corpus in the LibriTTS folder layout (24 kHz), for tools that expect that corpus.

::

    ROOT/speakers.tsv                                   READER <TAB> GENDER <TAB> SUBSET <TAB> NAME
    ROOT/SPEAKERS.txt                                   LibriSpeech-style ";ID |SEX| SUBSET |MINUTES| NAME"
    ROOT/<subset>/<SPK>/<CHAPTER>/<SPK>_<CHAPTER>.trans.tsv   utt <TAB> original <TAB> normalized
    ROOT/<subset>/<SPK>/<CHAPTER>/<SPK>_<CHAPTER>_<PARA>_<SENT>.wav             24 kHz mono PCM_16
    ROOT/<subset>/<SPK>/<CHAPTER>/<SPK>_<CHAPTER>_<PARA>_<SENT>.original.txt    printed text
    ROOT/<subset>/<SPK>/<CHAPTER>/<SPK>_<CHAPTER>_<PARA>_<SENT>.normalized.txt  spoken text

Subsets: train -> ``train-clean-100``, dev -> ``dev-clean``, test -> ``test-clean``. As in LibriTTS, speakers and
chapters are numeric: speakers are numbered ``100, 101, ...`` in speaker-plan order (the NAME column of
``speakers.tsv`` holds our speaker id) and each speaker has one chapter per subset, ``<SPK>*100 + subset index``
(e.g. speaker 103 reads chapter 10300 in train-clean-100 and 10301 in dev-clean). Utterances are numbered
``<PARA>_<SENT>`` = ``000001_000000``, ``000002_000000``, ... within a chapter, in utterance-id order.

The audio is the corpus's 16 kHz audio resampled to 24 kHz (soxr VHQ): the same recordings, so there is no energy
above 8 kHz. The normalized text is the spoken form the voices read; numbers, money, times and titles in the
original text are written out in it.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from voxar.errors import VoxarDataError

if TYPE_CHECKING:
    from voxar.corpus.build import Utterance

log = logging.getLogger(__name__)

LIBRITTS_SR = 24000
SUBSETS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
FIRST_SPEAKER_NUMBER = 100


def speaker_numbers(utts: list[Utterance]) -> dict[str, int]:
    """Our speaker id -> LibriTTS-style numeric id, in order of first appearance (the speaker plan's order)."""
    out: dict[str, int] = {}
    for utt in utts:
        out.setdefault(utt.speaker.spk_id, FIRST_SPEAKER_NUMBER + len(out))
    return out


def chapter_number(spk_num: int, split: str) -> int:
    """The chapter a speaker reads in one subset: ``spk_num * 100 + index of the split``."""
    return spk_num * 100 + list(SUBSETS).index(split)


def libritts_names(utts: list[Utterance]) -> dict[str, tuple[str, int, int, str]]:
    """utt id -> (subset, speaker number, chapter number, LibriTTS utterance id ``SPK_CHAPTER_PARA_SENT``)."""
    nums = speaker_numbers(utts)
    by_chapter: dict[tuple[int, int], list[Utterance]] = defaultdict(list)
    for utt in utts:
        spk = nums[utt.speaker.spk_id]
        by_chapter[(spk, chapter_number(spk, utt.split))].append(utt)
    out: dict[str, tuple[str, int, int, str]] = {}
    for (spk, chapter), chapter_utts in by_chapter.items():
        for k, utt in enumerate(sorted(chapter_utts, key=lambda u: u.utt_id), start=1):
            out[utt.utt_id] = (SUBSETS[utt.split], spk, chapter, f"{spk}_{chapter}_{k:06d}_000000")
    return out


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_libritts(
    utts: list[Utterance], wav_dir: str | Path, root: str | Path, *, progress: bool = True
) -> dict[str, object]:
    """Write ``utts`` (whose 16 kHz wavs are under ``wav_dir``) as a LibriTTS tree at ``root``.

    A 24 kHz file newer than its 16 kHz source is kept. Returns ``{"root", "sample_rate", "utterances",
    "speakers"}``.
    """
    from tqdm import tqdm

    from voxar.audio import load_audio, save_audio
    from voxar.corpus.build import wav_path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = libritts_names(utts)
    nums = speaker_numbers(utts)
    trans: dict[Path, list[str]] = defaultdict(list)
    for utt in tqdm(utts, desc="libritts", unit="utt", file=sys.stderr, disable=not progress):
        subset, spk, chapter, name = names[utt.utt_id]
        folder = root / subset / str(spk) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        src = wav_path(Path(wav_dir).resolve(), utt)
        if not src.is_file():
            raise VoxarDataError(f"{src}: audio of {utt.utt_id} is missing; build the corpus first")
        dst = folder / f"{name}.wav"
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            wav, _ = load_audio(src, sr=LIBRITTS_SR)
            save_audio(dst, wav, LIBRITTS_SR)
        for kind, text in (("original", utt.original), ("normalized", utt.spoken)):
            path = folder / f"{name}.{kind}.txt"
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                _write_text(path, text)
        trans[folder / f"{spk}_{chapter}.trans.tsv"].append(f"{name}\t{utt.original}\t{utt.spoken}\n")
    for path, lines in trans.items():
        _write_text(path, "".join(sorted(lines)))
    _write_speakers(utts, nums, root)
    return {"root": str(root.resolve()), "sample_rate": LIBRITTS_SR, "utterances": len(utts), "speakers": len(nums)}


def _write_speakers(utts: list[Utterance], nums: dict[str, int], root: Path) -> None:
    subsets: dict[str, list[str]] = defaultdict(list)
    gender: dict[str, str] = {}
    for utt in utts:
        spk = utt.speaker.spk_id
        if SUBSETS[utt.split] not in subsets[spk]:
            subsets[spk].append(SUBSETS[utt.split])
        gender[spk] = utt.speaker.gender.upper()
    tsv = ["READER\tGENDER\tSUBSET\tNAME\n"]
    txt = [";ID  |SEX| SUBSET           | NAME\n"]
    for spk, num in sorted(nums.items(), key=lambda kv: kv[1]):
        subset = ",".join(subsets[spk])
        tsv.append(f"{num}\t{gender[spk]}\t{subset}\t{spk}\n")
        txt.append(f"{num:<5}| {gender[spk]} | {subset:<16} | {spk}\n")
    _write_text(root / "speakers.tsv", "".join(tsv))
    _write_text(root / "SPEAKERS.txt", "".join(txt))
