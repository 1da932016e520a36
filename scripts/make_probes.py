"""Write the GEMM probes bench runs to measure a device's peak (edge_bert/data/probes/, shipped with the package).

One BERT-sized matrix product, (128 x 384) . (384 x 1536) - MiniLM's FFN up-projection at 128 tokens,
2 * 128 * 384 * 1536 = 151 MFLOP - per runtime and precision, the way a bundle computes it:

- onnxruntime: MatMul fp32, and MatMulInteger uint8 x int8 (what dynamic int8 runs), both operands
  graph inputs so each file is a few hundred bytes;
- LiteRT: FULLY_CONNECTED fp32 with constant weights (XNNPACK's f32 GEMM), and the same quantized by
  AI Edge Quantizer's dynamic_wi8_afp32 (int8 weights, activations quantized on the fly: qd8 GEMM).
  The weights repeat one row (speed does not depend on their values), so the gzipped files are tiny.
- OpenVINO (read through its ONNX frontend): MatMul with constant weights (ConstantOfShape, folded
  at compile time, so the CPU plugin packs them as it does a bundle's) in fp32, the same file asking
  for bf16 (metadata ``INFERENCE_PRECISION_HINT``, which OpenVINO reads into ``rt_info/framework``),
  and a QDQ form (u8 activations, int8 weights) that OpenVINO's low-precision transformations run as an
  int8 FullyConnected, the way NNCF's static int8 runs.

Run once on a host with the convert and tflite extras: python scripts/make_probes.py
"""

from __future__ import annotations

import gzip
import logging
import tempfile
import warnings
from pathlib import Path

M, K, N = 128, 384, 1536
OUT = Path(__file__).resolve().parents[1] / "edge_bert" / "data" / "probes"


def onnx_probes() -> None:
    import onnx
    from onnx import TensorProto, helper

    for name, op, a_type, b_type, y_type in (
        ("gemm-fp32.onnx", "MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT),
        ("gemm-int8.onnx", "MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32),
    ):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])],
            "probe",
            [helper.make_tensor_value_info("a", a_type, [M, K]), helper.make_tensor_value_info("b", b_type, [K, N])],
            [helper.make_tensor_value_info("y", y_type, [M, N])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-bert")
        model.ir_version = 8
        onnx.checker.check_model(model)
        (OUT / name).write_bytes(model.SerializeToString())


def openvino_probes() -> None:
    import onnx
    from onnx import TensorProto, helper

    def weights(value_type: int, value: float, out: str) -> object:
        return helper.make_node(
            "ConstantOfShape", ["w_shape"], [out], value=helper.make_tensor("v", value_type, [1], [value])
        )

    float_nodes = [weights(TensorProto.FLOAT, 0.01, "w"), helper.make_node("MatMul", ["a", "w"], ["y"])]
    int8_nodes = [
        helper.make_node("QuantizeLinear", ["a", "a_scale", "a_zero"], ["a_q"]),
        helper.make_node("DequantizeLinear", ["a_q", "a_scale", "a_zero"], ["a_dq"]),
        weights(TensorProto.INT8, 3, "w_q"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"]),
        helper.make_node("MatMul", ["a_dq", "w"], ["y"]),
    ]
    constants = [
        helper.make_tensor("w_shape", TensorProto.INT64, [2], [K, N]),
        helper.make_tensor("a_scale", TensorProto.FLOAT, [], [0.02]),
        helper.make_tensor("a_zero", TensorProto.UINT8, [], [128]),
        helper.make_tensor("w_scale", TensorProto.FLOAT, [], [0.01]),
    ]
    for name, nodes, precision in (
        ("gemm-fp32.openvino.onnx", float_nodes, "f32"),
        ("gemm-bf16.openvino.onnx", float_nodes, "bf16"),
        ("gemm-int8.openvino.onnx", int8_nodes, "f32"),
    ):
        used = {i for node in nodes for i in node.input}
        graph = helper.make_graph(
            nodes,
            "probe",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [M, K])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])],
            initializer=[c for c in constants if c.name in used],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-bert")
        model.ir_version = 8
        helper.set_model_props(model, {"INFERENCE_PRECISION_HINT": precision})
        onnx.checker.check_model(model)
        (OUT / name).write_bytes(model.SerializeToString())


def tflite_probes() -> None:
    import litert_torch
    import torch
    from ai_edge_quantizer import quantizer, recipe

    linear = torch.nn.Linear(K, N, bias=False).eval()
    with torch.no_grad():
        row = torch.linspace(-0.5, 0.5, K)
        linear.weight.copy_(row.repeat(N, 1))
    logging.getLogger("litert_torch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as work, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        fp32 = Path(work) / "fp32.tflite"
        converter = litert_torch.Converter()
        converter.add_signature("probe", linear, sample_kwargs={"input": torch.zeros(1, M, K)})
        converter.convert().export(str(fp32))
        int8 = Path(work) / "int8.tflite"
        quantizer.Quantizer(str(fp32), recipe.dynamic_wi8_afp32()).quantize().export_model(str(int8), overwrite=True)
        for src, name in ((fp32, "gemm-fp32.tflite.gz"), (int8, "gemm-int8.tflite.gz")):
            (OUT / name).write_bytes(gzip.compress(src.read_bytes(), compresslevel=9, mtime=0))


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    onnx_probes()
    openvino_probes()
    tflite_probes()
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(OUT.parents[2])}: {path.stat().st_size:,} bytes")
