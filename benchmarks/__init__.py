"""imgserve's benchmark suite: closed-loop load (HTTP and OIP gRPC), the in-process limit, peer servers
serving the same ONNX model, and a Markdown/PNG report. Entry points: ``python -m benchmarks`` and
``imgserve bench``; see docs/benchmarks.md."""
