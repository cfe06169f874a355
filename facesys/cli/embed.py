"""``facesys embed``: every face's box, score and embedding."""

from __future__ import annotations

import sys

import click

from facesys.cli import EXIT_ERROR, EXIT_OK, JSON_SCHEMA_VERSION, Settings, error_line, main


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see docs/json.md).")
@click.option("--flip", is_flag=True, help="Add the mirrored face's embedding (test-time augmentation).")
@click.pass_obj
def embed(settings: Settings, images: tuple[str, ...], as_json: bool, flip: bool) -> None:
    """Detect, align and embed every face in IMAGES.

    A file that cannot be read is reported on stderr and the others are still processed; the
    exit code is then 2.
    """
    import json

    embedder = settings.embedder(flip=flip)
    results, failed = [], 0
    progress = settings.progress(images)
    for batch in embedder.face_batches(((path, path) for path in images), select="all", errors="collect"):
        progress.update(len(batch))
        for path, result in batch:
            if result.error:
                failed += 1
                error_line(result.error)
                results.append({"file": path, "error": result.error})
                continue
            results.append({"file": path, "faces": [face.to_dict() for face in result.faces]})
            if not as_json:
                print_faces(path, result.faces)
    progress.close()
    if as_json:
        click.echo(json.dumps({"schema_version": JSON_SCHEMA_VERSION, "model": embedder.model_id, "images": results}))
    sys.exit(EXIT_ERROR if failed else EXIT_OK)


def print_faces(path: str, faces) -> None:
    click.echo(f"{path}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for number, face in enumerate(faces, start=1):
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        head = ", ".join(f"{v:+.3f}" for v in face.embedding[:4])
        click.echo(
            f"  face {number}: box=({x1},{y1},{x2},{y2}) score={face.score:.3f} embedding=[{head}, ...] ({len(face.embedding)}-D)"
        )
