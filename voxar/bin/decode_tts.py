"""Recipe entry point: synthesise a test set with a trained TTS model, as input for ``voxar eval``.

Usage::

    python -m voxar.bin.decode_tts --model exp/tts_tiny/model --vocoder exp/vocoder_tiny/model --data data/test \\
        --out exp/tts_tiny/decode_test [--prompt-data data/train] [--max-utts N] [--part K --parts N] \\
        [--head fm|mf] [--steps S] [--cfg X] [--seed S] [--temperature T] [--noise patch|utterance] \\
        [--quantize none|int8] [--[no-]feedback] [--continuation] [--max-seconds S] [--device cpu|cuda] [--threads T]

For each utterance of the Kaldi directory ``--data`` (``wav.scp``, ``text``, ``utt2spk``; ``utt2dur`` is used when
present) the model speaks its ``text`` in the voice of a *prompt*: another recording of the same speaker, chosen
deterministically -- the next utterance of that speaker in ``--data`` after the target (cyclically, in sorted id
order), else the first of the speaker's utterances in the ``--prompt-data`` directories, skipping recordings outside
``--min-prompt-seconds``..``--max-prompt-seconds``. The target's own recording is never its prompt; an utterance
without any prompt is left out with a warning. ``--continuation`` also passes the prompt's transcript (prompt
continuation) instead of reference-encoder conditioning only. ``--max-seconds S`` stops a generation at S seconds
(a guard against the runaway output of undertrained models, e.g. in CI; the cut mel is vocoded in one piece); by
default the model's own stop decision and length guard end it.

Outputs in ``--out``:

- ``wav/<utt>.wav``: the generated audio at the model's sample rate;
- ``list.tsv`` (``list.<K>.tsv`` with ``--part K``): the ``voxar eval`` list,
  ``utt<TAB>wav/<utt>.wav<TAB>text<TAB>reference recording<TAB>speaker``, the reference being the target
  utterance's real recording (so SIM compares the same sentence);
- ``prompts.tsv`` (``prompts.<K>.tsv``): ``utt<TAB>prompt utt<TAB>prompt wav``;
- ``stats.json`` (``stats.<K>.json``): utterances, seconds generated, seconds of compute, real-time factor.

``--max-utts N`` keeps N utterances taken in turn from each speaker; ``--part K --parts N`` decodes every N-th of
them starting at the K-th (1-based), so N jobs (``utils/run.sh JOB=1:N ... --part JOB --parts N``) split a set.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxar.errors import VoxarDataError, VoxarError

logger = logging.getLogger("voxar.decode_tts")


@dataclass(frozen=True)
class Job:
    """One utterance to synthesise: target id/text/recording/speaker and the chosen prompt."""

    utt: str
    text: str
    ref: Path
    spk: str
    prompt_utt: str
    prompt_wav: Path
    prompt_text: str


@dataclass
class Pool:
    """Recordings of one Kaldi directory: wav path, text, speaker and duration (None: unknown) per utterance."""

    wav: dict[str, Path]
    text: dict[str, str]
    spk: dict[str, str]
    dur: dict[str, float | None]

    @functools.cached_property
    def by_speaker(self) -> dict[str, list[str]]:
        """Speaker -> its utterance ids, sorted."""
        out: dict[str, list[str]] = {}
        for utt in sorted(self.spk):
            out.setdefault(self.spk[utt], []).append(utt)
        return out


def read_pool(data_dir: str | Path) -> Pool:
    """Read a Kaldi directory into a :class:`Pool` (``segments`` are not supported: prompts must be files)."""
    from voxar.data.kaldi import read_data_dir

    kd = read_data_dir(data_dir)
    if kd.segments is not None:
        raise VoxarDataError(f"{data_dir}: has a segments file; decode_tts needs one audio file per utterance")
    utts = [u for u in kd.utts if u in kd.text and u in kd.utt2spk]
    if not utts:
        raise VoxarDataError(f"{data_dir}: no utterance with text and speaker")
    durs = kd.utt2dur or {}
    return Pool(
        wav={u: kd.wav_path(u) for u in utts},
        text={u: kd.text[u] for u in utts},
        spk={u: kd.utt2spk[u] for u in utts},
        dur={u: durs.get(u) for u in utts},
    )


def _duration(pool: Pool, utt: str) -> float:
    if pool.dur.get(utt) is None:
        from voxar.audio import duration

        try:
            pool.dur[utt] = duration(pool.wav[utt])
        except VoxarError:
            pool.dur[utt] = 0.0
    return float(pool.dur[utt] or 0.0)


def choose_prompt(
    utt: str, target: Pool, extra: list[Pool], min_seconds: float, max_seconds: float
) -> tuple[Pool, str] | None:
    """The prompt of ``utt`` (see the module docstring) as ``(pool, prompt utt)``, or None."""
    spk = target.spk[utt]
    same = target.by_speaker[spk]
    k = same.index(utt)
    candidates = [(target, u) for u in same[k + 1 :] + same[:k]]
    for pool in extra:
        candidates += [(pool, u) for u in pool.by_speaker.get(spk, []) if pool.wav[u] != target.wav[utt]]
    for pool, cand in candidates:
        if min_seconds <= _duration(pool, cand) <= max_seconds:
            return pool, cand
    return None


def select_utts(pool: Pool, max_utts: int) -> list[str]:
    """All utterances (sorted), or at most ``max_utts`` taken in turn from each speaker (sorted by id)."""
    utts = sorted(pool.spk)
    if max_utts <= 0 or len(utts) <= max_utts:
        return utts
    queues = list(pool.by_speaker.values())
    picked: list[str] = []
    depth = 0
    while len(picked) < max_utts:
        for q in queues:
            if depth < len(q) and len(picked) < max_utts:
                picked.append(q[depth])
        depth += 1
    return sorted(picked)


def plan(
    data: str | Path,
    prompt_data: list[str | Path],
    *,
    max_utts: int = 0,
    part: int = 1,
    parts: int = 1,
    min_prompt_seconds: float = 1.0,
    max_prompt_seconds: float = 20.0,
) -> list[Job]:
    """The utterances this job synthesises, each with its prompt, in sorted order."""
    if not 1 <= part <= parts:
        raise VoxarError(f"--part must be in 1..{parts}, got {part}")
    target = read_pool(data)
    extra = [read_pool(d) for d in prompt_data]
    jobs = []
    for i, utt in enumerate(select_utts(target, max_utts)):
        if i % parts != part - 1:
            continue
        found = choose_prompt(utt, target, extra, min_prompt_seconds, max_prompt_seconds)
        if found is None:
            logger.warning(
                "%s: no other recording of speaker %s of %g-%g s in %s; left out",
                utt, target.spk[utt], min_prompt_seconds, max_prompt_seconds, ", ".join(map(str, [data, *prompt_data])),
            )  # fmt: skip
            continue
        pool, prompt = found
        jobs.append(Job(utt, target.text[utt], target.wav[utt], target.spk[utt], prompt, pool.wav[prompt],
                        pool.text[prompt]))  # fmt: skip
    return jobs


def synthesize(tts: Any, job: Job, args: argparse.Namespace) -> tuple[Any, int]:
    """One utterance: :meth:`voxar.tts.TTS.synthesize`, or with ``--max-seconds`` the streamed mel cut at that length
    (generation stops there) and vocoded in one piece. Returns ``(wav (L,), sample_rate)``."""
    import numpy as np
    import torch

    prompt_text = job.prompt_text if args.continuation else None
    kwargs = dict(head=args.head, steps=args.steps, cfg=args.cfg, seed=args.seed)
    if not args.max_seconds:
        return tts.synthesize(job.text, job.prompt_wav, prompt_text, **kwargs)
    limit = max(1, int(args.max_seconds * tts.sample_rate / tts.mel_cfg.hop_length))  # frames
    chunks, frames = [], 0
    for mel in tts.stream_patches(job.text, job.prompt_wav, prompt_text, **kwargs):  # (M, n) each
        chunks.append(mel[:, : limit - frames])
        frames += chunks[-1].shape[-1]
        if frames >= limit:
            logger.warning("%s: generation cut at --max-seconds %g", job.utt, args.max_seconds)
            break
    wav = tts.vocode(torch.cat(chunks, dim=-1))  # (M, T) -> (T * hop,)
    return np.clip(wav, -1.0, 1.0).astype(np.float32), tts.sample_rate


def decode(args: argparse.Namespace) -> dict[str, Any]:
    """Synthesise every planned utterance; returns the stats written to ``stats.json``."""
    import torch
    from tqdm import tqdm

    from voxar.audio import save_audio
    from voxar.tts import TTS

    jobs = plan(
        args.data, args.prompt_data or [], max_utts=args.max_utts, part=args.part, parts=args.parts,
        min_prompt_seconds=args.min_prompt_seconds, max_prompt_seconds=args.max_prompt_seconds,
    )  # fmt: skip
    out = Path(args.out)
    suffix = f".{args.part}" if args.parts > 1 else ""
    if not jobs and args.parts == 1:
        raise VoxarError(f"{args.data}: nothing to decode")
    if args.threads:
        torch.set_num_threads(args.threads)
    tts = TTS.from_pretrained(args.model, vocoder=args.vocoder, device=args.device)
    tts.set_temperature(args.temperature)
    tts.set_noise(args.noise)
    tts.set_quantize(args.quantize)
    if args.feedback is not None:
        tts.set_feedback(args.feedback)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rows, prompts = [], []
    audio_s = compute_s = 0.0
    failed = 0
    for job in tqdm(jobs, desc="decode", unit="utt", file=sys.stderr, disable=args.no_progress):
        t0 = time.perf_counter()
        try:
            wav, sr = synthesize(tts, job, args)
        except VoxarError as e:
            logger.warning("%s: not synthesised: %s", job.utt, e)
            failed += 1
            continue
        compute_s += time.perf_counter() - t0
        audio_s += len(wav) / sr
        save_audio(out / "wav" / f"{job.utt}.wav", wav, sr)
        rows.append(f"{job.utt}\twav/{job.utt}.wav\t{job.text}\t{job.ref.resolve()}\t{job.spk}\n")
        prompts.append(f"{job.utt}\t{job.prompt_utt}\t{job.prompt_wav.resolve()}\n")
    if jobs and not rows:
        raise VoxarError(f"{args.data}: no utterance could be synthesised ({failed} failed)")
    if not jobs:
        logger.warning("part %d of %d of %s is empty: nothing to decode", args.part, args.parts, args.data)
    header = "# utt\twav\ttext\treference_wav\tspeaker\n"
    (out / f"list{suffix}.tsv").write_text(header + "".join(rows), encoding="utf-8")
    (out / f"prompts{suffix}.tsv").write_text("# utt\tprompt_utt\tprompt_wav\n" + "".join(prompts), encoding="utf-8")
    stats = {
        "utterances": len(rows), "failed": failed, "audio_seconds": round(audio_s, 3),
        "compute_seconds": round(compute_s, 3), "rtf": round(compute_s / audio_s, 4) if audio_s else None,
        "head": args.head or tts.default_head, "steps": args.steps, "temperature": args.temperature,
        "noise": args.noise,
        "quantize": args.quantize,
        "feedback": bool(tts.model.lm.feedback), "continuation": args.continuation,
        "max_seconds": args.max_seconds,
        "device": args.device,
        "model": str(Path(args.model).resolve()), "vocoder": args.vocoder,
    }  # fmt: skip
    (out / f"stats{suffix}.json").write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    logger.info("%d utterance(s), %.1f s of audio, RTF %s -> %s", len(rows), audio_s, stats["rtf"], out)
    return stats


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    p = argparse.ArgumentParser(prog="decode_tts", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="TTS model directory (exp/<tts>/model)")
    p.add_argument("--vocoder", default="griffin-lim", help="vocoder model directory or 'griffin-lim'")
    p.add_argument("--data", required=True, help="Kaldi directory of the test set")
    p.add_argument("--out", required=True, help="output directory (wav/, list.tsv, prompts.tsv, stats.json)")
    p.add_argument("--prompt-data", nargs="*", default=[], help="more Kaldi dirs to take prompts from")
    p.add_argument("--max-utts", type=int, default=0, help="at most N utterances (0: all)")
    p.add_argument("--part", type=int, default=1, help="this job's part, 1-based (default: 1)")
    p.add_argument("--parts", type=int, default=1, help="number of parts the set is split into (default: 1)")
    p.add_argument("--min-prompt-seconds", type=float, default=1.0, help="shortest prompt (default: 1.0)")
    p.add_argument("--max-prompt-seconds", type=float, default=20.0, help="longest prompt (default: 20)")
    p.add_argument("--continuation", action="store_true", help="pass the prompt's transcript (prompt continuation)")
    p.add_argument(
        "--head", default=None, choices=["fm", "mf"], help="generative head (default: the model's default_head)"
    )
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the head's)")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the head's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--temperature", type=float, default=None, help="sampling noise scale, 0-2 (default: the model's)")
    p.add_argument("--noise", choices=["patch", "utterance"], default=None,
                   help="starting noise per patch or one per utterance (default: the model's)")  # fmt: skip
    p.add_argument("--quantize", choices=["none", "int8"], default="none",
                   help="int8: int8 flow-head weights (faster on CPU; see voxar.models.quantize)")  # fmt: skip
    p.add_argument(
        "--feedback", action=argparse.BooleanOptionalAction, default=None,
        help="read generated patches back (--no-feedback: text-pointer LMs only; default: the model's setting)",
    )  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop generating at S seconds (0: no cap)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the decoding; returns the exit status (1 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    from voxar.log import setup_logging

    setup_logging()
    try:
        if args.parts < 1:
            raise VoxarError(f"--parts must be >= 1, got {args.parts}")
        decode(args)
    except VoxarError as e:
        sys.stderr.write(f"decode_tts: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
