"""rationalizer.export: merge, GGUF, ONNX, quantization and bundle writing (needs the ``export`` extra)."""
