"""Teacher-forced diagnosis of a TTS model: does the LM state carry the content, or does the flow head lean on history?

Usage::

    python -m voxar.bin.tts_probe --model exp/tts_base/model --data data/test [--max-utts 12] [--head mf|fm]
        [--steps S] [--seed S] [--wer --vocoder DIR] [-o report.json]

For each utterance of the Kaldi directory ``--data`` (prompt = another recording of the speaker, as in
``decode_tts``) the LM runs teacher-forced on the real recording, and the head samples every patch (same noise for
every variant) from

- ``lm``: the LM's hidden state ``h`` and the real history patches (the training condition);
- ``mean_h``: ``h`` replaced by its mean over the utterance (speaker and global information only, no per-patch
  content from the text);
- ``no_history`` (heads with history): the history patches zeroed.

The report gives each variant's MSE to the real patches (normalised mel units) and ``content_gain`` =
MSE(mean_h) - MSE(lm). A model whose ``content_gain`` is near zero predicts each patch from the previous one and
babbles when it runs free: its text conditioning is not used (the base model's first runs, docs/benchmarks.md).
``--wer`` also vocodes the ``lm`` variant and the real recordings and scores both with pocketsphinx. A text-pointer
LM (``lm.pointer``) reads each recording's forced phone alignment (:mod:`voxar.data.phone_align`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("voxar.tts_probe")
VARIANTS = ("lm", "mean_h", "no_history")


def probe(
    model_dir: str | Path,
    data: str | Path,
    *,
    max_utts: int = 12,
    head: str = "mf",
    steps: int | None = None,
    seed: int = 0,
    wer: bool = False,
    vocoder: Any = None,
    tts: Any = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Run the diagnosis (module docstring); ``tts`` may be a ready :class:`voxar.tts.TTS` (then ``model_dir`` and
    ``vocoder`` only label the report). Returns the JSON-ready report."""
    import torch

    from voxar.audio import load_audio, log_mel
    from voxar.bin.decode_tts import plan
    from voxar.errors import VoxarError
    from voxar.tts import TTS

    if tts is None:
        tts = TTS.from_pretrained(model_dir, vocoder=vocoder if wer else "griffin-lim")
    tts.set_temperature(temperature)
    jobs = plan(data, [], max_utts=max_utts)
    if not jobs:
        raise VoxarError(f"{data}: no utterance with a prompt of the same speaker")
    lm, flow = tts.model.lm, tts.model.head(head)
    k = flow.cfg.history
    variants = [v for v in VARIANTS if v != "no_history" or k > 0]
    sums = {v: 0.0 for v in variants}
    count = 0.0
    refs, hyps, gts = [], [], []
    aligner = None
    if lm.pointer is not None:  # a text-pointer LM reads the recording's forced phone alignment
        from voxar.data.phone_align import PhoneAligner, patch_pointer

        aligner = PhoneAligner()
    asr = None
    if wer:
        from voxar.eval.asr import PocketSphinxASR

        asr = PocketSphinxASR()
    for i, job in enumerate(jobs):
        ref = tts.prompt_mel(job.prompt_wav)  # (1, M, T_ref)
        wav, _ = load_audio(job.ref, tts.sample_rate)
        mel = torch.from_numpy(log_mel(wav, tts.mel_cfg))[None].to(tts.device)  # (1, M, T)
        ids = torch.tensor([tts.encode_text(job.text)], device=tts.device)
        extra = {}
        if aligner is not None:
            ptr = patch_pointer(aligner.align(mel[0].cpu(), job.text), lm.cfg.patch_size)
            extra["pointer"] = torch.from_numpy(ptr)[None].to(tts.device)  # (1, N)
        with torch.no_grad():
            out = lm(
                ids, torch.tensor([ids.shape[1]]), mel, torch.tensor([mel.shape[-1]]), ref_mels=ref, n_history=k,
                **extra,
            )  # fmt: skip
            h, hist, tgt = out["h"][0], out["history"][0], out["targets"][0]  # (N, D), (N, K*F), (N, F)
            valid = out["target_mask"][0].to(tgt.dtype)  # (N, F)
            noise = torch.randn(tgt.shape, generator=torch.Generator().manual_seed(seed + i)).to(tgt)
            inputs = {
                "lm": (h, hist),
                "mean_h": (h.mean(0, keepdim=True).expand_as(h), hist),
                "no_history": (h, torch.zeros_like(hist)),
            }
            samples = {}
            for v in variants:
                hv, histv = inputs[v]
                samples[v] = flow.sample_patch(hv, histv if k else None, steps, noise=noise)  # (N, F)
                sums[v] += float((((samples[v] - tgt) ** 2) * valid).sum())
            if asr is not None:
                synth = tts.vocoder(lm.unpatchify(samples["lm"][None])).reshape(-1).cpu().numpy()
                refs.append(job.text)
                hyps.append(asr.transcribe(synth, tts.sample_rate))
                gts.append(asr.transcribe(wav, tts.sample_rate))
        count += float(valid.sum())
        logger.info("%d/%d %s", i + 1, len(jobs), job.utt)
    mse = {v: sums[v] / max(count, 1.0) for v in variants}
    report: dict[str, Any] = {
        "model": str(model_dir), "data": str(data), "head": head, "steps": len(flow.cfg.grid(steps)) - 1,
        "temperature": flow.cfg.temperature, "history": k, "utts": len(jobs), "mse": mse,
        "content_gain": mse["mean_h"] - mse["lm"],
        "content_gain_rel": (mse["mean_h"] - mse["lm"]) / max(mse["mean_h"], 1e-12),
    }  # fmt: skip
    if asr is not None:
        from voxar.eval.asr import wer as word_error_rate

        report["wer_teacher_forced"] = word_error_rate(refs, hyps)["wer"]
        report["wer_recordings"] = word_error_rate(refs, gts)["wer"]
        report["asr"] = "pocketsphinx"
    return report


def main(argv: list[str] | None = None) -> int:
    from voxar.bin import write_json_report
    from voxar.errors import VoxarError
    from voxar.log import setup_logging

    p = argparse.ArgumentParser(prog="tts_probe", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="TTS model directory")
    p.add_argument("--data", required=True, help="Kaldi data dir (wav.scp, text, utt2spk)")
    p.add_argument("--max-utts", type=int, default=12, help="utterances taken in turn from each speaker (0: all)")
    p.add_argument("--head", default="mf", choices=["fm", "mf"], help="flow head to sample with (default mf)")
    p.add_argument("--steps", type=int, default=None, help="head sampling steps (default: the head's config)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--temperature", type=float, default=None, help="sampling noise scale (default: the model's)")
    p.add_argument("--wer", action="store_true", help="also score teacher-forced resynthesis with pocketsphinx")
    p.add_argument("--vocoder", default=None, help="vocoder model dir for --wer (default: the packaged one)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("-o", "--output", default=None, help="write the JSON report here (default: stdout)")
    args = p.parse_args(argv)
    setup_logging()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        report = probe(
            args.model, args.data, max_utts=args.max_utts, head=args.head, steps=args.steps, seed=args.seed,
            wer=args.wer, vocoder=args.vocoder, temperature=args.temperature,
        )  # fmt: skip
    except VoxarError as e:
        print(f"tts_probe: error: {e}", file=sys.stderr)
        return 1
    write_json_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
