"""``facesys scan``, ``cluster``, ``clusters``, ``name``, ``face name|unname|remove`` and ``find``:
the photo library (faces nobody labelled, unnamed until named; facesys/library/)."""

from __future__ import annotations

import sys

import click

from facesys.cli import EXIT_OK, EXIT_REJECTED, FacesysGroup, Settings, emit_json, error_line, main, ray_option
from facesys.errors import MAX_ID

FACE_ID = click.IntRange(1, MAX_ID)  # what a gallery can store: larger ids would overflow its integers
CLUSTER_ID = click.IntRange(0, MAX_ID)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- scan ---------------------------------------------------------------------------------------


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@click.option("--every", type=click.IntRange(min=1), help="Also scan videos, every Nth frame (without it videos are skipped).")
@click.option(
    "--force",
    is_flag=True,
    help="Forget the photos of a folder that holds none now, or of a sub-folder that is gone (refused otherwise: unmounted?).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per file read, failed or forgotten, then a summary.")
@ray_option
@click.pass_obj
def scan(settings: Settings, folders: tuple[str, ...], every: int | None, force: bool, as_json: bool, ray: str | None) -> None:
    """Find every face in the photos under FOLDERS (recursively) and store them, unnamed.

    Incremental and safe to kill: a re-run reads only new or changed files, keeps the faces and
    names of moved or renamed ones (same content) and forgets deleted ones; each file is recorded
    whole or not at all. Faces that match an enrolled person are
    attached to them automatically (undo with 'facesys face unname'). Each unreadable file is
    reported on one line and skipped. Then: 'facesys cluster', 'facesys clusters', 'facesys name'.

    Exit code 0; 3 when some files could not be read; 2 on errors that stop the scan.
    """
    system = settings.system()
    progress = None
    seen = {"faces": 0, "errors": 0}  # shown beside the bar's files/s and ETA

    def start(total: int) -> None:
        nonlocal progress
        progress = settings.progress(range(total), unit="file")

    def report(result) -> None:
        if progress is not None:
            seen["faces"] += result.faces
            seen["errors"] += result.status == "error"
            progress.set_postfix(seen, refresh=False)
            progress.update(1)
        if as_json:
            if result.status != "unchanged":
                emit_json({"event": "file", **result.to_dict()})
        elif result.status == "error":
            error_line(result.error)
        elif settings.verbose and result.status != "unchanged":
            click.echo(f"{result.status} {result.path}: {_plural(result.faces, 'face')}")
        for person, count in result.automatic.items() if settings.verbose and not as_json else ():
            click.echo(f"  {_plural(count, 'face')} attached to {person} automatically")

    try:
        summary = system.scan(list(folders), every=every, on_result=report, force=force, on_start=start, ray=ray)
    finally:
        if progress is not None:
            progress.close()
    files = summary.files
    if as_json:
        emit_json({"event": "summary", **summary.to_dict()})
    elif not settings.quiet:
        read = files["new"] + files["changed"]
        line = (
            f"read {_plural(read, 'file')} ({files['new']} new, {files['changed']} changed): {_plural(summary.faces, 'face')}, "
            f"{summary.automatic} attached to enrolled people automatically; {files['unchanged']} unchanged"
            if read
            else f"nothing new or changed: {files['unchanged']} unchanged"
            if files["unchanged"] or files["error"] or files["forgotten"]
            else f"no photos found under {', '.join(folders)}"
        )
        if files["moved"]:
            line += f", {files['moved']} moved (faces and names kept)"
        if files["erased"]:
            line += f", {files['erased']} left out (their faces were erased with a removed person)"
        if files["error"]:
            line += f", {files['error']} unreadable"
        if files["forgotten"]:
            line += f", {files['forgotten']} deleted (forgot {_plural(summary.forgotten_faces, 'face')})"
        click.echo(line)
        if summary.videos_skipped:
            click.echo(f"skipped {_plural(summary.videos_skipped, 'video')} (scan videos with --every N)", err=True)
        if summary.processed:
            click.echo("next: facesys cluster, then facesys clusters --sheet clusters.png", err=True)
    sys.exit(EXIT_REJECTED if files["error"] else EXIT_OK)


# -- clusters -----------------------------------------------------------------------------------


@main.command()
@click.option("--threshold", type=float, help="Link faces closer than this distance (default: the model's clustering threshold).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cluster(settings: Settings, threshold: float | None, as_json: bool) -> None:
    """Group the unnamed faces of the library by person.

    Incremental: clusters that persist keep their ids; new faces join them or form new ones.
    """
    run = settings.system().cluster(threshold)
    if as_json:
        emit_json(run.to_dict())
        return
    click.echo(
        f"clustered {_plural(run.faces, 'unnamed face')} into {_plural(run.clusters, 'cluster')} "
        f"({run.new} new, {run.placed} face(s) placed now)"
        + (f"; {_plural(run.poor, 'face')} too small, unsure or in profile to group" if run.poor else "")
    )
    if run.clusters and not settings.quiet:
        click.echo("next: facesys clusters --sheet clusters.png, then facesys name CLUSTER NAME", err=True)


@main.command()
@click.option("--min-size", type=click.IntRange(min=1), default=1, show_default=True, help="Only clusters of at least N faces.")
@click.option("--sheet", type=click.Path(dir_okay=False), help="Write a contact sheet (PNG): one row of face crops per cluster.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def clusters(settings: Settings, min_size: int, sheet: str | None, as_json: bool) -> None:
    """The clusters of unnamed faces, largest first: id, faces, files and face ids."""
    system = settings.system()
    found = system.clusters(min_size)
    if sheet:
        from facesys.library.clusters import write_cluster_sheet

        write_cluster_sheet(system.gallery, found, sheet)
    if as_json:
        emit_json({"clusters": [c.to_dict() for c in found], **({"sheet": sheet} if sheet else {})})
        return
    for c in found:
        shown = ",".join(str(i) for i in c.faces[:12]) + (",..." if c.size > 12 else "")
        click.echo(f"cluster {c.id}\t{_plural(c.size, 'face')}\t{_plural(c.photos, 'file')}\tfaces {shown}")
    if not settings.quiet:
        click.echo(f"{_plural(len(found), 'cluster')}" + (f"; contact sheet: {sheet}" if sheet else ""), err=True)


# -- naming -------------------------------------------------------------------------------------


def _show_named(settings: Settings, named, as_json: bool, what: str, extra: dict) -> None:
    """What naming did: a JSON line, or one line (and a note on faces not enrolled)."""
    if as_json:
        pairs = [{"library_face_id": lib, "face_id": face} for lib, face in sorted(named.enrolled.items())]
        emit_json({**extra, "name": named.name, "faces": named.faces, "enrolled": pairs, "not_enrolled": named.not_enrolled})
        return
    click.echo(f"named {what} {named.name}: {_plural(len(named.faces), 'face')}, {len(named.enrolled)} enrolled for identify")
    if named.not_enrolled and not settings.quiet:
        click.echo(
            f"note: {_plural(len(named.not_enrolled), 'face')} named without enrolling: a photo is enrolled once", err=True
        )


@main.command("name")
@click.argument("cluster_id", metavar="CLUSTER", type=CLUSTER_ID)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def name_command(settings: Settings, cluster_id: int, name: str, as_json: bool) -> None:
    """Name every face of CLUSTER as NAME (an existing person of that name gets them).

    Their faces are enrolled, so 'facesys identify' finds NAME from now on.
    """
    named = settings.system().name_cluster(cluster_id, name)
    _show_named(settings, named, as_json, f"cluster {cluster_id}", {"cluster": cluster_id})


def _seen_option(command):
    """``--was NAME`` / ``--unnamed``: change the faces only while each is still so (compare-and-set)."""
    command = click.option("--unnamed", "was_unnamed", is_flag=True, help="Only while each face is unnamed.")(command)
    help_was = "Only while each face is NAME's (else nothing changes, and the error names who has it)."
    return click.option("--was", metavar="NAME", help=help_was)(command)


def _seen(face_ids: tuple[int, ...], was: str | None, was_unnamed: bool) -> dict | None:
    """Face id -> the person the caller says it is now (None: unnamed), or None when not said."""
    if was is not None and was_unnamed:
        raise click.UsageError("--was and --unnamed exclude each other")
    return {face_id: was for face_id in face_ids} if was is not None or was_unnamed else None


@main.group(cls=FacesysGroup)
def face() -> None:
    """Name, unname or remove single library faces (ids from 'facesys clusters' or 'facesys find')."""


@face.command("name")
@click.argument("face_ids", metavar="FACE_ID...", nargs=-1, required=True, type=FACE_ID)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@_seen_option
@click.pass_obj
def face_name(
    settings: Settings, face_ids: tuple[int, ...], name: str, as_json: bool, was: str | None, was_unnamed: bool
) -> None:
    """Name library faces NAME (moving them from whoever they were given to before).

    A face changed by another command meanwhile (or not as --was/--unnamed says) is left alone:
    exit 2, naming who has it."""
    named = settings.system().name_faces(list(face_ids), name, _seen(face_ids, was, was_unnamed))
    _show_named(settings, named, as_json, _plural(len(face_ids), "face"), {})


@face.command("unname")
@click.argument("face_ids", metavar="FACE_ID...", nargs=-1, required=True, type=FACE_ID)
@click.option("--json", "as_json", is_flag=True)
@_seen_option
@click.pass_obj
def face_unname(settings: Settings, face_ids: tuple[int, ...], as_json: bool, was: str | None, was_unnamed: bool) -> None:
    """Take library faces back from their person (automatic or named); their enrolled copies go."""
    done = settings.system().unname_faces(list(face_ids), _seen(face_ids, was, was_unnamed))
    if as_json:
        emit_json({"unnamed": done})
    else:
        click.echo(f"unnamed {_plural(len(done), 'face')}" + ("" if done else " (none was named)"))


@face.command("remove")
@click.argument("face_ids", metavar="FACE_ID...", nargs=-1, required=True, type=FACE_ID)
@click.option("--json", "as_json", is_flag=True)
@_seen_option
@click.pass_obj
def face_remove(settings: Settings, face_ids: tuple[int, ...], as_json: bool, was: str | None, was_unnamed: bool) -> None:
    """Delete library faces entirely (crop and embedding erased, enrolled copies too)."""
    count = settings.system().remove_library_faces(list(face_ids), _seen(face_ids, was, was_unnamed))
    if as_json:
        emit_json({"removed": count})
    else:
        click.echo(f"removed {_plural(count, 'face')}")


# -- find ---------------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def find(settings: Settings, name: str, as_json: bool) -> None:
    """The photos NAME appears in: enrolled and library photos, with the boxes of their faces.

    NAME in any case, whole or its start ("salma" finds Salma Hayek); when it fits several people
    they are listed instead."""
    found = settings.system().find(name)
    if as_json:
        emit_json(found.to_dict())
        return
    for photo in found.photos:
        for seen in photo.faces:
            box = ",".join(str(round(v)) for v in seen.box)
            where = f" frame {seen.frame}" if seen.frame is not None else ""
            ids = f"library face {seen.library_face_id}" if seen.library_face_id is not None else f"enrolled face {seen.face_id}"
            click.echo(f"{photo.path}{where}\t({box})\t{ids}{' (automatic)' if seen.automatic else ''}")
    if not settings.quiet:
        click.echo(f"{found.name}: {_plural(len(found.photos), 'photo')}", err=True)
