"""Training: datasets, architectures, the Keras train loop and evaluation.

Importing this package is cheap: ``datasets`` and ``evaluate`` need only numpy/Pillow (and scikit-learn
for the digits set and the report); TensorFlow is imported inside the functions that build or fit a model.
"""
