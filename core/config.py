"""One typed config for a training run, shared by the app and the command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from core.data import DATASETS
from core.model import ACTIVATIONS, check_architecture

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")

# Allowed ranges, shared by the sliders, the command line and the core API.
LR_RANGE = (1e-4, 2.0)
BATCH_SIZE_RANGE = (1, 10_000)
EPOCHS_RANGE = (1, 100)
VAL_PCT_RANGE = (0.05, 0.5)
SUBSET_MIN = 100


@dataclass(frozen=True)
class Phase:
    """A stretch of training at one learning rate."""
    epochs: int
    lr: float


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    optimizer: str = "sgd"
    batch_size: int = 100
    phases: tuple[Phase, ...] = (Phase(5, 0.5),)
    val_pct: float = 0.2
    seed: int = 42
    device: str = "auto"
    augment: bool = False
    # Train on only the first `subset` images of the training split (None: all of them).
    subset: int | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first invalid value and the range to choose from."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset {self.dataset!r} is invalid: choose one of {sorted(DATASETS)}")
        check_architecture(self.hidden, self.activation)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is invalid: choose one of {list(OPTIMIZERS)}")
        _check_range("batch size", self.batch_size, BATCH_SIZE_RANGE, integer=True)
        if not self.phases:
            raise ValueError("a run needs at least one phase of epochs at a learning rate")
        for phase in self.phases:
            _check_range("learning rate", phase.lr, LR_RANGE)
            _check_range("epochs", phase.epochs, EPOCHS_RANGE, integer=True)
        _check_range("validation fraction", self.val_pct, VAL_PCT_RANGE)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed {self.seed!r} is invalid: choose a whole number between 0 and 4294967295")
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} is invalid: choose one of {list(DEVICES)}")
        if self.subset is not None:
            _check_range("subset size", self.subset, (SUBSET_MIN, 60_000), integer=True)
        return self

    def to_dict(self) -> dict:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        data["phases"] = [[p.epochs, p.lr] for p in self.phases]
        data.pop("extra")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        data["hidden"] = tuple(int(h) for h in data.get("hidden", (32,)))
        data["phases"] = tuple(Phase(int(e), float(lr)) for e, lr in data.get("phases", [(5, 0.5)]))
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_phase(self, epochs: int, lr: float) -> "TrainConfig":
        return replace(self, phases=self.phases + (Phase(epochs, lr),))

    def command_line(self) -> str:
        """Return the `python -m core.train` command that runs this config."""
        first, *rest = self.phases
        parts = ["python -m core.train", f"--dataset {self.dataset}",
                 "--hidden " + " ".join(str(h) for h in self.hidden) if self.hidden else "--hidden",
                 f"--activation {self.activation}", f"--optimizer {self.optimizer}",
                 f"--batch-size {self.batch_size}", f"--epochs {first.epochs}", f"--lr {float(first.lr)!r}"]
        # repr() gives the shortest text that parses back to the same float.
        parts += [f"--then {p.epochs} {float(p.lr)!r}" for p in rest]
        parts += [f"--val-pct {float(self.val_pct)!r}", f"--seed {self.seed}", f"--device {self.device}"]
        if self.augment:
            parts.append("--augment")
        if self.subset is not None:
            parts.append(f"--subset {self.subset}")
        return " ".join(parts)


def _check_range(label: str, value, bounds, integer: bool = False) -> None:
    low, high = bounds
    number_types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_types) or not low <= value <= high:
        kind = "a whole number" if integer else "a value"
        raise ValueError(f"{label} {value!r} is invalid: choose {kind} between {low:g} and {high:g}")
    if not integer and value != value:  # NaN
        raise ValueError(f"{label} NaN is invalid: choose a value between {low:g} and {high:g}")
