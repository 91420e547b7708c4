"""Peer servers for the benchmark: each serves the same registered ONNX model with the same preprocessing
(``inference.imagecodec`` + ``inference.preprocess``) under one peer framework, with pinned thread budgets.
Each module is a script: ``python -m benchmarks.peers.<name> --models-dir … --model … --port …``."""
