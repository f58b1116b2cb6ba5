"""Fine-tuning Bark: recordings -> (text, semantic, coarse, fine) tokens -> LoRA or full training -> a model."""

from barkserve.finetune.merge import load_trained, merge_run
from barkserve.finetune.prepare import Encoders, PrepareOptions, load_dataset, prepare_dataset
from barkserve.finetune.run import TrainOptions
from barkserve.finetune.train import TrainResult, train

__all__ = [
    "Encoders",
    "PrepareOptions",
    "TrainOptions",
    "TrainResult",
    "load_dataset",
    "load_trained",
    "merge_run",
    "prepare_dataset",
    "train",
]
