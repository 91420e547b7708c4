"""Training curves as a PNG (loss and accuracy per epoch, training and validation), written beside a run's
history.json and copied into every registered version, so a reader sees how a model got where it is."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence


def curves_png(history: Mapping[str, Sequence[float]], title: str = "") -> bytes:
    """Loss (left) and accuracy (right) per epoch, training solid and validation dashed (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = list(history.get(key, ()))
            if values:
                ax.plot(range(1, len(values) + 1), values, style, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
