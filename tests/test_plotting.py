"""The legend keys and axis labels of mtl_diffusion.plotting."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.colors import to_rgba

from mtl_diffusion.plotting import (
    cluster_label,
    errorbar_key,
    higher_is_better,
    interval_keys,
    legend,
    line_key,
    lower_is_better,
    patch_key,
    seed_dots_key,
)


def test_axis_labels_say_which_way_is_better() -> None:
    assert lower_is_better("pixel FD") == "pixel FD (lower is better)"
    assert higher_is_better("k-NN accuracy (%)") == "k-NN accuracy (%) (higher is better)"


def test_cluster_label_is_one_based_with_inclusive_bounds() -> None:
    assert cluster_label(0, (0, 199)) == "cluster 1: t 0-199"
    assert cluster_label(1, (200, 399)) == "cluster 2: t 200-399"


def test_interval_keys_follow_the_colour_cycle_from_low_t() -> None:
    keys = interval_keys(3)
    labels = [k.get_label() for k in keys]
    assert labels == ["cluster 1 (lowest t)", "cluster 2", "cluster 3 (highest t)"]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, key in enumerate(keys):
        assert key.get_facecolor() == to_rgba(cycle[i])
    assert [k.get_label() for k in interval_keys(1, "interval")] == ["interval 1 (lowest t)"]


def test_legend_lists_labelled_artists_then_the_keys() -> None:
    fig, ax = plt.subplots()
    try:
        ax.plot([0, 1], [0, 1], label="mean")
        ax.plot([0, 1], [1, 0])  # unlabelled: not in the legend
        extra = (
            seed_dots_key(),
            errorbar_key(),
            line_key("floor", color="grey", ls=":"),
            patch_key("band", alpha=0.2),
        )
        shown = legend(ax, *extra)
        texts = [t.get_text() for t in shown.get_texts()]
        assert texts == [
            "mean",
            "dots: single seeds",
            "error bar: ± 1 sd over seeds",
            "floor",
            "band",
        ]
        assert extra[0].get_linestyle() == "None" and extra[0].get_marker() == "o"
        assert extra[2].get_linestyle() == ":"
    finally:
        plt.close(fig)


def test_an_unfilled_patch_key_draws_only_its_edge() -> None:
    key = patch_key("cluster", fill=False, edgecolor="k")
    assert key.get_facecolor()[3] == 0.0
    assert key.get_edgecolor() == to_rgba("k")
