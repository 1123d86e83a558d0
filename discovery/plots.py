"""Figures people would rather look at than read (written as PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dataset_overview(rows: list[dict[str, Any]], failures: dict[str, int], path: Path) -> Path:
    """Pore-size histograms, surface area against density, and rejections by reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    geo = [r["geometry"] for r in rows if r.get("geometry")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.hist([g["lcd"] for g in geo], bins=20, alpha=0.6, label="LCD")
    ax.hist([g["pld"] for g in geo], bins=20, alpha=0.6, label="PLD")
    ax.set_xlabel("diameter (A)")
    ax.set_ylabel("MOFs")
    ax.legend()
    ax = axes[1]
    ax.scatter([g["density_g_cm3"] for g in geo], [g["asa_m2_g"] for g in geo], s=10)
    ax.set_xlabel("density (g/cm3)")
    ax.set_ylabel("CO2-accessible surface area (m2/g)")
    ax = axes[2]
    labels = ["valid"] + list(failures)
    ax.barh(labels, [len(rows)] + list(failures.values()), color=["tab:green"] + ["tab:red"] * len(failures))
    ax.invert_yaxis()
    ax.set_xlabel("recipes")
    fig.suptitle(f"{len(rows)} valid MOFs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
