"""``model.qa.tflite``: a question-answering bundle's LiteRT model as the TFLite Task Library's
``BertQuestionAnswerer`` loads it (tensorflow/tflite-support, cc/task/text/bert_question_answerer.{h,cc}).

What that library reads, checked in its source: three int32 inputs found by their metadata names ``ids``,
``mask``, ``segment_ids`` (else by position in that order), two float outputs ``end_logits`` then
``start_logits`` (by metadata name, else position 0 = end, 1 = start), each [1, 384]: ``kMaxSeqLen = 384``
is a constant of the library (it pads every question + context to 384 tokens, questions cut at 64), not
a metadata field; and the BERT tokenizer as the first input process unit, ``vocab.txt`` packed inside.

Derived from the recipe's own model (same weights, same kernels): its ``seq_384`` signature (the android
profile exports one for question answering) becomes the only subgraph, ``span_logits`` [1, 384, 2] is split
by a builtin UNPACK into start and end, and the metadata is written with MediaPipe's writer (the same
schema). Checked here by reading the file back: names, order, shapes and dtypes, the metadata, and start
and end logits equal to the recipe's ``seq_384`` signature on golden inputs. Host side only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.formats.tflite.flatbuffer import packed, unpacked
from edge_bert.formats.tflite.mediapipe import (
    _drop_unused_buffers,
    _metadata_writer,
    _tensor,
    unsupported_tokenizer,
)

QA_FILE = "model.qa.tflite"
#: BertQuestionAnswerer::kMaxSeqLen: every input is padded to it (a constant of the library)
QA_LENGTH = 384
QA_INPUTS = ("ids", "mask", "segment_ids")
QA_OUTPUTS = ("end_logits", "start_logits")
_OURS = ("input_ids", "attention_mask", "token_type_ids")


def qa_lengths(task: str, lengths: list[int], app_extras: bool) -> list[int]:
    """The signatures a LiteRT export needs: the profile's, plus 384 for a QA bundle with app extras."""
    extra = [QA_LENGTH] if task == "question-answering" and app_extras else []
    return sorted({*lengths, *extra})


def write_qa_answerer(fmt: Any, staging: Path, title: str) -> dict[str, Any] | None:
    """Write ``staging/model.qa.tflite`` for a question-answering bundle (None for other tasks); returns
    the manifest's ``conversion_check.qa_answerer`` (the figures, or why there is no such file)."""
    job = fmt.job
    if job.loaded.task != "question-answering":
        return None
    record: dict[str, Any] = {"file": None, "task": "BertQuestionAnswerer", "seq_length": QA_LENGTH}
    model = (staging / fmt.model_file).read_bytes()
    if reason := unsupported_tokenizer(job.loaded.tokenizer):
        return {**record, "reason": reason.replace("MediaPipe's", "the Task Library's")}
    try:
        writer = _metadata_writer()
        raw = answerer_graph(model, QA_LENGTH)
    except ImportError:
        return {**record, "reason": "mediapipe is not installed (its metadata writer writes the metadata)"}
    except ValueError as exc:
        return {**record, "reason": str(exc)}
    mw = writer.metadata_writer
    out = mw.MetadataWriter(raw).add_general_info(title, "Converted and gated by edge-bert.")
    out.add_bert_text_input(mw.BertTokenizer(str(staging / "vocab.txt")), *QA_INPUTS)
    out.add_feature_output("end_logits", "Logits of each token ending the answer.")
    out.add_feature_output("start_logits", "Logits of each token starting the answer.")
    target = staging / QA_FILE
    target.write_bytes(bytes(out.populate()[0]))
    error = same_as_signature(target, staging / fmt.model_file)
    if error is not None:
        target.unlink()
        return {**record, "reason": error}
    return {**record, "file": QA_FILE, "inputs": list(QA_INPUTS), "outputs": list(QA_OUTPUTS)}


def answerer_graph(model: bytes, length: int) -> bytearray:
    """One subgraph from signature ``seq_{length}``: inputs ids, mask, segment_ids (int32 [1, length]),
    outputs end_logits, start_logits (float32 [1, length]) from an UNPACK of ``span_logits``."""
    fb, tree = unpacked(model)
    found = [s for s in tree.signatureDefs if s.signatureKey.decode() == f"seq_{length}"]
    if not found:
        keys = sorted(s.signatureKey.decode() for s in tree.signatureDefs)
        raise ValueError(f"BertQuestionAnswerer pads every input to {length} tokens; the model has {keys}")
    graph = tree.subgraphs[found[0].subgraphIndex]
    inputs = {t.name.decode(): t.tensorIndex for t in found[0].inputs}
    if "token_type_ids" not in inputs:  # the library fills three inputs; this family reads two
        graph.tensors.append(_tensor(fb, "token_type_ids", [1, length], fb.TensorType.INT32))
        inputs["token_type_ids"] = len(graph.tensors) - 1
    graph.inputs = [inputs[name] for name in _OURS]
    for ours, theirs in zip(_OURS, QA_INPUTS, strict=True):
        graph.tensors[inputs[ours]].name = theirs.encode()
    (span,) = [t.tensorIndex for t in found[0].outputs if t.name.decode() == "span_logits"]
    if graph.tensors[span].type != fb.TensorType.FLOAT32:
        raise ValueError("span_logits is not float32 in this recipe; BertQuestionAnswerer reads float logits")
    start, end = _append_unpack(fb, tree, graph, span, length)
    graph.outputs = [end, start]
    tree.subgraphs, tree.signatureDefs = [graph], []
    _drop_unused_buffers(tree, graph)
    return packed(tree)


def _append_unpack(fb: Any, tree: Any, graph: Any, span: int, length: int) -> tuple[int, int]:
    """A builtin UNPACK (axis 2, num 2) of [1, length, 2] into start and end [1, length]."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in tree.operatorCodes]
    if fb.BuiltinOperator.UNPACK in codes:
        code = codes.index(fb.BuiltinOperator.UNPACK)
    else:
        entry = fb.OperatorCodeT()
        entry.builtinCode = entry.deprecatedBuiltinCode = fb.BuiltinOperator.UNPACK
        entry.version = 1
        tree.operatorCodes.append(entry)
        code = len(tree.operatorCodes) - 1
    first = len(graph.tensors)
    for name in ("start_logits", "end_logits"):
        graph.tensors.append(_tensor(fb, name, [1, length], fb.TensorType.FLOAT32))
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, [span], [first, first + 1]
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.UnpackOptions, fb.UnpackOptionsT()
    op.builtinOptions.num, op.builtinOptions.axis = 2, 2
    graph.operators.append(op)
    return first, first + 1


def same_as_signature(answerer: Path, model: Path, cases: int = 3) -> str | None:
    """None when the answerer's end/start logits equal the model's ``seq_384`` span_logits on ``cases``
    question-context inputs (ids from the vocabulary, padded), else what differs."""
    from ai_edge_litert.interpreter import Interpreter

    qa = Interpreter(model_path=str(answerer))
    qa.allocate_tensors()
    runner = Interpreter(model_path=str(model)).get_signature_runner(f"seq_{QA_LENGTH}")
    names = {d["name"]: d for d in qa.get_input_details()}
    rng = np.random.default_rng(0)
    for case in range(cases):
        used = 40 + 100 * case
        ids = np.zeros((1, QA_LENGTH), np.int32)
        ids[0, :used] = rng.integers(1000, 20000, used)
        ids[0, 0], ids[0, 12], ids[0, used - 1] = 101, 102, 102
        mask = (ids != 0).astype(np.int32)
        types = np.zeros_like(ids)
        types[0, 13:used] = 1
        for name, value in zip(QA_INPUTS, (ids, mask, types), strict=True):
            qa.set_tensor(names[name]["index"], value)
        qa.invoke()
        end, start = (qa.get_tensor(d["index"]) for d in qa.get_output_details())
        wanted = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        accepted = runner.get_input_details()
        span = runner(**{k: v for k, v in wanted.items() if k in accepted})["span_logits"]
        if not (np.array_equal(start, span[..., 0]) and np.array_equal(end, span[..., 1])):
            return "the answerer's start/end logits differ from the recipe's seq_384 signature"
    return None


def answerer_section(record: dict[str, Any] | None) -> str:
    """ANDROID.md's part on ``model.qa.tflite``: how to load it, what was verified here and what was not."""
    if record is None:
        return ""
    if record.get("file") is None:
        return f"\n## BertQuestionAnswerer\n\nNo `{QA_FILE}` in this bundle: {record.get('reason')}.\n"
    return "\n".join([
        "", "## BertQuestionAnswerer (TFLite Task Library)", "",
        f"`{QA_FILE}` is this recipe's model in the layout the Task Library's `BertQuestionAnswerer` reads:",
        "inputs `ids`, `mask`, `segment_ids` (int32 [1, 384]), outputs `end_logits`, `start_logits` (float32",
        "[1, 384], in that order), the BERT tokenizer with `vocab.txt` in its metadata. 384 is the library's",
        "fixed `kMaxSeqLen` (questions cut at 64 tokens, contexts at what is left, no windowing).", "",
        "```kotlin",
        '// implementation("org.tensorflow:tensorflow-lite-task-text:<version>")',
        'val answerer = BertQuestionAnswerer.createFromFile(context, "model.qa.tflite")',
        "val answers = answerer.answer(contextText, question)  // best first: text, logit sum",
        "```", "",
        "Verified by edge-bert (no phone here): tensor names, order, shapes and dtypes read back with LiteRT's",
        "interpreter; the metadata read back (tokenizer process unit, vocabulary, tensor names); start and end",
        "logits identical to this recipe's `seq_384` signature. Not verified: the Task Library itself on a",
        "device (its own tokenizer splits the context on spaces and lower-cases ASCII only, so its answers can",
        "differ from `edge-bert run-text` on punctuation and accents), and latency on a phone.", "",
    ])  # fmt: skip
