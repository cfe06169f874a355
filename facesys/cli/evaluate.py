"""``facesys eval pairs|identify`` and ``facesys calibrate``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import click

from facesys.cli import JSON_SCHEMA_VERSION, FacesysGroup, Settings, emit_json, main, ray_option
from facesys.config import DEFAULT_PERSON_SCORE, PERSON_SCORES
from facesys.errors import FacesysError

FACE_RULE = click.Choice(["largest", "center"])
FACE_HELP = "Which face of a photo with several: the largest, or the one nearest the centre (LFW's convention)."


def cache_for(settings: Settings, face: str, embedder=None, ray: str | None = None):
    """An EmbeddingCache over ``embedder`` (default: the --model one) with a progress bar; with
    ``ray``, embedding on Ray (joined until the command ends)."""
    from facesys.evaluate.experiments import EmbeddingCache

    embedder = embedder or settings.embedder()
    if ray is not None:
        from facesys.distributed.embedder import on_ray

        embedder = click.get_current_context().with_resource(on_ray(ray))(embedder)
    return EmbeddingCache(embedder, face=face, progress=lambda paths: settings.progress(paths))


JSON_HELP = "Print the full report as one JSON object on stdout instead of the text (see docs/json.md)."
REPORT_HELP = "Also write the full report (the --json document) to this file."


def finite(value):
    """``value`` with NaN and infinities (e.g. the fold accuracy of a single fold) as None: valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def check_report_path(path: str | None) -> None:
    """Fail before a long run, not after it, when the report cannot be written where asked."""
    if path and not Path(path).resolve().parent.is_dir():
        raise FacesysError(f"{path}: cannot write the report (no folder {Path(path).parent})")


def write_report(path: str, document: dict) -> None:
    """``document`` as JSON in ``path``: written to a temporary file beside it, then renamed over it."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps({"schema_version": JSON_SCHEMA_VERSION, **document}, indent=2, ensure_ascii=False) + "\n")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise FacesysError(f"{path}: cannot write the report ({exc.strerror})") from None


def output_report(document: dict, as_json: bool, report_file: str | None) -> None:
    """The report's JSON form: on stdout with --json, in a file with --report."""
    document = finite(document)
    if report_file:
        write_report(report_file, document)
    if as_json:
        emit_json(document)


@main.group(cls=FacesysGroup, name="eval")
def evaluate() -> None:
    """Measure accuracy on labelled data (pairs, or a folder per person)."""


@evaluate.command("pairs")
@click.option("--data", type=click.Path(file_okay=False), help="Image folder (default: the pairs file's folder).")
@click.option(
    "--pairs",
    "pairs_file",
    required=True,
    type=click.Path(),
    help="LFW pairs.txt, or a CSV file_a,file_b,same[,fold] (header optional).",
)
@click.option("--face", type=FACE_RULE, default="largest", show_default=True, help=FACE_HELP)
@click.option("--flip", is_flag=True, help="Flip test-time augmentation.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Save the ROC curve (PNG, SVG or PDF).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--report", "report_file", type=click.Path(dir_okay=False), help=REPORT_HELP)
@ray_option
@click.pass_obj
def eval_pairs(
    settings: Settings,
    data: str | None,
    pairs_file: str,
    face: str,
    flip: bool,
    plot: str | None,
    as_json: bool,
    report_file: str | None,
    ray: str | None,
) -> None:
    """Verification accuracy by the k-fold protocol, ROC AUC, EER and TAR@FAR.

    Per fold, the threshold that is best on the other folds decides the held-out fold; the
    accuracy printed is the mean of the held-out accuracies. Each image is embedded once.
    """
    from facesys.evaluate.experiments import MISSING_DISTANCE, evaluate_pairs
    from facesys.evaluate.pairs import read_pairs

    check_report_path(report_file)
    pairs = read_pairs(pairs_file, data)
    cache = cache_for(settings, face, settings.embedder(flip=flip), ray)
    report = evaluate_pairs(cache, pairs)
    model = cache.embedder.model_id
    for path in cache.missing()[:10]:
        click.echo(f"  no face: {path}" + (f" ({cache.unreadable[path]})" if path in cache.unreadable else ""), err=True)
    if plot:
        from facesys.evaluate.plot import plot_roc

        plot_roc({model + (" +flip" if flip else ""): report.roc}, plot, title=f"ROC, {Path(pairs_file).name}")
    output_report({"model": model, "flip": flip, "face": face, **report.to_dict()}, as_json, report_file)
    if as_json:
        return
    click.echo(f"model {model}{' +flip' if flip else ''}; {report.pairs} pairs in {report.folds} folds; {report.images} images")
    if report.folds > 1:
        mean, std = 100 * report.accuracy_mean, 100 * report.accuracy_std
        click.echo(f"accuracy: {mean:.2f}% ± {std:.2f} (mean ± std of {report.folds} held-out folds)")
        click.echo("fold thresholds: " + " ".join(f"{t:.3f}" for t in report.fold_thresholds))
    click.echo(f"ROC AUC {report.auc:.5f}   EER {100 * report.eer:.2f}%")
    for far, (tar, threshold) in report.tar_at_far.items():
        click.echo(f"TAR @ FAR {far:g}: {100 * tar:.2f}% (threshold {threshold:.3f})")
    click.echo(
        f"no face found in {report.images_without_face} image(s), unreadable {report.unreadable_images}; "
        f"their {report.pairs_with_missing_face} pair(s) were scored as 'different' (distance {MISSING_DISTANCE})"
    )
    if plot:
        click.echo(f"ROC curve saved to {plot}")
    if report_file:
        click.echo(f"report saved to {report_file}")


@evaluate.command("identify")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Folder with one sub-folder per person.")
@click.option(
    "--enroll", "enroll_count", type=click.IntRange(min=1), default=2, show_default=True, help="Photos enrolled per person (K)."
)
@click.option(
    "--min-photos", type=click.IntRange(min=2), default=5, show_default=True, help="People with fewer photos are left out."
)
@click.option("--max-probes", type=click.IntRange(min=1), default=10, show_default=True, help="Probe photos per person at most.")
@click.option(
    "--unknown-share", type=click.FloatRange(0.05, 0.95), default=0.5, show_default=True, help="Share of people never enrolled."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--face", type=FACE_RULE, default="largest", show_default=True, help=FACE_HELP)
@click.option(
    "--score",
    type=click.Choice(PERSON_SCORES),
    default=DEFAULT_PERSON_SCORE,
    show_default=True,
    help="How a person with several photos is scored (template: distance to their mean embedding).",
)
@click.option("--flip", is_flag=True, help="Embed each face and its mirror image (test-time augmentation).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--report", "report_file", type=click.Path(dir_okay=False), help=REPORT_HELP)
@ray_option
@click.pass_obj
def eval_identify(
    settings: Settings,
    data: str,
    enroll_count: int,
    min_photos: int,
    max_probes: int,
    unknown_share: float,
    seed: int,
    face: str,
    score: str,
    flip: bool,
    as_json: bool,
    report_file: str | None,
    ray: str | None,
) -> None:
    """Open-set identification on a temporary gallery built from DATA.

    A seeded share of the people is never enrolled (their photos are impostor probes); the others
    enroll K photos and the rest of their photos are genuine probes. Prints rank-1/rank-5, DIR at
    FPIR 1e-1 and 1e-2, and what facesys's open-set threshold does: the model's table alone, and the
    default (the stricter of the table and the gallery's own calibration).
    """
    from facesys.decide.match import ThresholdPolicy
    from facesys.evaluate.experiments import evaluate_identification, split_identification

    check_report_path(report_file)
    split = split_identification(Path(data), enroll_count, min_photos, max_probes, unknown_share, seed)
    cache = cache_for(settings, face, settings.embedder(flip=flip), ray)
    spec = cache.embedder.spec
    result = evaluate_identification(cache, split, ThresholdPolicy(None, {}, spec.threshold, spec.far_table), score)
    document = {"model": cache.embedder.model_id, "data": data, "enroll": enroll_count, "seed": seed, "flip": flip, **result}
    output_report(document, as_json, report_file)
    if as_json:
        return
    r = result
    click.echo(f"model {cache.embedder.model_id}")
    click.echo(f"{r['people_enrolled']} people enrolled ({r['faces_enrolled']} faces, K={enroll_count})")
    click.echo(f"{r['genuine_probes']} probes of enrolled people")
    click.echo(f"{r['impostor_probes']} probes of {r['people_never_enrolled']} people never enrolled")
    click.echo(f"rank-1 {100 * result['rank1']:.2f}%   rank-5 {100 * result['rank5']:.2f}%")
    for fpir, row in result["dir_at_fpir"].items():
        click.echo(f"DIR @ FPIR {fpir}: {100 * row['dir']:.2f}% (threshold {row['threshold']:.3f})")
    click.echo(f"person score: {r['person_score']}{' (flip)' if flip else ''}; {r['calibration_note']}")
    for label, key in (("model table alone", "model_table"), (f"default ({r['default_threshold_source']})", "default")):
        named, rejected = 100 * r[f"{key}_named_correctly"], 100 * r[f"{key}_unknown_rejected"]
        click.echo(
            f"{label}: threshold {r[f'{key}_threshold']:.3f}, {named:.2f}% of genuine probes named correctly, "
            f"{rejected:.2f}% of unknown people's probes rejected"
        )
    click.echo(f"no face found in {result['images_without_face']} image(s): {result['missing_face_policy']}")
    if report_file:
        click.echo(f"report saved to {report_file}")


@evaluate.command("cluster")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Folder with one sub-folder per person.")
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 2.0, min_open=True),
    help="Distance under which two faces are linked (default: the model's clustering threshold).",
)
@click.option("--face", type=FACE_RULE, default="largest", show_default=True, help=FACE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--report", "report_file", type=click.Path(dir_okay=False), help=REPORT_HELP)
@ray_option
@click.pass_obj
def eval_cluster(
    settings: Settings, data: str, threshold: float | None, face: str, as_json: bool, report_file: str | None, ray: str | None
) -> None:
    """Cluster the faces of DATA's photos and score the clusters against the folders (one per person).

    Prints pairwise and BCubed precision/recall/F1, clusters against people, and the seconds spent
    embedding and clustering. A photo without a face is a cluster of its own.
    """
    from facesys.evaluate.clustering import evaluate_clustering, labelled_photos

    check_report_path(report_file)
    photos = labelled_photos(Path(data))
    cache = cache_for(settings, face, ray=ray)
    result = evaluate_clustering(cache, photos, threshold)
    output_report({"model": cache.embedder.model_id, "data": data, "face": face, **result}, as_json, report_file)
    if as_json:
        return
    r = result
    click.echo(f"model {cache.embedder.model_id}; {r['faces']} photos of {r['people']} people; threshold {r['threshold']:.3f}")
    click.echo(f"{r['clusters']} clusters for {r['people']} people")
    for kind in ("bcubed", "pairwise"):
        p, rc, f1 = (100 * r[f"{kind}_{m}"] for m in ("precision", "recall", "f1"))
        click.echo(f"{'BCubed' if kind == 'bcubed' else 'pairwise':<9} precision {p:6.2f}%  recall {rc:6.2f}%  F1 {f1:6.2f}%")
    click.echo(
        f"no face found in {r['images_without_face']} image(s), unreadable {r['unreadable_images']}: {r['missing_face_policy']}"
    )
    click.echo(f"embedding {r['embed_seconds']:.1f} s, clustering {r['cluster_seconds']:.3f} s")
    if report_file:
        click.echo(f"report saved to {report_file}")


@main.command()
@click.option("--data", type=click.Path(file_okay=False), help="Image folder (default: the pairs file's folder).")
@click.option(
    "--pairs",
    "pairs_file",
    required=True,
    type=click.Path(),
    help="LFW pairs.txt, or a CSV file_a,file_b,same[,fold] (header optional).",
)
@click.option(
    "--far",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Target false-accept rate.",
)
@click.option("--face", type=FACE_RULE, default="largest", show_default=True, help=FACE_HELP)
@click.option(
    "--save",
    "save_as",
    type=click.Choice(["verify", "identify"]),
    help="Store the threshold in the gallery for verify or identify.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout (see docs/json.md).")
@click.pass_obj
def calibrate(
    settings: Settings, data: str | None, pairs_file: str, far: float, face: str, save_as: str | None, as_json: bool
) -> None:
    """Pick the threshold that gives a target FAR on your own labelled pairs.

    Reports the TAR it reaches there. With --save, the gallery keeps it and verify (or identify)
    uses it from then on (``--threshold`` still overrides it).
    """
    from facesys.evaluate.experiments import calibrate_threshold
    from facesys.evaluate.pairs import read_pairs

    pairs = read_pairs(pairs_file, data)
    system = settings.system()  # its model: --model, else the gallery's, else the default
    if save_as:
        system.gallery.stats()  # fail before the long run when there is no gallery to save into
    cache = cache_for(settings, face, system.embedder)
    result = calibrate_threshold(cache, pairs, far)
    if save_as:
        system.set_threshold(save_as, result["threshold"])
    if as_json:
        emit_json({"model": cache.embedder.model_id, **result, "saved_as": save_as})
        return
    click.echo(
        f"threshold {result['threshold']:.4f} gives FAR <= {far:g} on {result['different_pairs']} different-person pairs "
        f"(TAR {100 * result['tar']:.2f}% on {result['pairs'] - result['different_pairs']} same-person pairs)"
    )
    if result["resolution_far"] > far:
        click.echo(f"warning: {result['different_pairs']} different-person pairs cannot measure FAR {far:g} reliably", err=True)
    if save_as:
        click.echo(f"saved in {system.gallery.location} as the {save_as} threshold")
