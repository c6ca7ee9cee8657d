"""README and docs/: every generated table is what its writer gives from the committed records, one marker
style everywhere, local links resolve, and README stays a short guide."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.inverse import table as fit_table
from pipeline.study import experiments as E

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKER = re.compile(r"<!--.*?-->", re.S)
ONE_STYLE = re.compile(r"<!-- [\w.-]+:(start|end) -->")


def section(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, name
    return text.split(start, 1)[1].split(end, 1)[0]


def test_readme_is_a_short_guide():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "## Deviations from the paper" in text  # the project's rules keep it in README


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_one_marker_style_and_local_links_resolve(path):
    text = path.read_text()
    for marker in MARKER.findall(text):
        assert ONE_STYLE.fullmatch(marker), f"{path.name}: {marker}"
    for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", text):
        if "://" not in target:
            assert (path.parent / target).exists(), f"{path.name}: link to {target}"
            if anchor:
                assert anchor in anchors(path.parent / target), f"{path.name}: link to {target}#{anchor}"


def test_results_tables_and_the_headline_are_the_records():
    """docs/results.md's results and targets and README's headline, as `dcign-experiments readme` writes them."""
    doc = (ROOT / "docs" / "results.md").read_text()
    names = re.search(r"\*\d+ runs \(([^;]+);", section(doc, "results")).group(1).split(", ")
    runs = E.load_runs(ROOT / E.RUNS)
    assert section(doc, "results") == E.results_table(runs, names)
    assert section(doc, "targets") == E.targets_table(runs, names)
    assert section(README.read_text(), "headline") == E.headline_table(runs, names, E.RESULTS_DOC)


def test_full_profile_table_is_the_record():
    """README's full-profile table, as `dcign-experiments profile` writes it from the runs its note names."""
    text = section(README.read_text(), "full-profile")
    full, default = (m.split(", ") for m in re.findall(r"\d+ runs? \(([^;]+);", text))
    assert full[0].startswith("full-") and default[0].startswith("c09-")
    assert text == E.profile_table(E.load_runs(ROOT / E.RUNS), full, default)


def test_study_tables_are_the_record():
    """docs/experiments.md's runs and seeds tables, as `dcign-experiments report` writes them."""
    doc = (ROOT / E.DOC).read_text()
    runs = E.load_runs(ROOT / E.RUNS)
    assert section(doc, "runs") == E.table(runs)
    assert section(doc, "seeds") == E.summary(runs)


def test_fit_table_is_eval_fit_json():
    doc = ROOT / "docs" / "results.md"
    assert fit_table.table(json.loads((ROOT / "eval" / "fit.json").read_text())) == section(doc.read_text(), "fit")
    args = ["--metrics", str(ROOT / "eval" / "fit.json"), "--doc", str(doc), "--check"]
    r = CliRunner().invoke(fit_table.main, args)
    assert r.exit_code == 0, r.output


def test_readme_command_writes_the_doc_and_the_headline(tmp_path):
    """`dcign-experiments readme` fills both documents between their markers and links the full one."""
    doc, readme = tmp_path / "docs" / "results.md", tmp_path / "README.md"
    doc.parent.mkdir()
    doc.write_text("a\n<!-- results:start -->\n<!-- results:end -->\n<!-- targets:start -->\n<!-- targets:end -->\n")
    readme.write_text("r\n<!-- headline:start -->\nold\n<!-- headline:end -->\ns\n")
    names = ["c09-fused-s0", "c09-fused-s1"]
    args = ["readme", *names, "--runs", str(ROOT / E.RUNS), "--doc", str(doc), "--readme", str(readme)]
    r = CliRunner().invoke(E.main, args)
    assert r.exit_code == 0, r.output
    short = readme.read_text()
    assert "old" not in short and "[docs/results.md](docs/results.md)" in short and short.endswith("s\n")
    assert len(section(short, "headline").splitlines()) == len(E.HEADLINE_ROWS) + 4  # head, rule, blank, note
    assert "discretised MIG" in doc.read_text() and "recorded 2026-12-05" in doc.read_text()
    # a document without the markers: one line naming them, nothing written
    readme.write_text("no markers\n")
    r = CliRunner().invoke(E.main, args)
    assert r.exit_code != 0 and "headline:start" in r.output and readme.read_text() == "no markers\n"


def test_plot_rows_group_seeds_in_the_order_first_run():
    runs = E.load_runs(ROOT / E.RUNS)
    rows = E.plot_rows(runs)
    assert sorted(n for r in rows for n in r) == sorted(runs)
    assert ["c09-fused-s0", "c09-fused-s1", "c09-fused-s2", "c09-fused-s3"] in rows
    first = [min(runs[n]["timestamp"] for n in r) for r in rows]
    assert first == sorted(first)
