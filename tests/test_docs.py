"""The docs a newcomer reads: a README short enough to read, links that resolve, and figures rendered from
the result files in the repo (scripts/render_docs.py), never typed by hand or left stale."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _render_docs():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "scripts" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _relative_links(text: str) -> list[str]:
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_is_at_most_400_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_in_the_readme_resolves():
    links = _relative_links(README.read_text(encoding="utf-8"))
    assert len(links) >= 10, "the README should link into docs/"
    missing = [t for t in links if not (ROOT / t.split("#")[0]).exists()]
    assert missing == []


def _anchors(page: Path) -> set[str]:
    """The heading ids MkDocs' toc extension gives a page (its default slugify)."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}


def test_every_anchor_the_readme_links_to_exists():
    links = [t for t in _relative_links(README.read_text(encoding="utf-8")) if "#" in t]
    assert links, "the README links to sections of docs/ pages"
    broken = [t for t in links if t.split("#")[1] not in _anchors(ROOT / t.split("#")[0])]
    assert broken == []


def test_anchor_slugs_match_mkdocs():
    page = ROOT / "docs" / "gates.md"
    assert "which-gates-decide-the-tasks" in _anchors(page)  # "## Which gates decide: the task's"


def test_link_check_catches_a_broken_link():
    # the check above would pass vacuously if the pattern found nothing: it must see both kinds of link
    text = "see [a](docs/nope.md), ![img](docs/images/x.png), [web](https://example.org) and [here](#top)"
    assert _relative_links(text) == ["docs/nope.md", "docs/images/x.png"]


def test_generated_docs_equal_what_the_script_renders():
    rendered = _render_docs().render_all()
    assert set(rendered) == {"quickstart-run.md", "bench-roofline.md", "layout.md", "mediapipe-agreement.md"}
    for name, text in rendered.items():
        committed = (ROOT / "docs" / "generated" / name).read_text(encoding="utf-8")
        assert committed == text, f"docs/generated/{name} is stale: run python scripts/render_docs.py"


def test_rendered_run_table_holds_the_result_files_numbers():
    # an independent read of the result file: the table's numbers are the file's, rounded
    import json

    doc = json.loads((ROOT / "docs" / "results" / "quickstart-run.json").read_text(encoding="utf-8"))
    table = _render_docs().render_run(doc)
    for entry in doc["bundles"]:
        bench = entry["bench"]
        p128 = next(r["p50_ms"] for r in bench["latency"] if r["seq_length"] == 128)
        row = next(line for line in table.splitlines() if line.startswith(f"| {bench['format']} | {bench['recipe']} |"))
        assert f"| {p128:.2f} |" in row
        assert f"| {entry['validate']['parity']['mean_cosine']:.5f} |" in row


def test_rendered_mediapipe_table_holds_the_result_files_numbers():
    import json

    doc = json.loads((ROOT / "docs" / "results" / "mediapipe-agreement.json").read_text(encoding="utf-8"))
    lines = _render_docs().render_mediapipe(doc).splitlines()
    for entry in doc["rows"]:
        prefix = f"| {entry['model']} | {entry['recipe']} | {entry['task']} | {entry['data']} |"
        (row,) = [line for line in lines if line.startswith(prefix)]
        figure = f"{100 * entry['top1_clear']:.1f} %" if "top1_clear" in entry else f"{entry['worst_cosine']:.5f}"
        assert figure in row and f"| {entry['texts']} ({entry['accented']}) |" in row


def test_render_docs_refuses_a_result_without_a_field(tmp_path, capsys, monkeypatch):
    module = _render_docs()
    (tmp_path / "quickstart-run.json").write_text('{"bundles": [{"validate": {}}]}')
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    assert module.main(["--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quickstart-run.json" in err[0] and "bench" in err[0]


@pytest.mark.parametrize("name", ["quickstart-run.md", "bench-roofline.md", "layout.md", "mediapipe-agreement.md"])
def test_every_generated_file_is_included_by_a_page(name):
    pages = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))
    assert f'--8<-- "generated/{name}"' in pages
