"""Periodic-table figures: a dataset's coverage, a model's per-element errors."""
from __future__ import annotations

from pathlib import Path


def plot_coverage(elements: dict[str, int], path, title: str = "") -> Path:
    """Periodic table (H to Rn) coloured by the number of structures that contain each element (grey: none).

    ``elements``: symbol -> count (as in ``DatasetStore.info()["elements"]``). Writes ``path`` (PNG/PDF/SVG)."""
    return periodic_table({x: n for x, n in elements.items() if n > 0}, path, "structures containing the element",
                          "%d", title)


def periodic_table(values: dict[str, float], path, label: str, value_format: str = "%.1f", title: str = "") -> Path:
    """Periodic table (H to Rn) coloured by ``values`` (symbol -> number; grey: absent), e.g. a model's
    per-element MAE in meV. Writes ``path`` (PNG/PDF/SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.util.plotting import periodic_table_heatmap

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(values) or {"H": 0}
    ax = periodic_table_heatmap(data, cbar_label=label, pymatviz=False, value_format=value_format, max_row=6,
                                symbol_fontsize=12, value_fontsize=9)
    if title:
        ax.set_title(title, fontsize=14)
    fig = ax.get_figure()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
