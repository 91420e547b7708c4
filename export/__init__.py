"""Export: Keras -> SavedModel -> ONNX fp32 -> INT8, parity and accuracy gates, registration.

Modules: ``convert`` (to_saved_model, to_onnx), ``quantize`` (QuantizationConfig, quantize),
``pipeline`` (export_run: the whole path into a Registry). TensorFlow is imported inside functions.
"""
