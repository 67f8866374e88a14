"""archc: compile one declarative YAML architecture spec into verified Keras and PyTorch models."""

__version__ = "0.1.0"
