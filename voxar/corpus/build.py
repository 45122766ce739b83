"""Build the synthetic multi-speaker corpus: plan speakers and sentences, synthesise in parallel, write data dirs.

Layout written by :func:`build_corpus`::

    <wav_dir>/<spk>/<utt>.wav          16 kHz mono PCM_16, silence-trimmed, loudness -23 dB
    <wav_dir>/synth_manifest.tsv       utt <TAB> fingerprint of its synthesis settings (for resuming)
    <data_dir>/{train,dev,test}/       Kaldi dirs: wav.scp text utt2spk spk2utt utt2dur spk2gender text.original
    <data_dir>/corpus.json             sizes, seed, speaker plan and split membership

``wav.scp`` holds **absolute** paths, so the data dirs work from any working directory (recipes, tests, the
``voxar`` CLI); moving ``wav_dir`` means rebuilding (which re-synthesises nothing, see below).
``text`` is the spoken form that the voices read (numbers, times, money and titles written out); the printed form
with digits and abbreviations is kept in ``text.original``.

Splits: ``train`` has the first speakers of the plan. ``dev`` and ``test`` each have speakers never seen in train
(``unseen``) plus a few train speakers reading sentences of their own; train, dev and test sentences are disjoint.

Determinism: the same ``seed`` gives the same sentences, speakers, assignment and audio bytes, whatever ``nj``:
each utterance's small prosody variation comes from a seed derived from (seed, utterance id), and every job is a
pure function of its settings. Resuming: a wav is re-synthesised only when it is missing, unreadable, or was made
with other settings (its fingerprint in ``synth_manifest.tsv`` differs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from voxar.corpus.speakers import SpeakerSpec, make_speaker_plan, utterance_id, utterance_voice
from voxar.corpus.voices import SAMPLE_RATE, TARGET_LOUDNESS_DB, VoiceSpec, available_engines
from voxar.errors import VoxarConfigError, VoxarError

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
MANIFEST = "synth_manifest.tsv"
SYNTH_VERSION = 1  # bump when the synthesis pipeline changes in a way that alters audio


@dataclass(frozen=True)
class CorpusSize:
    """How many speakers and utterances a corpus size has.

    ``train_speakers`` read ``train_utts`` each; ``unseen_dev``/``unseen_test`` new speakers read ``unseen_utts``
    each in dev/test; ``seen_eval`` train speakers read ``seen_utts`` new sentences each in dev and in test.
    ``extra_train_utts`` more train utterances per train speaker come from sentences after the dev/test ones, so a
    bigger size keeps the smaller size's speakers, dev/test sets and train utterances (same ids, same audio) and
    only adds to them.
    """

    train_speakers: int
    train_utts: int
    unseen_dev: int
    unseen_test: int
    unseen_utts: int
    seen_eval: int
    seen_utts: int
    extra_train_utts: int = 0

    @property
    def n_speakers(self) -> int:
        return self.train_speakers + self.unseen_dev + self.unseen_test


SIZES: dict[str, CorpusSize] = {
    # ~40 utterances, ~2.5 minutes: CI and tests.
    "tiny": CorpusSize(train_speakers=6, train_utts=5, unseen_dev=1, unseen_test=1, unseen_utts=3, seen_eval=2,
                       seen_utts=1),
    # 78 speakers, ~3430 utterances, ~3.4 hours.
    "full": CorpusSize(train_speakers=70, train_utts=45, unseen_dev=4, unseen_test=4, unseen_utts=25, seen_eval=10,
                       seen_utts=4),
    # "full" plus 75 more train utterances per train speaker: ~8650 utterances, ~8.5 hours (dev/test as "full").
    "large": CorpusSize(train_speakers=70, train_utts=45, unseen_dev=4, unseen_test=4, unseen_utts=25, seen_eval=10,
                        seen_utts=4, extra_train_utts=75),
}  # fmt: skip


@dataclass(frozen=True)
class Utterance:
    """One planned utterance. ``voice`` already holds its per-utterance rate/pitch variation."""

    utt_id: str
    split: str
    speaker: SpeakerSpec
    voice: VoiceSpec
    original: str
    spoken: str

    def fingerprint(self) -> str:
        """Hash of everything that determines the audio (text, voice, timbre, rate, pipeline version)."""
        payload = {
            "v": SYNTH_VERSION,
            "sr": SAMPLE_RATE,
            "text": self.spoken,
            "voice": dataclasses.asdict(self.voice),
            "timbre": dataclasses.asdict(self.speaker.timbre),
        }
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def utt_seed(seed: int, utt_id: str) -> int:
    """Stable per-utterance seed (independent of process, ``nj`` and PYTHONHASHSEED)."""
    return int(hashlib.sha1(f"{seed}:{utt_id}".encode()).hexdigest()[:12], 16)


def plan_corpus(size: str | CorpusSize = "tiny", seed: int = 0) -> tuple[list[SpeakerSpec], list[Utterance]]:
    """The speakers and the utterances of a corpus (no audio yet); deterministic given ``seed``."""
    from voxar.corpus.sentences import split_sentences

    cs = _size(size)
    speakers = make_speaker_plan(cs.n_speakers, seed)
    train_spk = speakers[: cs.train_speakers]
    unseen = {
        "dev": speakers[cs.train_speakers : cs.train_speakers + cs.unseen_dev],
        "test": speakers[cs.train_speakers + cs.unseen_dev :],
    }
    # Seen speakers in dev/test: spread over the train list (every k-th), different ones for dev and test.
    step = max(1, cs.train_speakers // max(1, 2 * cs.seen_eval))
    seen_pool = train_spk[::step] + [s for s in train_spk if s not in train_spk[::step]]
    seen = {"dev": seen_pool[0 : 2 * cs.seen_eval : 2], "test": seen_pool[1 : 2 * cs.seen_eval : 2]}
    counts = {
        "train": cs.train_speakers * cs.train_utts,
        "dev": len(unseen["dev"]) * cs.unseen_utts + len(seen["dev"]) * cs.seen_utts,
        "test": len(unseen["test"]) * cs.unseen_utts + len(seen["test"]) * cs.seen_utts,
        "train_extra": cs.train_speakers * cs.extra_train_utts,  # after dev/test: smaller sizes stay a prefix
    }
    texts = {k: iter(v) for k, v in split_sentences(counts, seed).items()}
    next_index: dict[str, int] = {}
    utts: list[Utterance] = []

    def add(split: str, spk: SpeakerSpec, n: int, source: str | None = None) -> None:
        for _ in range(n):
            k = next_index.get(spk.spk_id, 0)
            next_index[spk.spk_id] = k + 1
            uid = utterance_id(spk.spk_id, k)
            sent = next(texts[source or split])
            voice = utterance_voice(spk, utt_seed(seed, uid))
            utts.append(Utterance(uid, split, spk, voice, sent.original, sent.spoken))

    for spk in train_spk:
        add("train", spk, cs.train_utts)
    for split in ("dev", "test"):
        for spk in unseen[split]:
            add(split, spk, cs.unseen_utts)
        for spk in seen[split]:
            add(split, spk, cs.seen_utts)
    for spk in train_spk:  # numbered after the speaker's dev/test utterances: the smaller size's ids are unchanged
        add("train", spk, cs.extra_train_utts, source="train_extra")
    return speakers, utts


def _size(size: str | CorpusSize) -> CorpusSize:
    if isinstance(size, CorpusSize):
        return size
    if size not in SIZES:
        raise VoxarConfigError(f"corpus size {size!r}: expected one of {', '.join(SIZES)}")
    return SIZES[size]


# --------------------------------------------------------------------------------------------- synthesis


def synthesize_utterance(utt: Utterance):
    """Audio of one planned utterance: float32 ``(T,)`` at 16 kHz (engine -> trim/normalise -> WORLD -> level)."""
    from voxar.audio import loudness_normalize
    from voxar.corpus.timbre import world_transform
    from voxar.corpus.voices import PEAK_CEILING_DB, synthesize

    wav = synthesize(utt.spoken, utt.voice, SAMPLE_RATE)
    if not utt.speaker.timbre.is_identity:
        wav = world_transform(wav, SAMPLE_RATE, utt.speaker.timbre)
        wav = loudness_normalize(wav, SAMPLE_RATE, target_db=TARGET_LOUDNESS_DB, max_peak_db=PEAK_CEILING_DB)
    return wav


def _job(args: tuple[Utterance, str]) -> tuple[str, str, float]:
    """Worker: synthesise ``utt`` to ``path``; returns (utt id, fingerprint, duration s)."""
    from voxar.audio import save_audio

    utt, path = args
    wav = synthesize_utterance(utt)
    save_audio(path, wav, SAMPLE_RATE)
    return utt.utt_id, utt.fingerprint(), len(wav) / SAMPLE_RATE


def _worker_init() -> None:
    logging.getLogger("voxar").setLevel(logging.WARNING)  # workers stay quiet; the parent logs progress


def _read_manifest(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                out[parts[0]] = parts[1]  # later lines win
    return out


def _valid_wav(path: Path) -> float | None:
    """Duration of a readable 16 kHz mono wav at ``path``, None if missing or unusable."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, sf.SoundFileError):
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames <= 0:
        return None
    return info.frames / info.samplerate


def synthesize_all(
    utts: list[Utterance], wav_dir: str | Path, *, nj: int = 1, progress: bool = True
) -> tuple[dict[str, float], int]:
    """Make every utterance's wav under ``wav_dir/<spk>/<utt>.wav`` (skipping valid up-to-date ones).

    Runs ``nj`` spawn-started worker processes (``nj=1``: in this process). Returns (utt id -> duration in
    seconds, number of utterances synthesised now).
    """
    from tqdm import tqdm

    wav_dir = Path(wav_dir).resolve()
    wav_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = wav_dir / MANIFEST
    manifest = _read_manifest(manifest_path)
    durations: dict[str, float] = {}
    todo: list[tuple[Utterance, str]] = []
    for utt in utts:
        path = wav_path(wav_dir, utt)
        dur = _valid_wav(path) if manifest.get(utt.utt_id) == utt.fingerprint() else None
        if dur is None:
            todo.append((utt, str(path)))
        else:
            durations[utt.utt_id] = dur
    if durations:
        log.info("%d of %d utterances already synthesised in %s", len(durations), len(utts), wav_dir)
    if todo:
        engines = {u.voice.engine for u, _ in todo}
        missing = [e for e, ok in available_engines().items() if e in engines and not ok]
        if missing:
            from voxar.corpus.voices import engine_binary

            engine_binary(missing[0])  # raises with an install hint
        bar = tqdm(total=len(todo), desc="synthesising", unit="utt", file=sys.stderr, disable=not progress)
        with open(manifest_path, "a", encoding="utf-8") as mf:
            for uid, fp, dur in _run_jobs(todo, nj):
                durations[uid] = dur
                mf.write(f"{uid}\t{fp}\n")
                mf.flush()
                bar.update(1)
        bar.close()
    # Compact the manifest: one line per known utterance, sorted.
    fps = {u.utt_id: u.fingerprint() for u in utts}
    manifest = _read_manifest(manifest_path)
    manifest.update(fps)
    tmp = manifest_path.with_name(MANIFEST + ".tmp")
    tmp.write_text("".join(f"{k}\t{v}\n" for k, v in sorted(manifest.items())), encoding="utf-8")
    tmp.replace(manifest_path)
    return durations, len(todo)


def _run_jobs(todo: list[tuple[Utterance, str]], nj: int):
    if nj <= 1 or len(todo) == 1:
        for item in todo:
            yield _job(item)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes=min(nj, len(todo)), initializer=_worker_init) as pool:
        yield from pool.imap_unordered(_job, todo, chunksize=1)


def wav_path(wav_dir: Path, utt: Utterance) -> Path:
    """Where ``utt``'s 16 kHz wav lives: ``wav_dir/<spk>/<utt>.wav``."""
    return Path(wav_dir) / utt.speaker.spk_id / f"{utt.utt_id}.wav"


# --------------------------------------------------------------------------------------------- data dirs


def write_kaldi_dirs(
    utts: list[Utterance], durations: dict[str, float], data_dir: str | Path, wav_dir: str | Path
) -> dict[str, Path]:
    """Write ``data_dir/{train,dev,test}`` Kaldi dirs (absolute wav paths). Returns split -> directory."""
    from voxar.data.kaldi import KaldiDir, write_data_dir, write_kv

    data_dir = Path(data_dir)
    wav_dir = Path(wav_dir).resolve()
    out: dict[str, Path] = {}
    for split in SPLITS:
        su = [u for u in utts if u.split == split]
        kd = KaldiDir(
            wav_scp={u.utt_id: str(wav_path(wav_dir, u)) for u in su},
            text={u.utt_id: u.spoken for u in su},
            utt2spk={u.utt_id: u.speaker.spk_id for u in su},
            utt2dur={u.utt_id: round(durations[u.utt_id], 4) for u in su},
        )
        path = data_dir / split
        write_data_dir(kd, path)
        write_kv(path / "text.original", {u.utt_id: u.original for u in su})
        write_kv(path / "spk2gender", {u.speaker.spk_id: u.speaker.gender for u in su})
        out[split] = path
    return out


def corpus_summary(speakers: list[SpeakerSpec], utts: list[Utterance], durations: dict[str, float]) -> dict:
    """JSON-able description: per split hours/utterances/speakers (seen/unseen), and the speaker plan."""
    train_spk = {u.speaker.spk_id for u in utts if u.split == "train"}
    splits = {}
    for split in SPLITS:
        su = [u for u in utts if u.split == split]
        spk = sorted({u.speaker.spk_id for u in su})
        splits[split] = {
            "utterances": len(su),
            "speakers": len(spk),
            "unseen_speakers": sorted(s for s in spk if s not in train_spk) if split != "train" else [],
            "hours": round(sum(durations[u.utt_id] for u in su) / 3600.0, 4),
        }
    used = {u.speaker.spk_id for u in utts}
    return {
        "sample_rate": SAMPLE_RATE,
        "splits": splits,
        "total_hours": round(sum(durations.values()) / 3600.0, 4),
        "speakers": [s.to_dict() for s in speakers if s.spk_id in used],
    }


def build_corpus(
    out_data_dir: str | Path,
    wav_dir: str | Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    nj: int = 1,
    layout: Literal["kaldi", "libritts"] = "kaldi",
    libritts_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Plan, synthesise (resumably, with ``nj`` processes) and write the corpus; returns :func:`corpus_summary`.

    Kaldi dirs are always written to ``out_data_dir/{train,dev,test}``; ``layout="libritts"`` also writes the
    LibriTTS tree (24 kHz) to ``libritts_dir`` (see :mod:`voxar.corpus.libritts`). Also writes
    ``out_data_dir/corpus.json``.
    """
    if layout not in ("kaldi", "libritts"):
        raise VoxarConfigError(f"layout {layout!r}: expected 'kaldi' or 'libritts'")
    if layout == "libritts" and libritts_dir is None:
        raise VoxarConfigError("layout 'libritts' needs libritts_dir (where to write the LibriTTS tree)")
    if nj < 1:
        raise VoxarConfigError(f"nj must be >= 1, got {nj}")
    t0 = time.time()
    speakers, utts = plan_corpus(size, seed)
    log.info("corpus %s (seed %d): %d speakers, %d utterances", size, seed, len(speakers), len(utts))
    durations, n_new = synthesize_all(utts, wav_dir, nj=nj, progress=progress)
    missing = [u.utt_id for u in utts if u.utt_id not in durations]
    if missing:
        raise VoxarError(f"synthesis produced no audio for {len(missing)} utterance(s), e.g. {missing[0]}")
    write_kaldi_dirs(utts, durations, out_data_dir, wav_dir)
    summary = {"size": size, "seed": seed, "nj": nj, **corpus_summary(speakers, utts, durations)}
    if layout == "libritts":
        from voxar.corpus.libritts import write_libritts

        summary["libritts"] = write_libritts(utts, wav_dir, libritts_dir, progress=progress)
    summary["build_seconds"] = round(time.time() - t0, 1)
    summary["synthesised_utterances"] = n_new
    path = Path(out_data_dir) / "corpus.json"
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    log.info(
        "corpus written: %s (%.2f h; %s)",
        out_data_dir,
        summary["total_hours"],
        ", ".join(f"{k} {v['utterances']} utts/{v['speakers']} spk" for k, v in summary["splits"].items()),
    )
    return summary
