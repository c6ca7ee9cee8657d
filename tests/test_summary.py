"""dcign-summary's bad inputs: one line naming the file or the command, non-zero exit.
(The summaries of real runs are in test_review.py.)"""

from click.testing import CliRunner

from pipeline.review.summary import main


def test_missing_metrics_file_names_it_and_the_fix(tmp_path):
    r = CliRunner().invoke(main, ["metrics", str(tmp_path / "eval" / "metrics.json")])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert f"{tmp_path / 'eval' / 'metrics.json'}: cannot read" in r.output and "run dvc repro first" in r.output


def test_metrics_file_that_is_not_an_evaluation_is_refused(tmp_path):
    bad = tmp_path / "metrics.json"
    for text, why in (("{", "not JSON"), ('{"mig": 0.1}', "no 'dcign' section")):
        bad.write_text(text)
        r = CliRunner().invoke(main, ["metrics", str(bad)])
        assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
        assert f"{bad}: {why}" in r.output


def test_exp_outside_a_dvc_repository_says_dvc_failed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["exp"])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert r.output.startswith("Error: dvc exp show failed: ")


def test_exp_limit_must_be_positive():
    r = CliRunner().invoke(main, ["exp", "--limit", "0"])
    assert r.exit_code != 0 and "--limit" in r.output
