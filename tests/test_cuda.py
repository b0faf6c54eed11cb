"""Training jobs on a CUDA GPU: the curves, the memory they leave behind, and the out-of-memory fallback.

Every test here is skipped on a machine without CUDA.
NOTE: this module was written on machines without a GPU and has not run yet.
"""

from __future__ import annotations

import gc

import pytest
import torch

from core.config import Phase, TrainConfig
from core.jobs import DONE, JobManager
from core.training import prepare_run, train_phases

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")

TIMEOUT_S = 300
# Allocations the CUDA context itself may keep after a job: cuBLAS workspaces of the first matmuls.
MAX_LEFT_BYTES = 64 * 1024 * 1024


def quick_config(device: str) -> TrainConfig:
    return TrainConfig(hidden=(32,), batch_size=100, phases=(Phase(2, 0.5),), seed=42, device=device,
                       subset=5_000)


def test_gpu_curve_matches_cpu_curve(mnist):
    """The same config and seed give the same accuracy per epoch on both devices, within 0.5 points."""
    curves = {}
    for device in ("cpu", "cuda"):
        state = prepare_run(quick_config(device), mnist)
        curves[device] = [epoch["val_acc"] for epoch in train_phases(state, state.config.phases).epochs]
    assert len(curves["cpu"]) == len(curves["cuda"])
    for cpu_acc, gpu_acc in zip(curves["cpu"], curves["cuda"]):
        assert abs(cpu_acc - gpu_acc) <= 0.005, curves


def test_job_releases_gpu_memory(mnist):
    manager = JobManager(lambda name: mnist, max_running=1)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()

    job = manager.submit("gpu-user", quick_config("cuda"))
    assert manager.wait(job, timeout=TIMEOUT_S), f"{job.name} did not finish in {TIMEOUT_S} s"
    assert job.state == DONE, job.message
    assert job.device.startswith("CUDA"), job.device

    gc.collect()
    torch.cuda.synchronize()
    left = torch.cuda.memory_allocated() - before
    assert left <= MAX_LEFT_BYTES, f"{left / 2**20:.1f} MiB of GPU memory is still allocated after the job"
    assert all(tensor.device.type == "cpu" for tensor in job.model_state.values())


def test_out_of_memory_falls_back_to_cpu(mnist):
    """A real out-of-memory error: the caching allocator may use a millionth of the GPU's memory."""
    manager = JobManager(lambda name: mnist, max_running=1)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1e-6)
    try:
        job = manager.submit("gpu-user", quick_config("cuda"))
        assert manager.wait(job, timeout=TIMEOUT_S), f"{job.name} did not finish in {TIMEOUT_S} s"
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert job.state == DONE, job.message
    assert job.device == "CPU"
    assert "ran out of memory" in job.message
    assert len(job.history.epochs) == 3, "the CPU retry must start from an empty history"
