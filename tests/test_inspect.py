"""Tests for core.introspect, core.export and core.figures on the real MNIST: predictions,
confusion, parameters, weight and gradient histograms, saliency, the exported script
and the figures built from them."""

import ast
import json
import math
import os
import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F

from core import data, figures, training
from core.config import Phase, TrainConfig
from core.device import DeviceDataLoader
from core.introspect import (
    WeightRecorder,
    code_of_run,
    confusion_matrix,
    export_script,
    first_layer_weights,
    misclassified,
    normalize_rows,
    parameter_table,
    per_class_accuracy,
    predictions,
    trace_digit,
)
from core.model import MnistModel, load_checkpoint, save_checkpoint
from core.training import evaluate, prepare_run, train_phases

CPU = torch.device("cpu")
SMALL_RUN = TrainConfig(hidden=(32,), phases=(Phase(2, 0.5),), subset=6000, device="cpu")


@pytest.fixture(scope="module")
def trained(mnist):
    """The tutorial model trained for 2 epochs on 6,000 real images, with a WeightRecorder attached."""
    state = prepare_run(SMALL_RUN, mnist, CPU)
    recorder = WeightRecorder(state.model, every=7)
    train_phases(state, SMALL_RUN.phases, callback=recorder)
    recorder.close()
    return state, recorder


@pytest.fixture(scope="module")
def mnist_predictions(trained, mnist):
    state, _ = trained
    return predictions(state.model, mnist.test_images, mnist.test_labels, CPU)


# --- predictions ---------------------------------------------------------------

def test_predictions_shapes_and_values(mnist_predictions, mnist):
    result = mnist_predictions
    n = len(mnist.test_labels)
    assert result.probabilities.shape == (n, 10)
    assert result.predicted.shape == result.true.shape == result.confidence.shape == (n,)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(result.predicted, result.probabilities.argmax(axis=1))
    np.testing.assert_array_equal(result.confidence, result.probabilities.max(axis=1))
    np.testing.assert_array_equal(result.true, mnist.test_labels.numpy())


def test_predictions_match_test_accuracy(trained, mnist_predictions, mnist):
    state, _ = trained
    _, expected = training.test_accuracy(state.model, mnist, CPU)
    accuracy = (mnist_predictions.predicted == mnist_predictions.true).mean()
    assert accuracy > 0.8
    assert accuracy == pytest.approx(expected, abs=1e-6)


def test_predictions_accept_floats_and_batches(trained, mnist):
    state, _ = trained
    images, labels = mnist.test_images[:300], mnist.test_labels[:300]
    from_bytes = predictions(state.model, images, labels)
    from_floats = predictions(state.model, images.float().div(255).unsqueeze(1), labels.numpy(), batch_size=64)
    np.testing.assert_array_equal(from_bytes.predicted, from_floats.predicted)
    np.testing.assert_allclose(from_bytes.probabilities, from_floats.probabilities, atol=1e-6)


def test_predictions_reject_bad_input(trained, mnist):
    state, _ = trained
    images, labels = mnist.test_images[:10], mnist.test_labels[:10]
    with pytest.raises(ValueError, match="divide 0..255 pixels by 255"):
        predictions(state.model, images.float(), labels)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        predictions(state.model, images, labels[:9])
    with pytest.raises(ValueError, match="expected \\(N, 28, 28\\)"):
        predictions(state.model, images[:, :20], labels)


def test_predictions_keep_training_mode(trained, mnist):
    state, _ = trained
    state.model.train()
    predictions(state.model, mnist.test_images[:10], mnist.test_labels[:10])
    assert state.model.training


# --- confusion matrix, per-class accuracy, mistakes ---------------------------

def test_confusion_matrix_counts(mnist_predictions):
    true, pred = mnist_predictions.true, mnist_predictions.predicted
    matrix = confusion_matrix(true, pred)
    expected = np.zeros((10, 10), dtype=np.int64)
    for t, p in zip(true, pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == len(true)
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(true, minlength=10))


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="true label 10 is invalid"):
        confusion_matrix([1, 10], [1, 2])
    with pytest.raises(ValueError, match="prediction -1 is invalid"):
        confusion_matrix([1, 2], [1, -1])
    with pytest.raises(ValueError, match="2 true labels but 3 predictions"):
        confusion_matrix([1, 2], [1, 2, 3])


def test_normalize_rows_sums_and_empty_row(mnist_predictions):
    matrix = confusion_matrix(mnist_predictions.true, mnist_predictions.predicted)
    np.testing.assert_allclose(normalize_rows(matrix).sum(axis=1), 1.0)

    matrix[3] = 0
    normalized = normalize_rows(matrix)
    np.testing.assert_array_equal(normalized[3], np.zeros(10))
    assert np.isfinite(normalized).all()


def test_per_class_accuracy_values(mnist_predictions):
    true, pred = mnist_predictions.true, mnist_predictions.predicted
    accuracy = per_class_accuracy(true, pred)
    for digit in range(10):
        mask = true == digit
        assert accuracy[digit] == pytest.approx((pred[mask] == digit).mean())
    weighted = (accuracy * np.bincount(true, minlength=10)).sum() / len(true)
    assert weighted == pytest.approx((true == pred).mean())


def test_per_class_accuracy_absent_class():
    accuracy = per_class_accuracy([0, 0, 1], [0, 1, 1])
    assert accuracy[0] == 0.5
    assert accuracy[1] == 1.0
    assert np.isnan(accuracy[2:]).all()


def test_misclassified_sorted_by_confidence(mnist_predictions):
    result = mnist_predictions
    indices = misclassified(result)
    assert len(indices) == (result.predicted != result.true).sum() > 0
    assert (result.predicted[indices] != result.true[indices]).all()
    assert (np.diff(result.confidence[indices]) <= 0).all()

    ascending = misclassified(result, descending=False)
    assert (np.diff(result.confidence[ascending]) >= 0).all()
    assert set(ascending) == set(indices)


def test_misclassified_filters(mnist_predictions):
    result = mnist_predictions
    by_true = misclassified(result, true_class=4)
    assert len(by_true) > 0
    assert (result.true[by_true] == 4).all()
    assert len(by_true) == ((result.true == 4) & (result.predicted != 4)).sum()

    by_pred = misclassified(result, predicted_class=9)
    assert (result.predicted[by_pred] == 9).all()
    both = misclassified(result, true_class=4, predicted_class=9)
    assert set(both) == set(by_true) & set(by_pred)


# --- parameters and first-layer weights ---------------------------------------

def test_parameter_table_rows_and_total():
    model = MnistModel(hidden=(32,))
    table = parameter_table(model)
    assert [row["name"] for row in table["rows"]] == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert [row["shape"] for row in table["rows"]] == [[32, 784], [32], [10, 32], [10]]
    assert table["rows"][0]["layer"] == "layers.0"
    assert table["rows"][0]["parameter"] == "weight"
    assert table["total"] == 784 * 32 + 32 + 32 * 10 + 10
    assert table["total"] == sum(p.numel() for p in model.parameters())


def test_first_layer_weights_per_unit(trained):
    state, _ = trained
    weights = first_layer_weights(state.model)
    assert weights.shape == (32, 28, 28)
    np.testing.assert_array_equal(weights[5].reshape(-1), state.model.layers[0].weight[5].detach().numpy())


def test_first_layer_weights_without_hidden_layer():
    weights = first_layer_weights(MnistModel(hidden=()))
    assert weights.shape == (10, 28, 28)


# --- WeightRecorder --------------------------------------------------------------

def test_recorder_entries_per_epoch(trained):
    state, recorder = trained
    recorded = recorder.to_dict()
    assert recorded["layers"] == ["layers.0", "layers.2"]
    assert recorded["shapes"] == [[32, 784], [10, 32]]
    assert [entry["epoch"] for entry in recorded["epochs"]] == [0, 1, 2]
    assert recorded["epochs"][0]["gradients"] == [None, None]

    batches = state.train_dl.__len__()
    for entry in recorded["epochs"][1:]:
        for histogram, shape in zip(entry["gradients"], recorded["shapes"]):
            assert histogram["captures"] == math.ceil(batches / 7)
            assert sum(histogram["counts"]) == shape[0] * shape[1] * histogram["captures"]
            assert len(histogram["edges"]) == recorded["bins"] + 1
    assert recorded["samples"] == [784 * 32, 10 * 32]


def test_recorder_weight_histogram_matches_numpy(trained):
    state, recorder = trained
    last = recorder.data["epochs"][-1]
    for (_, layer), histogram in zip(recorder.layers, last["weights"]):
        weights = layer.weight.detach().numpy().reshape(-1)
        expected, _ = np.histogram(weights, bins=np.asarray(histogram["edges"]))
        # histc and numpy may disagree on a value that lies on a bin edge.
        assert np.abs(np.asarray(histogram["counts"]) - expected).sum() <= 2
        assert sum(histogram["counts"]) == weights.size
        assert histogram["max"] == pytest.approx(weights.max())
        assert histogram["std"] == pytest.approx(weights.std(), rel=1e-4)


def test_recorder_weights_change_during_training(trained):
    _, recorder = trained
    first, last = recorder.data["epochs"][0], recorder.data["epochs"][-1]
    assert first["weights"][0]["counts"] != last["weights"][0]["counts"]
    assert last["weights"][0]["std"] > first["weights"][0]["std"]


def test_recorder_gradient_histogram_matches_numpy(mnist):
    torch.manual_seed(0)
    model = MnistModel(hidden=(16,))
    recorder = WeightRecorder(model, bins=21, every=1)
    xb = mnist.train_images[:100].float().div(255)
    loss = F.cross_entropy(model(xb), mnist.train_labels[:100])
    loss.backward()
    recorder.record_epoch(1)

    for (_, layer), histogram in zip(recorder.layers, recorder.data["epochs"][-1]["gradients"]):
        grad = layer.weight.grad.numpy().reshape(-1)
        assert histogram["edges"][-1] == pytest.approx(np.abs(grad).max())
        expected, _ = np.histogram(grad, bins=np.asarray(histogram["edges"]))
        assert np.abs(np.asarray(histogram["counts"]) - expected).sum() <= 2
        assert histogram["captures"] == 1
        assert histogram["clipped"] == 0


def test_recorder_samples_large_layers(mnist):
    torch.manual_seed(0)
    model = MnistModel(hidden=(16,))
    recorder = WeightRecorder(model, bins=11, every=1, max_samples=1000)
    assert recorder.data["samples"] == [1000, 160]
    xb = mnist.train_images[:100].float().div(255)
    F.cross_entropy(model(xb), mnist.train_labels[:100]).backward()
    recorder.record_epoch(1)

    histogram = recorder.data["epochs"][-1]["gradients"][0]
    counts = np.asarray(histogram["counts"])
    assert counts.sum() == 1000
    full, _ = np.histogram(model.layers[0].weight.grad.numpy(), bins=np.asarray(histogram["edges"]))
    # A sample without replacement never contains more values in a bin than the whole gradient.
    assert (counts <= full + 1).all()
    assert sum(recorder.data["epochs"][-1]["weights"][0]["counts"]) == 784 * 16


def test_recorder_ignores_evaluation_and_trace(trained, mnist):
    torch.manual_seed(0)
    model = MnistModel(hidden=(16,))
    recorder = WeightRecorder(model, every=1)
    valid_dl = DeviceDataLoader(mnist.test_images[:500], mnist.test_labels[:500], 250, CPU, shuffle=False)
    evaluate(model, F.cross_entropy, valid_dl)
    trace_digit(model, mnist.test_images[0])
    recorder.record_epoch(1)
    assert recorder.data["epochs"][-1]["gradients"] == [None, None]


def test_recorder_close_removes_hooks(mnist):
    model = MnistModel(hidden=(16,))
    recorder = WeightRecorder(model, every=1)
    recorder.close()
    F.cross_entropy(model(mnist.train_images[:50].float().div(255)), mnist.train_labels[:50]).backward()
    recorder.record_epoch(1)
    assert recorder.data["epochs"][-1]["gradients"] == [None, None]


def test_recorder_data_is_plain(trained, tmp_path):
    state, recorder = trained
    recorded = recorder.to_dict()
    assert json.loads(json.dumps(recorded)) == recorded

    path = tmp_path / "run.pt"
    save_checkpoint(state.model, path, weight_histograms=recorded)
    _, checkpoint = load_checkpoint(path)
    assert checkpoint["weight_histograms"] == recorded


def test_recorder_rejects_bad_settings():
    model = MnistModel()
    with pytest.raises(ValueError, match="bins 1 is invalid"):
        WeightRecorder(model, bins=1)
    with pytest.raises(ValueError, match="every 0 is invalid"):
        WeightRecorder(model, every=0)
    with pytest.raises(ValueError, match="max_samples 0 is invalid"):
        WeightRecorder(model, max_samples=0)


# --- trace_digit ---------------------------------------------------------------

def test_trace_digit_layers(trained, mnist):
    state, _ = trained
    image = mnist.test_images[0]
    trace = trace_digit(state.model, image)
    x = image.float().div(255).reshape(1, -1)
    with torch.no_grad():
        logits = state.model(x)[0].numpy()

    np.testing.assert_allclose(trace["input"], x.reshape(28, 28).numpy())
    assert [h.shape for h in trace["hidden"]] == [(32,)]
    assert (trace["hidden"][0] >= 0).all()
    np.testing.assert_allclose(trace["logits"], logits, rtol=1e-5, atol=1e-6)
    assert trace["probabilities"].sum() == pytest.approx(1.0, abs=1e-5)
    assert trace["predicted"] == int(logits.argmax())
    assert trace["saliency"].shape == (28, 28)


def test_trace_digit_saliency_of_linear_model(mnist):
    torch.manual_seed(0)
    model = MnistModel(hidden=())
    trace = trace_digit(model, mnist.test_images[1])
    # The logit of class c is W[c] . x + b[c], so its gradient is W[c].
    expected = model.layers[0].weight[trace["predicted"]].detach().reshape(28, 28).numpy()
    np.testing.assert_allclose(trace["saliency"], expected)


def test_trace_digit_saliency_matches_finite_difference(trained, mnist):
    state, _ = trained
    model = state.model
    image = mnist.test_images[2].float().div(255)
    trace = trace_digit(model, image)
    direction = torch.from_numpy(trace["saliency"]).reshape(1, -1)
    direction = direction / direction.norm()
    step = 1e-3
    with torch.no_grad():
        x = image.reshape(1, -1).double()
        double_model = MnistModel(hidden=(32,)).double()
        double_model.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
        up = double_model(x + step * direction)[0, trace["predicted"]]
        down = double_model(x - step * direction)[0, trace["predicted"]]
    numeric = float((up - down) / (2 * step))
    analytic = float((torch.from_numpy(trace["saliency"]).reshape(-1) * direction.reshape(-1)).sum())
    assert numeric == pytest.approx(analytic, rel=1e-3)


def test_trace_digit_leaves_model_alone(trained, mnist):
    state, _ = trained
    model = state.model
    model.train()
    trace_digit(model, mnist.test_images[3].numpy())
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_trace_digit_rejects_wrong_shape(trained):
    state, _ = trained
    with pytest.raises(ValueError, match="expected \\(N, 28, 28\\)"):
        trace_digit(state.model, torch.zeros(20, 20))


# --- export_script and code_of_run ----------------------------------------------

EXPORT_CASES = {
    "sgd-relu": (TrainConfig(hidden=(32,), phases=(Phase(1, 0.5), Phase(1, 0.1)), subset=2000,
                             device="cpu"), []),
    "adam-tanh-augment": (TrainConfig(hidden=(64, 16), activation="tanh", optimizer="adam", batch_size=64,
                                      phases=(Phase(1, 0.01), Phase(1, 0.001)), subset=2000, device="cpu",
                                      augment=True, seed=7), []),
    # No hidden layer, Fashion-MNIST, and the subset given on the script's command line.
    "fashion-linear": (TrainConfig(dataset="fashion-mnist", hidden=(), activation="leaky_relu",
                                   phases=(Phase(2, 0.1),), val_pct=0.1, device="cpu"), ["--subset", "1500"]),
}


def _val_accs(output: str) -> list[float]:
    """Return the val_acc of each "epoch" line of the script's output, epoch 0 first."""
    lines = output.strip().splitlines()
    assert lines[-1].startswith("final val_acc "), output
    return [float(line.split("val_acc")[1]) for line in lines if line.startswith("epoch")]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_exported_script_matches_core_train(case, tmp_path):
    config, arguments = EXPORT_CASES[case]
    script = tmp_path / "train_export.py"
    script.write_text(export_script(config))
    # One thread, like this test process, so both runs add up floats in the same order.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(script), "--data-root", str(data.data_dir()), *arguments],
                            capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    exported = _val_accs(result.stdout)

    if arguments:
        config = TrainConfig.from_dict({**config.to_dict(), "subset": int(arguments[1])})
    splits = data.load(data.get_spec(config.dataset))
    history = train_phases(prepare_run(config, splits, CPU), config.phases)
    expected = [epoch["val_acc"] for epoch in history.epochs]
    assert len(exported) == len(expected) == config.epochs + 1
    # Same split, initialisation and batch order give the same numbers (both print 4 decimals).
    # A batch order from another seed moved epoch 1 of "sgd-relu" by 1.8 points, its last epoch by 0.2.
    for epoch, (got, want) in enumerate(zip(exported, expected)):
        assert got == pytest.approx(want, abs=0.005), f"epoch {epoch}"


def test_exported_script_is_standalone():
    text = export_script(EXPORT_CASES["adam-tanh-augment"][0], val_accs=[0.1, 0.65, 0.73])
    tree = ast.parse(text)
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules == {"argparse", "math", "os", "sys", "pathlib", "numpy", "torch", "torchvision"}
    assert "def augment_batch(" in text
    assert "0.1000, 0.6500, 0.7300" in text
    assert "'hidden': [64, 16]" in text


def test_export_script_rejects_invalid_config():
    with pytest.raises(ValueError, match="learning rate 5.0 is invalid"):
        export_script({"phases": [[1, 5.0]]})
    with pytest.raises(ValueError, match="activation 'os.system' is invalid"):
        export_script({"activation": "os.system"})


def test_code_of_run_sources():
    code = code_of_run()
    assert list(code) == ["DeviceDataLoader", "MnistModel", "loss_batch", "evaluate", "fit"]
    assert code["fit"].startswith("def fit(")
    assert code["MnistModel"].startswith("class MnistModel(")
    assert "augment_batch" not in code
    assert "augment_batch" in code_of_run(TrainConfig(augment=True))
    assert "augment_batch" in code_of_run({"augment": True})


# --- figures ------------------------------------------------------------------------

def test_confusion_figure_counts_and_normalized(mnist_predictions):
    matrix = confusion_matrix(mnist_predictions.true, mnist_predictions.predicted)
    fig = figures.confusion_figure(matrix)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), matrix)
    assert fig.data[0].text[0][0] == str(matrix[0, 0])

    normalized = figures.confusion_figure(matrix, classes=data.MNIST.classes, normalized=True)
    np.testing.assert_allclose(np.asarray(normalized.data[0].z).sum(axis=1), 1.0)
    assert list(normalized.data[0].x) == list(data.MNIST.classes)


def test_per_class_accuracy_figure_bars(mnist_predictions):
    accuracy = per_class_accuracy(mnist_predictions.true, mnist_predictions.predicted)
    fig = figures.per_class_accuracy_figure(accuracy, data.FASHION_MNIST.classes)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1
    np.testing.assert_allclose(fig.data[0].y, accuracy)
    assert fig.data[0].x[0] == "T-shirt/top"


def test_weight_grid_figure_tiles(trained):
    state, _ = trained
    weights = first_layer_weights(state.model)
    fig = figures.weight_grid_figure(weights)
    assert isinstance(fig, go.Figure)
    z = np.asarray(fig.data[0].z, dtype=np.float64)
    # 32 units -> 6 columns and 6 rows of 28x28 tiles with one-pixel gaps.
    assert z.shape == (6 * 29 - 1, 6 * 29 - 1)
    np.testing.assert_allclose(z[:28, 29:57], weights[1] / np.abs(weights[1]).max())
    assert np.isnan(z[28]).all()

    capped = figures.weight_grid_figure(weights, max_units=4, columns=4)
    assert np.asarray(capped.data[0].z).shape == (28, 4 * 29 - 1)


def test_histogram_figure_frames(trained):
    _, recorder = trained
    recorded = recorder.to_dict()
    weights = figures.histogram_figure(recorded, layer=0, kind="weights")
    assert isinstance(weights, go.Figure)
    assert [frame.name for frame in weights.frames] == ["0", "1", "2"]
    assert len(weights.frames[0].data[0].y) == recorded["bins"]
    assert len(weights.layout.sliders[0].steps) == 3

    gradients = figures.histogram_figure(recorded, layer="layers.2", kind="gradients")
    assert [frame.name for frame in gradients.frames] == ["1", "2"]
    bar = gradients.frames[0].data[0]
    assert float(np.sum(np.asarray(bar.y) * np.asarray(bar.width))) == pytest.approx(1.0)

    with pytest.raises(ValueError, match="kind 'bias' is invalid"):
        figures.histogram_figure(recorded, kind="bias")
    with pytest.raises(ValueError, match="layer 'layers.9' is invalid"):
        figures.histogram_figure(recorded, layer="layers.9")
    with pytest.raises(ValueError, match="layer 2 is invalid"):
        figures.histogram_figure(recorded, layer=2)


def test_saliency_and_activations_figures(trained, mnist):
    state, _ = trained
    trace = trace_digit(state.model, mnist.test_images[0])
    saliency = figures.saliency_figure(trace["input"], trace["saliency"])
    assert isinstance(saliency, go.Figure)
    assert len(saliency.data) == 2
    np.testing.assert_allclose(np.asarray(saliency.data[1].z), np.abs(trace["saliency"]))

    activations = figures.activations_figure(trace)
    assert len(activations.data) == 2
    assert len(activations.data[0].y) == 32
    np.testing.assert_allclose(activations.data[1].y, trace["probabilities"])
