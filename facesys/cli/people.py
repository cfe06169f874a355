"""``facesys enroll``, ``verify`` and ``identify``."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facesys.cli import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, EXIT_REJECTED, Settings, emit_json, error_line, main
from facesys.datasets import images_in, people_in
from facesys.errors import ImageError, NoFaceError

if TYPE_CHECKING:
    import numpy as np

IDENTIFY_BATCH = 16  # photos or video frames detected and embedded together...
IDENTIFY_BATCH_BYTES = 300_000_000  # ...unless their decoded pixels pass this many bytes (large photos)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
PEOPLE_FOLDER = "people"


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter); itertools.batched from Python 3.12."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def expand_inputs(paths: tuple[str, ...]) -> list[Path]:
    """Files as given, folders replaced by the images in them (in order)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        out.extend(images_in(path) if path.is_dir() else [path])
    return out


# -- enroll -----------------------------------------------------------------------------------


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--name", help="Whose photos INPUTS are. Without it, INPUTS is a folder with one sub-folder per person.")
@click.option("--sync", is_flag=True, help="With no INPUTS: also forget photos deleted from <gallery>/people/.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo once it is committed, then a summary.")
@click.pass_obj
def enroll(settings: Settings, inputs: tuple[str, ...], name: str | None, sync: bool, as_json: bool) -> None:
    """Add people's photos to the gallery.

    \b
    facesys enroll --name NAME IMG_OR_FOLDER...   photos of one person
    facesys enroll DIR                            DIR/<person>/*.jpg, folder name = person
    facesys enroll [--sync]                       <gallery>/people/<person>/*.jpg, only new photos

    Each photo is enrolled, skipped (already enrolled) or rejected with its reason. Exit code 3
    when some photos were rejected, 2 when some could not be read.
    """
    if sync and inputs:
        raise click.UsageError("--sync only applies to the gallery's own people/ folder (no INPUTS)")
    system = settings.system()
    if name is not None:
        if not inputs:
            raise click.UsageError("--name needs photos or folders to enroll")
        items = [(name, path) for path in expand_inputs(inputs)]
    elif len(inputs) == 1 and Path(inputs[0]).is_dir():
        items = [(person, path) for person, photos in people_in(Path(inputs[0])).items() for path in photos]
    elif not inputs:
        root = settings.gallery_path() / PEOPLE_FOLDER
        if not root.is_dir():
            raise click.UsageError(
                f"nothing to enroll: give photos with --name, a folder of people, or put photos in {root}/<name>/"
            )
        items = [(person, path.resolve()) for person, photos in people_in(root).items() for path in photos]
        if sync:
            removed = system.forget_missing_photos(root)
            if removed and not settings.quiet:
                click.echo(f"forgot {removed} photo(s) deleted from {root}", err=as_json)
    else:
        raise click.UsageError("without --name, give one folder that holds a sub-folder per person")
    if not items:
        raise click.UsageError("no image files found to enroll")

    progress = settings.progress(items, unit="photo")

    def report(result) -> None:
        progress.update(1)
        if as_json:
            emit_json({"event": "photo", **result.to_dict()})
        elif result.status == "error":
            error_line(result.reason)
        elif result.status == "rejected":
            click.echo(f"rejected {result.source} ({result.name}): {result.reason}")
        elif result.status == "duplicate" and settings.verbose:
            click.echo(f"skipped {result.source} ({result.name}): {result.reason}")
        if result.warning:
            click.echo(f"warning: {result.source}: {result.warning}", err=True)

    with progress:
        result = system.enroll_many(items, on_result=report)
    counts = Counter(r.status for r in result.results)
    enrolled_people = len({r.name for r in result.results if r.status == "enrolled"})
    reasons = Counter(r.reason.split(" (")[0] for r in result.results if r.status == "rejected")
    if as_json:
        emit_json({"event": "summary", **{s: counts.get(s, 0) for s in ("enrolled", "duplicate", "rejected", "error")}})
    elif not settings.quiet:
        summary = f"enrolled {counts['enrolled']} photo(s) of {enrolled_people} person(s)"
        if counts["duplicate"]:
            summary += f"; skipped {counts['duplicate']} already enrolled"
        if counts["rejected"]:
            summary += f"; rejected {counts['rejected']} (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")"
        if counts["error"]:
            summary += f"; {counts['error']} unreadable"
        click.echo(summary)
    sys.exit(EXIT_ERROR if counts["error"] else EXIT_REJECTED if counts["rejected"] else EXIT_OK)


# -- verify -----------------------------------------------------------------------------------


@main.command()
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--threshold", type=click.FloatRange(min=0.0), help="Distance threshold (overrides the gallery's and the model's).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify(settings: Settings, a: str, b: str, threshold: float | None, as_json: bool) -> None:
    """Are A and B the same person? Compares the largest face of each photo.

    Exit code 0: same person; 1: different people; 2: error.
    """
    system = settings.system(threshold)
    result = system.verify(a, b)
    v = result.verification
    if as_json:
        emit_json({"model": system.embedder.model_id, **result.to_dict((a, b))})
    else:
        verdict = "same person" if v.same else "different people"
        relation = "<=" if v.same else ">"
        click.echo(f"{verdict} (distance {v.distance:.3f} {relation} threshold {v.threshold:.3f}, {v.threshold_source})")
        for path, count in zip((a, b), result.faces_found, strict=True):
            if count > 1 and not settings.quiet:
                click.echo(f"note: {path} has {count} faces; compared the largest", err=True)
    sys.exit(EXIT_OK if v.same else EXIT_DIFFERENT)


# -- identify ---------------------------------------------------------------------------------


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Candidates listed per face.")
@click.option(
    "--threshold", type=click.FloatRange(min=0.0), help="Distance threshold (overrides the gallery's and the computed one)."
)
@click.option("--annotate", type=click.Path(dir_okay=False), help="Write the photo with boxes and names drawn (one input photo).")
@click.option("--every", type=click.IntRange(min=1), default=10, show_default=True, help="Videos: look at every Nth frame.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo (or video frame).")
@click.pass_obj
def identify(
    settings: Settings,
    inputs: tuple[str, ...],
    top_k: int,
    threshold: float | None,
    annotate: str | None,
    every: int,
    as_json: bool,
) -> None:
    """Who is in each photo: every face, largest first, named or "unknown".

    INPUTS are photos, folders of photos or videos (read with opencv, every Nth frame).
    """
    from facesys.images import load_image

    system = settings.system(threshold)
    paths = expand_inputs(inputs)
    if annotate and (len(paths) != 1 or paths[0].suffix.lower() in VIDEO_SUFFIXES):
        raise click.UsageError("--annotate takes exactly one input photo")
    failed = 0
    pending: list[tuple[Path, np.ndarray]] = []  # (path, decoded photo) waiting for one batched identify

    def flush() -> None:
        for (path, image), faces in zip(pending, system.identify_many([i for _, i in pending], top_k), strict=True):
            show(settings, faces, str(path), as_json)
            if annotate:
                draw(image, faces, annotate)
        pending.clear()

    for path in settings.progress(paths):
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                flush()
                for chunk in batches(video_frames(path, every), IDENTIFY_BATCH):
                    answers = system.identify_many([frame for *_, frame in chunk], top_k)
                    for (frame_number, seconds, _), faces in zip(chunk, answers, strict=True):
                        show(settings, faces, str(path), as_json, {"frame": frame_number, "time_s": round(seconds, 3)})
                continue
            pending.append((path, load_image(path)))
        except (ImageError, NoFaceError) as exc:  # a bad input; gallery and model errors stop the command
            flush()  # keep the output in input order
            failed += 1
            error_line(str(exc))
            continue
        if len(pending) == IDENTIFY_BATCH or sum(image.size for _, image in pending) > IDENTIFY_BATCH_BYTES:
            flush()
    flush()
    sys.exit(EXIT_ERROR if failed else EXIT_OK)


def show(settings: Settings, faces, source: str, as_json: bool, extra: dict | None = None) -> None:
    extra = extra or {}
    if as_json:
        emit_json({"file": source, **extra, "faces": [f.to_dict() for f in faces]})
        return
    where = f" frame {extra['frame']} ({extra['time_s']:.1f} s)" if extra else ""
    click.echo(f"{source}{where}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for number, face in enumerate(faces, start=1):
        box = ",".join(str(round(v)) for v in face.box)
        if face.name is not None:
            click.echo(f"  face {number} ({box}): {face.name} (distance {face.distance:.3f} <= {face.threshold:.3f})")
        elif face.candidates:
            near = face.candidates[0]
            nearest = f"nearest {near.name}, distance {near.distance:.3f} > {face.threshold:.3f}"
            click.echo(f"  face {number} ({box}): unknown ({nearest})")
        else:
            click.echo(f"  face {number} ({box}): unknown (empty gallery)")


def video_frames(path: Path, every: int):
    """(frame number, seconds, (H, W, 3) uint8 RGB) of every ``every``-th frame of a video."""
    import cv2

    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError(f"{path}: cannot open as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    number = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if number % every == 0:
                yield number, number / fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            number += 1
    finally:
        capture.release()
    if number == 0:
        raise ImageError(f"{path}: no frames could be read")


def draw(image, faces, out: str) -> None:
    """Save ``image`` with each face's box and name (green: known, red: unknown)."""
    import cv2

    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        color = (0, 180, 0) if face.name is not None else (0, 0, 220)
        label = face.name if face.name is not None else "unknown"
        label = label.encode("ascii", "replace").decode()  # opencv's fonts are ASCII-only
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        scale = max(0.4, (x2 - x1) / 200)
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(canvas, (x1, max(0, y1 - h - 8)), (x1 + w + 6, y1), color, -1)
        cv2.putText(
            canvas, label, (x1 + 3, max(h, y1 - 5)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
        )
    if not cv2.imwrite(out, canvas):
        raise ImageError(f"{out}: cannot write the annotated image (unknown extension or unwritable folder)")
