"""ONNX: torch.onnx export, onnxruntime's transformer fusions and quantizers, per-node sensitivity."""
