"""The study scripts of research/studies/ run end to end on a tiny synthetic MNIST (50 images held out instead of
10,000): a row per seed, with every readout or branch they promise."""
import dataclasses
import json

import pytest

from research.studies import branches, ema_last_phase, readouts, study


@pytest.fixture(autouse=True)
def few_held_out(monkeypatch):
    monkeypatch.setattr(study, "STUDIED", dataclasses.replace(study.STUDIED, validation=50))


def rows(script, tiny_data, tmp_path, *extra):
    out = tmp_path / "out.json"
    script.main(["1", str(out), "--data-dir", str(tiny_data), *extra])
    return json.loads(out.read_text())


def test_readouts(tiny_data, tmp_path, capsys):
    [row] = rows(readouts, tiny_data, tmp_path)
    assert set(row["readouts"]) == {"default", "last", "swa_from_9", "swa_from_6", "ema_0.999", "ema_0.9997",
                                    "ema_0.9999"}
    assert all(len(accs) == len(readouts.SCORED) for accs in row["readouts"].values())
    assert json.loads(capsys.readouterr().out) == row  # the row, and nothing of train.py's log


def test_ema_last_phase(tiny_data, tmp_path):
    [row] = rows(ema_last_phase, tiny_data, tmp_path, "--precision", "fp32")
    assert row["precision"] == "fp32" and set(row["readouts"]) == {"default", *ema_last_phase.EMAS}
    assert all(len(accs) == len(readouts.SCORED) for accs in row["readouts"].values())


def test_branches_finish_one_trunk_alike_when_their_recipes_are_alike(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(branches.BRANCHES, "same_again", branches.BRANCHES["default"])
    [row] = rows(branches, tiny_data, tmp_path, "--branches", "default,no_aug,same_again")
    assert set(row["branches"]) == {"default", "no_aug", "same_again"}
    assert all(len(accs) == 3 for accs in row["branches"].values())  # epochs 12-14
    assert row["branches"]["same_again"] == row["branches"]["default"]  # the same trunk, the same random stream


def test_shifts_scores_each_batch_network_plainly_as_its_run_did_and_with_every_variant(tiny_data, tmp_path, capsys):
    """The plain readout of each model.pt is its run's own last validation figure (the study asserts it), and the
    record follows the schema with a readout per variant and the plan's conclusion."""
    import train
    from research import records
    from research.studies import shifts

    batch = tmp_path / "batch"
    assert train.main(["--data-dir", str(tiny_data), "--out-dir", str(batch), "--device", "cpu", "--epochs", "2",
                       "--batch-size", "32", "--validation", "40", "--seeds", "1,2"]) == 0
    out = tmp_path / "shifts.json"
    shifts.main([str(batch), str(out), "--data-dir", str(tiny_data)])
    record = records.validate(json.loads(out.read_text()))
    assert [r["seed"] for r in record["runs"]] == [1, 2] and record["evaluated_on"] == "validation"
    assert all(set(r["readouts"]) == set(shifts.VARIANTS) for r in record["runs"])
    assert record["conclusion"].startswith("shift4 - plain = ")


def test_the_shift_studys_rule_needs_a_gain_over_twice_its_standard_error():
    from research.studies import shifts

    def runs(gains):  # plain 99.50; each variant's gain over it, seed by seed
        return [{"test_acc": [99.5], "readouts": {name: [99.5 + g] for name in shifts.VARIANTS}} for g in gains]
    assert shifts.conclusion(runs([0.02, 0.01, 0.03, 0.02])).endswith("shift4 it is")  # no variant beats shift4
    assert "do not help" in shifts.conclusion(runs([0.02, -0.01, 0.0, -0.01]))
    assert shifts.confirmation(runs([0.02, 0.01, 0.03, 0.02])).endswith("twice its standard error: confirmed")
    assert shifts.confirmation(runs([0.04, -0.03, 0.0, 0.01])).endswith("not confirmed")
