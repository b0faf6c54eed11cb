"""Inspect page: where a trained network goes wrong, what it learned, and the code that ran."""

import streamlit as st

from core import charts, data, figures, introspect
from core.export import code_of_run, export_script
from pages.common import (dataset_error, get_splits, owner_id, require_router, show_notices,
                          summary, trained_runs)

require_router()

GALLERY_SIZE = 20
# Set by the Predict page: the last drawing, as a (1, 28, 28) tensor, to trace here.
LAST_DRAWING_KEY = "last_drawing"

owner = owner_id()
st.title("Inspect a network")
show_notices()

runs = trained_runs(owner)
if not runs:
    st.info("There is no trained model yet. Train one on the Train page, then come back here.")
    st.stop()

names = {j.id: j for j in runs}
run_id = st.selectbox("Model", list(names)[::-1], format_func=lambda i: f"{names[i].name}: {summary(names[i])}",
                      key="inspect_run")
job = names[run_id]
model = job.model()
spec = data.get_spec(job.config.dataset)
try:
    splits = get_splits(spec.name)
except data.DataError as exc:
    dataset_error(exc)


@st.cache_data(max_entries=8, show_spinner="Evaluating…")
def evaluate_run(run_key: str, part: str) -> introspect.Predictions:
    """Predictions of the run on the validation or test part, cached per run, epoch count and part."""
    if part == "test":
        images, labels = splits.test_images, splits.test_labels
    else:
        _, val_idx = data.split_indices(len(splits.train_labels), job.config.val_pct, job.config.seed)
        images, labels = splits.train_images[val_idx], splits.train_labels[val_idx]
    return introspect.predictions(model, images, labels)


evaluation, network, one_digit, code = st.tabs(["Evaluation", "The network", "One digit", "The code"])

with evaluation:
    part = st.radio("Images", ["validation", "test"], horizontal=True, key="inspect_part")
    epochs_done = len(job.history.epochs)
    result = evaluate_run(f"{job.id}:{epochs_done}", part)
    accuracy = float((result.predicted == result.true).mean())
    st.metric(f"Accuracy on the {part} images", f"{accuracy:.2%}",
              help=f"{int((result.predicted != result.true).sum())} of {len(result.true)} images are misclassified.")

    normalised = st.toggle("Show each row as fractions", key="confusion_normalised")
    matrix = introspect.confusion_matrix(result.true, result.predicted)
    displayed_matrix = introspect.normalize_rows(matrix) if normalised else matrix
    st.plotly_chart(figures.confusion_figure(displayed_matrix, spec.classes, normalized=normalised), width="stretch")
    st.plotly_chart(figures.per_class_accuracy_figure(introspect.per_class_accuracy(result.true, result.predicted),
                                                      spec.classes), width="stretch")

    st.subheader("Misclassified images")
    c1, c2, c3 = st.columns(3)
    order = c1.radio("Sort by confidence", ["most confident first", "least confident first"], key="gallery_order")
    class_options = [None, *range(10)]
    true_filter = c2.selectbox("True class", class_options, key="gallery_true",
                               format_func=lambda c: "any" if c is None else spec.classes[c])
    pred_filter = c3.selectbox("Predicted class", class_options, key="gallery_pred",
                               format_func=lambda c: "any" if c is None else spec.classes[c])
    wrong = introspect.misclassified(result, true_class=true_filter, predicted_class=pred_filter,
                                  descending=order.startswith("most"))
    st.caption(f"{len(wrong)} misclassified images match; the first {min(len(wrong), GALLERY_SIZE)} are shown. "
               "Press an image's button to see all ten probabilities.")
    source = splits.test_images if part == "test" else splits.train_images[
        data.split_indices(len(splits.train_labels), job.config.val_pct, job.config.seed)[1]]
    columns = st.columns(5)
    for n, index in enumerate(wrong[:GALLERY_SIZE]):
        with columns[n % 5]:
            st.image(source[int(index)].numpy(), width=84)
            label = (f"{spec.classes[result.true[index]]} → {spec.classes[result.predicted[index]]} "
                     f"({result.confidence[index]:.0%})")
            if st.button(label, key=f"gallery_{part}_{index}"):
                st.session_state.gallery_selected = (part, int(index))
    selected = st.session_state.get("gallery_selected")
    if selected and selected[0] == part and selected[1] < len(result.true):
        index = selected[1]
        st.write(f"Image {index} of the {part} images: true class **{spec.classes[result.true[index]]}**, "
                 f"predicted **{spec.classes[result.predicted[index]]}**.")
        st.plotly_chart(charts.probability_bars(result.probabilities[index], spec.classes), width="stretch",
                        key="gallery_probabilities")

with network:
    table = introspect.parameter_table(model)
    st.subheader("Architecture")
    st.code(str(model), language="text")
    st.dataframe([{"parameter": r["name"], "shape": " x ".join(map(str, r["shape"])), "count": r["count"]}
                  for r in table["rows"]], hide_index=True)
    st.write(f"Total: **{table['total']:,}** trainable parameters.")

    st.subheader("What each first-layer unit looks for")
    st.caption("Each tile is one unit's 784 input weights as a 28x28 image: red pixels push the unit up, "
               "blue pixels push it down.")
    st.plotly_chart(figures.weight_grid_figure(introspect.first_layer_weights(model)), width="stretch")

    recorded = job.extras.get("weights")
    st.subheader("Weights and gradients during training")
    if recorded and recorded["epochs"]:
        l1, l2 = st.columns(2)
        layer = l1.selectbox("Layer", range(len(recorded["layers"])), format_func=lambda i: recorded["layers"][i],
                             key="histogram_layer")
        kind = l2.radio("Values", ["weights", "gradients"], horizontal=True, key="histogram_kind")
        st.plotly_chart(figures.histogram_figure(recorded, layer, kind), width="stretch")
        st.caption("Press play, or drag the slider, to step through the epochs.")
    else:
        st.caption("This run has no recorded histograms (runs restored from a checkpoint do not carry them).")

with one_digit:
    choices = ["a test image"] + (["my last drawing"] if LAST_DRAWING_KEY in st.session_state else [])
    trace_source = st.radio("Trace", choices, horizontal=True, key="trace_source")
    if trace_source == "my last drawing":
        image = st.session_state[LAST_DRAWING_KEY][0]
    else:
        index = st.number_input(f"Test image (0 to {len(splits.test_labels) - 1})", 0,
                                len(splits.test_labels) - 1, 0, key="trace_index")
        image = splits.test_images[int(index)].float().div(255)
        st.caption(f"True class: {spec.classes[int(splits.test_labels[int(index)])]}")
    trace = introspect.trace_digit(model, image)
    st.write(f"The network predicts **{spec.classes[trace['predicted']]}** "
             f"({trace['probabilities'][trace['predicted']]:.0%}).")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(figures.saliency_figure(trace["input"], trace["saliency"]), width="stretch")
        st.caption("Red: the pixels whose change would move the predicted class's score most "
                   "(the gradient of that score with respect to the input).")
    with right:
        st.plotly_chart(figures.activations_figure(trace, spec.classes), width="stretch")
    st.write("Logits (the scores before softmax):")
    st.dataframe([{spec.classes[i]: round(float(v), 3) for i, v in enumerate(trace["logits"])}], hide_index=True)

with code:
    st.write("The `core` code that trained this run, exactly as it ran:")
    for name, source in code_of_run(job.config).items():
        with st.expander(name, expanded=name == "fit"):
            st.code(source, language="python")
    st.download_button(
        "Export this run as a plain PyTorch script", key="inspect_export", on_click="ignore",
        data=lambda: export_script(job.config, val_accs=[e["val_acc"] for e in job.snapshot().epochs]),
        file_name=f"{job.name.replace(' ', '_')}.py", mime="text/x-python")
    st.caption(f"Or run it here: `{job.config.command_line()}`")
