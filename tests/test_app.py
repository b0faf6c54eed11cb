"""The real app through Streamlit's AppTest: every page renders, a run trains, a drawing is predicted."""

import json
from pathlib import Path

import pytest

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from pages.common import get_manager

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def open_page(page: str = "streamlit_app.py", owner: str | None = None) -> AppTest:
    """Run one page script on its own, for tests that click. AppTest (Streamlit 1.67)
    drops button clicks on a page reached with switch_page. `owner` opens the page
    as the same user as an earlier AppTest, so it lists that user's runs."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    if owner is not None:
        at.session_state.owner = owner
    return at.run()


def open_through_router(page: str) -> AppTest:
    """Run the app's entry point and switch to a page, as a browser does; for render-only tests."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    return at.switch_page(page).run()


def wait_for_runs(at: AppTest) -> None:
    """Block until every run of this AppTest session has finished training."""
    manager = get_manager()
    for job in manager.jobs_for(at.session_state.owner):
        assert manager.wait(job, timeout=TIMEOUT), f"{job.name} did not finish in {TIMEOUT} s"


def train_quick_run(at: AppTest) -> AppTest:
    at.session_state.cfg_subset = 5_000
    at.session_state.cfg_epochs = 2
    at.run()
    next(b for b in at.button if b.label == "Train").click().run()
    wait_for_runs(at)
    return at.run()


def canvas_rgba_of_test_digit(mnist, index: int) -> np.ndarray:
    """A 280x280 RGBA canvas image: a real MNIST test digit, enlarged, white on black."""
    digit = Image.fromarray(mnist.test_images[index].numpy()).resize((200, 200), Image.Resampling.BILINEAR)
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[30:230, 50:250, :3] = np.asarray(digit)[..., None]
    return canvas


def test_home_renders():
    at = open_page()
    assert not at.exception
    assert at.title[0].value == "MNIST Studio"
    assert any("CPU" in m.value or "CUDA" in m.value for m in at.metric)


def test_dataset_page_renders():
    at = open_through_router("pages/dataset.py")
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "48,000" in text
    assert "12,000" in text


def test_dataset_page_fashion_mnist():
    at = open_page("pages/dataset.py")
    at.radio(key="dataset_choice").set_value("fashion-mnist").run()
    assert not at.exception
    assert "Source" in at.caption[0].value


def test_train_page_renders():
    at = open_through_router("pages/train.py")
    assert not at.exception
    assert at.title[0].value == "Train a network"


def test_train_page_shows_empty_curves_frame():
    at = open_page("pages/train.py")
    assert "No runs yet" in at.info[0].value
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    assert [trace.get("x") for trace in figure["data"]] == [[], [], []]
    # The frame spans the default schedule: 5 epochs.
    assert figure["layout"]["xaxis"]["range"] == [-0.2, 5.2]


def test_predict_without_model_says_how():
    at = open_through_router("pages/predict.py")
    assert not at.exception
    assert "no trained model" in at.info[0].value


def test_quick_run_leaves_model_in_session(mnist):
    at = open_page("pages/train.py")
    at = train_quick_run(at)
    assert not at.exception
    runs = at.session_state.runs
    assert len(runs) == 1
    job = next(iter(runs.values()))
    assert job.state == "done", job.message
    assert job.model_state is not None
    assert len(job.history.epochs) == 3
    assert job.history.last["val_acc"] > 0.8


def test_predict_canned_canvas_shows_prediction(mnist):
    at = open_page("pages/train.py")
    at = train_quick_run(at)
    at = open_page("pages/predict.py", owner=at.session_state.owner)
    assert not at.exception
    assert "Draw a digit on the black canvas" in at.info[0].value

    at.session_state.canned_canvas = canvas_rgba_of_test_digit(mnist, 0)
    at.run()
    assert not at.exception
    prediction = next(m.value for m in at.markdown if m.value.startswith("### Prediction"))
    assert "**7**" in prediction  # test image 0 is a 7


def test_predict_random_test_image(mnist):
    at = open_page("pages/train.py")
    at = train_quick_run(at)
    at = open_page("pages/predict.py", owner=at.session_state.owner)
    at.radio(key="predict_mode").set_value("Random test image").run()
    assert not at.exception
    assert any(m.value.startswith("### Prediction") for m in at.markdown)
    assert at.success or at.error  # the page shows whether the prediction is right


def test_train_further_extends_history(mnist):
    at = open_page("pages/train.py")
    at = train_quick_run(at)
    at.number_input(key="extend_epochs").set_value(1)
    next(b for b in at.button if b.label == "Continue training").click().run()
    wait_for_runs(at)
    at.run()
    job = next(iter(at.session_state.runs.values()))
    assert job.state == "done", job.message
    assert [e["epoch"] for e in job.history.epochs] == [0, 1, 2, 3]
    assert job.history.epochs[3]["lr"] == 0.1


def test_logistic_regression_config_trains(mnist):
    at = open_page("pages/train.py")
    at.session_state.cfg_layers = 0
    at = train_quick_run(at)
    assert not at.exception
    job = next(iter(at.session_state.runs.values()))
    assert job.config.hidden == ()
    assert job.state == "done", job.message


def test_inspect_without_model_says_how():
    at = open_through_router("pages/inspect.py")
    assert not at.exception
    assert "no trained model" in at.info[0].value


def test_inspect_page_renders_every_view(mnist):
    at = open_page("pages/train.py")
    at = train_quick_run(at)
    at = open_page("pages/inspect.py", owner=at.session_state.owner)
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Evaluation", "The network", "One digit", "The code"]
    assert at.metric[0].label == "Accuracy on the validation images"
    assert any("trainable parameters" in m.value for m in at.markdown)
    assert any(m.value.startswith("The network predicts") for m in at.markdown)
    assert any("def fit(" in c.value for c in at.code)

    at.radio(key="inspect_part").set_value("test").run()
    assert not at.exception
    assert at.metric[0].label == "Accuracy on the test images"
    gallery = [b for b in at.button if b.key and b.key.startswith("gallery_test_")]
    assert gallery, "a quickly trained model misclassifies some test images"
    gallery[0].click().run()
    assert not at.exception
    assert any("true class" in m.value for m in at.markdown)


def test_app_curves_match_headless_training(mnist):
    # The Train page and `python -m core.train` share prepare_run and train_phases, so the same
    # config and seed must give the same validation curve on the CPU.
    from core.training import prepare_run, train_phases

    at = train_quick_run(open_page("pages/train.py"))
    job = next(iter(at.session_state.runs.values()))
    assert job.state == "done", job.message

    state = prepare_run(job.config, mnist)
    headless = train_phases(state, job.config.phases)
    app_curve = [e["val_acc"] for e in job.history.epochs]
    headless_curve = [e["val_acc"] for e in headless.epochs]
    assert app_curve == headless_curve


def test_refresh_interval_from_environment(monkeypatch):
    from pages.common import DEFAULT_REFRESH_S, REFRESH_ENV, refresh_seconds

    monkeypatch.delenv(REFRESH_ENV, raising=False)
    assert refresh_seconds() == DEFAULT_REFRESH_S
    monkeypatch.setenv(REFRESH_ENV, "2")
    assert refresh_seconds() == 2.0


def test_refresh_interval_rejects_invalid_values(monkeypatch):
    from pages.common import REFRESH_ENV, refresh_seconds

    for value in ("0", "fast", "nan", "60"):
        monkeypatch.setenv(REFRESH_ENV, value)
        with pytest.raises(ValueError, match=rf"{REFRESH_ENV}='{value}' is invalid: choose a number of seconds "
                                             r"from 0\.2 to 10"):
            refresh_seconds()


def test_run_that_did_not_learn_is_flagged(mnist):
    at = open_page("pages/train.py")
    at.session_state.cfg_optimizer = "adam"
    at.session_state.cfg_lr = 2.0
    at = train_quick_run(at)
    assert not at.exception
    warnings = [w.value for w in at.warning if "did not learn" in w.value]
    assert len(warnings) == 1, [w.value for w in at.warning]
    assert "learning rate 2 is too high" in warnings[0]


def test_recipe_selects_mnist():
    at = open_page("pages/train.py")
    at.session_state.cfg_dataset = "fashion-mnist"
    at.run()
    next(b for b in at.button if b.label.startswith("Tutorial:")).click().run()
    assert at.session_state.cfg_dataset == "mnist"
    assert "--dataset mnist" in at.caption[0].value


def test_compare_and_details_follow_new_runs(mnist):
    at = train_quick_run(open_page("pages/train.py"))
    first = list(at.session_state.runs)
    assert at.multiselect(key="compare_runs").value == first
    assert at.selectbox(key="detail_run").value == first[0]

    at = train_quick_run(at)
    both = list(at.session_state.runs)
    assert len(both) == 2
    assert at.multiselect(key="compare_runs").value == both
    assert at.selectbox(key="detail_run").value == both[1]

    # A choice the user makes stays.
    at.multiselect(key="compare_runs").set_value([both[0]]).run()
    at = train_quick_run(at)
    assert at.multiselect(key="compare_runs").value == [both[0]]
    assert at.selectbox(key="detail_run").value == list(at.session_state.runs)[-1]
