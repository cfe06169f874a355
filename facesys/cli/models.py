"""``facesys models``: the registry, and weights prepared ahead of time."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facesys.cli import JSON_SCHEMA_VERSION, FacesysGroup, Settings, main
from facesys.config import DEFAULT_MODEL


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
