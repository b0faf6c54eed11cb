"""Training runs as background jobs, owned by one process-wide JobManager.

A Streamlit widget click reruns the page script and would abort a training
loop running inside it, so runs live in worker threads here and pages only
read their progress. The manager caps how many jobs train at once, queues the
rest fairly between owners (a browser tab's user), caps how many runs each
owner keeps, and stores finished models as CPU state dicts.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from core.config import Phase, TrainConfig
from core.device import device_label, resolve_device
from core.introspect import WeightRecorder
from core.model import MnistModel
from core.training import History, TrainingDiverged, prepare_run, train_phases

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, STOPPED, DIVERGED, FAILED = "queued", "running", "done", "stopped", "diverged", "failed"
ACTIVE_STATES = (QUEUED, RUNNING)

MAX_RUNNING_ENV = "MNIST_STUDIO_MAX_RUNNING"
MAX_RUNS_ENV = "MNIST_STUDIO_MAX_RUNS_PER_USER"
DEFAULT_MAX_RUNS_PER_OWNER = 12
# Owners not seen for this long have their runs dropped to free memory.
OWNER_IDLE_TTL_S = 6 * 3600


def default_max_running() -> int:
    """Runs that may train at once: $MNIST_STUDIO_MAX_RUNNING, else 4 with a GPU and
    one per two CPU cores without (a tiny model already keeps a core busy)."""
    if os.environ.get(MAX_RUNNING_ENV):
        value = int(os.environ[MAX_RUNNING_ENV])
        if value < 1:
            raise ValueError(f"{MAX_RUNNING_ENV}={value} is invalid: choose at least 1")
        return value
    if torch.cuda.is_available():
        return 4
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass
class Job:
    """One training run: its config, live progress, history and (when not running) its model."""
    id: str
    owner: str
    name: str
    config: TrainConfig
    phases: tuple[Phase, ...]  # the phases this job still has to train
    created: float
    state: str = QUEUED
    message: str = ""
    device: str = ""
    history: History = field(default_factory=History)
    progress: dict = field(default_factory=dict)
    model_state: dict | None = None  # CPU state dict
    optimizer_state: dict | None = None
    shuffle_state: torch.Tensor | None = None
    started: float | None = None
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    extras: dict = field(default_factory=dict)  # per-run data for pages (e.g. weight histograms)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def snapshot(self) -> History:
        """Return a copy of the history that is safe to read while the job trains."""
        with self.lock:
            return History.from_dict(self.history.to_dict())

    def model(self) -> MnistModel:
        """Build the model on the CPU from the stored state dict, in eval mode."""
        if self.model_state is None:
            raise ValueError(f"run {self.name} has no trained model yet")
        model = MnistModel(self.config.hidden, self.config.activation)
        model.load_state_dict(self.model_state)
        return model.eval()


class JobManager:
    """Process-wide owner of training jobs. Thread-safe."""

    def __init__(self, get_splits: Callable[[str], object], max_running: int | None = None,
                 max_runs_per_owner: int | None = None):
        self.get_splits = get_splits
        self.max_running = max_running or default_max_running()
        self.max_runs_per_owner = max_runs_per_owner or int(os.environ.get(MAX_RUNS_ENV, DEFAULT_MAX_RUNS_PER_OWNER))
        self._jobs: dict[str, Job] = {}
        self._last_seen: dict[str, float] = {}
        self._notices: dict[str, list[str]] = {}
        self._counter = itertools.count(1)
        self._cond = threading.Condition()

    # --- Queries --------------------------------------------------------------

    def jobs_for(self, owner: str) -> list[Job]:
        with self._cond:
            self._last_seen[owner] = time.time()
            return sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.created)

    def get(self, owner: str, job_id: str) -> Job | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return job if job is not None and job.owner == owner else None

    def queue_position(self, job: Job) -> int | None:
        """1-based place in the queue (1 = trains next), or None when not queued."""
        with self._cond:
            queued = self._queue_order()
            return queued.index(job) + 1 if job in queued else None

    def running_count(self) -> int:
        with self._cond:
            return sum(j.state == RUNNING for j in self._jobs.values())

    def pop_notices(self, owner: str) -> list[str]:
        with self._cond:
            return self._notices.pop(owner, [])

    # --- Commands -------------------------------------------------------------

    def submit(self, owner: str, config: TrainConfig, name: str | None = None) -> Job:
        """Validate the config and queue a new run; raises ValueError for invalid values."""
        config.validate()
        with self._cond:
            self._sweep_idle()
            self._evict_for(owner)
            job = Job(id=uuid.uuid4().hex[:12], owner=owner, name=name or f"run {next(self._counter)}",
                      config=config, phases=config.phases, created=time.time())
            self._jobs[job.id] = job
        self._start_thread(job)
        return job

    def extend(self, owner: str, job_id: str, epochs: int, lr: float) -> Job:
        """Queue further training of a finished run at a new learning rate, extending its curves."""
        job = self.get(owner, job_id)
        if job is None:
            raise ValueError(f"run {job_id} was not found: it may have been deleted")
        if job.active:
            raise ValueError(f"{job.name} is still training: wait for it to finish or stop it")
        if job.model_state is None:
            raise ValueError(f"{job.name} has no model to train further")
        config = job.config.with_phase(epochs, lr).validate()
        with self._cond:
            job.config, job.phases = config, (Phase(epochs, lr),)
            job.state, job.message, job.stop_event = QUEUED, "", threading.Event()
            job.created = time.time()
            job.history.stopped_early = False
        self._start_thread(job)
        return job

    def stop(self, owner: str, job_id: str) -> None:
        """Ask a run to stop after its current batch; a queued run is cancelled. The model is kept."""
        job = self.get(owner, job_id)
        if job is None:
            return
        job.stop_event.set()
        with self._cond:
            self._cond.notify_all()

    def delete(self, owner: str, job_id: str) -> None:
        job = self.get(owner, job_id)
        if job is None:
            return
        job.stop_event.set()
        with self._cond:
            self._jobs.pop(job_id, None)
            self._cond.notify_all()

    def add_finished(self, owner: str, config: TrainConfig, name: str, model: MnistModel,
                     history: History) -> Job:
        """Store a run restored from a checkpoint."""
        with self._cond:
            self._evict_for(owner)
            job = Job(id=uuid.uuid4().hex[:12], owner=owner, name=name, config=config, phases=(),
                      created=time.time(), state=DONE, message="restored from a checkpoint",
                      history=history, model_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                      device="CPU", finished=time.time())
            self._jobs[job.id] = job
        return job

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Block until the job is no longer queued or running; return False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while job.active:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        return True

    # --- Scheduling -----------------------------------------------------------

    def _queue_order(self) -> list[Job]:
        """Queued jobs in the order they will start: owners with fewer running
        jobs first, so one user's many runs cannot starve another's first."""
        running = {}
        for j in self._jobs.values():
            if j.state == RUNNING:
                running[j.owner] = running.get(j.owner, 0) + 1
        queued = [j for j in self._jobs.values() if j.state == QUEUED]
        return sorted(queued, key=lambda j: (running.get(j.owner, 0), j.created))

    def _evict_for(self, owner: str) -> None:
        """Drop the owner's oldest finished runs so one more fits under the cap."""
        mine = sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.created)
        while len(mine) >= self.max_runs_per_owner:
            oldest = next((j for j in mine if not j.active), None)
            if oldest is None:
                raise ValueError(f"you already have {len(mine)} runs training or queued: "
                                 "stop or delete one before starting another")
            mine.remove(oldest)
            del self._jobs[oldest.id]
            self._notices.setdefault(owner, []).append(
                f"{oldest.name} was removed to make room: each user keeps at most "
                f"{self.max_runs_per_owner} runs (download a checkpoint to keep one)")
            log.info("evicted run %s of owner %s (cap %d)", oldest.id, owner, self.max_runs_per_owner)

    def _sweep_idle(self) -> None:
        now = time.time()
        for owner, seen in list(self._last_seen.items()):
            if now - seen > OWNER_IDLE_TTL_S:
                for job_id in [j.id for j in self._jobs.values() if j.owner == owner and not j.active]:
                    del self._jobs[job_id]
                del self._last_seen[owner]
                log.info("dropped the runs of owner %s, idle for %.0f s", owner, now - seen)

    def _start_thread(self, job: Job) -> None:
        thread = threading.Thread(target=self._run, args=(job,), name=f"train-{job.id}", daemon=True)
        thread.start()

    def _wait_for_slot(self, job: Job) -> bool:
        with self._cond:
            while True:
                if job.stop_event.is_set() or job.id not in self._jobs:
                    return False
                running = sum(j.state == RUNNING for j in self._jobs.values())
                queue = self._queue_order()
                if running < self.max_running and queue and queue[0] is job:
                    job.state = RUNNING
                    job.started = time.time()
                    return True
                self._cond.wait(0.5)

    def _finish(self, job: Job, state: str, message: str) -> None:
        with self._cond:
            job.state, job.message, job.finished = state, message, time.time()
            self._cond.notify_all()
        log.info("run %s (%s) of owner %s ended: %s %s", job.id, job.name, job.owner, state, message)

    # --- The worker -----------------------------------------------------------

    def _run(self, job: Job) -> None:
        if not self._wait_for_slot(job):
            self._finish(job, STOPPED, "cancelled before it started")
            return
        log.info("run %s (%s) of owner %s started: %s", job.id, job.name, job.owner, job.config.to_dict())
        # fit appends to the history in place, and training further starts from job.history, so the
        # CPU retry below needs the history as it was before the GPU attempt.
        history_before = job.snapshot()
        try:
            self._train(job, resolve_device(job.config.device))
        except torch.OutOfMemoryError:
            # NOTE: this fallback has not run on a GPU yet; no test machine here has one.
            torch.cuda.empty_cache()
            log.warning("run %s ran out of GPU memory; retrying on the CPU", job.id)
            with job.lock:
                job.history = history_before
                job.message = "the GPU ran out of memory, so this run fell back to the CPU"
            try:
                self._train(job, torch.device("cpu"))
            except Exception as exc:  # reported on the page; the job is marked failed
                log.exception("run %s failed on the CPU fallback", job.id)
                self._finish(job, FAILED, f"training failed: {exc}")
        except TrainingDiverged as exc:
            self._finish(job, DIVERGED, str(exc))
        except Exception as exc:  # reported on the page; the job is marked failed
            log.exception("run %s failed", job.id)
            self._finish(job, FAILED, f"training failed: {type(exc).__name__}: {exc}")
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _train(self, job: Job, device: torch.device) -> None:
        splits = self.get_splits(job.config.dataset)
        state = prepare_run(job.config, splits, device)
        job.device = device_label(device)
        if job.model_state is not None:  # training further: restore model, optimizer and shuffle order
            state.model.load_state_dict(job.model_state)
            if job.optimizer_state is not None:
                state.opt.load_state_dict(job.optimizer_state)
            if job.shuffle_state is not None:
                state.train_dl.generator.set_state(job.shuffle_state)
            state.history = job.history

        # Weight and gradient histograms per epoch, for the Inspect page.
        recorder = WeightRecorder(state.model, epoch=max(len(state.history.epochs) - 1, 0))

        def on_progress(progress) -> None:
            recorder(progress)
            with job.lock:
                job.history = progress.history
                job.progress = {"epoch": progress.epoch, "batch": progress.batch,
                                "batches_per_epoch": progress.batches_per_epoch,
                                "epochs_total": progress.epochs_total, "elapsed_s": progress.elapsed_s}

        try:
            train_phases(state, job.phases, callback=on_progress, should_stop=job.stop_event.is_set)
        except TrainingDiverged:
            recorder.discard_pending()
            self._store_model(job, state, recorder)
            raise
        self._store_model(job, state, recorder)
        stopped = state.history.stopped_early
        message = job.message or ""
        if stopped:
            message = (message + " " if message else "") + "stopped early; the model learned so far is kept"
        self._finish(job, STOPPED if stopped else DONE, message)

    @staticmethod
    def _store_model(job: Job, state, recorder: WeightRecorder) -> None:
        """Keep the model and optimizer as CPU tensors so no GPU memory outlives the job."""
        recorder.close()
        recorded = recorder.to_dict()
        earlier = job.extras.get("weights")
        if earlier is not None:  # training further: append this job's epochs after the first's
            earlier["epochs"].extend(recorded["epochs"][1:])
            recorded = earlier
        with job.lock:
            job.extras["weights"] = recorded
            job.history = state.history
            job.model_state = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
            job.optimizer_state = _to_cpu(state.opt.state_dict())
            job.shuffle_state = state.train_dl.generator.get_state()


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return copy.deepcopy(obj)
