"""``facesys enroll``, ``verify`` and ``identify``."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click

from facesys.cli import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, EXIT_REJECTED, Settings, emit_json, error_line, main, ray_option
from facesys.config import CANDIDATE_PHOTOS, FRAME_STEP, TOP_K
from facesys.errors import FacesysError

# -- enroll -----------------------------------------------------------------------------------


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--name", help="Whose photos INPUTS are. Without it, INPUTS is a folder with one sub-folder per person.")
@click.option("--sync", is_flag=True, help="With no INPUTS: also forget photos deleted from <gallery>/people/.")
@click.option("--force", is_flag=True, help="With --sync: forget photos even when more than half of the gallery's are missing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo once it is committed, then a summary.")
@ray_option
@click.pass_obj
def enroll(
    settings: Settings, inputs: tuple[str, ...], name: str | None, sync: bool, force: bool, as_json: bool, ray: str | None
) -> None:
    """Add people's photos to the gallery.

    \b
    facesys enroll --name NAME IMG_OR_FOLDER...   photos of one person
    facesys enroll DIR                            DIR/<person>/*.jpg, folder name = person
    facesys enroll [--sync]                       <gallery>/people/<person>/*.jpg, only new photos

    Each photo is enrolled, skipped (already enrolled) or rejected with its reason. Exit code 3
    when some photos were rejected, 2 when some could not be read.
    """
    from facesys.enroll import EnrollInterrupted, enrollment_items, people_folder

    if sync and inputs:
        raise click.UsageError("--sync only applies to the gallery's own people/ folder (no INPUTS)")
    if name is not None and not inputs:
        raise click.UsageError("--name needs photos or folders to enroll")
    system = settings.system()
    items = enrollment_items([Path(i) for i in inputs], name, system.gallery)
    if sync:
        root = people_folder(system.gallery)
        removed = system.gallery.forget_missing_photos(root, allow_share=1.0 if force else 0.5)
        if removed and not settings.quiet:
            click.echo(f"forgot {removed} photo(s) deleted from {root}", err=as_json)
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

    interrupted = False
    try:
        with progress:
            result = system.enroll_many(items, on_result=report, ray=ray)
    except EnrollInterrupted as stop:  # Ctrl-C: the summary says what was committed, then exit 130
        result, interrupted = stop.report, True
    counts = Counter(r.status for r in result.results)
    enrolled_people = len({r.name for r in result.results if r.status == "enrolled"})
    reasons = Counter(r.reason.split(" (")[0] for r in result.results if r.status == "rejected")
    if as_json:
        totals = {s: counts.get(s, 0) for s in ("enrolled", "duplicate", "rejected", "error")}
        emit_json({"event": "summary", **totals, **({"interrupted": True} if interrupted else {})})
    elif not settings.quiet or interrupted:
        summary = f"enrolled {counts['enrolled']} photo(s) of {enrolled_people} person(s)"
        if counts["duplicate"]:
            summary += f"; skipped {counts['duplicate']} already enrolled"
        if counts["rejected"]:
            summary += f"; rejected {counts['rejected']} (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")"
        if counts["error"]:
            summary += f"; {counts['error']} unreadable"
        if interrupted:
            summary = f"interrupted; {summary} before that"
        click.echo(summary, err=interrupted)
    if interrupted:
        sys.exit(130)  # as after any Ctrl-C (FacesysGroup.invoke)
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
@click.option("--top-k", type=click.IntRange(min=1), default=TOP_K, show_default=True, help="Candidates listed per face.")
@click.option(
    "--threshold", type=click.FloatRange(min=0.0), help="Distance threshold (overrides the gallery's and the computed one)."
)
@click.option("--annotate", type=click.Path(dir_okay=False), help="Write the photo with boxes and names drawn (one input photo).")
@click.option(
    "--every", type=click.IntRange(min=1), default=FRAME_STEP, show_default=True, help="Videos: look at every Nth frame."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo (or video frame).")
@click.option("--explain", is_flag=True, help="Also show the nearest enrolled photos of each candidate (JSON: all of them).")
@ray_option
@click.pass_obj
def identify(
    settings: Settings,
    inputs: tuple[str, ...],
    top_k: int,
    threshold: float | None,
    annotate: str | None,
    every: int,
    as_json: bool,
    explain: bool,
    ray: str | None,
) -> None:
    """Who is in each photo: every face, largest first, named or "unknown".

    INPUTS are photos, folders of photos (searched recursively, like scan) or videos (read with
    opencv, every Nth frame).
    """
    from facesys.vision.annotate import save_annotated
    from facesys.vision.images import load_image
    from facesys.vision.media import expand_inputs, is_video, media_items

    system = settings.system(threshold)
    found = expand_inputs(inputs)
    paths = found.files
    if not paths:
        raise FacesysError(f"nothing to identify in {', '.join(inputs)}: {found.summary()}")
    if annotate and (len(paths) != 1 or is_video(paths[0])):
        raise click.UsageError("--annotate takes exactly one input photo")
    failed = 0
    progress = settings.progress(paths)
    for ref, result, faces in system.identify_stream(media_items(paths, every), top_k, ray):
        if ref.frame is None or ref.frame == 0:
            progress.update(1)
        if result.error:
            failed += 1
            error_line(result.error)
            continue
        show(faces, ref, as_json, explain)
        if annotate:
            save_annotated(load_image(ref.source) if result.image is None else result.image, faces, annotate)  # None: on Ray
    progress.close()
    if as_json:
        emit_json({"summary": {"files": len(paths), "skipped": [str(p) for p, _ in found.skipped], "errors": failed}})
    elif found.skipped or (not settings.quiet and len(paths) > 1):
        click.echo(f"read {found.summary()}", err=True)
    sys.exit(EXIT_ERROR if failed else EXIT_OK)


def show(faces, ref, as_json: bool, explain: bool = False) -> None:
    """One photo's (or video frame's) answer: a JSON line, or a header line and a line per face (with
    ``explain``, each candidate's nearest enrolled photos under it)."""
    if as_json:
        emit_json({**ref.to_dict(), "faces": [f.to_dict(None if explain else CANDIDATE_PHOTOS) for f in faces]})
        return
    where = f" frame {ref.frame} ({ref.time_s:.1f} s)" if ref.frame is not None else ""
    click.echo(f"{ref.source}{where}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for number, face in enumerate(faces, start=1):
        click.echo(f"  face {number} ({','.join(str(round(v)) for v in face.box)}): {answer_line(face)}")
        for candidate in face.candidates if explain else []:
            click.echo(f"    {candidate.name}: score {candidate.distance:.3f}")
            for photo in candidate.faces[:CANDIDATE_PHOTOS]:
                click.echo(f"      face #{photo.face_id} {photo.source} (distance {photo.distance:.3f})")


def answer_line(face) -> str:
    """What one face is: its name and the enrolled photo that decided it, or why it is unknown."""
    if face.quality is not None:
        return f"unknown (low quality: {face.quality})"
    if not face.candidates:
        return "unknown (empty gallery)"
    best = face.candidates[0]
    if face.name is None:
        return f"unknown (nearest {best.name}, score {best.distance:.3f} > {face.threshold:.3f}, {face.threshold_source})"
    photo = face.matched
    return (
        f"{face.name} (score {face.distance:.3f} <= {face.threshold:.3f}, {face.threshold_source}; "
        f"nearest enrolled photo: face #{photo.face_id} {photo.source})"
    )
