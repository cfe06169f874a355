"""``facesys models``: the registry, and weights prepared ahead of time."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facesys.cli import JSON_SCHEMA_VERSION, FacesysGroup, Settings, main
from facesys.config import DEFAULT_MODEL, ONNX_KINDS

NO_LICENCE = "not declared"


@main.group(cls=FacesysGroup, invoke_without_command=True)
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
                "licence": spec.licence or NO_LICENCE,
            }
        )
    if as_json:
        click.echo(json.dumps({"schema_version": JSON_SCHEMA_VERSION, "models": rows}))
        return
    for row in rows:
        default = " (default)" if row["name"] == DEFAULT_MODEL else ""
        click.echo(
            f"{row['name']}{default}: {row['dim']}-D, {row['input_size']}x{row['input_size']} chips, threshold {row['threshold']}"
        )
        click.echo(f"    {row['description']}")
        click.echo(f"    weights: {row['weights']}")
        click.echo(f"    licence: {row['licence']}")


@models.command("prepare")
@click.argument("name")
@click.option("--weights", type=click.Path(dir_okay=False), help="Import this local weights file (your own model: an ONNX file).")
@click.option(
    "--kind", type=click.Choice(ONNX_KINDS), help="Your ONNX model's family: input normalisation, default threshold [arcface]."
)
@click.option("--licence", help="Your model's licence, as you declare it (listed by 'facesys models').")
@click.option("--threshold", type=click.FloatRange(0, 2, min_open=True), help="Your model's verification threshold (a distance).")
@click.pass_obj
def models_prepare(
    settings: Settings, name: str, weights: str | None, kind: str | None, licence: str | None, threshold: float | None
) -> None:
    """Convert or fetch NAME's weights now, so later commands start fast and offline.

    With --weights, the file is checked by loading it and then copied to where NAME looks for its
    weights, so later commands need no --weights.

    A NAME that is not built in, with an ONNX embedding network as --weights, becomes your own
    model (usable as --model NAME): input size, embedding size and normalisation come from the
    graph, --kind says how to normalise a graph that does not, --licence is listed as declared.
    For a model you prepared already, --licence and --threshold alone update it.
    """
    import os
    import shutil

    from facesys.models import create_model

    source = weights or settings.weights
    own = {"--kind": kind, "--licence": licence, "--threshold": threshold}
    if _is_builtin(name):
        if any(value is not None for value in own.values()):
            given = ", ".join(flag for flag, value in own.items() if value is not None)
            raise click.UsageError(f"{given}: only for your own ONNX models; {name!r} is built in (choose another NAME)")
    elif source or licence is not None or threshold is not None:
        from facesys.models.user_models import prepare_onnx_model, update_user_model

        if source:
            spec = prepare_onnx_model(name, source, kind or ONNX_KINDS[0], licence or "", threshold)
            click.echo(f"{name}: prepared from {source} -> {spec.weights_location()}")
        else:
            if kind is not None:
                raise click.UsageError("--kind: prepare the model again from its ONNX file (--weights) to change it")
            spec = update_user_model(name, licence, threshold)
            click.echo(f"{name}: updated")
        click.echo(f"    {spec.embedding_dim}-D, {spec.input_size}x{spec.input_size} chips; {spec.description}")
        click.echo(f"    licence: {spec.licence or NO_LICENCE}")
        return
    model = create_model(name, weights=weights or settings.weights)
    location = Path(model.spec.weights_location())
    if weights and not location.exists():
        location.parent.mkdir(parents=True, exist_ok=True)
        partial = location.with_name(location.name + ".partial")
        shutil.copyfile(weights, partial)
        os.replace(partial, location)
        click.echo(f"{name}: imported {weights} -> {location}")
    click.echo(f"{name}: ready ({model.model_id}; weights: {location})")


@models.command("remove")
@click.argument("name")
def models_remove(name: str) -> None:
    """Delete NAME, a model you prepared from an ONNX file (built-in models stay)."""
    from facesys.models.user_models import remove_user_model

    for path in remove_user_model(name):
        click.echo(f"{name}: removed {path}")


def _is_builtin(name: str) -> bool:
    from facesys.models import list_models
    from facesys.models.user_models import is_user_model

    return name in list_models() and not is_user_model(name)
