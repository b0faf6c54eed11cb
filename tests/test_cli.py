"""Tests for the command line `python -m core.train` on the real MNIST."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import train
from core.model import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
USAGE = "usage: python -m core.train"


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.train", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """One epoch on 2,000 training images, with a checkpoint saved."""
    checkpoint = tmp_path_factory.mktemp("cli") / "model.pt"
    result = _run_cli("--subset", "2000", "--epochs", "1", "--device", "cpu", "--threads", "1",
                      "--save", str(checkpoint))
    return result, checkpoint


def test_cli_run_succeeds(short_run):
    result, _ = short_run
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_cli_prints_epoch_lines(short_run):
    result, _ = short_run
    lines = result.stdout.splitlines()

    assert len(lines) == 3
    assert lines[0].startswith("epoch   0/1  untrained")
    assert "val_acc" in lines[0]
    assert lines[1].startswith("epoch   1/1  lr 0.5")
    for key in ("train_loss", "val_loss", "val_acc"):
        assert key in lines[1]


def test_cli_prints_json_summary(short_run):
    result, _ = short_run
    summary = json.loads(result.stdout.splitlines()[-1])

    for key in ("val_acc", "val_loss", "test_acc", "epochs", "seconds", "device"):
        assert key in summary
    assert summary["epochs"] == 1
    assert summary["device"] == "CPU"
    assert summary["seconds"] >= 0
    assert 0.5 < summary["val_acc"] <= 1
    assert 0.5 < summary["test_acc"] <= 1
    assert summary["val_loss"] > 0
    assert summary["config"]["subset"] == 2000
    assert summary["config"]["phases"] == [[1, 0.5]]


def test_cli_save_writes_checkpoint(short_run, mnist):
    result, checkpoint = short_run
    summary = json.loads(result.stdout.splitlines()[-1])

    model, ckpt = load_checkpoint(checkpoint)

    assert model.config() == {"hidden": [32], "activation": "relu"}
    assert ckpt["train_config"] == summary["config"]
    assert [e["epoch"] for e in ckpt["history"]["epochs"]] == [0, 1]
    with torch.no_grad():
        predictions = model(mnist.test_images.float().div(255)).argmax(dim=1)
    test_acc = (predictions == mnist.test_labels).float().mean().item()
    assert test_acc == pytest.approx(summary["test_acc"], abs=1e-4)


def test_cli_bad_flag_exit_status():
    result = _run_cli("--lr", "0")

    assert result.returncode == 2
    assert result.stdout == ""
    assert USAGE in result.stderr
    assert "error: learning rate 0.0 is invalid: choose a value between 0.0001 and 2" in result.stderr


# main() exits through argparse's parser.error, the same path as the process
# above, so these run in-process to save starting Python for each case.
@pytest.mark.parametrize("argv, expected", [
    (["--lr", "0"], "learning rate 0.0 is invalid"),
    # The learning rate is capped at 2, so divergence cannot be started from here.
    (["--lr", "1e6"], "learning rate 1000000.0 is invalid: choose a value between 0.0001 and 2"),
    (["--batch-size", "-1"], "batch size -1 is invalid: choose a whole number between 1 and 10000"),
    (["--hidden", "0"], "hidden layer size 0 is invalid"),
    (["--hidden", "32", "x"], "argument --hidden: invalid int value: 'x'"),
    (["--then", "5", "x"], "argument --then: invalid phase 5 x"),
    (["--then", "5"], "argument --then: expected 2 arguments"),
    (["--epochs", "0"], "epochs 0 is invalid"),
    (["--subset", "50"], "subset size 50 is invalid"),
    (["--val-pct", "0.9"], "validation fraction 0.9 is invalid"),
    (["--seed", "-3"], "seed -3 is invalid"),
    (["--dataset", "emnist"], "argument --dataset: invalid choice: 'emnist'"),
    (["--threads", "0"], "argument --threads: 0 is invalid"),
])
def test_cli_rejects_flag(capsys, argv, expected):
    with pytest.raises(SystemExit) as excinfo:
        train.main(argv)

    assert excinfo.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert USAGE in captured.err
    assert expected in captured.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available on this machine")
def test_cli_rejects_missing_cuda(capsys):
    with pytest.raises(SystemExit) as excinfo:
        train.main(["--device", "cuda"])

    assert excinfo.value.code == 2
    captured = capsys.readouterr()
    assert USAGE in captured.err
    assert "device 'cuda' is not available on this machine" in captured.err


def test_cli_diverged_loss_prints_one_line(capsys, monkeypatch):
    # The command line caps the learning rate at 2, where these models do not diverge, so this
    # test lifts the cap. Hidden layers (256, 256) at lr 1e6 reach an infinite loss.
    monkeypatch.setattr("core.config.LR_RANGE", (1e-4, 1e7))
    status = train.main(["--hidden", "256", "256", "--lr", "1e6", "--epochs", "1", "--subset", "2000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1
    assert err[0].startswith("error: the loss diverged (NaN or infinite) at epoch 1, batch ")
    assert "learning rate 1e+06 is too high" in err[0]
    assert "Traceback" not in err[0]
