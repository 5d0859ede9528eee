"""Re-timing stored trials from their weights: records per machine, interleaved rounds, errors."""

from types import SimpleNamespace

import optuna
import pytest

from search import SearchSettings, load_study, run_search
from search.remeasure import (
    INTERLEAVED_ROUNDS,
    LATENCY_ATTR,
    _interleaved,
    _store,
    front_numbers,
    latency_records,
    machine_key,
    remeasure_trials,
)
from search.storage import StorageError

RECORD_KEYS = {"latency_ms", "iqr_ms", "cpu", "isa", "threads", "cpus", "repeats", "rounds_ms",
               "interleaved", "measured_at"}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A real 2-trial, 1-epoch study on digits, its journal and its complete trial numbers."""
    spec = str(tmp_path_factory.mktemp("remeasure") / "study.journal")
    study = run_search(spec, "s", SearchSettings(trials=2, epochs=1))
    complete = [t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert complete
    return spec, complete


class FakePacked:
    """Stands in for a PackedModel: logs the order of profile calls."""

    def __init__(self, name, ms, log):
        self.name, self.ms, self.log = name, ms, log

    def profile(self, threads, repeats):
        self.log.append(self.name)
        return SimpleNamespace(total_ms=self.ms[len([n for n in self.log if n == self.name]) - 1])


def test_interleaved_rotates_the_order_and_takes_the_median_over_rounds():
    log: list[int] = []
    slow_spell = [1.0] * INTERLEAVED_ROUNDS
    slow_spell[3] = 50.0  # one disturbed round moves neither median
    models = {n: FakePacked(n, [v * (n + 1) for v in slow_spell], log) for n in range(3)}
    records = _interleaved(models, threads=1)
    rounds = [log[i:i + 3] for i in range(0, len(log), 3)]
    assert len(rounds) == INTERLEAVED_ROUNDS and rounds[:4] == [[0, 1, 2], [1, 2, 0],
                                                                 [2, 0, 1], [0, 1, 2]]
    assert [records[n]["latency_ms"] for n in range(3)] == [1.0, 2.0, 3.0]
    assert all(set(r) == RECORD_KEYS and r["interleaved"] for r in records.values())


def test_records_merge_per_trial_and_machine():
    study = optuna.create_study(directions=["maximize", "minimize"])
    a = {"cpu": "A", "isa": "avx2", "threads": 1, "latency_ms": 1.0}
    b = {"cpu": "B", "isa": "neon", "threads": 2, "latency_ms": 2.0}
    _store(study, {0: a, 1: a})
    _store(study, {0: b})
    _store(study, {0: {**b, "latency_ms": 3.0}})  # the same machine again: replaced
    records = latency_records(study)
    assert records == {0: {"A | avx2 | 1 threads": a,
                           "B | neon | 2 threads": {**b, "latency_ms": 3.0}},
                       1: {"A | avx2 | 1 threads": a}}
    assert machine_key(b) == "B | neon | 2 threads"


@pytest.mark.slow
@pytest.mark.parametrize("interleaved", [False, True])
def test_remeasure_all_then_the_front_stores_readable_records(searched, interleaved):
    spec, complete = searched
    study = load_study(spec, "s")
    other = {"cpu": "elsewhere", "isa": "scalar", "threads": 1, "latency_ms": 9.0}
    _store(study, {complete[0]: other})  # a record from another machine must survive
    rows = remeasure_trials(spec, "s", None, threads=1, interleaved=interleaved)
    assert [r["trial"] for r in rows] == complete
    front = front_numbers(load_study(spec, "s"))
    assert front and set(front) <= set(complete)
    assert [r["trial"] for r in remeasure_trials(spec, "s", front, 1, interleaved)] == front

    reloaded = load_study(spec, "s")  # what another process reads back
    records = latency_records(reloaded)
    assert set(records) == set(complete)
    for row in rows:
        trial = reloaded.trials[row["trial"]]
        assert row["stored_ms"] == trial.values[1] > 0
        assert row["stored_on"] == machine_key(trial.user_attrs["measured_on"])
        assert row["machine"] == row["stored_on"]  # same machine, same threads as the search
        mine = records[row["trial"]][row["machine"]]
        assert set(mine) == RECORD_KEYS and mine["interleaved"] is interleaved
        assert mine["latency_ms"] > 0 and mine["iqr_ms"] >= 0 and mine["threads"] == 1
    assert records[complete[0]]["elsewhere | scalar | 1 threads"] == other
    assert not any(LATENCY_ATTR in t.user_attrs for t in reloaded.trials)  # Optuna forbids it


@pytest.mark.slow
def test_a_trial_that_is_not_complete_is_a_one_line_error(searched):
    spec, complete = searched
    study = load_study(spec, "s")
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    before = latency_records(load_study(spec, "s"))
    for number in (failed.number, 99):
        with pytest.raises(StorageError) as err:
            remeasure_trials(spec, "s", [complete[0], number], threads=1, interleaved=False)
        message = str(err.value)
        assert "\n" not in message and f"trial {number} " in message
        assert message.endswith("completed: " + ", ".join(map(str, complete)))
    untrained = study.ask()  # as an over-budget candidate is stored: complete, no weights
    study.tell(untrained, [0.0, 1e6])
    with pytest.raises(StorageError, match=f"trials {untrained.number} .* no weights"):
        remeasure_trials(spec, "s", [untrained.number], threads=1, interleaved=False)
    assert latency_records(load_study(spec, "s")) == before  # nothing measured or stored
    rows = remeasure_trials(spec, "s", None, threads=1, interleaved=False)
    assert [r["trial"] for r in rows] == complete  # all complete trials that have weights
    with pytest.raises(ValueError, match="threads"):
        remeasure_trials(spec, "s", None, threads=0, interleaved=False)


@pytest.mark.slow  # an `app.py remeasure` process, importing torch
def test_the_explorer_remeasures_one_trial_through_the_cli(searched):
    """The explorer's button runs `app.py remeasure --trial N` in a child process: only that
    trial is timed, and the detail panel reads the new record back from the study."""
    from explorer.data import load_trial_detail
    from explorer.remeasure import remeasure_trial

    spec, complete = searched
    number = complete[-1]
    before = latency_records(load_study(spec, "s"))
    message, ok = remeasure_trial(spec, "s", number)
    assert ok, message
    assert message.startswith(f"Trial {number}: ") and " ms on " in message
    after = latency_records(load_study(spec, "s"))
    changed = {n for n in after if after[n] != before.get(n)}
    assert changed == {number}
    study = load_study(spec, "s")
    detail = load_trial_detail(study._storage, "s", number)
    assert detail.remeasured == after[number]
    message, ok = remeasure_trial(spec, "s", 99)
    assert not ok and message.startswith("Could not re-measure trial 99: error:")
