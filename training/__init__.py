"""Training: datasets, architectures, the Keras train loop and evaluation.

Importing this package is cheap: ``datasets`` and ``evaluate`` need only numpy/Pillow (and scikit-learn
for the digits set and the report); TensorFlow is imported inside the functions that build or fit a model.
"""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 VNNI/BF16 or AMX; elsewhere its
# convolutions run on Eigen. Measured on a 2-vCPU AMD EPYC with AVX2 only, small-cnn, batch 128: 349 ms per
# training step without oneDNN, 215 ms with it (1.6x). A user's own setting (0 or 1) is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
