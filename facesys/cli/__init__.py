"""The ``facesys`` command line: click commands only; heavy modules are imported inside commands.

Exit codes (one table for all commands):
0 ok (identify answering "unknown" included); 1 verify: different person; 2 error (bad input,
bad arguments, missing model, gallery problem); 3 enroll finished but rejected some photos.
Every error is one line on stderr naming the file and the problem (``-v`` adds the traceback).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from facesys import __version__
from facesys.errors import FacesysError

JSON_SCHEMA_VERSION = 1
EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR, EXIT_REJECTED = 0, 1, 2, 3


class FacesysGroup(click.Group):
    """A click group that turns facesys errors and bad arguments into one line on stderr and exit code 2."""

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
            fail(ctx, str(exc))
        except KeyboardInterrupt:
            click.echo("facesys: interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            fail(ctx, "out of memory")


def fail(ctx: click.Context, message: str) -> None:
    if ctx.find_root().params.get("verbose"):
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
        self, model: str | None, weights: str | None, device: str, precision: str, gallery: str | None, verbose: bool, quiet: bool
    ):
        self.model, self.weights, self.device, self.precision, self.gallery = model, weights, device, precision, gallery
        self.verbose, self.quiet = verbose, quiet

    def embedder(self, flip: bool = False):
        from facesys.embed import Embedder

        model = self.model or "dlib-resnet"
        return Embedder(model, device=self.device, weights=self.weights, flip=flip, precision=self.precision)

    def system(self, threshold: float | None = None):
        from facesys.system import FaceSystem

        options = {"device": self.device, "weights": self.weights, "precision": self.precision, "threshold": threshold}
        return FaceSystem(self.gallery, model=self.model, **options)

    def gallery_path(self) -> Path:
        from facesys.system import default_gallery

        return Path(self.gallery) if self.gallery else default_gallery()

    def progress(self, items, unit: str = "img"):
        """A progress bar on stderr for long runs (hidden with -q, for short runs and off a terminal)."""
        from tqdm import tqdm

        return tqdm(items, unit=unit, disable=self.quiet or len(items) < 20 or None, file=sys.stderr)


@click.group(cls=FacesysGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facesys")
@click.option(
    "--model",
    envvar="FACESYS_MODEL",
    help="Model name (see 'facesys models') or checkpoint path. Default: the gallery's, else dlib-resnet.",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Local weights file for the model.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N", help="Where the networks run.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="Network precision; auto = bf16 on a GPU, fp32 on the CPU.",
)
@click.option("--gallery", type=click.Path(file_okay=False), envvar="FACESYS_GALLERY", help="Gallery folder (default ./gallery).")
@click.option("-v", "--verbose", is_flag=True, help="More detail; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors.")
@click.pass_context
def main(
    ctx: click.Context,
    model: str | None,
    weights: str | None,
    device: str,
    precision: str,
    gallery: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """facesys: offline face verification and recognition."""
    ctx.obj = Settings(model, weights, device, precision, gallery, verbose, quiet)


from facesys.cli import embed, evaluate, gallery, models, people, train  # noqa: E402  (registers the commands)

__all__ = ["embed", "evaluate", "gallery", "main", "models", "people", "train"]
