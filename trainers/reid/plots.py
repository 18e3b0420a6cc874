"""The two figures ``evaluate`` writes: the CMC curve and a grid of sampled query matches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def plot_cmc(cmc: np.ndarray, path: Path, title: str = "CMC") -> Path:
    ranks = np.arange(1, len(cmc) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ranks, cmc * 100, marker="o", markersize=3)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100.5)
    ax.set_title(f"{title}: rank-1 {cmc[0] * 100:.1f}%")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_matches(query: Sequence[tuple[Path, int]], ranked: Sequence[Sequence[tuple[Path, int, float]]],
                 path: Path, top_k: int = 5) -> Path:
    """One row per query: the query image, then its top-k gallery images framed green (same person)
    or red (different person)."""
    rows = len(query)
    fig, axes = plt.subplots(rows, top_k + 1, figsize=(1.3 * (top_k + 1), 2.4 * rows), squeeze=False)
    for r, ((q_path, q_pid), matches) in enumerate(zip(query, ranked)):
        axes[r][0].imshow(Image.open(q_path).convert("RGB"))
        axes[r][0].set_title(f"query {q_pid}", fontsize=7)
        for c in range(top_k):
            ax = axes[r][c + 1]
            if c < len(matches):
                g_path, g_pid, dist = matches[c]
                ax.imshow(Image.open(g_path).convert("RGB"))
                colour = "green" if g_pid == q_pid else "red"
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(3)
                ax.set_title(f"{g_pid} d={dist:.2f}", fontsize=6, color=colour)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
