"""Recipe entry point: convert a test set to other speakers' voices and write ``voxar eval`` lists.

Usage::

    python -m voxar.bin.decode_vc --vc-model exp/vc/model --content-model exp/content/model \\
        --vocoder exp/vocoder/model --data data/test --out exp/vc/decode_test [--max-utts N] [--seed S]

For each utterance of ``--data`` (a Kaldi dir, sorted by id) the target is the *next* speaker of the set in sorted
order (another speaker, deterministic; in the synth corpus the test speakers include ones unseen in training) and
the reference is the target speaker's first utterance that is not the source. The conversion runs the streaming
pipeline (:class:`voxar.vc.VoiceConverter`) at the default live settings (content lookahead 0; ``--lookahead-ms``
as in ``voxar vc``).

Writes ``OUT/wav/<utt>.wav`` and two lists in the ``voxar eval`` format (``utt wav text ref_wav spk``):
``OUT/list.tsv`` (converted audio vs the target reference) and ``OUT/source_list.tsv`` (the *source* recording vs
the same target reference: its SIM is the baseline a conversion must beat). A rerun skips finished wavs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("voxar.decode_vc")


def plan(utts: list[str], utt2spk: dict[str, str], exclude: set[str] | None = None) -> list[tuple[str, str, str]]:
    """``(source utt, target speaker, reference utt)`` for every utterance (see the module docstring).

    With ``exclude`` (speakers seen in training), the targets are only the *other* speakers -- unseen ones -- taken
    in turn, never the source's own speaker; sources are all utterances."""
    from voxar.errors import VoxarDataError

    spk2utts: dict[str, list[str]] = {}
    for u in sorted(utts):
        spk2utts.setdefault(utt2spk[u], []).append(u)
    speakers = sorted(spk2utts)
    targets = [s for s in speakers if s not in (exclude or set())]
    if len(speakers) < 2 or not targets or (len(targets) == 1 and len(speakers) == 1):
        raise VoxarDataError(
            f"voice conversion needs at least 2 speakers and a target speaker, found {len(speakers)} speakers and "
            f"{len(targets)} target(s)"
        )
    out = []
    for i, u in enumerate(sorted(utts)):
        if exclude is None:
            spk = speakers[(speakers.index(utt2spk[u]) + 1) % len(speakers)]
        else:
            choices = [s for s in targets if s != utt2spk[u]]
            if not choices:
                continue
            spk = choices[i % len(choices)]
        refs = [r for r in spk2utts[spk] if r != u]
        out.append((u, spk, refs[0]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="decode_vc", description=__doc__.split("\n\n")[0])
    p.add_argument("--vc-model", required=True, help="VC model directory")
    p.add_argument("--content-model", required=True, help="content encoder directory")
    p.add_argument("--vocoder", required=True, help="vocoder directory")
    p.add_argument("--data", required=True, help="Kaldi data dir of the test set (wav.scp, text, utt2spk)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-utts", type=int, default=0, help="convert at most N utterances (0: all)")
    p.add_argument(
        "--unseen-from", default=None, help="training Kaldi dir: only its unseen speakers are conversion targets"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lookahead-ms", type=float, default=0.0, help="content-encoder lookahead, as voxar vc (default 0: live)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--nj", type=int, default=1, help="accepted for the recipe grammar; conversion runs in-process")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from voxar.errors import VoxarError

    try:
        run(args)
    except VoxarError as e:
        print(f"decode_vc: error: {e}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> None:
    import soundfile as sf
    import torch
    from tqdm import tqdm

    from voxar.audio import load_audio, save_audio
    from voxar.data.kaldi import read_data_dir, resolve_wav
    from voxar.vc import VoiceConverter
    from voxar.vc_cli import _set_lookahead

    torch.set_num_threads(args.threads)
    data = read_data_dir(args.data)
    conv = VoiceConverter.from_pretrained(args.vc_model, args.content_model, args.vocoder, device=args.device)
    _set_lookahead(conv.content, args.lookahead_ms)
    exclude = set(read_data_dir(args.unseen_from).utt2spk.values()) if args.unseen_from else None
    todo = plan(list(data.wav_scp), data.utt2spk, exclude)
    if args.max_utts:  # spread over the set (sorted ids group speakers), deterministically
        step = max(1, len(todo) // args.max_utts)
        todo = todo[::step][: args.max_utts]
    out = Path(args.out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    lines, src_lines, targets = [], [], {}
    for utt, spk, ref in tqdm(todo, desc="decode_vc", unit="utt", file=sys.stderr):
        src_wav = resolve_wav(data.wav_scp[utt])
        ref_wav = resolve_wav(data.wav_scp[ref])
        dst = out / "wav" / f"{utt}.wav"
        if not dst.is_file():
            if ref not in targets:
                targets[ref] = conv.prepare_target(ref_wav)
            wav, _ = load_audio(src_wav, conv.sample_rate)
            save_audio(dst, conv.convert(wav, targets[ref], seed=args.seed), conv.sample_rate)
        text = data.text[utt].replace("\t", " ")
        lines.append(f"{utt}\t{dst.resolve()}\t{text}\t{Path(ref_wav).resolve()}\t{spk}")
        src_lines.append(f"{utt}\t{Path(src_wav).resolve()}\t{text}\t{Path(ref_wav).resolve()}\t{spk}")
        assert sf.info(str(dst)).frames > 0
    (out / "list.tsv").write_text("\n".join(lines) + "\n")
    (out / "source_list.tsv").write_text("\n".join(src_lines) + "\n")
    logger.info("%d utterances converted into %s (lists: list.tsv, source_list.tsv)", len(lines), out)


if __name__ == "__main__":
    sys.exit(main())
