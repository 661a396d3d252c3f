"""Names the options accept, importable without torch: ``reverie --help`` and option errors
must answer at once, and importing torch takes seconds.

models.py takes MODELS from here; datasets.py keeps its own DATASETS, which
tests/experiments/test_config.py checks against this one.
"""

from __future__ import annotations

DATASETS = ("mnist1d", "digits", "mnist", "imagefolder", "synthetic")
MODELS = ("auto", "mlp", "cnn1d", "cnn", "lenet", "resnet")
