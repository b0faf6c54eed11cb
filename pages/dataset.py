"""Dataset page: look at the real images before training on them."""

import numpy as np
import streamlit as st

from core import charts, data, explore
from core.config import VAL_PCT_RANGE
from pages.common import dataset_error, get_splits, owner_id, require_router

require_router()

owner_id()
st.title("The dataset")

names = list(data.DATASETS)
name = st.radio("Dataset", names, format_func=lambda n: data.DATASETS[n].title, horizontal=True,
                key="dataset_choice")
spec = data.get_spec(name)
try:
    splits = get_splits(name)
except data.DataError as exc:
    dataset_error(exc)

st.caption(f"{len(splits.train_labels):,} training and {len(splits.test_labels):,} test images, "
           f"28x28 pixels, values 0 to 255. Source: {splits.source}.")

col1, col2 = st.columns(2)
val_pct = col1.slider("Validation fraction", *VAL_PCT_RANGE, value=0.2, step=0.05,
                      help="Share of the training images held out to measure accuracy during training.")
seed = col2.number_input("Split seed", min_value=0, max_value=2**32 - 1, value=42, step=1,
                         help="The same seed always gives the same split.")
train_idx, val_idx = data.split_indices(len(splits.train_labels), val_pct, int(seed))
st.write(f"Training part: **{len(train_idx):,}** images, validation part: **{len(val_idx):,}** images.")

st.header("Samples")
col1, col2 = st.columns([3, 1])
chosen = col1.multiselect("Show only these classes", list(range(10)), format_func=lambda i: spec.classes[i],
                          key="sample_classes")
if col2.button("New samples"):
    st.session_state.sample_seed = st.session_state.get("sample_seed", 0) + 1
indices = explore.sample_indices(splits.train_labels, chosen, 20, st.session_state.get("sample_seed", 0))
images = splits.train_images[indices].numpy()
titles = [f"#{i}: {spec.classes[int(splits.train_labels[i])]}" for i in indices]
st.plotly_chart(charts.image_grid(images, titles), width="stretch")

st.header("Images per class")
counts = explore.split_class_counts(splits, val_pct, int(seed))
st.plotly_chart(charts.class_count_bars(counts, spec.classes), width="stretch")

st.header("The average image of each class")
means = explore.mean_images(splits.train_images, splits.train_labels)
st.plotly_chart(charts.image_grid(means, list(spec.classes), cols=10, height_per_row=150), width="stretch")
st.caption("Each picture is the mean of every training image of that class. A network that only "
           "compared a drawing with these means would already be right often.")

st.header("Pixel intensities")
hist_counts, edges = explore.pixel_histogram(splits.train_images)
st.plotly_chart(charts.pixel_histogram_chart(hist_counts, edges), width="stretch")
st.caption("Most pixels are black background (0); the strokes are mostly near white (255). "
           "The model sees each value divided by 255, so inputs are between 0 and 1.")

st.header("One image, pixel by pixel")
part = st.radio("Split", ["train", "test"], horizontal=True, key="inspect_split")
source_images = splits.train_images if part == "train" else splits.test_images
source_labels = splits.train_labels if part == "train" else splits.test_labels
index = st.number_input(f"Image index (0 to {len(source_labels) - 1})", min_value=0,
                        max_value=len(source_labels) - 1, value=0, step=1)
image = source_images[int(index)].numpy()
label = spec.classes[int(source_labels[int(index)])]
st.plotly_chart(charts.pixel_values(image, f"{part} image {index}: {label}"), width="stretch")
st.caption(f"The network's input is these 784 numbers as one row: {np.count_nonzero(image)} of them are not 0.")
