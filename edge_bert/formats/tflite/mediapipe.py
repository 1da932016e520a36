"""``model.mediapipe.tflite``: the bundle's LiteRT model as MediaPipe Tasks (``TextClassifier``, ``TextEmbedder``)
loads it - no tokenizer code in the app, because the tokenizer, labels and output meaning are in the model.

Derived from the recipe's own ``model.tflite`` (same weights, same quantization, same kernels), not
re-exported: its longest signature becomes the only subgraph (MediaPipe's BERT preprocessor pads every
text to one fixed length), the inputs are ordered ids, mask, segment ids (a constant-free segment input
is added for families without one), the classifier gets a softmax (MediaPipe reports scores as
probabilities), and the TFLite Model Metadata - BERT tokenizer with ``vocab.txt`` inside, labels - is
written with MediaPipe's published writers and schema classes. It is gated like a recipe: MediaPipe's
own Python ``TextClassifier``/``TextEmbedder`` (the C++ graph Android runs) on the golden texts against
fp32, under the recipe's gates; a model that fails is not shipped. Host side only (convert and tests).
"""

from __future__ import annotations

import json
import sys
import types
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.formats.tflite.flatbuffer import packed, unpacked
from edge_bert.tasks import TASKS, passed

MEDIAPIPE_FILE = "model.mediapipe.tflite"
#: the order and the roles MediaPipe's BERT preprocessor reads (metadata names ids, mask, segment_ids)
BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TASK_CLASS = {"text-classification": "TextClassifier", "feature-extraction": "TextEmbedder"}


def write_mediapipe_model(fmt: Any, staging: Path, gates: Any, title: str) -> dict[str, Any]:
    """Write and gate ``staging/model.mediapipe.tflite`` from the staged model of LiteRT format ``fmt``;
    returns the manifest's ``conversion_check.mediapipe`` (figures, or why there is no such file)."""
    job = fmt.job
    length = max(fmt.seq_lengths() or [job.max_length])
    record: dict[str, Any] = {"file": None, "task": TASK_CLASS.get(job.loaded.task), "seq_length": length}
    if record["task"] is None:
        return {**record, "reason": f"MediaPipe Tasks has no text task for {job.loaded.task} models"}
    if reason := unsupported_tokenizer(job.loaded.tokenizer):
        return {**record, "reason": reason}
    record["strip_accents"] = strips = _strips(job)
    try:
        writer = _metadata_writer()
    except ImportError:
        return {**record, "reason": "mediapipe is not installed (pip install 'edge-bert[mediapipe]')"}
    primary = job.task.primary_output
    classifier = record["task"] == "TextClassifier"
    raw = single_signature((staging / fmt.model_file).read_bytes(), length, primary, classifier)
    labels = job.loaded.labels if classifier else None
    description = _output_description(job)
    target = staging / MEDIAPIPE_FILE
    target.write_bytes(with_metadata(writer, raw, staging / "vocab.txt", labels, title, description))
    figures = gate_mediapipe(target, job.golden.texts, job.golden.output, job.loaded.task, gates, strips)
    if not figures["passed"]:
        target.unlink()
        return {**record, **figures, "reason": "MediaPipe's output failed the recipe's gates against fp32"}
    return {**record, **figures, "file": MEDIAPIPE_FILE}


def unsupported_tokenizer(tokenizer: Any) -> str | None:
    """Why MediaPipe's BERT tokenizer cannot reproduce ``tokenizer``, or None: it is WordPiece and always
    lower-cases (measured: "GREAT Movie" and "great movie" give the same scores)."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        return "no tokenizer.json (a fast tokenizer) to check against MediaPipe's BERT tokenizer"
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        return f"MediaPipe's BERT preprocessor is WordPiece; this tokenizer is {spec['model']['type']}"
    if not getattr(tokenizer, "do_lower_case", False):
        return "MediaPipe's BERT tokenizer lower-cases every text; this model's tokenizer is cased"
    missing = [t for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]") if t not in tokenizer.get_vocab()]
    return f"the vocabulary lacks {missing}, which MediaPipe's BERT tokenizer uses" if missing else None


def _strips(job: Any) -> bool:
    normalizer = json.loads(job.loaded.tokenizer.backend_tokenizer.to_str()).get("normalizer") or {}
    return normalizer.get("strip_accents") in (None, True)


def accented(text: str) -> bool:
    """A text with accents: the reference tokenizer strips them ("café" -> "cafe"), MediaPipe's keeps them
    (measured: "école" and "ecole" score differently), so the app strips them first (``strip_accents``)."""
    return any(unicodedata.category(c) == "Mn" for c in unicodedata.normalize("NFD", text))


def strip_accents(text: str) -> str:
    """What BERT's uncased normalizer does to accents (NFD, drop combining marks), and the one line of
    Kotlin ANDROID.md gives the app; with it MediaPipe's tokens equal the runner's (measured: cosine 1.0
    on 67 accented texts, against 0.42-0.98 without it)."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _output_description(job: Any) -> str:
    if TASK_CLASS[job.loaded.task] == "TextClassifier":
        return "Class probabilities (softmax of the logits), in the order of labels.txt."
    norm = "L2-normalised in the model" if job.loaded.normalize else "not normalised"
    return f"Sentence embedding ({job.loaded.pooling} pooling), {norm}."


def single_signature(model: bytes, length: int, output: str, softmax: bool) -> bytearray:
    """A one-subgraph copy of signature ``seq_{length}`` of a multi-signature LiteRT model: inputs in
    BERT_INPUTS order, ``output`` its only output (through a softmax when asked), unused buffers dropped."""
    from mediapipe.tasks.metadata import schema_py_generated

    fb, tree = unpacked(model, schema_py_generated)
    (signature,) = [s for s in tree.signatureDefs if s.signatureKey.decode() == f"seq_{length}"]
    graph = tree.subgraphs[signature.subgraphIndex]
    inputs = {t.name.decode(): t.tensorIndex for t in signature.inputs}
    if "token_type_ids" not in inputs:  # MediaPipe fills three inputs; this family reads two
        graph.tensors.append(_tensor(fb, "token_type_ids", [1, length], fb.TensorType.INT32))
        inputs["token_type_ids"] = len(graph.tensors) - 1
    graph.inputs = [inputs[name] for name in BERT_INPUTS]
    for name in BERT_INPUTS:
        graph.tensors[inputs[name]].name = name.encode()
    (result,) = [t.tensorIndex for t in signature.outputs if t.name.decode() == output]
    if softmax:
        result = _append_softmax(fb, tree, graph, result)
    graph.outputs = [result]
    tree.subgraphs, tree.signatureDefs = [graph], []
    _drop_unused_buffers(tree, graph)
    return packed(tree)


def _tensor(fb: Any, name: str, shape: list[int], dtype: int) -> Any:
    tensor = fb.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), shape, dtype, 0
    return tensor


def _append_softmax(fb: Any, tree: Any, graph: Any, logits: int) -> int:
    """A builtin SOFTMAX (beta 1) after ``logits``; returns the probabilities tensor."""
    softmax = fb.BuiltinOperator.SOFTMAX
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in tree.operatorCodes]
    code = codes.index(softmax) if softmax in codes else None
    if code is None:
        entry = fb.OperatorCodeT()
        entry.builtinCode = entry.deprecatedBuiltinCode = fb.BuiltinOperator.SOFTMAX
        entry.version = 1
        tree.operatorCodes.append(entry)
        code = len(tree.operatorCodes) - 1
    graph.tensors.append(_tensor(fb, "probabilities", list(graph.tensors[logits].shape), fb.TensorType.FLOAT32))
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, [logits], [len(graph.tensors) - 1]
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.SoftmaxOptions, fb.SoftmaxOptionsT()
    op.builtinOptions.beta = 1.0
    graph.operators.append(op)
    return len(graph.tensors) - 1


def _drop_unused_buffers(tree: Any, graph: Any) -> None:
    """Keep buffer 0 (the empty sentinel), the kept subgraph's and the model metadata's; renumber."""
    used = sorted({0} | {t.buffer for t in graph.tensors} | {m.buffer for m in tree.metadata or []})
    renumber = {old: new for new, old in enumerate(used)}
    tree.buffers = [tree.buffers[i] for i in used]
    for tensor in graph.tensors:
        tensor.buffer = renumber[tensor.buffer]
    for entry in tree.metadata or []:
        entry.buffer = renumber[entry.buffer]


def with_metadata(
    writer: Any, raw: bytearray, vocab: Path, labels: list[str] | None, name: str, description: str
) -> bytes:
    """``raw`` with TFLite Model Metadata written by MediaPipe's metadata writer: BERT tokenizer (vocab
    packed in the file), the three input roles, then labelled class scores or a feature vector."""
    mw = writer.metadata_writer
    out = mw.MetadataWriter(raw).add_general_info(name, "Converted and gated by edge-bert.")
    out.add_bert_text_input(mw.BertTokenizer(str(vocab)), *BERT_INPUTS)
    if labels is not None:
        out.add_classification_output(mw.Labels().add(list(labels)), description=description)
    else:
        out.add_feature_output("embedding", description)
    model, _ = out.populate()
    return bytes(model)


def _metadata_writer() -> types.SimpleNamespace:
    """MediaPipe's metadata writer module. The 1.2 wheel ships the writer but not the compiled helper it
    imports for one value, the minimum parser version; ``min_parser_version`` supplies it."""
    name = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
    try:
        __import__(name)
    except ImportError:
        helper = types.ModuleType(name)
        helper.GetMinimumMetadataParserVersion = min_parser_version  # type: ignore[attr-defined]
        for parent in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"):
            sys.modules.setdefault(parent, types.ModuleType(parent))
        sys.modules[name] = helper
        sys.modules["mediapipe.tasks.cc.metadata.python"]._pywrap_metadata_version = helper  # type: ignore
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    return types.SimpleNamespace(metadata_writer=metadata_writer)


def min_parser_version(buffer: bytes) -> str:
    """The oldest metadata parser that reads every field set in ``buffer``: the rules of MediaPipe's
    metadata_version.cc (a field added in version v raises the minimum to v), over the schema classes."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md

    tree = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(bytearray(buffer), 0))
    found = [(1, 0, 0)]
    units = {
        md.ProcessUnitOptions.BertTokenizerOptions: (1, 1, 0),
        md.ProcessUnitOptions.SentencePieceTokenizerOptions: (1, 1, 0),
        md.ProcessUnitOptions.RegexTokenizerOptions: (1, 2, 1),
    }

    def files(entries: list | None) -> None:
        for entry in entries or []:
            found.extend([(1, 0, 1)] * (entry.type == md.AssociatedFileType.VOCABULARY))
            found.extend([(1, 4, 0)] * (entry.type == md.AssociatedFileType.SCANN_INDEX_FILE))
            found.extend([(1, 4, 1)] * (entry.version is not None))

    def process_units(entries: list | None) -> None:
        found.extend(units.get(entry.optionsType, (1, 0, 0)) for entry in entries or [])

    for graph in tree.subgraphMetadata or []:
        for tensor in (graph.inputTensorMetadata or []) + (graph.outputTensorMetadata or []):
            files(tensor.associatedFiles)
            process_units(tensor.processUnits)
            audio = tensor.content is not None and tensor.content.contentPropertiesType == 2  # AudioProperties
            found.extend([(1, 3, 0)] * audio)
        files(graph.associatedFiles)
        for units_list in (graph.inputProcessUnits, graph.outputProcessUnits):
            found.extend([(1, 1, 0)] * (units_list is not None))
            process_units(units_list)
        found.extend([(1, 2, 0)] * (graph.inputTensorGroups is not None or graph.outputTensorGroups is not None))
        found.extend([(1, 5, 0)] * (graph.customMetadata is not None))
    files(tree.associatedFiles)
    return ".".join(map(str, max(found)))


def mediapipe_outputs(model: Path, texts: list[str], task: str) -> np.ndarray:
    """What MediaPipe Tasks returns per text: a classifier's probabilities by class index, or the embedding."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.text import text_classifier, text_embedder

    base = BaseOptions(model_asset_path=str(model))
    if TASK_CLASS[task] == "TextClassifier":
        options = text_classifier.TextClassifierOptions(base_options=base, max_results=-1)
        with text_classifier.TextClassifier.create_from_options(options) as classifier:
            rows = [classifier.classify(text).classifications[0].categories for text in texts]
        out = np.zeros((len(texts), len(rows[0])), np.float32)
        for i, categories in enumerate(rows):
            for category in categories:
                out[i, category.index] = category.score
        return out
    with text_embedder.TextEmbedder.create_from_options(text_embedder.TextEmbedderOptions(base_options=base)) as em:
        return np.stack([np.asarray(em.embed(text).embeddings[0].embedding, np.float32) for text in texts])


def gate_mediapipe(
    model: Path, texts: list[str], reference: np.ndarray, task: str, gates: Any, strips_accents: bool
) -> dict[str, Any]:
    """MediaPipe's own outputs on ``texts`` against fp32 (``reference``) under ``gates``; accents stripped
    first, as the app is told to, when the reference tokenizer strips them."""
    inputs = [strip_accents(t) if strips_accents else t for t in texts]
    outputs = mediapipe_outputs(model, inputs, task)
    if TASK_CLASS[task] == "TextClassifier":  # probabilities -> log-probabilities: parity softmaxes them back
        outputs = np.log(np.maximum(outputs, 1e-30))
    spec = TASKS[task]
    metrics = spec.parity(outputs, np.asarray(reference), gates)
    verdicts = spec.gate(metrics, None, gates)
    stripped = sum(a != b for a, b in zip(inputs, texts, strict=True))
    return {"passed": passed(verdicts), "texts": len(texts), "accents_stripped": stripped, "parity": metrics,
            "gates": verdicts}  # fmt: skip


#: the app's copy of ``strip_accents`` (java.text.Normalizer)
KOTLIN_STRIP = (
    'fun clean(text: String) = Normalizer.normalize(text, Normalizer.Form.NFD).replace(Regex("\\\\p{Mn}+"), "")'
)
KOTLIN = {
    "TextClassifier": [
        'val classifier = TextClassifier.createFromFile(context, "model.mediapipe.tflite")',
        'val top = classifier.classify(clean("the film was a delight")).classificationResult()',
        "    .classifications()[0].categories()[0]   // highest score first",
        'Log.i("edge-bert", "${top.categoryName()} ${top.score()}")',
    ],
    "TextEmbedder": [
        'val embedder = TextEmbedder.createFromFile(context, "model.mediapipe.tflite")',
        'val a = embedder.embed(clean("where is my parcel")).embeddingResult().embeddings()[0]',
        'val b = embedder.embed(clean("track my order")).embeddingResult().embeddings()[0]',
        "val similarity = TextEmbedder.cosineSimilarity(a, b)",
    ],
}


def android_section(record: dict[str, Any]) -> str:
    """The ANDROID.md section for the MediaPipe-ready model (or why there is none)."""
    if record.get("file") is None:
        return f"\nNo `{MEDIAPIPE_FILE}` in this bundle: {record.get('reason', 'not produced')}.\n"
    task, length = record["task"], record["seq_length"]
    strip = record.get("strip_accents", False)
    imports = [f"import com.google.mediapipe.tasks.text.{task.lower()}.{task}"] + [
        "import java.text.Normalizer"
    ] * strip
    note = "// this model's tokenizer strips accents (café -> cafe), MediaPipe's does not: strip them first"
    clean = [note, KOTLIN_STRIP] if strip else ["fun clean(text: String) = text"]
    what = "labels in its metadata; scores are softmax probabilities" if task == "TextClassifier" else "metadata"
    return "\n".join(
        [
            "",
            f"## MediaPipe Tasks: `{MEDIAPIPE_FILE}` (no tokenizer code in the app)",
            "",
            f"This model with its tokenizer (`vocab.txt` inside) and {what}, at one fixed length of {length}",
            f"tokens. Copy it to `app/src/main/assets/` and use MediaPipe's `{task}`:",
            "",
            "```kotlin",
            '// implementation("com.google.mediapipe:tasks-text:latest.release")  // pin the version you test',
            *imports,
            "",
            *clean,
            *KOTLIN[task],
            "```",
            "",
            "Convert ran MediaPipe's own TextClassifier/TextEmbedder (Python; the same C++ graph as on Android)",
            "on the golden texts against fp32 under this recipe's gates (manifest: `conversion_check.mediapipe`).",
            "Use `model.tflite` and the Interpreter above instead when short texts must be fast (here every text",
            f"costs {length} tokens), for GPU/NPU delegates, or to control tokenization yourself.",
            "",
        ]
    )
