"""Recipe entry point: pack trained model directories for release, each with a README.md model card.

Usage::

    python -m voxar.bin.pack_models --out exp/pack --model vocoder=exp/vocoder_tiny --model tts=exp/tts_tiny \\
        [--eval tts=exp/tts_tiny/decode_test/eval/eval.json] [--data vocoder=data/train --data tts=dump/train] \\
        [--corpus "LibriTTS train-clean-100"] [--recipe egs/libritts]

Each ``--model KIND=EXP`` copies ``EXP/model/`` (or ``EXP`` itself when it is a model directory, e.g. an imported
Vocos vocoder) into ``OUT/KIND/`` -- ``config.yaml``, ``model.safetensors`` and any extra files (tokenizer ...) --
plus ``train_config.yaml`` (the run's training config, ``EXP/config.yaml``) and a ``README.md`` model card:

- the model: kind, parameters, mel preset and sample rate, files;
- training data: ``--corpus`` and, from ``--data KIND=DIR`` (a Kaldi directory or a feature dump), utterances,
  speakers and hours;
- training: steps, wall time, the last logged training and validation figures (``EXP/train_log.jsonl``), the key
  hyperparameters, the command that reproduces the run (``EXP/run.sh``, written by the recipe drivers) and, for the
  content encoder, its phone error rates (``EXP/per_*.json`` of ``train_content --test-dump``);
- evaluation: the ``voxar eval`` tables of the systems the model took part in -- ``--eval SYSTEM=eval.json`` with
  SYSTEM ``resynth`` (recordings -> log-mel -> vocoder), ``tts``, ``vc`` or ``vc_source`` (the unconverted sources
  scored against the same targets: the baseline); the vocoder card shows ``resynth``, ``tts`` and ``vc``, the
  content encoder's ``vc``, the VC model's ``vc`` and ``vc_source``.

Packing is atomic per model (written next to the target, then renamed into place) and replaces an earlier pack.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from voxar.errors import VoxarConfigError, VoxarDataError, VoxarError

logger = logging.getLogger("voxar.pack_models")

KINDS = ("vocoder", "tts", "content", "vc")
SYSTEMS = {
    "resynth": "resynthesis of held-out recordings (the vocoder alone)",
    "tts": "zero-shot TTS",
    "vc": "voice conversion",
    "vc_source": "unconverted sources (the VC baseline)",
}
EVALS_FOR = {"vocoder": ("resynth", "tts", "vc"), "tts": ("tts",), "content": ("vc",), "vc": ("vc", "vc_source")}
TRAIN_KEYS = ("max_steps", "batch_size", "max_frames", "segment_seconds", "lr", "warmup", "lr_decay", "ema_decay",
              "gan_start_step", "amp", "seed")  # fmt: skip
CARD = "README.md"
TRAIN_CONFIG = "train_config.yaml"


def parse_pairs(items: list[str], what: str, keys: tuple[str, ...] | None = None) -> dict[str, str]:
    """``["a=x", "b=y"]`` -> ``{"a": "x", "b": "y"}``; a malformed item or an unknown key is an error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise VoxarError(f"{what} {item!r}: expected NAME=PATH")
        if keys is not None and key not in keys:
            raise VoxarError(f"{what} {item!r}: name must be one of {', '.join(keys)}")
        out[key] = value
    return out


def model_source(exp: Path) -> Path:
    """The model directory of an experiment: ``exp/model`` or ``exp`` itself."""
    from voxar.models.modeldir import CONFIG_FILE

    for cand in (exp / "model", exp):
        if (cand / CONFIG_FILE).is_file():
            return cand
    raise VoxarConfigError(f"{exp}: no model directory (neither {exp / 'model'} nor {exp} holds {CONFIG_FILE})")


def count_parameters(weights: Path) -> int:
    """Number of values in a safetensors file (read from its header; no tensor is loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            n = 1
            for d in f.get_slice(key).get_shape():
                n *= int(d)
            total += n
    return total


def read_train_log(exp: Path) -> dict[str, Any]:
    """Last training record, last validation record, final step and wall time (summed over resumed runs) from
    ``exp/train_log.jsonl``."""
    path = exp / "train_log.jsonl"
    out: dict[str, Any] = {"train": None, "valid": None, "steps": None, "seconds": None}
    if not path.is_file():
        return out
    done, last = 0.0, None  # "time" restarts at 0 in each resumed run: sum the runs
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        out["steps"] = max(int(rec["step"]), out["steps"] or 0)
        if isinstance(rec.get("time"), (int, float)):
            t = float(rec["time"])
            if last is not None and t < last:  # a new run (resume) started
                done += last
            last = t
            out["seconds"] = done + t
        out["train" if rec.get("split", "train") == "train" else "valid"] = rec
    return out


def data_summary(path: Path) -> dict[str, Any]:
    """Utterances, speakers and hours of a Kaldi directory (``utt2spk``, ``utt2dur``) or a feature dump
    (``manifest.jsonl``)."""
    if (path / "manifest.jsonl").is_file():
        utts, spks, secs = 0, set(), 0.0
        for line in (path / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                utts += 1
                spks.add(rec.get("spk"))
                secs += float(rec.get("duration") or 0.0)
        return {"path": str(path), "utterances": utts, "speakers": len(spks), "hours": secs / 3600}
    if (path / "utt2spk").is_file():
        from voxar.data.kaldi import read_kv

        utt2spk = read_kv(path / "utt2spk")
        durs = read_kv(path / "utt2dur") if (path / "utt2dur").is_file() else {}
        hours = sum(float(v) for v in durs.values()) / 3600 if durs else None
        return {"path": str(path), "utterances": len(utt2spk), "speakers": len(set(utt2spk.values())), "hours": hours}
    raise VoxarDataError(f"{path}: neither a feature dump (manifest.jsonl) nor a Kaldi directory (utt2spk)")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def has_train_config(exp: Path, src: Path) -> bool:
    """True when ``exp`` holds a training config next to its model directory (``exp/config.yaml``, ``exp/model/``)."""
    return src != exp and (exp / "config.yaml").is_file()


def _train_section(exp: Path, src: Path) -> list[str]:
    lines = ["## Training", ""]
    train_cfg = None
    if has_train_config(exp, src):
        train_cfg = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    log = read_train_log(exp)
    if train_cfg is None and log["steps"] is None:
        source = (src / "SOURCE.txt").read_text(encoding="utf-8").strip() if (src / "SOURCE.txt").is_file() else ""
        lines += [f"Not trained by this recipe: imported weights. {source}".strip(), ""]
        return lines
    rerun = []
    if (exp / "run.sh").is_file():
        rerun = [ln for ln in (exp / "run.sh").read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    if log["steps"] is not None:
        wall = f" in {log['seconds'] / 60:.1f} min of wall time" if log["seconds"] else ""
        lines += [f"Trained for {log['steps']} steps{wall} (`{exp}`).", ""]
        if any("--init-from" in ln for ln in rerun):
            lines += ["That run was warm-started from earlier weights (`--init-from`); its steps count from the warm "
                      f"start. The whole chain ({len(rerun)} commands) is under Reproduce.", ""]  # fmt: skip
    if isinstance(train_cfg, dict):
        keys = [k for k in TRAIN_KEYS if k in train_cfg]
        if keys:
            lines += ["| hyperparameter | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(train_cfg[k])} |" for k in keys]
            lines += ["", f"The full training config is `{TRAIN_CONFIG}`.", ""]
    for split in ("train", "valid"):
        rec = log[split]
        if rec:
            shown = {k: v for k, v in rec.items() if k not in ("step", "split", "time") and isinstance(v, (int, float))}
            figures = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(shown.items()))
            lines += [f"Last {split} log (step {rec['step']}): {figures}.", ""]
    if rerun:
        lines += ["Reproduce (the recipe command that trained it; it resumes an interrupted run):", "", "```bash",
                  *rerun, "```", ""]  # fmt: skip
    for path in sorted(exp.glob("per_*.json")):
        per = json.loads(path.read_text(encoding="utf-8"))
        lines += [f"Phone error rate on `{per.get('dump')}` (step {per.get('step')}, {per.get('utts')} utterances): "
                  f"{_fmt(per.get('per'))} streaming, {_fmt(per.get('per_full'))} full context.", ""]  # fmt: skip
    return lines


def _eval_section(kind: str, evals: dict[str, Path]) -> list[str]:
    from voxar.eval.report import markdown_table

    lines = ["## Evaluation", ""]
    shown = [(system, evals[system]) for system in EVALS_FOR.get(kind, ()) if system in evals]
    if not shown:
        return lines + ["No evaluation report was given to the packer.", ""]
    for system, path in shown:
        result = json.loads(path.read_text(encoding="utf-8"))
        lines += [
            f"### {SYSTEMS[system]} ({system})",
            "",
            f"`voxar eval` of `{path}`: {result.get('n_scored')} of {result.get('n_items')} utterances scored "
            f"({result.get('created')}).",
            "",
            markdown_table(result),
            "",
        ]
        tools = result.get("tools") or {}
        if tools:
            lines += ["Tools: " + "; ".join(f"{k}: {v}" for k, v in tools.items()) + ".", ""]
    return lines


def _usage(kind: str) -> list[str]:
    """The card's usage snippet, formatted as ``ruff format`` leaves it (the cards sit inside the linted package)."""
    code = {
        "vocoder": 'from voxar.models.vocoder import Vocoder\n\nvocoder = Vocoder.from_pretrained("vocoder")',
        "tts": 'from voxar.tts import TTS\n\ntts = TTS.from_pretrained("tts", vocoder="vocoder")\n'
        'wav, sr = tts.synthesize("Hello there.", "prompt.wav")',
    }.get(kind)
    if code is None:
        return []
    return ["## Use", "", "```python", code, "```", ""]


def model_card(kind: str, exp: Path, src: Path, *, data: Path | None, corpus: str, recipe: str,
               evals: dict[str, Path]) -> str:  # fmt: skip
    """The README.md of one packed model (see the module docstring)."""
    from voxar.models.modeldir import WEIGHTS_FILE, read_model_header

    header = read_model_header(src, kind if kind in ("vocoder", "tts") else None)
    config = header["config"]
    n_params = count_parameters(src / WEIGHTS_FILE)
    preset = config.get("preset") or (config.get("model") or {}).get("preset")
    lines = [f"# voxar {kind} model: {exp.name}", ""]
    lines += [f"Packed {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}"
              + (f" by the `{recipe}` recipe" if recipe else "") + ".", ""]  # fmt: skip
    lines += ["| | |", "|---|---|", f"| kind | {header['kind']} |", f"| parameters | {n_params / 1e6:.2f} M |"]
    if preset:
        from voxar.audio import MelConfig

        mel = MelConfig.preset(preset)
        lines += [f"| mel preset | {preset} ({mel.sample_rate} Hz, {mel.n_mels} mels, hop {mel.hop_length}) |"]
    lines += [f"| format | {header['format']} v{header['version']} |", ""]
    trained_here = has_train_config(exp, src) or read_train_log(exp)["steps"] is not None
    files = [p.name for p in src.iterdir() if p.is_file()] + [CARD]
    files += [TRAIN_CONFIG] if has_train_config(exp, src) else []
    lines += ["Files: " + ", ".join(f"`{f}`" for f in sorted(set(files))) + ".", ""]
    lines += ["## Training data", ""]
    if not trained_here:
        lines += ["Imported weights, trained elsewhere on their authors' data (see `SOURCE.txt` when present).", ""]
    elif corpus:
        lines += [f"Corpus: {corpus}.", ""]
    if data is not None and trained_here:
        s = data_summary(data)
        hours = f", {s['hours']:.2f} h" if s["hours"] is not None else ""
        lines += [f"`{s['path']}`: {s['utterances']} utterances, {s['speakers']} speakers{hours}.", ""]
    elif trained_here and not corpus:
        lines += ["Not recorded.", ""]
    lines += _train_section(exp, src)
    lines += _eval_section(kind, evals)
    lines += _usage(kind)
    return "\n".join(lines).rstrip() + "\n"


def pack_one(kind: str, exp: str | Path, out: str | Path, **card_args: Any) -> Path:
    """Copy one experiment's model directory to ``out/kind`` with its model card; returns the packed directory."""
    exp = Path(exp)
    src = model_source(exp)
    dst = Path(out) / kind
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}.tmp-", dir=dst.parent))
    try:
        for p in src.iterdir():
            if p.is_file():
                shutil.copy2(p, tmp / p.name)
        if has_train_config(exp, src):
            shutil.copy2(exp / "config.yaml", tmp / TRAIN_CONFIG)
        (tmp / CARD).write_text(model_card(kind, exp, src, **card_args), encoding="utf-8")
        tmp.chmod(0o755)
        for p in tmp.iterdir():
            p.chmod(0o644)
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{kind}.old-", dir=dst.parent))
            os.replace(dst, old / kind)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("packed %s (%s) -> %s", kind, src, dst)
    return dst


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    p = argparse.ArgumentParser(prog="pack_models", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="pack directory (models go to OUT/<kind>/)")
    p.add_argument("--model", action="append", default=[], metavar="KIND=EXP", help=f"KIND: {', '.join(KINDS)}")
    p.add_argument("--eval", action="append", default=[], metavar="SYSTEM=JSON", help=f"SYSTEM: {', '.join(SYSTEMS)}")
    p.add_argument("--data", action="append", default=[], metavar="KIND=DIR", help="training data of a model")
    p.add_argument("--corpus", default="", help="training corpus, in words (e.g. 'LibriTTS train-clean-100')")
    p.add_argument("--recipe", default="", help="recipe that trained the models (e.g. egs/libritts)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Pack every ``--model``; returns the exit status (1 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    from voxar.log import setup_logging

    setup_logging()
    try:
        models = parse_pairs(args.model, "--model", KINDS)
        if not models:
            raise VoxarError("nothing to pack: give --model KIND=EXP")
        evals = {k: Path(v) for k, v in parse_pairs(args.eval, "--eval", tuple(SYSTEMS)).items()}
        for system, path in evals.items():
            if not path.is_file():
                raise VoxarDataError(f"--eval {system}={path}: file not found")
        data = {k: Path(v) for k, v in parse_pairs(args.data, "--data", KINDS).items()}
        for kind, exp in models.items():
            pack_one(kind, exp, args.out, data=data.get(kind), corpus=args.corpus, recipe=args.recipe, evals=evals)
    except VoxarError as e:
        sys.stderr.write(f"pack_models: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
