"""Plotly figures for looking inside a trained network (data from core.introspect)."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.introspect import normalize_rows

MARGIN = dict(l=10, r=10, t=40, b=10)
# Transparent at 0, opaque red at the largest |gradient|, so the digit shows through.
SALIENCY_COLORSCALE = [[0.0, "rgba(255, 40, 0, 0)"], [1.0, "rgba(255, 40, 0, 1)"]]


def _class_names(classes, count: int) -> list[str]:
    return [str(c) for c in classes] if classes is not None else [str(i) for i in range(count)]


def confusion_figure(matrix, classes=None, normalized: bool = False) -> go.Figure:
    """Heatmap of a confusion matrix (rows: true class, columns: predicted), each cell labelled.

    matrix: counts from `core.introspect.confusion_matrix`. With normalized=True the
    colours and labels are each row's fractions, so row i shows where class i went."""
    counts = np.asarray(matrix)
    names = _class_names(classes, len(counts))
    if normalized:
        z = normalize_rows(counts)
        text = [[f"{value:.2f}" for value in row] for row in z]
        colorbar_title = "share of row"
    else:
        z = counts
        text = [[str(int(value)) for value in row] for row in counts]
        colorbar_title = "images"
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, text=text, texttemplate="%{text}", colorscale="Blues",
        colorbar=dict(title=colorbar_title),
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    fig.update_layout(height=480, margin=MARGIN, title="Confusion matrix",
                      xaxis=dict(title="predicted class", type="category"),
                      yaxis=dict(title="true class", type="category", autorange="reversed"))
    return fig


def per_class_accuracy_figure(accuracy, classes=None) -> go.Figure:
    """Bars of each class's accuracy, as from `core.introspect.per_class_accuracy`."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    fig = go.Figure(go.Bar(x=_class_names(classes, len(accuracy)), y=accuracy,
                           text=[f"{a:.1%}" if math.isfinite(a) else "no images" for a in accuracy],
                           textposition="outside"))
    fig.update_layout(height=340, margin=MARGIN, title="Accuracy per class",
                      xaxis=dict(title="true class", type="category"),
                      yaxis=dict(title="accuracy", range=[0, 1.08], tickformat=".0%"))
    return fig


def weight_grid_figure(weights, max_units: int = 256, columns: int | None = None) -> go.Figure:
    """Tile (units, 28, 28) first-layer weights into one heatmap, one 28x28 tile per unit.

    Each tile is scaled by its own largest |weight|, so every unit's pattern is
    visible: red pixels raise the unit's input, blue ones lower it. Only the
    first `max_units` units are drawn; tiles are separated by one blank pixel."""
    weights = np.asarray(weights, dtype=np.float64)[:max_units]
    units = len(weights)
    columns = columns or max(1, math.ceil(math.sqrt(units)))
    rows = max(1, math.ceil(units / columns))
    z = np.full((rows * 29 - 1, columns * 29 - 1), np.nan)
    unit_of = np.full(z.shape, -1)
    for i, tile in enumerate(weights):
        scale = np.abs(tile).max()
        top, left = (i // columns) * 29, (i % columns) * 29
        z[top:top + 28, left:left + 28] = tile / scale if scale > 0 else tile
        unit_of[top:top + 28, left:left + 28] = i
    fig = go.Figure(go.Heatmap(
        z=z, customdata=unit_of, colorscale="RdBu", reversescale=True, zmid=0, zmin=-1, zmax=1,
        colorbar=dict(title="w / max|w|"), hoverongaps=False,
        hovertemplate="unit %{customdata}: %{z:.2f}<extra></extra>"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(height=min(900, 60 + rows * 60), margin=MARGIN,
                      title=f"First-layer weights of {units} units, one image per unit")
    return fig


def histogram_figure(recorded: dict, layer: int | str = 0, kind: str = "weights") -> go.Figure:
    """Playable histogram of one layer's weights or gradients, one animation frame per epoch.

    recorded: `WeightRecorder.to_dict()`. kind: "weights" or "gradients". The
    y-axis is density (share of values per unit of x), because the bin range
    changes from epoch to epoch. Axes stay fixed across frames so epochs compare."""
    if kind not in ("weights", "gradients"):
        raise ValueError(f"kind {kind!r} is invalid: choose 'weights' or 'gradients'")
    names = recorded["layers"]
    index = names.index(layer) if layer in names else layer
    if isinstance(index, str) or not 0 <= index < len(names):
        raise ValueError(f"layer {layer!r} is invalid: choose 0 to {len(names) - 1} or one of {names}")

    frames = []
    x_low = y_high = 0.0
    for entry in recorded["epochs"]:
        histogram = entry[kind][index]
        if histogram is None:
            continue
        edges = np.asarray(histogram["edges"])
        counts = np.asarray(histogram["counts"], dtype=np.float64)
        widths = np.diff(edges)
        density = counts / max(counts.sum(), 1) / widths
        x_low = min(x_low, edges[0])
        y_high = max(y_high, density.max())
        label = str(entry["epoch"])
        frames.append(go.Frame(name=label, data=[go.Bar(
            x=(edges[:-1] + edges[1:]) / 2, y=density, width=widths,
            hovertemplate="%{x:.3g}: density %{y:.3g}<extra>epoch " + label + "</extra>")]))

    title = f"{'Weights' if kind == 'weights' else 'Gradients'} of {names[index]} per epoch"
    if not frames:
        fig = go.Figure()
        fig.update_layout(height=360, margin=MARGIN, title=f"{title}: nothing recorded yet")
        return fig

    fig = go.Figure(data=frames[-1].data, frames=frames)
    play = {"frame": {"duration": 500, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    jump = {"frame": {"duration": 0, "redraw": True}, "mode": "immediate", "transition": {"duration": 0}}
    fig.update_layout(
        height=420, margin=dict(MARGIN, b=90), title=title, bargap=0,
        xaxis=dict(title="weight" if kind == "weights" else "gradient", range=[x_low, -x_low]),
        yaxis=dict(title="density", range=[0, y_high * 1.05]),
        updatemenus=[dict(type="buttons", direction="left", x=0, y=-0.25, xanchor="left", buttons=[
            dict(label="Play", method="animate", args=[None, play]),
            dict(label="Pause", method="animate", args=[[None], jump])])],
        sliders=[dict(active=len(frames) - 1, x=0.15, len=0.85, y=-0.15, currentvalue={"prefix": "epoch "},
                      steps=[dict(label=f.name, method="animate", args=[[f.name], jump]) for f in frames])],
    )
    return fig


def saliency_figure(image, saliency) -> go.Figure:
    """Draw the input digit in grey with |saliency| on top in red: the pixels that move the prediction most."""
    image = np.asarray(image, dtype=np.float64).reshape(28, 28)
    strength = np.abs(np.asarray(saliency, dtype=np.float64).reshape(28, 28))
    top = strength.max() if strength.max() > 0 else 1.0
    fig = go.Figure([
        go.Heatmap(z=image, colorscale="gray", zmin=0, zmax=1, showscale=False,
                   hovertemplate="pixel (%{y}, %{x}): ink %{z:.2f}<extra></extra>"),
        go.Heatmap(z=strength, colorscale=SALIENCY_COLORSCALE, zmin=0, zmax=top,
                   colorbar=dict(title="|gradient|"),
                   hovertemplate="pixel (%{y}, %{x}): |gradient| %{z:.3g}<extra></extra>"),
    ])
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(height=360, margin=MARGIN, title="Saliency: where the prediction is most sensitive")
    return fig


def activations_figure(trace: dict, classes=None) -> go.Figure:
    """Draw one bar chart per hidden layer's activations and one of the class probabilities, from `trace_digit`."""
    hidden = trace["hidden"]
    titles = [f"hidden layer {i + 1}: {len(a)} units" for i, a in enumerate(hidden)] + ["class probabilities"]
    fig = make_subplots(rows=len(titles), cols=1, subplot_titles=titles, vertical_spacing=0.5 / len(titles))
    for i, activation in enumerate(hidden):
        fig.add_trace(go.Bar(y=np.asarray(activation), showlegend=False,
                             hovertemplate="unit %{x}: %{y:.3f}<extra></extra>"), row=i + 1, col=1)
    probabilities = np.asarray(trace["probabilities"])
    colors = ["#EF553B" if i == trace["predicted"] else "#636EFA" for i in range(len(probabilities))]
    fig.add_trace(go.Bar(x=_class_names(classes, len(probabilities)), y=probabilities, showlegend=False,
                         marker_color=colors, hovertemplate="%{x}: %{y:.1%}<extra></extra>"),
                  row=len(titles), col=1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=len(titles), col=1)
    fig.update_xaxes(type="category", row=len(titles), col=1)
    fig.update_layout(height=160 * len(titles) + 40, margin=MARGIN, bargap=0.1)
    return fig
