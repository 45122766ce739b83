"""The ``voxar`` command line.

Every subcommand group is registered here, in one place (``_register``). Command modules import only typer at
module level; torch, models and optional extras are imported inside the command functions, after argument parsing,
so ``voxar --help`` is fast and works with core dependencies only.

Logs go to stderr; audio or JSON results go to stdout or files. User errors (:class:`voxar.errors.VoxarError`) are
printed as one line and exit with status 1, never as a traceback.
"""

from __future__ import annotations

import json
import sys

import typer

from voxar import __version__
from voxar.errors import VoxarError

app = typer.Typer(
    name="voxar",
    help="Streaming zero-shot text-to-speech and voice conversion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"voxar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr."),
) -> None:
    from voxar.log import setup_logging

    setup_logging(verbose, quiet)


@app.command()
def devices(as_json: bool = typer.Option(False, "--json", help="Print the device list as JSON on stdout.")) -> None:
    """List audio input/output devices (PortAudio, via the ``live`` extra)."""
    from voxar.devices import devices_as_dicts

    devs = devices_as_dicts()
    if as_json:
        typer.echo(json.dumps(devs, indent=2))
        return
    if not devs:
        typer.echo("no audio devices found", err=True)
        return
    typer.echo(f"{'idx':>3}  {'in':>3} {'out':>3} {'rate':>7}  {'host api':<12} name")
    for d in devs:
        mark = ("<" if d["default_input"] else " ") + (">" if d["default_output"] else " ")
        typer.echo(
            f"{d['index']:>3}{mark}{d['max_input_channels']:>3} {d['max_output_channels']:>3} "
            f"{d['default_samplerate']:>7.0f}  {d['hostapi'][:12]:<12} {d['name']}"
        )
    typer.echo("(< default input, > default output)", err=True)


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print as JSON on stdout.")) -> None:
    """Show the environment: versions, torch device support, installed extras and system tools."""
    from voxar.envinfo import environment_info

    data = environment_info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for k, v in value.items():
                typer.echo(f"  {k:<14} {v}")
        else:
            typer.echo(f"{key:<16} {value}")


def _register() -> None:
    """Attach every subcommand group. Later capabilities (tts, vc, train, eval, bench) add one line each here."""
    from voxar.audio.cli import app as audio_app
    from voxar.bench import app as bench_app
    from voxar.data.cli import app as data_app
    from voxar.eval.cli import eval_command
    from voxar.tts_cli import tts_command
    from voxar.vc_cli import vc_command
    from voxar.vocode import vocode_command

    app.add_typer(audio_app, name="audio")
    app.add_typer(data_app, name="data")
    app.add_typer(bench_app, name="bench")
    app.command("eval")(eval_command)
    app.command("vocode")(vocode_command)
    app.command("tts")(tts_command)
    app.command("vc")(vc_command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="voxar")
    except VoxarError as e:
        typer.echo(f"voxar: error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("voxar: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
