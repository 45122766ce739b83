"""``voxar eval``: score generated speech (WER, PER, SIM, DNSMOS, MCD) with a ground-truth ceiling.

Registered by :mod:`voxar.cli` as ``app.command("eval")(eval_command)``. Only typer is imported at module level; the
scoring stack is imported inside the command. Input problems are printed to stderr as warnings, the markdown table
to stderr, and the path of ``eval.json`` to stdout (so ``voxar eval ... | xargs cat`` works).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def eval_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="List file (utt<TAB>wav<TAB>text[<TAB>ref_wav[<TAB>spk]], '#' comments) or a Kaldi data directory "
            "(wav.scp + text; optional utt2spk and ref.scp).",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for eval.json, eval.md, mels.png.")],
    ref_dir: Annotated[
        Path | None,
        typer.Option("--ref-dir", help="Kaldi data directory with the reference recordings (same utterance ids)."),
    ] = None,
    wer: Annotated[bool, typer.Option("--wer/--no-wer", help="Word error rate with PocketSphinx.")] = True,
    per: Annotated[
        bool, typer.Option("--per/--no-per", help="Phone error rate with a voxar content encoder (CTC).")
    ] = False,
    per_model: Annotated[
        Path | None, typer.Option("--per-model", help="Content model dir for --per (default: the packaged one).")
    ] = None,
    sim: Annotated[bool, typer.Option("--sim/--no-sim", help="Speaker similarity with Resemblyzer.")] = True,
    dnsmos: Annotated[bool, typer.Option("--dnsmos/--no-dnsmos", help="DNSMOS quality scores.")] = True,
    mcd: Annotated[bool, typer.Option("--mcd/--no-mcd", help="MCD (DTW) and log-mel L1 against the reference.")] = True,
    ceiling: Annotated[
        bool, typer.Option("--ceiling/--no-ceiling", help="Also score the reference recordings (ground truth).")
    ] = True,
    plots: Annotated[int, typer.Option("--plots", min=0, help="Utterances shown in mels.png (0: no plot).")] = 4,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Score generated utterances against their texts and reference recordings."""
    from voxar.errors import VoxarError
    from voxar.eval.inputs import read_inputs
    from voxar.eval.report import evaluate, markdown_table

    items, problems = read_inputs(input_path, ref_dir=ref_dir, allow_empty=True)
    for problem in problems:
        typer.echo(f"voxar: warning: {problem}", err=True)
    if not items:
        raise VoxarError(f"{input_path}: no usable utterances ({len(problems)} problem(s), see the warnings above)")
    typer.echo(f"voxar eval: {len(items)} utterance(s), {len(problems)} input problem(s)", err=True)
    result = evaluate(
        items,
        wer=wer,
        sim=sim,
        dnsmos=dnsmos,
        mcd=mcd,
        ceiling=ceiling,
        outdir=output,
        plots=plots,
        progress=progress,
        problems=problems,
        per=per,
        per_model=per_model,
    )
    typer.echo(markdown_table(result), err=True)
    n_err = len(result["utterance_errors"])
    if n_err:
        typer.echo(f"voxar: warning: {n_err} per-utterance error(s), listed in eval.json", err=True)
    typer.echo(str(output / "eval.json"))
