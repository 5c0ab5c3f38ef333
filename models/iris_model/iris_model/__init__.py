"""iris_model: classify an iris flower from four measurements (protoreg's seed model)."""

from .model import IrisInput, IrisModel, IrisOutput, Species

__all__ = ["IrisModel", "IrisInput", "IrisOutput", "Species"]
