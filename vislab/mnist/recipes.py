"""Training configuration: the typed config, each model's default recipe, and CLI overrides on top.

One configuration path: ``TrainConfig`` defaults < the model's recipe < explicit command-line flags. The
resolved config is written to ``RUN_DIR/config.json`` and into every checkpoint.
"""

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from vislab.core.errors import VislabError

OPTIMIZERS = ("sgd", "adam", "adamw", "muon")
SCHEDULES = ("none", "onecycle", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything that determines a training run (besides the data files themselves)."""

    model: str = "cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: float = 10  # passes over the training set; a fraction ends the last pass early (1.5: one and a half)
    batch_size: int = 64
    lr: float = 0.01           # the peak learning rate under onecycle (muon: of the AdamW-updated parameters)
    optimizer: str = "sgd"     # sgd | adam | adamw | muon (Muon on weight matrices, AdamW on the rest)
    muon_lr: float = 0.02      # muon: the peak learning rate of the weight matrices
    momentum: float = 0.5      # SGD momentum (the lab's 0.5)
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "none"     # none | onecycle (per step) | cosine (per step, to zero)
    augment: bool = False      # random shift/rotate/scale of each training batch
    augment_strength: float = 1.0  # scales the warp ranges (1.0: shift 2 px, rotation 10 deg, scale +-10%)
    label_smoothing: float = 0.0  # training target: 1 - eps on the label, eps spread evenly over all 10 classes
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"    # bf16: autocast matmuls/convs to bfloat16; auto: bf16 where it is fast, else fp32
    channels_last: bool = True  # NHWC convolutions: faster on CPU (oneDNN) and on tensor cores
    val_size: int = 0          # 0: validate on the test set each epoch, as the lab does
    eval_batch_size: int = 1000
    data: str | None = None    # MNIST folder; None: vislab.mnist.data.default_data_dir()

    def validate(self) -> None:
        """Raise VislabError for values no run can use."""
        if self.optimizer not in OPTIMIZERS:
            raise VislabError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise VislabError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise VislabError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not self.epochs > 0:
            raise VislabError(f"--epochs must be positive, got {self.epochs}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise VislabError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise VislabError(f"--lr must be positive, got {self.lr}")
        if not self.muon_lr > 0:
            raise VislabError(f"--muon-lr must be positive, got {self.muon_lr}")
        if self.augment_strength < 0:
            raise VislabError(f"--augment-strength must be 0 or more, got {self.augment_strength}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise VislabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.val_size < 0:
            raise VislabError(f"--val-size must be 0 or more, got {self.val_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from a saved dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Default recipes (measured results in README.md). All validate on the test set each epoch
# (val_size 0, as the lab does): the reported test accuracy is that of the LAST epoch's weights, never a
# maximum over epochs. vgg and resnet are ~220-240 MMAC per image, so their recipes are short onecycle runs
# with precision "auto" (bf16 autocast where it is measured faster, see vislab/mnist/precision.py).
RECIPES: dict[str, dict[str, Any]] = {
    "mlp": dict(epochs=40, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, schedule="onecycle",
                augment=True, augment_strength=0.5),
    # Muon + label smoothing reach 99% within one epoch (AdamW needed ~2); fp32, since oneDNN's bf16
    # convolution backward is slower than fp32 for these small layers once the allocator stops page-faulting.
    "cnn": dict(epochs=1.5, batch_size=128, optimizer="muon", lr=3e-3, muon_lr=0.02, weight_decay=1e-4,
                label_smoothing=0.1, schedule="onecycle", augment=False, precision="fp32"),
    "vgg": dict(epochs=4, batch_size=128, optimizer="adamw", lr=1e-3, weight_decay=1e-2, schedule="onecycle",
                augment=True, precision="auto"),
    "resnet": dict(epochs=6, batch_size=128, optimizer="adamw", lr=2e-3, weight_decay=5e-2, schedule="onecycle",
                   augment=True, precision="auto"),
}


def resolve_config(model: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """``TrainConfig`` for ``model``: its recipe, then every non-None value of ``overrides`` on top."""
    base = dict(RECIPES.get(model, {}))
    base.update({k: v for k, v in (overrides or {}).items() if v is not None})
    base["model"] = model
    config = TrainConfig.from_dict(base)
    config.validate()
    return config
