"""Train page: set hyperparameters, train in the background, watch and compare the curves."""

import statistics
import time
from dataclasses import replace

import streamlit as st
import torch

from core import charts, data
from core.config import (BATCH_SIZE_RANGE, EPOCHS_RANGE, LR_RANGE, OPTIMIZERS, VAL_PCT_RANGE, Phase,
                         TrainConfig)
from core.export import export_script
from core.jobs import DIVERGED, DONE, FAILED, QUEUED, STOPPED
from core.model import ACTIVATIONS, MAX_CHECKPOINT_BYTES, MAX_HIDDEN_LAYERS, checkpoint_bytes, load_checkpoint
from core.train import PRESETS
from core.training import History, learning_problem
from pages.common import (get_manager, get_splits, owner_id, refresh_seconds, require_router, show_notices,
                          summary)

require_router()

LR_CHOICES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
BATCH_CHOICES = [1, 8, 16, 32, 64, 100, 128, 256, 512, 1024, 2048, 4096, 10_000]
UNIT_CHOICES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
SUBSET_CHOICES = ["all", 1_000, 5_000, 10_000, 20_000]
DEFAULTS = {"cfg_dataset": "mnist", "cfg_layers": 1, "cfg_activation": "relu", "cfg_lr": 0.5,
            "cfg_batch": 100, "cfg_epochs": 5, "cfg_optimizer": "sgd", "cfg_val_pct": 0.2, "cfg_seed": 42,
            "cfg_device": "auto", "cfg_augment": False, "cfg_subset": "all", "cfg_then": False,
            "cfg_then_epochs": 5, "cfg_then_lr": 0.1}
for layer in range(MAX_HIDDEN_LAYERS):
    DEFAULTS[f"cfg_units_{layer}"] = 32

# The sliders span exactly the ranges that TrainConfig.validate accepts.
assert (LR_CHOICES[0], LR_CHOICES[-1]) == LR_RANGE
assert (BATCH_CHOICES[0], BATCH_CHOICES[-1]) == BATCH_SIZE_RANGE

owner = owner_id()
manager = get_manager()
# Each widget also gets its default as `value`. Under load, with the live fragment rerunning beside
# full reruns, Streamlit was seen to drop a widget's state. The widget then falls back to this
# default rather than to its minimum (seed 0, learning rate 1e-4).
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)


def apply_preset(name: str) -> None:
    """Set the widgets to a recipe from core.train.PRESETS."""
    preset = PRESETS[name]
    hidden = preset.get("hidden", (32,))
    st.session_state.cfg_layers = len(hidden)
    for i, units in enumerate(hidden):
        st.session_state[f"cfg_units_{i}"] = units
    first, *rest = preset["phases"]
    st.session_state.cfg_epochs, st.session_state.cfg_lr = first.epochs, first.lr
    st.session_state.cfg_then = bool(rest)
    if rest:
        st.session_state.cfg_then_epochs, st.session_state.cfg_then_lr = rest[0].epochs, rest[0].lr
    st.session_state.cfg_batch = preset.get("batch_size", 100)
    st.session_state.cfg_augment = preset.get("augment", False)
    # Both recipes are for handwritten digits: the tutorial's dataset, and the Predict page's canvas.
    st.session_state.cfg_dataset = "mnist"
    st.session_state.cfg_optimizer = preset.get("optimizer", "sgd")
    st.session_state.cfg_activation = preset.get("activation", "relu")


def config_from_widgets() -> TrainConfig:
    s = st.session_state
    phases = [Phase(int(s.cfg_epochs), float(s.cfg_lr))]
    if s.cfg_then:
        phases.append(Phase(int(s.cfg_then_epochs), float(s.cfg_then_lr)))
    return TrainConfig(
        dataset=s.cfg_dataset, hidden=tuple(int(s[f"cfg_units_{i}"]) for i in range(s.cfg_layers)),
        activation=s.cfg_activation, optimizer=s.cfg_optimizer, batch_size=int(s.cfg_batch),
        phases=tuple(phases), val_pct=float(s.cfg_val_pct), seed=int(s.cfg_seed), device=s.cfg_device,
        augment=bool(s.cfg_augment), subset=None if s.cfg_subset == "all" else int(s.cfg_subset))


def submit(config: TrainConfig, name: str | None = None):
    try:
        return manager.submit(owner, config, name)
    except ValueError as exc:
        st.error(str(exc))
        return None


st.title("Train a network")
show_notices()

# --- Controls ---------------------------------------------------------------

st.write("Recipes:")
col1, col2, col3 = st.columns(3)
col1.button("Tutorial: 5 epochs at 0.5, then 5 at 0.1", on_click=apply_preset, args=("tutorial",),
            width="stretch")
col2.button("Drawing: recommended for the Predict page", on_click=apply_preset, args=("drawing",),
            width="stretch", help="A wider network trained on images jittered and re-stroked like drawings.")
col3.button("Reset to defaults", on_click=lambda: st.session_state.update(DEFAULTS), width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Network")
    st.radio("Dataset", list(data.DATASETS), format_func=lambda n: data.DATASETS[n].title, key="cfg_dataset",
             index=list(data.DATASETS).index(DEFAULTS["cfg_dataset"]),
             horizontal=True)
    st.slider("Hidden layers", 0, MAX_HIDDEN_LAYERS, DEFAULTS["cfg_layers"], key="cfg_layers",
              help="0 hidden layers is logistic regression: 784 inputs straight to 10 outputs.")
    unit_cols = st.columns(max(st.session_state.cfg_layers, 1))
    for i in range(st.session_state.cfg_layers):
        unit_cols[i].select_slider(f"Units in layer {i + 1}", UNIT_CHOICES, DEFAULTS[f"cfg_units_{i}"],
                                   key=f"cfg_units_{i}")
    st.selectbox("Activation", list(ACTIVATIONS), list(ACTIVATIONS).index(DEFAULTS["cfg_activation"]),
                 key="cfg_activation")
    st.checkbox("Augment like drawings (random shift, rotation, scale and pen width)", DEFAULTS["cfg_augment"],
                key="cfg_augment")
with right:
    st.subheader("Training")
    st.select_slider("Learning rate (log scale)", LR_CHOICES, DEFAULTS["cfg_lr"], key="cfg_lr",
                     format_func=lambda v: f"{v:g}")
    st.select_slider("Batch size", BATCH_CHOICES, DEFAULTS["cfg_batch"], key="cfg_batch")
    st.slider("Epochs", EPOCHS_RANGE[0], 50, DEFAULTS["cfg_epochs"], key="cfg_epochs")
    st.checkbox("Add a second phase at another learning rate", DEFAULTS["cfg_then"], key="cfg_then",
                help="As in the tutorial: 5 epochs at 0.5, then 5 more at 0.1.")
    if st.session_state.cfg_then:
        c1, c2 = st.columns(2)
        c1.slider("Further epochs", EPOCHS_RANGE[0], 50, DEFAULTS["cfg_then_epochs"], key="cfg_then_epochs")
        c2.select_slider("at learning rate", LR_CHOICES, DEFAULTS["cfg_then_lr"], key="cfg_then_lr",
                         format_func=lambda v: f"{v:g}")
    st.radio("Optimizer", OPTIMIZERS, OPTIMIZERS.index(DEFAULTS["cfg_optimizer"]), key="cfg_optimizer",
             horizontal=True,
             format_func=lambda o: {"sgd": "SGD (as in the tutorial)", "adam": "Adam"}[o])

with st.expander("Data split, seed, device and quick runs"):
    c1, c2, c3, c4 = st.columns(4)
    c1.slider("Validation fraction", *VAL_PCT_RANGE, DEFAULTS["cfg_val_pct"], step=0.05, key="cfg_val_pct")
    c2.number_input("Seed", 0, 2**32 - 1, DEFAULTS["cfg_seed"], step=1, key="cfg_seed",
                    help="The same config and seed give the same curves on the CPU.")
    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if st.session_state.cfg_device not in devices:
        st.session_state.cfg_device = "auto"
    c3.selectbox("Device", devices, 0, key="cfg_device",
                 help="auto uses the GPU when there is one." + ("" if torch.cuda.is_available() else
                                                                " No CUDA GPU was found on this server."))
    c4.select_slider("Training images", SUBSET_CHOICES, DEFAULTS["cfg_subset"], key="cfg_subset",
                     help="Train on fewer images for a quick look; 'all' uses the whole training part.")

config = config_from_widgets()
# Load the chosen dataset with the page, once per server process, so the first run need not wait for it.
try:
    get_splits(config.dataset)
except data.DataError as exc:
    st.error(f"The dataset could not be loaded: {exc}")
st.caption(f"Command line for this config: `{config.command_line()}`")
if st.button("Train", type="primary"):
    job = submit(config)
    if job is not None:
        st.session_state.detail_run = job.id  # Run details shows the new run

# --- Live progress ----------------------------------------------------------


def time_left(job) -> str:
    """Estimate the time left from this job's own pace (its earlier phases excluded)."""
    p = job.progress
    job_epochs = sum(phase.epochs for phase in job.phases)
    before = p["epochs_total"] - job_epochs
    done = (p["epoch"] - 1 - before) * p["batches_per_epoch"] + p["batch"]
    total = job_epochs * p["batches_per_epoch"]
    if done <= 0 or job.started is None:
        return "estimating the time left"
    seconds = (time.time() - job.started) * (total - done) / done
    return f"about {seconds:.0f} s left"


def show_live(job) -> None:
    p = job.progress
    if job.state == QUEUED:
        st.info(f"**{job.name}** is queued: position {manager.queue_position(job)}. "
                f"{manager.running_count()} of {manager.max_running} training slots are in use.")
    elif p:
        fraction = ((p["epoch"] - 1) + p["batch"] / max(p["batches_per_epoch"], 1)) / max(p["epochs_total"], 1)
        st.progress(min(max(fraction, 0.0), 1.0),
                    text=f"**{job.name}** on {job.device}: epoch {p['epoch']} of {p['epochs_total']}, "
                         f"batch {p['batch']} of {p['batches_per_epoch']}, {time_left(job)}")
    else:
        st.progress(0.0, text=f"**{job.name}**: preparing the data on {job.device or 'the device'}…")
    if st.button("Stop", key=f"stop_{job.id}", help="Stop after the current batch and keep the model."):
        manager.stop(owner, job.id)


@st.fragment(run_every=refresh_seconds() if any(j.active for j in manager.jobs_for(owner)) else None)
def live_section() -> None:
    jobs = manager.jobs_for(owner)
    active = [j for j in jobs if j.active]
    # live_ids is written only by full page runs (below), so if this rerun is lost the next
    # fragment run requests it again.
    if st.session_state.get("live_ids", set()) - {j.id for j in active}:
        st.rerun()  # a run just ended: refresh the whole page so its results and lists update

    st.subheader("Training now" if active else "Latest run")
    for job in active:
        show_live(job)
    if active:
        current = active[-1]
    elif jobs:
        current = jobs[-1]
    else:
        current = None
    if current is None:
        st.info("No runs yet. Choose the settings above and press Train: the curves appear below.")
        # The empty frame also makes the browser load its chart code now, not while the first run trains.
        st.plotly_chart(charts.training_curves([], sum(phase.epochs for phase in config.phases)),
                        width="stretch", key="live_curves")
        return
    history = current.snapshot()
    if history.epochs:
        total = current.progress.get("epochs_total") if current.active else None
        st.plotly_chart(charts.training_curves([(current.name, history)], total), width="stretch",
                        key="live_curves")
    if not current.active:
        show_result(current, history)


def show_result(job, history) -> None:
    if job.state == DIVERGED:
        st.error(f"{job.name}: {job.message}. The history up to then and the weights of the last "
                 "finished epoch are kept.")
    elif job.state == FAILED:
        st.error(f"{job.name}: {job.message}")
    elif job.state == STOPPED:
        st.warning(f"{job.name}: {job.message}")
    elif job.message:
        st.info(f"{job.name}: {job.message}")
    problem = learning_problem(history) if job.state in (DONE, STOPPED) else None
    if problem:
        st.warning(f"{job.name} did not learn: {problem}.")
    if len(history.epochs) > 1:
        last = history.last
        c1, c2, c3 = st.columns(3)
        c1.metric("Validation accuracy", f"{last['val_acc']:.2%}",
                  f"{last['val_acc'] - history.epochs[0]['val_acc']:+.2%} since epoch 0")
        c2.metric("Seconds per epoch", f"{seconds_per_epoch(history):.2f}")
        c3.metric("Images per second", f"{images_per_second(history):,.0f}")


def seconds_per_epoch(history) -> float:
    full = [e["seconds"] for e in history.epochs[1:] if not e.get("partial")]
    return statistics.median(full) if full else float("nan")


def images_per_second(history) -> float:
    rates = [e["images_per_s"] for e in history.epochs[1:] if e.get("images_per_s")]
    return statistics.median(rates) if rates else float("nan")


st.session_state.live_ids = {j.id for j in manager.jobs_for(owner) if j.active}
live_section()

# --- Runs -------------------------------------------------------------------

jobs = manager.jobs_for(owner)
st.session_state.runs = {job.id: job for job in jobs}
st.header("Runs")
if not jobs:
    st.caption("Runs you train appear here. Each keeps its config, curves and model for this browser tab "
               f"(up to {manager.max_runs_per_owner} runs; the oldest is removed first).")
    st.stop()

@st.fragment(run_every=refresh_seconds() if any(j.active for j in jobs) else None)
def runs_table() -> None:
    """Show the Runs table, refreshed by itself while runs train, so it shows a run's end even
    when the full rerun that the live section requests is delayed by a busy server."""
    rows = []
    for job in manager.jobs_for(owner):
        history = job.snapshot()
        last = history.epochs[-1] if history.epochs else {}
        rows.append({"run": job.name, "state": job.state, "val acc": last.get("val_acc"),
                     "epochs": max(len(history.epochs) - 1, 0), "s/epoch": seconds_per_epoch(history),
                     "images/s": images_per_second(history), "device": job.device, "config": summary(job)})
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"val acc": st.column_config.NumberColumn(format="percent"),
                                "s/epoch": st.column_config.NumberColumn(format="%.2f"),
                                "images/s": st.column_config.NumberColumn(format="%d")})


runs_table()

names = {job.id: job.name for job in jobs}
# Until the user picks runs to compare, the choice follows the two newest finished runs.
if st.session_state.get("compare_chosen"):
    st.session_state.compare_runs = [i for i in st.session_state.get("compare_runs", []) if i in names]
else:
    st.session_state.compare_runs = [j.id for j in jobs if not j.active][-2:]
compare = st.multiselect("Compare the curves of", list(names), format_func=names.get, key="compare_runs",
                         on_change=lambda: st.session_state.update(compare_chosen=True))
if compare:
    st.plotly_chart(charts.training_curves([(names[i], st.session_state.runs[i].snapshot()) for i in compare]),
                    width="stretch", key="compare_curves")

finished = [j for j in jobs if not j.active and j.model_state is not None]
c1, c2 = st.columns(2)
with c1:
    st.subheader("Train further")
    if finished:
        target = st.selectbox("Run", [j.id for j in finished], format_func=names.get, key="extend_run")
        e1, e2 = st.columns(2)
        more_epochs = e1.number_input("Epochs", EPOCHS_RANGE[0], EPOCHS_RANGE[1], 5, key="extend_epochs")
        more_lr = e2.select_slider("Learning rate", LR_CHOICES, 0.1, key="extend_lr", format_func=lambda v: f"{v:g}")
        if st.button("Continue training", help="Adds epochs to the same run and extends its curves."):
            try:
                manager.extend(owner, target, int(more_epochs), float(more_lr))
                st.rerun()
            except ValueError as exc:
                st.error(str(exc))
    else:
        st.caption("A finished run can be trained further at a new learning rate.")
with c2:
    st.subheader("Delete a run")
    victim = st.selectbox("Run to delete", list(names), format_func=names.get, key="delete_run")
    if st.button("Delete"):
        manager.delete(owner, victim)
        st.rerun()

# --- One run: config, command line, checkpoint, exported script --------------

st.header("Run details")
if st.session_state.get("detail_run") not in names:
    st.session_state.pop("detail_run", None)  # that run was deleted or evicted
detail_id = st.selectbox("Run", list(names)[::-1], format_func=names.get, key="detail_run")
detail = st.session_state.runs[detail_id]
st.write(f"**{detail.name}**: {summary(detail)}. State: {detail.state}.")
st.write("The same run from the command line (copy it with the button at the right):")
st.code(detail.config.command_line(), language="bash")
with st.expander("Config as JSON"):
    st.json(detail.config.to_dict())
if detail.model_state is not None and not detail.active:
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download checkpoint (.pt)", key="download_checkpoint", on_click="ignore",
        data=lambda: checkpoint_bytes(detail.model(), train_config=detail.config.to_dict(),
                                      history=detail.snapshot().to_dict(), name=detail.name),
        file_name=f"{detail.name.replace(' ', '_')}.pt", mime="application/octet-stream",
        help="The state dict, the config and the history; load it again below or with core.model.load_checkpoint.")
    d2.download_button(
        "Export as a plain PyTorch script", key="download_script", on_click="ignore",
        data=lambda: export_script(detail.config, val_accs=[e["val_acc"] for e in detail.snapshot().epochs]),
        file_name=f"{detail.name.replace(' ', '_')}.py", mime="text/x-python",
        help="A self-contained script that reproduces this run with torch and torchvision only.")

uploaded = st.file_uploader("Restore a run from a checkpoint", type=["pt", "pth"], key="upload_checkpoint",
                            help=f"At most {MAX_CHECKPOINT_BYTES // 2**20} MiB. The file is loaded with "
                                 "weights_only=True, so no code in it runs.")
if uploaded is not None and st.session_state.get("restored_file") != uploaded.file_id:
    st.session_state.restored_file = uploaded.file_id
    try:
        restored_model, checkpoint = load_checkpoint(uploaded.getvalue())
        restored_config = TrainConfig.from_dict(checkpoint.get("train_config") or {
            "hidden": restored_model.hidden, "activation": restored_model.activation})
        restored_history = History.from_dict(checkpoint.get("history") or {})
        manager.add_finished(owner, restored_config, f"{uploaded.name} (restored)", restored_model,
                             restored_history)
        st.rerun()
    except (ValueError, TypeError) as exc:
        st.error(f"{uploaded.name} was not restored: {exc}. Upload a .pt file that this app's "
                 "Download checkpoint button saved.")

# --- CPU vs GPU -------------------------------------------------------------

st.header("Exercise: CPU vs GPU")
st.markdown(
    "Train the config above once on each device and compare the seconds per epoch. The tutorial's "
    "784-32-10 network does about 25,000 multiply-adds per image, far too little to keep a GPU busy: "
    "each batch is a handful of tiny kernels, so launching them costs more than the arithmetic and a GPU "
    "may gain little. The GPU pulls ahead as the work per step grows: try 1024 units in two layers "
    "and a batch size of 1024, where the CPU's time grows with the arithmetic and the GPU's barely moves.")
available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
if len(available) == 1:
    st.info("This server has no CUDA GPU, so only the CPU can be timed here. On a machine with a GPU "
            "this trains the same config on both and charts the times side by side.")
if st.button("Time this config on " + " and ".join(d.upper() for d in available)):
    group = f"compare-{int(time.time())}"
    for device in available:
        cfg = replace(config, device=device, phases=(Phase(min(config.epochs, 3), config.phases[0].lr),))
        job = submit(cfg, name=f"{device.upper()} timing")
        if job is not None:
            job.extras["compare_group"] = group
    st.session_state.compare_group = group
    st.rerun()
group = st.session_state.get("compare_group")
timed = [j for j in jobs if j.extras.get("compare_group") == group] if group else []
if timed:
    if any(j.active for j in timed):
        st.caption("Timing runs are training; the chart appears when they finish.")
    else:
        rows = [{"device": j.device, "seconds_per_epoch": seconds_per_epoch(j.snapshot())} for j in timed]
        st.plotly_chart(charts.device_times(rows), width="stretch", key="device_times")
