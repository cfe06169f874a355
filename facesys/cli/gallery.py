"""``facesys gallery``: look after the gallery (list, show, remove, rename, stats, index, reindex, check, log, ...)."""

from __future__ import annotations

import json
import time

import click

from facesys.cli import FacesysGroup, Settings, emit_json, main, ray_option
from facesys.config import LOG_EVENTS
from facesys.errors import FacesysError, NoGalleryError
from facesys.gallery.index import INDEX_KINDS


def open_gallery(settings: Settings):
    """The Gallery the global options point at (no model is loaded)."""
    from facesys.gallery import Gallery

    return Gallery(settings.gallery, key_file=settings.key_file)


def local_time(seconds: float) -> str:
    """A time in seconds since the epoch as local "YYYY-MM-DD HH:MM:SS"."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


@main.group(cls=FacesysGroup)
def gallery() -> None:
    """Inspect and change the gallery."""


@gallery.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_people(settings: Settings, as_json: bool) -> None:
    """Everyone enrolled, with their number of photos."""
    gallery = open_gallery(settings)
    if not gallery.exists():
        click.echo(f"{NoGalleryError(gallery.location)}; 0 people", err=True)
    people = gallery.people()
    if as_json:
        emit_json({"people": [{"name": name, "faces": count} for name, count in people]})
        return
    for name, count in people:
        click.echo(f"{name}\t{count} photo{'s' if count != 1 else ''}")
    if not settings.quiet:
        click.echo(f"{len(people)} people", err=True)


@gallery.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(settings: Settings, name: str, as_json: bool) -> None:
    """NAME's enrolled photos: face id, source, box, detection score, date."""
    faces = open_gallery(settings).faces(name)
    if as_json:
        rows = [
            {"face_id": f.id, "source": f.source, "box": f.box, "score": round(f.score, 4), "created_at": f.created_at}
            for f in faces
        ]
        emit_json({"name": name, "faces": rows})
        return
    click.echo(f"{name}: {len(faces)} photo{'s' if len(faces) != 1 else ''}")
    for f in faces:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.created_at))
        box = ",".join(str(round(v)) for v in f.box)
        click.echo(f"  #{f.id}  {f.source}  box=({box}) score={f.score:.3f}  {when}")


@gallery.command()
@click.argument("name")
@click.pass_obj
def remove(settings: Settings, name: str) -> None:
    """Forget NAME: their embeddings, face crops and index entries are erased."""
    count = open_gallery(settings).remove(name)
    click.echo(f"removed {name} ({count} photo{'s' if count != 1 else ''})")


@gallery.command()
@click.argument("old")
@click.argument("new")
@click.pass_obj
def rename(settings: Settings, old: str, new: str) -> None:
    """Rename OLD to NEW (nobody is re-embedded)."""
    open_gallery(settings).rename(old, new)
    click.echo(f"renamed {old} -> {new}")


@gallery.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stats(settings: Settings, as_json: bool) -> None:
    """Size, model and thresholds of the gallery: the open-set threshold identify uses, where it comes
    from and the share of strangers it is expected to name."""
    gallery = open_gallery(settings)
    values = gallery.stats()
    values |= open_set_summary(gallery, values["faces"], values["people"])
    if as_json:
        emit_json(values)
        return
    for key, value in values.items():
        click.echo(f"{key}: {value if value is not None else '-'}")


def open_set_summary(gallery, faces: int, people: int) -> dict:
    """identify's threshold for this gallery of ``faces`` faces of ``people`` people, its source and
    expected false-identification rate (empty for a gallery of an unregistered model: a
    checkpoint's table is in the checkpoint)."""
    from facesys.decide.calibration import describe
    from facesys.errors import ModelError
    from facesys.models import get_model_spec

    held = gallery.model()
    try:
        spec = get_model_spec(held[1]) if held else None
    except ModelError:
        spec = None
    if spec is None:
        return {}
    calibration = gallery.calibration()
    threshold = gallery.policy(spec).identify(faces, calibration)
    expected = threshold.expected_fpir
    return {
        "open_set_threshold": round(threshold.value, 4),
        "open_set_threshold_source": threshold.source,
        "expected_false_identification_rate": None if expected is None else round(expected, 4),
        "self_calibration": describe(calibration, people),
    }


@gallery.command()
@click.option("--model", "model", required=True, help="The model to re-embed every stored face with.")
@ray_option
@click.pass_obj
def reindex(settings: Settings, model: str, ray: str | None) -> None:
    """Re-embed the whole gallery, photo library included, with another model, from the stored face crops."""
    settings.model = None  # the gallery's current model does not matter here
    done = settings.system().reindex(model, ray)
    faces, library = done.faces, done.library_faces
    library_text = f"{library} library face{'s' if library != 1 else ''}"
    click.echo(f"re-embedded {faces} face{'s' if faces != 1 else ''} and {library_text} with {model}")


@gallery.command("index")
@click.option(
    "--kind",
    type=click.Choice(INDEX_KINDS),
    help="Force this index kind (auto: exact up to 50,000 faces, ivf above) and rebuild it.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def index_command(settings: Settings, kind: str | None, as_json: bool) -> None:
    """Show the search index (kind, faces), or force its kind with --kind."""
    info = open_gallery(settings).index_info(kind)
    if as_json:
        emit_json(info | {"seconds": round(info["seconds"], 3)})
        return
    setting, seconds = info["forced"], info["seconds"]
    click.echo(f"index: {info['kind']} over {info['faces']} faces (kind setting: {setting}); ready in {seconds:.2f} s")


@gallery.command()
@click.pass_obj
def check(settings: Settings) -> None:
    """Check the database (integrity, embeddings, model) and the index against it. Exit 2 on problems
    (damage); a missing or stale index is derived data, rebuilt when needed: shown as info."""
    opened = open_gallery(settings)
    problems = opened.check()
    if not problems:
        for note in opened.notes():
            click.echo(f"info: {note}")
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        raise FacesysError(
            f"{len(problems)} problem(s) found; 'facesys gallery repair' rebuilds derived data (and a damaged database)"
        )
    click.echo("gallery is healthy")


@gallery.command()
@click.pass_obj
def repair(settings: Settings) -> None:
    """Rebuild derived data (the index), drop people left without faces, erase freed space; a damaged
    database is rebuilt from its readable rows (the damaged copy is kept beside it)."""
    for line in open_gallery(settings).repair():
        click.echo(line)


@gallery.command("export")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--person",
    metavar="NAME",
    help="Only everything held about NAME, for an access request: faces, crops, embeddings, library faces, log events.",
)
@click.option(
    "--clear",
    is_flag=True,
    help="With --person, from an encrypted gallery: write the file in clear (the copy for the data subject).",
)
@click.pass_obj
def export_command(settings: Settings, path: str, person: str | None, clear: bool) -> None:
    """Write the whole gallery to PATH: a zip of JSON, embeddings (.npy) and face crops (JPEG),
    sealed with the gallery's key when it is encrypted."""
    if clear and person is None:
        raise click.UsageError("--clear: only with --person (a whole gallery's export of an encrypted gallery is always sealed)")
    if person is not None:
        held = open_gallery(settings).export_person(person, path, clear=clear)
        faces, library, events = len(held.faces), len(held.library_faces), len(held.events)
        click.echo(
            f"exported everything held about {held.name} to {path}: {faces} enrolled face{'s' if faces != 1 else ''}, "
            f"{library} library face{'s' if library != 1 else ''}, {events} log event{'s' if events != 1 else ''}"
        )
        return
    count, unreadable = open_gallery(settings).export(path)
    click.echo(f"exported {count} face{'s' if count != 1 else ''} to {path}")
    if unreadable:
        click.echo(
            f"warning: {unreadable} face row(s) of the damaged database could not be read and are not in the export; "
            "'facesys gallery repair' rebuilds the database from the readable rows",
            err=True,
        )


@gallery.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.pass_obj
def import_command(settings: Settings, path: str) -> None:
    """Add the faces of an export (same model, or an empty gallery); photos already present are skipped."""
    added, skipped = open_gallery(settings).import_(path)
    click.echo(f"imported {added} face{'s' if added != 1 else ''}; skipped {skipped} already present")


def _person_shown(event) -> str:
    """The person an audit event concerned: their name, "removed person #<id>", or "-"."""
    if event.person is not None:
        return event.person
    return "-" if event.person_id is None else f"removed person #{event.person_id}"


def _detail_shown(detail: dict) -> str:
    """key=value pairs, values as compact JSON (text bare); "-" for none."""
    pairs = (
        f"{key}={value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(',', ':'))}"
        for key, value in detail.items()
    )
    return " ".join(pairs) or "-"


@gallery.command("log")
@click.option("--limit", type=click.IntRange(min=1), default=LOG_EVENTS, show_default=True, help="Show the latest N events.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def log_command(settings: Settings, limit: int, as_json: bool) -> None:
    """Who changed the gallery and how, newest first: time, actor, action, person, detail."""
    events = open_gallery(settings).log(limit)
    if as_json:
        emit_json({"events": [event.to_dict() for event in events]})
        return
    for event in events:
        fields = (local_time(event.at), event.actor, event.action, _person_shown(event), _detail_shown(event.detail))
        click.echo("\t".join(fields))


class Period(click.ParamType):
    """A retention period (90d, 1y: facesys/gallery/store/retention.py) or ``off``; converted to
    the stored form, or None for off."""

    name = "period"

    def convert(self, value, param, ctx):
        from facesys.gallery.store.retention import parse_period

        if value is None or (isinstance(value, str) and value.strip().lower() == "off"):
            return None
        try:
            return parse_period(value, param.name if param is not None else "period")
        except FacesysError as exc:
            self.fail(str(exc), param, ctx)


@gallery.command("retention")
@click.option("--library", type=Period(), help="Delete unnamed library faces this long after their photo's scan (off: keep).")
@click.option("--audit", type=Period(), help="Delete audit log events this old (off: keep).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def retention_command(ctx: click.Context, library: str | None, audit: str | None, as_json: bool) -> None:
    """Show or set how long unnamed library faces and the audit log are kept (PERIOD: a whole
    number and s, m, h, d, w or y, e.g. 90d, 1y; or off). Every write deletes what is older."""
    given = {what: value for what, value in (("library", library), ("audit", audit)) if _given(ctx, what)}
    gallery = open_gallery(ctx.obj)
    periods = gallery.set_retention(given) if given else gallery.retention()
    if as_json:
        emit_json({"retention": periods})
        return
    for what, period in periods.items():
        click.echo(f"{what}: {period or 'off'}")


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
