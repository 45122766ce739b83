"""`voxar data ...` commands: validate, fix, subset, combine, dump and info for Kaldi data directories.

VoxarError exceptions propagate to ``voxar.cli.main``, which prints them as one line. Heavy imports (torch, the audio
layer) happen inside the commands that need them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Kaldi data directories: validate, fix, subset, combine, dump features.", no_args_is_help=True)

DirArg = Annotated[Path, typer.Argument(help="Kaldi data directory.")]


@app.command()
def validate(
    data_dir: DirArg,
    check_audio: Annotated[
        bool, typer.Option("--check-audio/--no-check-audio", help="Open every audio file and check durations.")
    ] = True,
    min_dur: Annotated[float, typer.Option(help="Shortest allowed utterance, seconds.")] = 0.1,
    max_dur: Annotated[float, typer.Option(help="Longest allowed utterance, seconds.")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as one JSON object.")] = False,
) -> None:
    """Check a data directory; print every problem. Exit status 1 if there is any error."""
    from voxar.data.validate import count_errors, validate_data_dir

    problems = validate_data_dir(data_dir, check_audio=check_audio, min_dur=min_dur, max_dur=max_dur)
    errors, warnings = count_errors(problems)
    if as_json:
        report = {
            "dir": str(data_dir),
            "errors": errors,
            "warnings": warnings,
            "problems": [p.to_dict() for p in problems],
        }
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        for problem in problems:
            typer.echo(str(problem))
    status = "OK" if errors == 0 else "FAILED"
    typer.echo(f"{data_dir}: {status}: {errors} error(s), {warnings} warning(s)", err=True)
    raise typer.Exit(1 if errors else 0)


@app.command()
def fix(data_dir: DirArg) -> None:
    """Keep only utterances present in every file, sort all files, regenerate spk2utt (originals in .backup/)."""
    from voxar.data.kaldi import fix_data_dir

    report = fix_data_dir(data_dir)
    typer.echo(f"{data_dir}: kept {report.kept} utterance(s), dropped {report.dropped}", err=True)
    for utt in report.dropped_utts[:20]:
        typer.echo(f"  dropped {utt}", err=True)
    if report.dropped > 20:
        typer.echo(f"  ... and {report.dropped - 20} more", err=True)


@app.command()
def subset(
    src: Annotated[Path, typer.Argument(help="Source data directory.")],
    dst: Annotated[Path, typer.Argument(help="Destination data directory (created).")],
    first: Annotated[int | None, typer.Option(help="The first N utterances (sorted order).")] = None,
    last: Annotated[int | None, typer.Option(help="The last N utterances (sorted order).")] = None,
    random_n: Annotated[int | None, typer.Option("--random", help="N utterances drawn at random.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --random.")] = 0,
    utt_list: Annotated[Path | None, typer.Option(help="File with the utterance ids to keep.")] = None,
    spk_list: Annotated[Path | None, typer.Option(help="File with the speaker ids to keep.")] = None,
) -> None:
    """Copy a subset of SRC to DST; give exactly one selector."""
    from voxar.data.kaldi import subset_data_dir

    if sum(x is not None for x in (first, last, random_n, utt_list, spk_list)) != 1:
        raise typer.BadParameter("give exactly one of --first, --last, --random, --utt-list, --spk-list")
    sub = subset_data_dir(
        src, dst, first=first, last=last, random_n=random_n, seed=seed, utt_list=utt_list, spk_list=spk_list
    )
    typer.echo(f"{dst}: {len(sub.utt2spk)} utterance(s), {len(sub.spk2utt)} speaker(s)", err=True)


@app.command()
def combine(
    dst: Annotated[Path, typer.Argument(help="Destination data directory (created).")],
    srcs: Annotated[list[Path], typer.Argument(help="Source data directories.")],
) -> None:
    """Merge SRC directories into DST (duplicate utterance ids are an error)."""
    from voxar.data.kaldi import combine_data_dirs

    out = combine_data_dirs(dst, srcs)
    typer.echo(f"{dst}: {len(out.utt2spk)} utterance(s), {len(out.spk2utt)} speaker(s)", err=True)


@app.command()
def dump(
    data_dir: DirArg,
    out_dir: Annotated[Path, typer.Argument(help="Output directory for feature shards and manifest.")],
    preset: Annotated[str, typer.Option(help="Mel preset: 16k or vocos24k.")] = "16k",
    nj: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    shard_size: Annotated[int, typer.Option(help="Utterances per shard.")] = 200,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Keep finished shards.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Compute log-mel features into safetensors shards plus manifest.jsonl, mel.yaml and CMVN stats."""
    from voxar.data.dump import dump_features

    summary = dump_features(data_dir, out_dir, preset, nj=nj, shard_size=shard_size, resume=resume, progress=progress)
    typer.echo(
        f"{out_dir}: {summary.utts} utterance(s), {summary.skipped} skipped, {summary.frames} frames, "
        f"{summary.shards} shard(s) ({summary.resumed_shards} resumed)",
        err=True,
    )


@app.command()
def info(data_dir: DirArg) -> None:
    """Print utterance, speaker and recording counts and total hours."""
    from voxar.data.kaldi import read_data_dir, resolve_wav

    kd = read_data_dir(data_dir, strict=False)
    durations: dict[str, float] = {}
    unreadable = 0
    if kd.segments is not None:
        durations = {u: end - start for u, (_, start, end) in kd.segments.items() if u in kd.utt2spk}
    elif kd.utt2dur is not None:
        durations = {u: d for u, d in kd.utt2dur.items() if u in kd.utt2spk}
    else:
        import soundfile as sf

        for utt in kd.utts:
            try:
                durations[utt] = sf.info(str(resolve_wav(kd.wav_scp[utt], key=utt))).duration
            except Exception:  # missing, piped or unreadable: counted, `voxar data validate` says why
                unreadable += 1
    lines = [
        f"utterances: {len(kd.utt2spk)}",
        f"speakers: {len(kd.spk2utt)}",
        f"recordings: {len(kd.wav_scp)}",
        f"hours: {sum(durations.values()) / 3600:.3f}",
    ]
    if durations:
        values = sorted(durations.values())
        lines.append(f"duration (s): min {values[0]:.2f}, median {values[len(values) // 2]:.2f}, max {values[-1]:.2f}")
    if unreadable:
        lines.append(f"unreadable audio: {unreadable} (run `voxar data validate`)")
    for line in lines:
        typer.echo(line)
