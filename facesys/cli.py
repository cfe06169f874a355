"""The ``facesys`` command line: click commands only; heavy modules are imported inside commands.

Exit codes: 0 ok, 2 error (bad input, bad arguments, missing model). Every error is one line on
stderr naming the file and the problem, never a traceback (``-v`` adds the traceback).
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
EXIT_OK, EXIT_ERROR = 0, 2


class _Group(click.Group):
    """A click group that turns facesys errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FacesysError as exc:
            _fail(ctx, str(exc))
        except KeyboardInterrupt:
            click.echo("facesys: interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            _fail(ctx, "out of memory")


def _fail(ctx: click.Context, message: str) -> None:
    if ctx.find_root().params.get("verbose"):
        traceback.print_exc()
    click.echo(f"facesys: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


class Settings:
    """Global options shared by every command."""

    def __init__(self, model: str, weights: str | None, device: str, verbose: bool, quiet: bool):
        self.model, self.weights, self.device = model, weights, device
        self.verbose, self.quiet = verbose, quiet

    def embedder(self, flip: bool = False):
        from facesys.embed import Embedder

        return Embedder(self.model, device=self.device, weights=self.weights, flip=flip)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facesys")
@click.option(
    "--model",
    default="dlib-resnet",
    show_default=True,
    envvar="FACESYS_MODEL",
    help="Model name (see 'facesys models') or checkpoint path.",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Local weights file for the model.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="More detail; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors.")
@click.pass_context
def main(ctx: click.Context, model: str, weights: str | None, device: str, verbose: bool, quiet: bool) -> None:
    """facesys: offline face verification and recognition."""
    ctx.obj = Settings(model, weights, device, verbose, quiet)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see docs/json.md).")
@click.option("--flip", is_flag=True, help="Add the mirrored face's embedding (test-time augmentation).")
@click.pass_obj
def embed(settings: Settings, images: tuple[str, ...], as_json: bool, flip: bool) -> None:
    """Detect, align and embed every face in IMAGES.

    Prints each face's box, detection score and embedding. A file that cannot be read is
    reported on stderr and the others are still processed; the exit code is then 2.
    """
    from tqdm import tqdm

    from facesys.images import load_image

    embedder = settings.embedder(flip=flip)
    results, failed = [], 0
    progress = tqdm(images, unit="img", disable=settings.quiet or len(images) < 20 or None, file=sys.stderr)
    for path in progress:
        try:
            faces = embedder.embed([load_image(path)])[0]
        except FacesysError as exc:
            failed += 1
            click.echo(f"facesys: error: {exc}", err=True)
            results.append({"file": path, "error": str(exc)})
            continue
        results.append({"file": path, "faces": [face.to_dict() for face in faces]})
        if not as_json:
            _print_faces(path, faces)
    if as_json:
        document = {"schema_version": JSON_SCHEMA_VERSION, "model": embedder.model_id, "images": results}
        click.echo(json.dumps(document))
    sys.exit(EXIT_ERROR if failed else EXIT_OK)


def _print_faces(path: str, faces) -> None:
    click.echo(f"{path}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for number, face in enumerate(faces, start=1):
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        head = ", ".join(f"{v:+.3f}" for v in face.embedding[:4])
        click.echo(
            f"  face {number}: box=({x1},{y1},{x2},{y2}) score={face.score:.3f} embedding=[{head}, ...] ({len(face.embedding)}-D)"
        )


@main.group(cls=_Group, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List the models, their sizes, thresholds and where their weights are."""
    if ctx.invoked_subcommand is not None:
        return
    from facesys.models import get_model_spec, list_models

    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        rows.append(
            {
                "name": name,
                "dim": spec.embedding_dim,
                "input_size": spec.input_size,
                "threshold": spec.threshold,
                "weights": spec.weights_location(),
                "description": spec.description,
            }
        )
    if as_json:
        click.echo(json.dumps({"schema_version": JSON_SCHEMA_VERSION, "models": rows}))
        return
    for row in rows:
        default = " (default)" if row["name"] == "dlib-resnet" else ""
        click.echo(
            f"{row['name']}{default}: {row['dim']}-D, {row['input_size']}x{row['input_size']} chips, threshold {row['threshold']}"
        )
        click.echo(f"    {row['description']}")
        click.echo(f"    weights: {row['weights']}")


@models.command("prepare")
@click.argument("name")
@click.option("--weights", type=click.Path(dir_okay=False), help="Import this local weights file.")
@click.pass_obj
def models_prepare(settings: Settings, name: str, weights: str | None) -> None:
    """Convert or fetch NAME's weights now, so later commands start fast and offline.

    With --weights, the file is checked by loading it and then copied to where NAME looks for its
    weights, so later commands need no --weights.
    """
    import os
    import shutil

    from facesys.models import create_model

    model = create_model(name, weights=weights or settings.weights)
    location = Path(model.spec.weights_location())
    if weights and not location.exists():
        location.parent.mkdir(parents=True, exist_ok=True)
        partial = location.with_name(location.name + ".partial")
        shutil.copyfile(weights, partial)
        os.replace(partial, location)
        click.echo(f"{name}: imported {weights} -> {location}")
    click.echo(f"{name}: ready ({model.model_id}; weights: {location})")


if __name__ == "__main__":
    main()
