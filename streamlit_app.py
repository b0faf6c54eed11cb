"""MNIST Studio: the router and the home page. Run with `streamlit run streamlit_app.py`."""

import streamlit as st
import torch

from core import data
from core.device import device_label, get_default_device

st.set_page_config(page_title="MNIST Studio", page_icon=":material/draw:", layout="wide")


def home() -> None:
    from pages.common import dataset_present, owner_id

    owner_id()
    st.title("MNIST Studio")
    st.markdown(
        "Train a neural network on handwritten digits and watch it learn. MNIST Studio turns the "
        "tutorial *Training Deep Neural Networks on a GPU with PyTorch* into something you can touch: "
        "every step of the tutorial is a page, and every exercise is a click.")

    st.subheader("What you will learn, in order")
    st.markdown(
        "1. **Dataset**: what MNIST looks like: 60,000 training and 10,000 test images of 28x28 "
        "pixels, and a random 20% of the training images held out for validation.\n"
        "2. **Train**: a feedforward network (784 inputs, hidden layers of ReLU units, 10 outputs) "
        "trained with cross-entropy and stochastic gradient descent. Change the hidden size, the "
        "number of layers, the batch size and the learning rate, and compare the curves. "
        "The untrained model is right about 10% of the time; the tutorial's 5 epochs at learning "
        "rate 0.5 then 5 at 0.1 reach about 96%.\n"
        "3. **Predict**: draw a digit and see what each trained model thinks it is, and why a "
        "drawing must be preprocessed like MNIST's images.\n"
        "4. **Inspect**: where the network goes wrong (confusion matrix, misclassified images), what "
        "its first layer learned, how one digit flows through it, and the code that ran.\n"
        "5. **Exercises**: compare training times on the CPU and a GPU, and try Fashion-MNIST.")

    st.subheader("This machine")
    device = get_default_device()
    col1, col2 = st.columns(2)
    col1.metric("Device", device_label(device))
    col1.caption(f"PyTorch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    with col2:
        for spec in data.DATASETS.values():
            folder = data.raw_dir(spec)
            if dataset_present(spec.name):
                st.success(f"{spec.title}: verified (MD5) in `{folder}`")
            else:
                st.warning(f"{spec.title}: not downloaded yet. It is fetched when a page needs it, "
                           f"or run `python -m core.data --dataset {spec.name}`.")
    st.page_link("pages/dataset.py", label="Start with the dataset", icon=":material/arrow_forward:")


pages = [
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/grid_view:"),
    st.Page("pages/train.py", title="Train", icon=":material/show_chart:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/draw:"),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/troubleshoot:"),
]
st.navigation(pages).run()
