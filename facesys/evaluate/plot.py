"""ROC picture: TAR against FAR on a log-scale FAR axis (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from facesys.errors import FacesysError
from facesys.evaluate.roc import Roc


def plot_roc(curves: dict[str, Roc], path: str | Path, title: str = "ROC") -> None:
    """Save one ROC line per label of ``curves`` to ``path`` (format from its extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5), dpi=120)
    floor = 1.0
    for label, roc in curves.items():
        positive = roc.far > 0
        axis.plot(roc.far[positive], roc.tar[positive], label=f"{label} (AUC {roc.auc:.4f}, EER {100 * roc.eer:.2f}%)")
        floor = min(floor, roc.far[positive].min(initial=1.0))
    axis.set_xscale("log")
    axis.set_xlim(max(floor, 1e-5), 1.0)
    axis.set_xlabel("false accept rate (FAR)")
    axis.set_ylabel("true accept rate (TAR)")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path)
    except (OSError, ValueError) as exc:
        raise FacesysError(f"{path}: cannot write the plot ({exc})") from None
    finally:
        plt.close(figure)
