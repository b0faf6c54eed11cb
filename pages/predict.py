"""Predict page: draw a digit, or pick a test image, and see what a trained model predicts."""

import numpy as np
import streamlit as st
import torch

from core import charts, data, preprocess
from core.model import predict_proba
from pages.common import (dataset_error, get_splits, owner_id, require_router, show_notices,
                          summary, trained_runs)

require_router()

CANVAS_SIZE = 280
# AppTest cannot draw on the canvas component. So a test puts an RGBA array under
# this session-state key, and the page reads it in place of the canvas.
CANNED_CANVAS_KEY = "canned_canvas"
# streamlit-drawable-canvas 0.13 labels its toolbar's bin button "Reset canvas & history".
CLEAR_HINT = "Press the bin button above the canvas"
STEP_TITLES = {"ink": "1. canvas", "cropped": "2. cropped to the ink", "stroke": "3. pen width evened",
               "scaled": "4. longest side 20 px", "centred": "5. 28x28, centre of mass centred"}

owner = owner_id()
st.title("Predict")
show_notices()

runs = trained_runs(owner)
if not runs:
    st.info("There is no trained model yet. Open the **Train** page and press **Train** "
            "(the Drawing recipe gives the best results on drawn digits); then come back here.")
    st.page_link("pages/train.py", label="Go to the Train page", icon=":material/show_chart:")
    st.stop()

names = {j.id: j for j in runs}
default = next((i for i, j in enumerate(reversed(runs)) if j.config.augment), 0)
run_id = st.selectbox("Model", list(names)[::-1], index=default,
                      format_func=lambda i: f"{names[i].name}: {summary(names[i])}")
job = names[run_id]
model = job.model()
spec = data.get_spec(job.config.dataset)
history = job.snapshot()
if history.epochs:
    st.caption(f"Validation accuracy {history.last['val_acc']:.2%} after {len(history.epochs) - 1} epochs.")

modes = ["Draw a digit", "Random test image"] if spec.drawable else ["Random test image"]
if not spec.drawable:
    st.caption(f"This model was trained on {spec.title}; drawing is offered only for digit models.")
mode = st.radio("Input", modes, horizontal=True, key="predict_mode")


def show_prediction(image: torch.Tensor) -> np.ndarray:
    """Show the probabilities for one (1, 28, 28) image and return them."""
    probabilities = predict_proba(model, image[None]).numpy()[0]
    top = int(probabilities.argmax())
    st.markdown(f"### Prediction: **{spec.classes[top]}** ({probabilities[top]:.0%})")
    st.plotly_chart(charts.probability_bars(probabilities, spec.classes), width="stretch", key="probabilities")
    return probabilities


if mode == "Draw a digit":
    from streamlit_drawable_canvas import st_canvas

    left, right = st.columns([1, 2])
    with left:
        st.write("Draw one digit, large and centred or anywhere: it is cropped and centred for you.")
        st.write("")  # room for the canvas toolbar, which floats above the canvas
        # The toolbar's bin button clears the canvas in the browser at the click. A Clear button of the
        # page's own would have to give the canvas a new key. Until the rerun showed the new canvas, the
        # old one took strokes and then dropped them (40 of 40 strokes drawn at once on a 2-core VM).
        result = st_canvas(stroke_width=20, stroke_color="#FFFFFF", background_color="#000000",
                           height=CANVAS_SIZE, width=CANVAS_SIZE, drawing_mode="freedraw",
                           return_image_data=True, key="canvas")
        st.caption(f"{CLEAR_HINT} to start again.")
    rgba = st.session_state.get(CANNED_CANVAS_KEY)
    if rgba is None and result is not None:
        rgba = result.image_data
    with right:
        try:
            stages = preprocess.steps(rgba) if rgba is not None else None
        except ValueError as exc:
            st.error(f"The drawing could not be read: {exc}. {CLEAR_HINT} and draw again.")
            st.stop()
        if stages is None:
            st.info("Draw a digit on the black canvas to see a prediction.")
        else:
            st.write("What the model sees, step by step:")
            cols = st.columns(len(STEP_TITLES))
            for col, (key, title) in zip(cols, STEP_TITLES.items()):
                col.image(np.clip(stages[key], 0, 1), caption=title, width="stretch", clamp=True)
            image = torch.from_numpy(stages["centred"].copy())[None]
            st.session_state.last_drawing = image  # the Inspect page can trace it
            probabilities = show_prediction(image)
            for hint in preprocess.drawing_hints(stages, probabilities):
                st.warning(hint)
else:
    try:
        splits = get_splits(spec.name)
    except data.DataError as exc:
        dataset_error(exc)
    if st.button("Another image") or "test_index" not in st.session_state:
        st.session_state.test_index = int(np.random.default_rng().integers(len(splits.test_labels)))
    index = st.session_state.test_index % len(splits.test_labels)
    image = splits.test_images[index].float().div(255)[None]
    truth = spec.classes[int(splits.test_labels[index])]
    left, right = st.columns([1, 2])
    with left:
        st.image(image[0].numpy(), caption=f"Test image {index}: true label {truth}", width=280, clamp=True)
    with right:
        probabilities = show_prediction(image)
        if spec.classes[int(probabilities.argmax())] == truth:
            st.success(f"Correct: the true label is {truth}.")
        else:
            st.error(f"Wrong: the true label is {truth}.")
