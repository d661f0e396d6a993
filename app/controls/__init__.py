"""Pickers and generated forms for the left dock."""
from .dataset import DatasetPicker
from .family import FamilyPicker, SamplerPicker, discover
from .form import ConfigForm
from .train import TrainSettings

__all__ = ["DatasetPicker", "FamilyPicker", "SamplerPicker", "ConfigForm", "TrainSettings", "discover"]
