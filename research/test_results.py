"""The evidence: every file in results/ follows the schema (research/records.py), the results page is not
stale, and the summaries it quotes compute what they say."""
import copy
import dataclasses
import json
import math

import pytest

import train
from research import report
from research.records import Invalid, at_target, load, load_all, mean, miss_rate, std, summary, validate


def run(seed, final, epochs=15):
    return {"seed": seed, "copy": None, "test_acc": [98.0] * (epochs - 1) + [final], "test_loss": None, "seconds": None}


def runs_record(finals=(99.50, 99.40, 99.30)):
    return {"schema": "runs/1", "title": "t", "recipe_name": "default",
            "recipe": dataclasses.asdict(train.Recipe(precision="fp32")), "evaluated_on": "test", "date": "2026-01-02",
            "commit": None, "device": "cpu", "device_name": None, "torch_capability": None, "precision": "fp32",
            "precision_why": None, "torch": None, "threads": None, "seeds_drawn": "fixed: 1-3", "command": None,
            "note": "", "runs": [run(i + 1, f) for i, f in enumerate(finals)]}


def test_every_file_in_results_is_a_record_or_a_listed_report():
    found = load_all(report.ROOT / "results")
    assert len(found) >= 30
    kinds = {r["schema"] for r in found.values()}
    assert kinds == {"runs/1", "benchmark/1", "study/1"}
    assert not list((report.ROOT / "results").rglob("*.db")), "study databases are not kept in results/"
    assert not list((report.ROOT / "results").rglob("*.py")), "code lives in research/, not results/"


def test_results_page_and_picture_are_not_stale():
    assert report.stale() is None


def test_an_unlisted_file_in_results_is_refused(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(runs_record()))
    load_all(tmp_path)
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(Invalid, match=r"notes\.md: not a JSON record"):
        load_all(tmp_path)
    listed = dict(runs_record(), files=["notes.md"])
    (tmp_path / "a.json").write_text(json.dumps(listed))
    load_all(tmp_path)
    (tmp_path / "a.json").write_text(json.dumps(dict(listed, files=["notes.md", "gone.txt"])))
    with pytest.raises(Invalid, match="names gone.txt"):
        load_all(tmp_path)


@pytest.mark.parametrize("field", ["recipe_name", "seeds_drawn", "precision", "runs", "device", "schema"])
def test_a_record_missing_a_required_field_is_refused_with_one_line_naming_it(tmp_path, field):
    bad = runs_record()
    del bad[field]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(Invalid) as e:
        load(path)
    assert str(e.value) == f"{path}: missing required field '{field}'"


def test_other_defects_are_refused_naming_the_field():
    cases = [
        (lambda r: r["recipe"].pop("ema"), "lacks the knob 'ema'"),
        (lambda r: r["runs"][1]["test_acc"].pop(), r"runs\[1\]: field 'test_acc' has 14 epochs"),
        (lambda r: r["runs"][0].pop("copy"), r"runs\[0\]: missing required field 'copy'"),
        (lambda r: r.update(threads=True), "field 'threads' has the wrong type"),
        (lambda r: r.update(extra=1), "unknown field 'extra'"),
        (lambda r: r.update(date="1 Dec"), "field 'date'"),
        (lambda r: r.update(evaluated_on="validation"), "disagrees with recipe.validation"),
        (lambda r: r["recipe"].update(precision="bf16"), "says precision 'bf16'"),
    ]
    for spoil, message in cases:
        bad = runs_record()
        spoil(bad)
        with pytest.raises(Invalid, match=message):
            validate(bad, "x.json")
    validate(runs_record(), "x.json")


def test_test_acc_epochs_lets_a_record_keep_only_some_epochs():
    r = runs_record()
    for x in r["runs"]:
        x["test_acc"] = x["test_acc"][-1:]
    with pytest.raises(Invalid, match="has 1 epochs, expected 15"):
        validate(copy.deepcopy(r))
    validate(dict(r, test_acc_epochs=[14]))


def test_summaries_on_hand_made_numbers():
    xs = [99.50, 99.40, 99.30, 99.60]
    assert mean(xs) == pytest.approx(99.45)
    assert std(xs) == pytest.approx(math.sqrt(((0.05 ** 2) * 2 + (0.15 ** 2) * 2) / 3))
    assert std([99.5]) == 0.0
    assert at_target(xs) == 3
    assert at_target([99.39999999999]) == 1          # recorded to 0.01 %: this is 99.40
    s = summary(xs)
    assert (s["runs"], s["min"], s["max"], s["at_target"]) == (4, 99.30, 99.60, 3)
    # the normal tail below 99.395: mean 99.45, std 0.129 -> z = -0.426 -> 0.335
    assert miss_rate(xs) == pytest.approx(0.5 * math.erfc(0.055 / std(xs) / math.sqrt(2)))
    assert 0.30 < miss_rate(xs) < 0.36
    assert miss_rate([99.5, 99.5]) == 0.0 and miss_rate([99.3, 99.3]) == 1.0
    assert miss_rate([99.50, 99.52, 99.54]) < miss_rate([99.45, 99.52, 99.59])


def test_headline_is_computed_from_the_default_runs_only():
    good = runs_record((99.50, 99.60))
    other = dict(runs_record((90.0,)), recipe_name="batch-128")
    held_out = dict(runs_record((91.0,)), evaluated_on="validation")
    held_out["recipe"] = dict(held_out["recipe"], validation=10000)
    line = report.headline({"a.json": good, "b.json": other, "c.json": held_out})
    assert line.startswith("99.55 % mean test accuracy +- 0.07 (std) over 2 runs of the default recipe, lowest 99.50 %: "
                           "0 of 2 below 99.40 %")


def test_check_fails_on_a_stale_page_and_a_differing_readme_headline(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.json").write_text(json.dumps(runs_record()))
    assert report.stale(tmp_path).startswith("RESULTS.md is stale")
    report.write(tmp_path, tmp_path / "results")
    assert report.stale(tmp_path) is None
    (tmp_path / "README.md").write_text(f"intro\n{report.HEADLINE_MARK} 99.99 % always\n")
    assert "README.md's headline" in report.stale(tmp_path)
    line = report.headline(load_all(tmp_path / "results"))
    (tmp_path / "README.md").write_text(f"intro\n{line} {report.HEADLINE_MARK}\n")
    assert report.stale(tmp_path) is None
    (tmp_path / "README.md").write_text(f"intro\n{line}\n")  # the marker deleted: the line is no longer checked
    assert "README.md has no headline line" in report.stale(tmp_path)
    (tmp_path / "results" / "a.json").write_text(json.dumps(runs_record((99.50, 99.41))))
    assert report.stale(tmp_path).startswith("RESULTS.md is stale")
