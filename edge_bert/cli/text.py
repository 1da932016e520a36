"""``edge-bert run-text``: what a bundle answers for a text, as an app would get it - the class, the entities
(token classification) or the answer span (question answering: ``--question`` and ``--context``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from edge_bert.cli.common import JsonOpt, ThreadsOpt, fail, preflight
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import console, write_json


def register(app: typer.Typer) -> None:
    app.command("run-text")(run_text)


def run_text(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory.")],
    text: Annotated[Optional[str], typer.Argument(help="The text (classification, embedding, NER).")] = None,
    question: Annotated[Optional[str], typer.Option(help="Question answering: the question.")] = None,
    context: Annotated[Optional[str], typer.Option(help="Question answering: the context to answer from.")] = None,
    stride: Annotated[Optional[int], typer.Option(help="QA: tokens shared by neighbouring windows.")] = None,
    max_answer: Annotated[int, typer.Option(help="QA: the longest answer, in tokens.")] = 15,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = None,
) -> None:
    """Run one text (or one question with its context) through BUNDLE and print the answer: the top class,
    the entities with their character offsets, the answer span, or the embedding's size. Exit 2 on bad input."""
    from edge_bert.bundle import open_bundle
    from edge_bert.session import BundleSession

    preflight(json_out)
    try:
        session = BundleSession(open_bundle(bundle), threads=threads)
        result = _answer(session, text, question, context, stride, max_answer)
    except EdgeBertError as exc:
        raise fail(exc) from exc
    if json_out != "-":
        _show(result)
    write_json(result, json_out)


def _answer(
    session: Any, text: str | None, question: str | None, context: str | None, stride: int | None, max_answer: int
) -> dict[str, Any]:
    """The result document of one run (the task decides which form of input it takes)."""
    task = session.bundle.task
    if task == "question-answering":
        if question is None or context is None or text is not None:
            raise InputError("a question-answering bundle takes --question and --context (and no TEXT)")
        if max_answer < 1 or (stride is not None and stride < 0):
            raise InputError("--max-answer must be at least 1 and --stride at least 0")
        span = session.answer_question(question, context, stride, max_answer)
        return {"task": task, "question": question, "answer": span.as_dict()}
    if text is None or question is not None or context is not None:
        raise InputError(f"a {task} bundle takes one TEXT (--question/--context are for question answering)")
    if task == "token-classification":
        return {"task": task, "text": text, "entities": [e.as_dict() for e in session.entities(text)]}
    answer = session.answer(text)
    if answer.label is not None or answer.index is not None:
        scores = [round(float(p), 6) for p in answer.vector]
        return {"task": task, "text": text, "label": answer.label, "index": answer.index, "probabilities": scores}
    return {"task": task, "text": text, "embedding": [float(v) for v in answer.vector.ravel()]}


def _show(result: dict[str, Any]) -> None:
    if "answer" in result:
        span = result["answer"]
        console.print(f"answer: {terminal(span['text'])!r}  chars {span['start']}-{span['end']}  score "
                      f"{span['score']:.4f}  (window {span['window'] + 1} of {span['windows']})")  # fmt: skip
    elif "entities" in result:
        table = Table("entity", "type", "chars", "score")
        for entity in result["entities"]:
            table.add_row(terminal(entity["text"]), terminal(entity["type"]),
                          f"{entity['start']}-{entity['end']}", f"{entity['score']:.4f}")  # fmt: skip
        console.print(table if result["entities"] else "no entities")
    elif "label" in result:
        top = max(result["probabilities"])
        console.print(f"{terminal(str(result['label']))} (class {result['index']}, p={top:.4f})")
    else:
        console.print(f"embedding of {len(result['embedding'])} values")
