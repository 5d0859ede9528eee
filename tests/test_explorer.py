"""Explorer logic without a browser: storage → rows, front, figures, form, paths, jobs, export."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from explorer import callbacks, data, figures, forms, jobs, panels, paths
from explorer.callbacks import Explorer, clicked_trial

REPO = Path(__file__).resolve().parents[1]

DISTRIBUTIONS = {
    "width": CategoricalDistribution([8, 16, 32, 64]),
    "depth": IntDistribution(1, 3),
    "blocks_per_stage": IntDistribution(1, 2),
    "input_quantizer": CategoricalDistribution(["ste", "clipped_ste", "approx_sign"]),
    "weight_quantizer": CategoricalDistribution(["sign", "xnor"]),
    "lr": FloatDistribution(1e-3, 3e-2, log=True),
    "batch_size": CategoricalDistribution([32, 64]),
}


def complete_trial(acc: float, latency: float, width: int = 16) -> optuna.trial.FrozenTrial:
    """A COMPLETE trial carrying every user attr the search writes."""
    params = {
        "width": width,
        "depth": 2,
        "blocks_per_stage": 1,
        "input_quantizer": "clipped_ste",
        "weight_quantizer": "sign",
        "lr": 0.01,
        "batch_size": 32,
    }
    metrics = {
        "val_accuracy": acc,
        "test_accuracy": acc - 0.01,
        "latency_ms": latency,
        "params_binary": 12_345,
        "params_float": 678,
        "packed_bytes": 2_048,
        "fp32_bytes": 52_000,
        "binary_macs": 1_500_000,
        "float_macs": 20_000,
        "train_seconds": 3.2,
    }
    return create_trial(
        state=TrialState.COMPLETE,
        values=[acc, latency],
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs={
            "config": {"arch": {"family": "plain", "width": width}, "quant": {}, "train": {}},
            "metrics": metrics,
            "learning_curve": [
                {"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.5, "val_loss": 1.0,
                 "val_accuracy": acc * e / 2}
                for e in (1, 2)
            ],
            "layer_latency": [
                {"name": "conv1", "kind": "bconv3x3", "ms": latency * 0.7},
                {"name": "fc", "kind": "float:linear", "ms": latency * 0.3},
            ],
            "isa": "avx2",
        },
    )  # fmt: skip


def failed_trial() -> optuna.trial.FrozenTrial:
    return create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "RuntimeError: boom"})


@pytest.fixture
def storage(tmp_path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(tmp_path / "bnnx.journal")))


def make_study(storage, name: str, points: list[tuple[float, float]], failed: int = 0):
    study = optuna.create_study(
        storage=storage, study_name=name, directions=["maximize", "minimize"]
    )
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["val_accuracy", "latency_ms"])
    study.set_user_attr("bnnx", {"dataset": "digits", "space": "quick", "trials": 9, "epochs": 2,
                                 "seed": 0})  # fmt: skip
    for acc, latency in points:
        study.add_trial(complete_trial(acc, latency))
    for _ in range(failed):
        study.add_trial(failed_trial())
    return study


# -- pareto front ------------------------------------------------------------------------------


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    points = [(0, 0.90, 1.0), (1, 0.95, 2.0), (2, 0.80, 1.5), (3, 0.70, 0.5), (4, 0.95, 3.0)]
    assert data.pareto_front(points) == {0, 1, 3}


def test_pareto_front_ties() -> None:
    # exact duplicates both stay; equal accuracy at higher latency and equal latency at lower
    # accuracy are dominated
    points = [(0, 0.9, 1.0), (1, 0.9, 1.0), (2, 0.9, 2.0), (3, 0.8, 1.0)]
    assert data.pareto_front(points) == {0, 1}
    assert data.pareto_front([]) == set()


# -- storage → rows --------------------------------------------------------------------------


def test_study_view_rows_front_and_counts(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0), (0.8, 1.5)], failed=2)
    view = data.load_study_view(storage, "s1")
    assert view is not None
    assert [r.number for r in view.rows] == [0, 1, 2]
    assert [r.number for r in view.front] == [0, 1]  # by latency
    assert view.counts == {"complete": 3, "fail": 2}
    assert view.rows[0].params["width"] == 16
    assert view.settings["dataset"] == "digits"
    assert data.load_study_view(storage, "missing") is None


def test_running_trials_are_counted_not_plotted(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0)])
    study.ask()  # a RUNNING trial, as while a search runs
    view = data.load_study_view(storage, "s1")
    assert view.counts == {"complete": 1, "running": 1}
    assert len(view.rows) == 1


def test_list_studies_newest_first(storage) -> None:
    make_study(storage, "old", [])
    make_study(storage, "new", [])
    infos = data.list_studies(storage)
    assert [i.name for i in infos] == ["new", "old"]
    assert infos[0].dataset == "digits"


def test_trial_detail(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)], failed=1)
    detail = data.load_trial_detail(storage, "s1", 0)
    assert detail.metrics["packed_bytes"] == 2048
    assert detail.learning_curve[1]["epoch"] == 2
    assert detail.layer_latency[0]["name"] == "conv1"
    assert detail.isa == "avx2"
    assert data.load_trial_detail(storage, "s1", 1).fail_reason == "RuntimeError: boom"
    assert data.load_trial_detail(storage, "s1", 7) is None
    assert data.load_trial_detail(storage, "s1", "0") is None
    assert data.load_trial_detail(storage, "nope", 0) is None


def test_pick_export_trial(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0), (0.8, 1.5)])
    view = data.load_study_view(storage, "s1")
    assert data.pick_export_trial(view, None) == 1  # most accurate on the front
    assert data.pick_export_trial(view, 2) == 2
    assert data.pick_export_trial(view, 99) == 1
    assert data.pick_export_trial(None, None) is None


# -- figures ---------------------------------------------------------------------------------


def test_pareto_figure_highlights_front(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0), (0.8, 1.5)], failed=1)
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"), selected=2)
    assert [t.name for t in fig.data] == ["all trials", "Pareto front", "trial 2"]
    everything, front, chosen = fig.data
    assert len(everything.x) == 3
    assert list(front.x) == [1.0, 2.0] and list(front.y) == [0.9, 0.95]
    assert front.marker.color != everything.marker.color
    assert [c[0] for c in front.customdata] == [0, 1]  # trial numbers for click and hover
    assert "Trial %{customdata[0]}" in everything.hovertemplate
    assert "width" in everything.hovertemplate
    assert chosen.x == (1.5,)
    assert "1 failed" in fig.layout.title.text
    assert "ms" in fig.layout.xaxis.title.text
    assert "accuracy" in fig.layout.yaxis.title.text.lower()


def test_pareto_figure_without_points(storage) -> None:
    study = make_study(storage, "s1", [])
    study.ask()
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"))
    assert not fig.data
    assert "Waiting" in fig.layout.annotations[0].text


def test_detail_figures(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)])
    detail = data.load_trial_detail(storage, "s1", 0)
    curve = figures.learning_curve_figure(detail.learning_curve)
    assert [t.name for t in curve.data] == ["val accuracy", "train loss"]
    assert curve.data[1].yaxis == "y2"
    bars = figures.layer_latency_figure(detail.layer_latency)
    assert [t.name for t in bars.data] == ["binary", "float"]
    assert bars.data[0].y == ("conv1 · bconv3x3",)
    assert "ms" in bars.layout.xaxis.title.text
    assert figures.learning_curve_figure([]).layout.annotations


# -- panels ----------------------------------------------------------------------------------


def test_metric_rows_have_units() -> None:
    rows = dict(panels.metric_rows(complete_trial(0.9, 0.25).user_attrs["metrics"], "avx2"))
    assert rows["Validation accuracy"] == "90.00%"
    assert rows["Latency per image"] == "0.25 ms"
    assert rows["Packed model size"].startswith("2 KiB")
    assert "×25.4" in rows["Packed model size"]
    assert rows["Binary MACs"] == "1.5 M"
    assert rows["Kernel path"] == "avx2"


def test_short_floats() -> None:
    assert figures.short(0.020962473050155146) == "0.02096"
    assert figures.short(32) == 32 and figures.short("sign") == "sign"


def test_flatten_config() -> None:
    assert panels.flatten({"arch": {"width": 8}, "seed": 1}) == [("arch.width", 8), ("seed", 1)]


# -- form and paths --------------------------------------------------------------------------


def _form(**overrides):
    return {**forms.default_form(), **overrides}


def test_default_form_is_valid() -> None:
    request, errors = forms.validate_search_form(_form(), ["digits"], set())
    assert errors == {}
    assert (request.dataset, request.trials, request.epochs, request.workers) == ("digits", 4, 2, 1)
    assert request.study.startswith("digits-")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trials", 0),
        ("trials", None),
        ("trials", 2.5),
        ("trials", "abc"),
        ("trials", True),
        ("epochs", -1),
        ("epochs", 10_000),
        ("workers", 0),
        ("seed", -3),
        ("dataset", "imagenet"),
        ("study", ""),
        ("study", "../x"),
        ("study", "a/b"),
        ("study", ".."),
        ("study", "x" * 65),
        ("study", "has space"),
        ("study", "taken"),
    ],
)
def test_form_rejects(field: str, value: object) -> None:
    request, errors = forms.validate_search_form(_form(**{field: value}), ["digits"], {"taken"})
    assert request is None
    assert list(errors) == [field]


def test_form_accepts_numeric_strings() -> None:
    request, _ = forms.validate_search_form(_form(trials="7", study="ok_1.b-2"), ["digits"], ())
    assert request.trials == 7 and request.study == "ok_1.b-2"


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 65, ".", "..", ".hidden", "a\\b"])
def test_study_name_rejected(name: str) -> None:
    assert paths.study_name_error(name) is not None


def test_export_and_log_paths_stay_under_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert paths.export_dir(runs, "s1", 3) == (runs / "exports" / "s1" / "trial-3").resolve()
    for hostile in ["../../etc", "/abs/path", "..", "a/../../b", ""]:
        out = paths.export_dir(runs, hostile, 0)
        assert out.is_relative_to((runs / "exports").resolve())
        assert paths.log_path(runs, hostile).parent == (runs / "logs").resolve()
    with pytest.raises(ValueError):
        paths.export_dir(runs, "s1", -1)
    with pytest.raises(ValueError):
        paths.inside(runs, runs / ".." / "x")


# -- jobs ------------------------------------------------------------------------------------


def test_search_command() -> None:
    request = forms.SearchRequest("digits", 2, 1, 3, "s1", 7)
    command = jobs.search_command(request, "runs/bnnx.journal")
    assert command[:3] == [sys.executable, str(REPO / "app.py"), "search"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args == {
        "--dataset": "digits",
        "--trials": "2",
        "--epochs": "1",
        "--workers": "3",
        "--storage": "runs/bnnx.journal",
        "--study": "s1",
        "--seed": "7",
    }


def test_last_line_skips_blank_and_bracket_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text('start\n[I] trial 3 finished\n{\n  "a": 1\n}\n\n')
    assert jobs.last_line(log) == '"a": 1'
    log.write_text("trial 1\n}\n")
    assert jobs.last_line(log) == "trial 1"
    assert jobs.last_line(tmp_path / "missing.log") == ""


def test_job_manager_runs_and_reports(tmp_path: Path, monkeypatch) -> None:
    script = "import sys; print('trial 0 done'); print('bye', file=sys.stderr); sys.exit({})"
    codes = iter([0, 3])
    monkeypatch.setattr(
        jobs, "search_command", lambda r, s: [sys.executable, "-c", script.format(next(codes))]
    )
    manager = jobs.JobManager("unused.journal", tmp_path)
    ok = manager.start(forms.SearchRequest("digits", 1, 1, 1, "good", 0))
    bad = manager.start(forms.SearchRequest("digits", 1, 1, 1, "bad", 0))
    ok.process.wait(30)
    bad.process.wait(30)
    assert (ok.status, bad.status) == ("finished", "failed")
    assert ok.last_log_line() == "bye"
    assert ok.log == (tmp_path / "logs" / "good.log").resolve()
    assert manager.study_names() == {"good", "bad"}
    assert manager.running_studies() == set()
    assert [j.study for j in manager.jobs()] == ["bad", "good"]


def test_stop_all_terminates_running(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        jobs, "search_command", lambda r, s: [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    manager = jobs.JobManager("unused.journal", tmp_path)
    job = manager.start(forms.SearchRequest("digits", 1, 1, 1, "slow", 0))
    assert job.status == "running"
    started = time.monotonic()
    manager.stop_all(timeout=5)
    assert job.status == "failed" and time.monotonic() - started < 10


# -- callback logic ----------------------------------------------------------------------------


@pytest.fixture
def explorer_state(storage, tmp_path: Path, monkeypatch) -> Explorer:
    monkeypatch.setattr(
        jobs, "search_command", lambda r, s: [sys.executable, "-c", "print('started')"]
    )
    return Explorer("spec", storage, tmp_path / "runs", jobs.JobManager("spec", tmp_path / "runs"),
                    ["digits"])  # fmt: skip


def test_start_search_validates_then_starts(explorer_state, storage) -> None:
    make_study(storage, "taken", [])
    errors, study = explorer_state.start_search(_form(study="taken", trials=0))
    assert study is None and set(errors) == {"study", "trials"}
    assert explorer_state.jobs.jobs() == []
    errors, study = explorer_state.start_search(_form(study="fresh"))
    assert (errors, study) == ({}, "fresh")
    explorer_state.jobs.jobs()[0].process.wait(30)
    # a name a job is still creating counts as taken
    assert explorer_state.start_search(_form(study="fresh"))[1] is None


def test_choose_study(explorer_state, storage, monkeypatch) -> None:
    assert explorer_state.choose_study(None, None) == ([], None)
    make_study(storage, "a", [])
    make_study(storage, "b", [])
    options, value = explorer_state.choose_study(None, None)
    assert [o["value"] for o in options] == ["b", "a"] and value == "b"  # newest
    assert explorer_state.choose_study("a", None)[1] == "a"  # keeps the user's choice
    explorer_state.jobs.start(forms.SearchRequest("digits", 1, 1, 1, "c", 0))
    monkeypatch.setattr(jobs.Job, "status", "running")
    options, value = explorer_state.choose_study("a", "c")
    assert value == "c" and options[0] == {"label": "c  (starting)", "value": "c"}
    monkeypatch.setattr(jobs.Job, "status", "failed")  # died before creating its study
    assert explorer_state.choose_study("c", None) == (options[1:], "b")


def test_clicked_trial() -> None:
    assert clicked_trial({"points": [{"customdata": [4, 16, 2]}]}) == 4
    assert clicked_trial({"points": [{"x": 1}]}) is None
    assert clicked_trial({"points": []}) is None


def _fake_export_module(calls: list) -> types.ModuleType:
    def export_trial(spec: str, study: str, number: int, out_dir: Path) -> Path:
        calls.append((spec, study, number, out_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "weights.safetensors", "model.bnnx", "README.md"):
            (out_dir / name).write_text(json.dumps({"trial": number}))
        return out_dir

    module = types.ModuleType("search.export")
    module.export_trial = export_trial
    return module


def test_export_zips_the_trial_folder(explorer_state, storage, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "search.export", _fake_export_module(calls))
    assert explorer_state.export(None, None) == (None, "Nothing to export yet.")
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0)])
    archive, message = explorer_state.export("s1", None)
    out_dir = explorer_state.runs_dir / "exports" / "s1" / "trial-1"
    assert [call[:3] for call in calls] == [("spec", "s1", 1)]
    assert calls[0][3].name == "trial-1" and calls[0][3].parent.parent == out_dir.parent.resolve()
    assert archive == out_dir.with_suffix(".zip").resolve()
    assert [p.name for p in out_dir.parent.iterdir()] == ["trial-1.zip"]  # no temporary left
    names = [n for n in zipfile.ZipFile(archive).namelist() if not n.endswith("/")]
    assert sorted(names) == [
        "trial-1/README.md",
        "trial-1/config.json",
        "trial-1/model.bnnx",
        "trial-1/weights.safetensors",
    ]
    assert "trial 1" in message
    assert explorer_state.export("s1", 0)[0].name == "trial-0.zip"


def test_export_failure_is_reported(explorer_state, storage, monkeypatch) -> None:
    module = types.ModuleType("search.export")

    def export_trial(*_args):
        raise ValueError("weights missing")

    module.export_trial = export_trial
    monkeypatch.setitem(sys.modules, "search.export", module)
    make_study(storage, "s1", [(0.9, 1.0)])
    archive, message = explorer_state.export("s1", None)
    assert archive is None and "weights missing" in message


# -- the app --------------------------------------------------------------------------------


def _ids(component) -> set[str]:
    found = set()
    stack = [component]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
            continue
        if getattr(node, "id", None):
            found.add(node.id)
        children = getattr(node, "children", None)
        if children is not None and not isinstance(children, str):
            stack.append(children)
    return found


def test_create_app_layout_has_stable_ids(tmp_path: Path, storage, monkeypatch) -> None:
    from explorer import app as app_module

    make_study(storage, "s1", [(0.9, 1.0)])
    monkeypatch.setattr(app_module, "open_storage", lambda spec: storage)
    app = app_module.create_app("spec", tmp_path / "runs")
    layout = app.layout()
    assert {"search-form", "start-search", "pareto-graph", "trial-detail", "export-button"} <= (
        _ids(layout)
    )
    assert isinstance(app.server.extensions["bnnx_jobs"], jobs.JobManager)
    assert (tmp_path / "runs").is_dir()
    client = app.server.test_client()
    assert client.get("/").status_code == 200


def test_web_process_stays_light() -> None:
    code = (
        "import sys, explorer, explorer.app, explorer.callbacks, search.storage, search.datasets;"
        "heavy = {'torch', 'lightning', 'pytorch_lightning'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_callbacks_module_registers(storage, tmp_path: Path) -> None:
    import dash

    app = dash.Dash(__name__)
    state = Explorer("spec", storage, tmp_path, jobs.JobManager("spec", tmp_path), ["digits"])
    callbacks.register_callbacks(app, state)
    outputs = " ".join(app.callback_map)
    for target in ("pareto-graph.figure", "trial-detail.children", "export-download.data"):
        assert target in outputs


def test_empty_figure_explains_failures(storage) -> None:
    make_study(storage, "s1", [], failed=2)
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"))
    assert "2 failed" in fig.layout.annotations[0].text


def test_stats_count_failed_and_budget(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)], failed=1)
    text = str(panels.stats_children(data.load_study_view(storage, "s1"), "s1"))
    assert "'failed'" in text and "digits · 9 trials · 2 epochs" in text


def test_header_masks_database_password() -> None:
    from explorer.layout import display_spec

    assert display_spec("postgresql://bob:s3cr:t@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert display_spec("runs/bnnx.journal") == "runs/bnnx.journal"
    assert display_spec("sqlite:///runs/x.db") == "sqlite:///runs/x.db"
