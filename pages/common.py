"""Objects every page shares: the datasets and the job manager (one per process),
and the id that ties a browser tab's runs together across reloads."""

from __future__ import annotations

import logging
import os
import uuid

# st.dataframe imports pandas at its first call, which took 0.2 to 0.5 s with the GIL held on a 2-core VM
# (one-off timings). Importing it with the first page keeps that pause out of the first training run.
import pandas  # noqa: F401
import streamlit as st

from core import data
from core.jobs import JobManager
from core.training import History

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

OWNER_PARAM = "user"

REFRESH_ENV = "MNIST_STUDIO_REFRESH_S"
DEFAULT_REFRESH_S = 0.5
REFRESH_RANGE_S = (0.2, 10.0)


def refresh_seconds() -> float:
    """Seconds between redraws of the live curves and the Runs table while a run trains:
    $MNIST_STUDIO_REFRESH_S, else DEFAULT_REFRESH_S."""
    raw = os.environ.get(REFRESH_ENV)
    if raw is None:
        return DEFAULT_REFRESH_S
    low, high = REFRESH_RANGE_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ValueError(f"{REFRESH_ENV}={raw!r} is invalid: choose a number of seconds from {low:g} to {high:g}")
    return value


@st.cache_resource(show_spinner="Loading the dataset…")
def get_splits(name: str) -> data.Splits:
    """Load a dataset once per process, shared by every session and the training jobs."""
    return data.load_cached(name)


@st.cache_resource
def get_manager() -> JobManager:
    # Jobs call the plain cached loader: Streamlit's cache functions need a script run context,
    # which training threads do not have.
    return JobManager(data.load_cached)


def require_router() -> None:
    """Make sure streamlit_app.py's st.navigation runs this page.

    NOTE: Streamlit 1.67 decides once per process, at the first request,
    whether the app uses the old pages/ folder mode. When that request is for
    a page URL such as /train, it runs pages/train.py directly, so the router
    (page titles, wide layout) never runs. Each page calls this first, and it
    switches the process to the router and reruns."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def owner_id() -> str:
    """Return this user's id, kept in the URL (?user=...) so a reload finds the same runs."""
    if "owner" not in st.session_state:
        from_url = st.query_params.get(OWNER_PARAM, "")
        st.session_state.owner = from_url if from_url.isalnum() and len(from_url) == 16 else uuid.uuid4().hex[:16]
    if st.query_params.get(OWNER_PARAM) != st.session_state.owner:
        st.query_params[OWNER_PARAM] = st.session_state.owner
    return st.session_state.owner


def show_notices() -> None:
    for notice in get_manager().pop_notices(owner_id()):
        st.toast(notice)


def dataset_error(exc: Exception) -> None:
    st.error(f"The dataset could not be loaded: {exc}")
    st.stop()


def summary(job) -> str:
    """Describe a run's config in one line."""
    c = job.config
    layers = "-".join(str(h) for h in (784, *c.hidden, 10))
    phases = ", ".join(f"{p.epochs}@{p.lr:g}" for p in c.phases)
    extra = " +augment" if c.augment else ""
    subset = f" on {c.subset} images" if c.subset else ""
    return f"{c.dataset} {layers} {c.activation}, {c.optimizer} {phases}, batch {c.batch_size}{extra}{subset}"


def history_of(job) -> History:
    return job.snapshot()


@st.cache_data(ttl=300, show_spinner=False)
def dataset_present(name: str) -> bool:
    """Return whether a dataset's files are verified in the cache; MD5s are rechecked at most every 5 minutes."""
    return data.is_present(data.get_spec(name))


def trained_runs(owner: str) -> list:
    """Return the owner's runs that have a model and are not training, oldest first."""
    return [j for j in get_manager().jobs_for(owner) if j.model_state is not None and not j.active]
