"""``facesys train``: fine-tune an embedding network with triplet loss and gradient accumulation."""

from __future__ import annotations

from pathlib import Path

import click

from facesys.cli import Settings, main
from facesys.config import DEFAULT_MODEL
from facesys.train.config import TrainConfig


@main.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for checkpoints, log and plot.")
@click.option(
    "--val-pairs", type=click.Path(dir_okay=False), help="Validation pairs (LFW pairs.txt or CSV), people disjoint from DATA."
)
@click.option(
    "--val-data",
    type=click.Path(file_okay=False),
    help="Image folder of the validation pairs (default: the pairs file's folder).",
)
@click.option(
    "--people",
    "-P",
    type=click.IntRange(min=2),
    default=TrainConfig.people,
    show_default=True,
    help="P: people per effective batch.",
)
@click.option(
    "--per-person",
    "-K",
    type=click.IntRange(min=2),
    default=TrainConfig.per_person,
    show_default=True,
    help="K: photos per person.",
)
@click.option("--micro-batch", type=click.IntRange(min=1), default=TrainConfig.micro_batch, show_default=True)
@click.option("--accum-steps", type=click.IntRange(min=1), default=TrainConfig.accum_steps, show_default=True)
@click.option("--accum-mode", type=click.Choice(["naive", "exact"]), default=TrainConfig.accum_mode, show_default=True)
@click.option("--loss", type=click.Choice(["batch-hard", "semi-hard", "batch-all"]), default=TrainConfig.loss, show_default=True)
@click.option("--margin", type=float, default=TrainConfig.margin, show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default=TrainConfig.optimizer, show_default=True)
@click.option(
    "--lr",
    type=float,
    default=TrainConfig.lr,
    show_default=True,
    help="Learning rate (3e-4 collapsed all embeddings in our runs).",
)
@click.option("--weight-decay", type=float, default=TrainConfig.weight_decay, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=TrainConfig.steps, show_default=True, help="Optimizer steps.")
@click.option(
    "--freeze",
    default=TrainConfig.freeze,
    show_default=True,
    help="Freeze the model's stages up to this one, input side first ('none': train all; a wrong name lists the model's stages).",
)
@click.option("--augment", is_flag=True, help="Flip, crop, colour, blur and down-scaling augmentation.")
@click.option("--condition", help="Train (and validate) on degraded faces: lowres:N or gray.")
@click.option("--max-photos", type=click.IntRange(min=2), help="Use at most this many photos per person.")
@click.option("--face", type=click.Choice(["largest", "center"]), default="largest", show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=TrainConfig.checkpoint_every, show_default=True)
@click.option("--validate-every", type=click.IntRange(min=0), default=TrainConfig.validate_every, show_default=True)
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt exactly.")
@click.pass_obj
def train(
    settings: Settings,
    data: str,
    out: str,
    val_pairs: str | None,
    val_data: str | None,
    condition: str | None,
    max_photos: int | None,
    face: str,
    resume: bool,
    **options,
) -> None:
    """Fine-tune the model on DATA (one sub-folder per person) with triplet loss.

    P x K (people x photos) per effective batch must equal micro-batch x accum-steps x processes.
    Run under torchrun for several processes. The final checkpoint OUT/final.pt works with
    --model everywhere; OUT/best.pt is the best on the validation pairs; OUT/metrics.jsonl and
    OUT/metrics.png log the run.
    """
    from tqdm import tqdm

    from facesys.datasets import people_in
    from facesys.evaluate.pairs import read_pairs
    from facesys.train.data import build_chips, degrade
    from facesys.train.trainer import Trainer
    from facesys.vision.embed import Embedder

    options["freeze"] = None if options["freeze"] == "none" else options["freeze"]
    config = TrainConfig(
        out=out, model=settings.model or DEFAULT_MODEL, weights=settings.weights, device=settings.device, **options
    )
    embedder = Embedder(config.model, device=settings.device, weights=settings.weights, detector=settings.detector)
    cache = Path(out) / "chip-cache"
    progress = lambda items: settings.progress(items, unit="batch")  # noqa: E731
    chips = build_chips(embedder, people_in(Path(data), max_photos=max_photos), face, cache, progress)
    chips.chips = degrade(chips.chips, condition)
    val_chips, pairs = None, None
    if val_pairs:
        pairs = read_pairs(val_pairs, val_data)
        files: dict[str, list[Path]] = {}
        for path in sorted({p.a for p in pairs} | {p.b for p in pairs}):
            files.setdefault(path.parent.name, []).append(path)
        val_chips = build_chips(embedder, files, face, cache, progress)
        val_chips.chips = degrade(val_chips.chips, condition)
    trainer = Trainer(config, chips, val_chips, pairs)
    if resume and trainer.resume():
        click.echo(f"resumed at step {trainer.step}", err=True)
    click.echo(f"{len(chips)} photos of {len(chips.names)} people; training {', '.join(trainer.trainable)}", err=True)
    final = trainer.run(progress=lambda steps: tqdm(steps, unit="step", disable=settings.quiet or None))
    if trainer.rank == 0:
        click.echo(f"final checkpoint: {final} (threshold {trainer.threshold:.3f}); log: {Path(out) / 'metrics.jsonl'}")
