"""Plotly figures for the Dataset, Train and Predict pages."""

from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.training import History

MARGIN = dict(l=10, r=10, t=40, b=10)


MAX_BATCH_POINTS = 600


def thin_batch_losses(losses: list[float], per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (epoch positions, losses) with at most MAX_BATCH_POINTS points, each the mean of
    consecutive batches, so a live chart of 10 epochs stays small enough to resend twice a second."""
    y = np.asarray(losses, dtype=np.float64)
    x = np.arange(1, len(y) + 1) / per_epoch
    if len(y) <= MAX_BATCH_POINTS:
        return x, y
    edges = np.linspace(0, len(y), MAX_BATCH_POINTS + 1).astype(int)
    means = np.add.reduceat(y, edges[:-1]) / np.diff(edges)
    return x[edges[1:] - 1], means


def training_curves(runs: list[tuple[str, History]], epochs_total: int | None = None) -> go.Figure:
    """Validation loss and accuracy per epoch, and training loss per batch, one colour per run.

    With `epochs_total` the x axes span the whole run, so live curves grow into a fixed frame."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "Validation loss per epoch", "Validation accuracy per epoch", "Training loss per batch"))
    palette = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"]
    for i, (name, history) in enumerate(runs):
        color = palette[i % len(palette)]
        epochs = [e["epoch"] for e in history.epochs]
        fig.add_trace(go.Scatter(x=epochs, y=[e["val_loss"] for e in history.epochs], name=name,
                                 legendgroup=name, mode="lines+markers", line_color=color), row=1, col=1)
        fig.add_trace(go.Scatter(x=epochs, y=[e["val_acc"] for e in history.epochs], name=name,
                                 legendgroup=name, showlegend=False, mode="lines+markers",
                                 line_color=color), row=1, col=2)
        x, y = thin_batch_losses(history.batch_loss, max(history.batches_per_epoch, 1))
        fig.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=name,
                                   showlegend=False, mode="lines", line=dict(color=color, width=1)),
                      row=1, col=3)
    if not runs:
        # plotly.js draws no axes for a subplot without traces, so an empty frame gets one empty trace each.
        for column in (1, 2, 3):
            fig.add_trace(go.Scatter(x=[], y=[], showlegend=False, hoverinfo="skip"), row=1, col=column)
    fig.update_xaxes(title_text="epoch")
    if epochs_total:
        fig.update_xaxes(range=[-0.2, epochs_total + 0.2])
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=3)
    fig.update_layout(height=340, margin=MARGIN, legend=dict(orientation="h", y=-0.25),
                      uirevision="curves")
    return fig


def class_count_bars(counts: dict[str, np.ndarray], classes) -> go.Figure:
    fig = go.Figure([go.Bar(name=part, x=list(classes), y=values.tolist()) for part, values in counts.items()])
    fig.update_layout(barmode="group", height=320, margin=MARGIN, title="Images per class",
                      xaxis_title="class", yaxis_title="images")
    return fig


def image_grid(images: np.ndarray, titles: list[str], cols: int = 5, height_per_row: int = 150) -> go.Figure:
    """Show (N, 28, 28) images in a grid of square greyscale panels with titles."""
    cols = min(cols, len(images))
    rows = max(1, -(-len(images) // cols))
    fig = px.imshow(np.asarray(images), facet_col=0, facet_col_wrap=cols, binary_string=True,
                    facet_row_spacing=0.3 / rows, facet_col_spacing=0.01)
    for annotation in fig.layout.annotations:
        annotation.text = titles[int(annotation.text.split("=")[1])]
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=rows * height_per_row + 40, margin=dict(l=0, r=0, t=30, b=0))
    return fig


def pixel_histogram_chart(counts: np.ndarray, edges: np.ndarray) -> go.Figure:
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges)))
    fig.update_layout(height=300, margin=MARGIN, title="Pixel intensities (all images)",
                      xaxis_title="pixel value (0 = black, 255 = white)", yaxis_title="pixels",
                      yaxis_type="log")
    return fig


def pixel_values(image: np.ndarray, title: str) -> go.Figure:
    """Draw one 28x28 image as a heatmap with each pixel's value written on it."""
    fig = go.Figure(go.Heatmap(z=image, colorscale="gray", text=image.astype(int), texttemplate="%{text}",
                               textfont=dict(size=7), showscale=False))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(height=560, margin=MARGIN, title=title)
    return fig


def probability_bars(probabilities: np.ndarray, classes) -> go.Figure:
    top = int(np.argmax(probabilities))
    colors = ["#EF553B" if i == top else "#636EFA" for i in range(len(probabilities))]
    fig = go.Figure(go.Bar(x=list(classes), y=probabilities, marker_color=colors,
                           text=[f"{p:.0%}" for p in probabilities], textposition="outside"))
    fig.update_layout(height=300, margin=MARGIN, title="Probabilities", yaxis_range=[0, 1.1],
                      xaxis_title="class", xaxis_type="category")
    return fig


def device_times(rows: list[dict]) -> go.Figure:
    """Seconds per epoch on each device, from rows of {"device", "seconds_per_epoch"}."""
    fig = go.Figure(go.Bar(x=[r["device"] for r in rows], y=[r["seconds_per_epoch"] for r in rows],
                           text=[f"{r['seconds_per_epoch']:.2f} s" for r in rows], textposition="outside"))
    fig.update_layout(height=300, margin=MARGIN, title="Seconds per epoch", yaxis_title="seconds")
    return fig
