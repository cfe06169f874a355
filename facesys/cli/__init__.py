"""The ``facesys`` command line: click commands only; heavy modules are imported inside commands.

Exit codes (one table for all commands):
0 ok (identify answering "unknown" included); 1 verify: different person; 2 error (bad input,
bad arguments, missing model, gallery problem); 3 enroll finished but rejected some photos, or
scan finished but could not read some files.
Every error is one line on stderr naming the file and the problem (``-v`` adds the traceback).
"""

from __future__ import annotations

import json
import sys
import traceback

import click
from click.core import ParameterSource

from facesys import __version__
from facesys.config import DEFAULT_DETECTOR, DEFAULT_GALLERY, DEFAULT_MODEL, DETECTORS, DEVICE_FORMS, GALLERY_ENV, PRECISIONS
from facesys.errors import FacesysError
from facesys.gallery.sealing import KEY_FILE_ENV
from facesys.threads import THREADS_ENV, configure, parse_threads

JSON_SCHEMA_VERSION = 1
EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR, EXIT_REJECTED = 0, 1, 2, 3


class ThreadCount(click.ParamType):
    """``auto`` or a whole number >= 1 (facesys/threads.py)."""

    name = "threads"

    def convert(self, value, param, ctx):
        try:
            return parse_threads(value) or "auto"
        except FacesysError:
            self.fail(f"{value!r} (from --threads or ${THREADS_ENV}) is not a thread count; use auto or a whole number >= 1")


THREAD_COUNT = ThreadCount()

# The global options, defined once: (parameter declarations, settings shared by the root group and
# the leaf commands, settings of the root group's copy only). The root group reads the environment
# and the defaults; a leaf command's copy only overrides what is given after the command name.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict, dict]] = [
    (
        ("--model",),
        {"help": f"Model name (see 'facesys models') or checkpoint path. Default: the gallery's, else {DEFAULT_MODEL}."},
        {"envvar": "FACESYS_MODEL"},
    ),
    (("--weights",), {"type": click.Path(dir_okay=False), "help": "Local weights file for the model."}, {}),
    (
        ("--detector",),
        {"type": click.Choice(DETECTORS), "help": "Face detector (yunet runs on the CPU through OpenCV). Env: FACESYS_DETECTOR."},
        {"envvar": "FACESYS_DETECTOR", "default": DEFAULT_DETECTOR, "show_default": True},
    ),
    (
        ("--device",),
        {"metavar": "|".join(DEVICE_FORMS), "help": "Where the networks run."},
        {"default": "cpu", "show_default": True},
    ),
    (
        ("--precision",),
        {"type": click.Choice(PRECISIONS), "help": "Network precision; auto = bf16 on a GPU, fp32 on the CPU."},
        {"default": "auto", "show_default": True},
    ),
    (
        ("--gallery",),
        {"type": click.Path(file_okay=False), "help": f"Gallery folder (default ./{DEFAULT_GALLERY})."},
        {"envvar": GALLERY_ENV},
    ),
    (
        ("--key-file",),
        {
            "type": click.Path(dir_okay=False),
            "help": f"Key of an encrypted gallery (made by 'facesys gallery keygen'). Env: {KEY_FILE_ENV}.",
        },
        {"envvar": KEY_FILE_ENV},
    ),
    (
        ("--threads",),
        {
            "type": THREAD_COUNT,
            "metavar": "N|auto",
            "help": f"CPU threads at work (photos at once, or threads on one photo); auto (the default): a photo per "
            f"core (one more when the machine is busy), the free cores for a single photo. Env: {THREADS_ENV}.",
        },
        {},
    ),
    (("-v", "--verbose"), {"is_flag": True, "help": "More detail; tracebacks on errors."}, {}),
    (("-q", "--quiet"), {"is_flag": True, "help": "Only results and errors."}, {}),
]
GLOBAL_PREFIX = "global_"  # a leaf command's copy of --model is the parameter "global_model"


def global_options(function):
    """Decorator: the global options on the root group (values become its callback's arguments)."""
    for declarations, shared, root_only in reversed(GLOBAL_OPTIONS):
        function = click.option(*declarations, **shared, **root_only)(function)
    return function


def _store_global(ctx: click.Context, param: click.Parameter, value):
    """A global option given after the command name: it overrides the root group's value in Settings."""
    if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        settings = ctx.find_object(Settings)
        if settings is not None:
            setattr(settings, param.name.removeprefix(GLOBAL_PREFIX), value)
    return value


def add_global_options(command: click.Command) -> None:
    """Let ``command`` (a leaf) accept the global options after its name, hidden from its help but for a
    note. An option string the command already defines keeps the command's own meaning."""
    if getattr(command, "_facesys_global_options", False):
        return
    command._facesys_global_options = True
    taken = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    added = []
    for declarations, shared, _ in GLOBAL_OPTIONS:
        free = [opt for opt in declarations if opt not in taken]
        if not free:
            continue
        name = GLOBAL_PREFIX + declarations[-1].lstrip("-").replace("-", "_")
        command.params.append(click.Option([*free, name], hidden=True, expose_value=False, callback=_store_global, **shared))
        added.append(free[0])
    if added:
        note = f"Global options ({', '.join(added)}) may also follow the command name; see 'facesys --help'."
        command.epilog = f"{command.epilog}\n\n{note}" if command.epilog else note


class FacesysGroup(click.Group):
    """A click group that turns facesys errors and bad arguments into one line on stderr and exit code 2.

    Its leaf commands also accept the global options after their name (``add_global_options``), and
    its sub-groups are FacesysGroups too unless they say otherwise.
    """

    group_class = type

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not isinstance(cmd, click.Group):
            add_global_options(cmd)
        super().add_command(cmd, name)

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: show its help
            click.echo(exc.ctx.get_help())
            sys.exit(EXIT_OK)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "facesys"
            click.echo(f"facesys: error: {exc.format_message()} (see '{command} --help')", err=True)
            sys.exit(EXIT_ERROR)
        except click.ClickException as exc:
            click.echo(f"facesys: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("facesys: interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else EXIT_OK)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FacesysError as exc:
            fail(ctx, with_hint(str(exc), getattr(exc, "parameter", None)))
        except KeyboardInterrupt:
            click.echo("facesys: interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            fail(ctx, "out of memory")


# What to change on the command line when the library names a parameter (FacesysError.parameter).
FLAG_HINTS = {
    "gallery": f" (choose another with --gallery DIR or ${GALLERY_ENV})",
    "model": " (choose the model with --model NAME, or re-embed the gallery: facesys gallery reindex --model NAME)",
    "device": " (--device cpu|cuda|cuda:N)",
    "weights": " (--weights PATH)",
    "detector": " (--detector " + "|".join(DETECTORS) + ")",
    "precision": " (--precision " + "|".join(PRECISIONS) + ")",
    "threshold": " (--threshold T, a distance between 0 and 2)",
    "threads": f" (--threads N|auto or ${THREADS_ENV})",
}


def with_hint(message: str, parameter: str | None) -> str:
    """``message`` with the flag that changes ``parameter`` (FLAG_HINTS): one hint, not two; a
    library hint ending in "choose another <parameter>)" is spelled out with the flag instead."""
    hint = FLAG_HINTS.get(parameter or "")
    if hint is None:
        return message
    generic = f"choose another {parameter})"
    if message.endswith(generic):
        return message[: -len(generic)] + hint.strip()[1:]
    return message + hint


def fail(ctx: click.Context, message: str) -> None:
    settings = ctx.find_object(Settings)
    if settings.verbose if settings is not None else ctx.find_root().params.get("verbose"):
        traceback.print_exc()
    click.echo(f"facesys: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def error_line(message: str) -> None:
    """Report one problem on stderr without stopping the command."""
    click.echo(f"facesys: error: {message}", err=True)


def emit_json(document: dict) -> None:
    """One JSON object on one line of stdout, flushed at once (so a pipe sees it immediately)."""
    click.echo(json.dumps({"schema_version": JSON_SCHEMA_VERSION, **document}, ensure_ascii=False))
    sys.stdout.flush()


class Settings:
    """Global options shared by every command."""

    def __init__(
        self,
        model: str | None,
        weights: str | None,
        device: str,
        precision: str,
        gallery: str | None,
        threads: int | str | None,
        verbose: bool,
        quiet: bool,
        detector: str = DEFAULT_DETECTOR,
        key_file: str | None = None,
    ):
        self.model, self.weights, self.device, self.precision, self.gallery = model, weights, device, precision, gallery
        self.threads, self.verbose, self.quiet = threads, verbose, quiet
        self.detector, self.key_file = detector, key_file

    @property
    def threads(self) -> int | str | None:
        """``auto``, a fixed count, or None (not given: facesys/threads.py reads the environment);
        setting a value configures this process."""
        return self._threads

    @threads.setter
    def threads(self, value: int | str | None) -> None:
        self._threads = value
        configure(value)

    def embedder(self, flip: bool = False):
        from facesys.vision.embed import Embedder

        model = self.model or DEFAULT_MODEL
        options = {"weights": self.weights, "flip": flip, "precision": self.precision, "detector": self.detector}
        return Embedder(model, device=self.device, **options)

    def system(self, threshold: float | None = None):
        from facesys.system import FaceSystem

        options = {"device": self.device, "weights": self.weights, "precision": self.precision, "threshold": threshold}
        return FaceSystem(self.gallery, model=self.model, detector=self.detector, key_file=self.key_file, **options)

    def progress(self, items, unit: str = "img"):
        """A progress bar on stderr for long runs (hidden with -q, for short runs and off a terminal)."""
        from tqdm import tqdm

        return tqdm(items, unit=unit, disable=self.quiet or len(items) < 20 or None, file=sys.stderr)


def ray_option(command):
    """``--ray [ADDRESS|auto]`` of a batch job: read, detect and embed on Ray (facesys/distributed/)."""
    return click.option(
        "--ray",
        is_flag=False,
        flag_value="local",
        default=None,
        metavar="[ADDRESS|auto]",
        help="Run the pipeline on Ray: alone, a Ray started here (loopback only); auto or host:port, a running "
        'cluster (in the facesys checkout, pip install -e ".[ray]").',
    )(command)


@click.group(cls=FacesysGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facesys")
@global_options
@click.pass_context
def main(
    ctx: click.Context,
    model: str | None,
    weights: str | None,
    detector: str,
    device: str,
    precision: str,
    gallery: str | None,
    key_file: str | None,
    threads: int | str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """facesys: offline face verification and recognition."""
    ctx.obj = Settings(model, weights, device, precision, gallery, threads, verbose, quiet, detector, key_file)


from facesys.cli import embed, encryption, evaluate, gallery, keys, library, models, people, serve, train  # noqa: E402  (registers the commands)

__all__ = ["embed", "encryption", "evaluate", "gallery", "keys", "library", "main", "models", "people", "serve", "train"]
