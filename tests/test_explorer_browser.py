"""The explorer end to end in real Chromium: start a tiny search, inspect a trial, export it.

Runs the real `app.py search` (training 2 trials of 1 epoch on digits), so it is slow. Needs
chromium + chromedriver on PATH and pytest's `--headless` flag (from dash[testing]) on machines
without a display.
"""

from __future__ import annotations

import sys
import time
import zipfile
from pathlib import Path

import pytest
from dash.testing.wait import until
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from stand_ins import SIGNALLED_SEARCH
from test_explorer import (
    POINTS_3,
    analysed_study,
    failed_trial,
    infeasible_trial,
    make_study,
    pruned_trial,
    sized_study,
)

from explorer import create_app
from explorer import jobs as jobs_module
from explorer.figures import WEBGL_POINTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXPORTED = {"config.json", "weights.safetensors", "model.bnnx", "README.md"}
POINTS = "#pareto-graph .scatterlayer path.point"


def _type(dash_duo, selector: str, text: str) -> None:
    element = dash_duo.find_element(selector)
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.BACK_SPACE, text)


def test_search_inspect_export(dash_duo, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    app = create_app(str(tmp_path / "bnnx.journal"), runs)
    jobs = app.server.extensions["bnnx_jobs"]
    try:
        dash_duo.driver.set_window_size(1440, 1000)
        dash_duo.start_server(app)
        for element_id in ("search-form", "pareto-graph", "trial-detail", "export-button"):
            dash_duo.wait_for_element(f"#{element_id}")

        _type(dash_duo, "#form-trials", "2")
        _type(dash_duo, "#form-epochs", "1")
        # the survey space holds networks that train for minutes on 2 cores: seed 2 of the
        # random sampler draws two small ones (about 0.05 ms), and the latency budget turns
        # any big one into a fast infeasible trial should the sampling ever change
        dash_duo.find_element("#form-space input[value='survey']").click()
        _type(dash_duo, "#form-seed", "2")
        dash_duo.find_element("#form-advanced summary").click()
        dash_duo.find_element("#form-sampler input[value='random']").click()
        dash_duo.find_element("#form-early_stop input[value='off']").click()
        _type(dash_duo, "#form-max_latency_ms", "2")
        _type(dash_duo, "#form-timeout", "600")
        study = dash_duo.find_element("#form-study").get_attribute("value")
        dash_duo.find_element("#start-search").click()
        dash_duo.wait_for_contains_text("#form-message", f"Started search '{study}'")

        # points appear live while the search process trains; then let it finish so the
        # plot stops changing under the mouse
        dash_duo.wait_for_element(POINTS, timeout=300)
        assert dash_duo.find_element("#study-select").text.startswith(study)
        dash_duo.wait_for_element("#jobs-panel .job-finished", timeout=300)
        storage = JournalStorage(JournalFileBackend(str(tmp_path / "bnnx.journal")))
        settings = storage.get_study_user_attrs(storage.get_study_id_from_name(study))["bnnx"]
        assert (settings["sampler"], settings["early_stop"]) == ("random", "off")
        assert (settings["max_latency_ms"], settings["max_size_kb"]) == (2.0, None)
        assert (settings["space"], settings["seed"]) == ("survey", 2)
        dash_duo.wait_for_contains_text("#search-progress", "2/2 finished", timeout=30)
        complete = [t.number for t in storage.get_all_trials(storage.get_study_id_from_name(
            study)) if t.state.name == "COMPLETE"]

        point = dash_duo.find_elements(POINTS)[0]
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
        ActionChains(dash_duo.driver).move_to_element(point).click().perform()
        dash_duo.wait_for_contains_text("#trial-detail", "Validation accuracy", timeout=20)
        number = int(dash_duo.find_element("#trial-detail h3").text.split()[-1])
        for figure in ("#learning-curve", "#layer-latency"):
            dash_duo.wait_for_element(f"{figure} .main-svg")
        dash_duo.wait_for_contains_text("#architecture-table", "Total")  # from its summary
        assert dash_duo.find_elements("#trial-detail .knob-sampled")
        other = next((n for n in complete if n != number), None)
        if other is not None:  # a table row opens the other trial
            _click(dash_duo, _grid_cell(dash_duo, other))
            dash_duo.wait_for_text_to_equal("#trial-detail h3", f"Trial {other}", timeout=20)
            _click(dash_duo, _grid_cell(dash_duo, number))
            dash_duo.wait_for_text_to_equal("#trial-detail h3", f"Trial {number}", timeout=20)

        # re-measure: `app.py remeasure --trial N` in a child process, shown per machine
        button = dash_duo.find_element("#remeasure-section button")
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()
        dash_duo.wait_for_contains_text("#remeasure-section .remeasure-message.ok",
                                        f"Trial {number}: ", timeout=120)
        assert " threads" in dash_duo.find_element("#remeasure-section .kv").text

        dash_duo.find_element("#export-button").click()
        dash_duo.wait_for_contains_text("#export-status", f"Exported trial {number}", timeout=120)
        archive = runs / "exports" / study / f"trial-{number}.zip"
        assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no temporaries
        names = zipfile.ZipFile(archive).namelist()
        assert {f"trial-{number}/{name}" for name in EXPORTED} <= set(names)
        card = zipfile.ZipFile(archive).read(f"trial-{number}/README.md").decode()
        assert "- CPU model: " in card and "--space survey" in card
        download = Path(dash_duo.download_path) / f"trial-{number}.zip"
        until(download.is_file, timeout=30)  # dcc.Download delivered the zip to the browser
        assert dash_duo.get_logs() == []
    finally:
        jobs.stop_all()


def _point(dash_duo, trace: str, number: int):
    """The SVG marker of trial `number` in the trace named `trace` (trace groups are in data
    order; customdata[0] is the trial number)."""
    return dash_duo.driver.execute_script(
        """const gd = document.querySelector('#pareto-graph .js-plotly-plot');
        const i = gd.data.findIndex(t => t.name === arguments[0]);
        const k = gd.data[i].customdata.findIndex(c => c[0] === arguments[1]);
        const traces = gd.querySelectorAll('.scatterlayer .trace');
        return traces[i].querySelectorAll('path.point')[k];""",
        trace,
        number,
    )


def _figure(dash_duo, path: str):
    return dash_duo.driver.execute_script(
        f"return document.querySelector('#pareto-graph .js-plotly-plot').{path}"
    )


def _click(dash_duo, element, dx: int = 0) -> None:
    """Click `dx` px right of the element's centre."""
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(dash_duo.driver).move_to_element(element).move_by_offset(dx, 0).click().perform()


def _grid_cell(dash_duo, number: int):
    return dash_duo.find_element(
        f".trials-grid .ag-row[row-id='{number}'] .ag-cell[col-id='state']"
    )


def test_every_trial_kind_inspectable(dash_duo, tmp_path: Path) -> None:
    """A study of every kind, made without training: clicks land on the marker under the
    cursor, the table opens failed, pruned and infeasible trials, the plot controls work."""
    journal = tmp_path / "bnnx.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    # dominated trial 1 sits 3 px right of front trial 0 (about 370 px per ms)
    points = [(0.9, 1.0), (0.899, 1.0075), (0.5, 0.5), (0.95, 2.0)]
    study = make_study(storage, "kinds", points, max_latency_ms=2.5)
    study.add_trial(failed_trial())  # 4
    study.add_trial(pruned_trial({"1": 0.6}, latency=1.5))  # 5
    study.add_trial(infeasible_trial(latency=3.0))  # 6
    app = create_app(str(journal), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1100)
    dash_duo.start_server(app)
    dash_duo.wait_for_element(".trials-grid .ag-row[row-id='6']", timeout=20)  # page settled
    assert _figure(dash_duo, "_fullLayout.xaxis.type") == "linear"  # 6x span: not log

    front_0, dominated_1 = _point(dash_duo, "Pareto front", 0), _point(dash_duo, "trials", 1)
    gap = dominated_1.rect["x"] - front_0.rect["x"]
    assert 2 <= gap <= 5, gap  # the markers overlap: each covers the other's centre
    _click(dash_duo, front_0)  # on trial 0's centre: trial 0, drawn on top
    dash_duo.wait_for_text_to_equal("#trial-detail h3", "Trial 0", timeout=20)
    dash_duo.wait_for_element(".trials-grid .ag-row-selected[row-id='0']")  # the table follows
    _click(dash_duo, dominated_1, dx=4)  # beside trial 1, outside trial 0's marker
    dash_duo.wait_for_text_to_equal("#trial-detail h3", "Trial 1", timeout=20)

    for number, text in [
        (4, "Failed: RuntimeError: boom"),
        (5, "Stopped early: epoch 1: val 40.0%"),
        (6, "Over budget, never trained: latency 3 ms"),
    ]:
        _click(dash_duo, _grid_cell(dash_duo, number))
        dash_duo.wait_for_text_to_equal("#trial-detail h3", f"Trial {number}", timeout=20)
        dash_duo.wait_for_contains_text("#trial-detail .trial-reason", text)
        assert "arch.family" in dash_duo.find_element("#trial-detail").text  # its config

    pruned = "pruned (last rung)"
    assert pruned not in _figure(dash_duo, "data.map(t => t.name)")
    dash_duo.find_element("#show-pruned input").click()
    until(lambda: pruned in _figure(dash_duo, "data.map(t => t.name)"), timeout=10)
    dash_duo.find_element("#latency-scale input[value='log']").click()
    until(lambda: _figure(dash_duo, "_fullLayout.xaxis.type") == "log", timeout=10)
    dash_duo.select_dcc_dropdown("#color-by", "width")
    dash_duo.wait_for_element("#pareto-graph .colorbar", timeout=10)
    assert "latency budget 2.5 ms" in _figure(dash_duo, "layout.shapes.map(s => s.name)")
    assert dash_duo.get_logs() == []


def test_large_study_draws_with_webgl_and_clicks_open_the_trial_under_the_cursor(
        dash_duo, tmp_path: Path) -> None:
    """Above WEBGL_POINTS the trials trace is WebGL (no SVG markers to find): a mouse click at
    a trial's pixel opens that trial, and colour-by still works."""
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "bnnx.journal")))
    # a 40 x 30 grid: neighbours about 20 px apart in x and 13 px in y
    points = [(0.5 + (i // 40) * 0.01, 1.0 + (i % 40) * 0.05) for i in range(WEBGL_POINTS + 200)]
    make_study(storage, "large", points)
    app = create_app(str(tmp_path / "bnnx.journal"), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1100)
    dash_duo.start_server(app)
    dash_duo.wait_for_element("#pareto-graph .js-plotly-plot", timeout=30)
    until(lambda: "scattergl" in _figure(dash_duo, "_fullData?.map(t => t.type) ?? []"),
          timeout=30)
    for number in (207, 1000):
        accuracy, latency = points[number]
        x, y = dash_duo.driver.execute_script(
            """const gd = document.querySelector('#pareto-graph .js-plotly-plot');
            gd.scrollIntoView({block: 'center'});
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const r = gd.getBoundingClientRect();
            return [r.left + xa._offset + xa.l2p(arguments[0]),
                    r.top + ya._offset + ya.l2p(arguments[1])];""",
            latency, accuracy)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):  # a real mouse, at (x, y)
            dash_duo.driver.execute_cdp_cmd("Input.dispatchMouseEvent", {
                "type": kind, "x": x, "y": y, "clickCount": 1,
                "button": "none" if kind == "mouseMoved" else "left"})
            time.sleep(0.2)  # plotly's hover runs on the next frame
        dash_duo.wait_for_text_to_equal("#trial-detail h3", f"Trial {number}", timeout=20)
    dash_duo.select_dcc_dropdown("#color-by", "width")
    dash_duo.wait_for_element("#pareto-graph .colorbar", timeout=10)
    assert dash_duo.get_logs() == []


def test_three_objectives_and_published_references(dash_duo, tmp_path: Path) -> None:
    """A study that minimised size too: the projection toggle puts size on y; a study on
    MNIST shows the published results as labelled lines with their sources."""
    journal = tmp_path / "bnnx.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    make_study(storage, "mnist-study", [(0.9, 1.0), (0.97, 2.0)], dataset="mnist")
    sized_study(storage, "sized", POINTS_3)
    app = create_app(str(journal), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.wait_for_element(POINTS)
    assert _study_value(dash_duo) == "sized"  # newest first
    until(lambda: dash_duo.find_element("#projection-picker").is_displayed(), timeout=10)
    dash_duo.wait_for_element("#pareto-graph .colorbar")  # coloured by size
    assert "front in 3 objectives" in _figure(dash_duo, "layout.title.text")
    dash_duo.find_element("#pareto-projection input[value='size']").click()
    until(lambda: _figure(dash_duo, "layout.yaxis.title.text").startswith("Packed model size"),
          timeout=10)

    dash_duo.select_dcc_dropdown("#study-select", index=1)  # the older one: mnist-study
    until(lambda: not dash_duo.find_element("#projection-picker").is_displayed(), timeout=10)
    dash_duo.find_element("#show-references input").click()
    dash_duo.wait_for_contains_text("#references-note", "arXiv:1602.02830", timeout=10)
    until(lambda: _figure(dash_duo, "layout.shapes.length") == 2, timeout=10)
    labels = _figure(dash_duo, "layout.annotations.map(a => a.text)")
    assert "BinaryNet MLP 99.0%" in labels
    assert dash_duo.get_logs() == []


def test_stop_buttons_and_start_failure(dash_duo, tmp_path: Path, monkeypatch) -> None:
    command = [sys.executable, "-c", SIGNALLED_SEARCH]
    monkeypatch.setattr(jobs_module, "search_command", lambda request, spec: command)
    app = create_app(str(tmp_path / "bnnx.journal"), tmp_path / "runs")
    jobs = app.server.extensions["bnnx_jobs"]
    try:
        dash_duo.driver.set_window_size(1440, 1000)
        dash_duo.start_server(app)
        dash_duo.wait_for_element("#start-search")
        dash_duo.find_element("#form-advanced summary").click()
        for bad in ("0", "-3", "1e"):  # typed as is, never read as "no budget"
            _type(dash_duo, "#form-max_latency_ms", bad)
            dash_duo.find_element("#start-search").click()
            dash_duo.wait_for_contains_text("#max_latency_ms-error", "above 0")
            dash_duo.wait_for_text_to_equal("#form-message", "Fix the fields marked in red.")
        assert jobs.jobs() == []
        _type(dash_duo, "#form-max_latency_ms", "2.5")
        dash_duo.find_element("#form-sampler input[value='random']").click()
        dash_duo.find_element("#start-search").click()
        dash_duo.wait_for_contains_text("#form-message", "Started search")
        dash_duo.wait_for_contains_text("#jobs-panel .job-log", "ready", timeout=30)
        assert jobs.jobs()[0].status == "running"

        dash_duo.find_element("#jobs-panel .stop-finish").click()
        dash_duo.wait_for_element("#jobs-panel .job-stopped", timeout=30)
        assert jobs.jobs()[0].last_log_line() == "got SIGINT"
        assert not dash_duo.find_elements("#jobs-panel .stop-now")  # nothing left to stop

        command[2] = "import sys; print('error: cannot open the storage'); sys.exit(2)"
        _type(dash_duo, "#form-study", "doomed")
        dash_duo.find_element("#start-search").click()
        dash_duo.wait_for_contains_text("#form-job-error", "error: cannot open the storage", 30)
        assert "exit code 2" in dash_duo.find_element("#form-job-error").text
        assert dash_duo.find_element("#jobs-panel .job-failed")
        assert dash_duo.get_logs() == []
    finally:
        jobs.stop_all()


def _study_value(dash_duo) -> str:
    return dash_duo.find_element("#study-select").text.split()[0]


def test_url_opens_study_and_trial_and_survives_reload(dash_duo, tmp_path: Path) -> None:
    journal = tmp_path / "bnnx.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    make_study(storage, "older", [(0.9, 1.0), (0.8, 0.5), (0.95, 2.0)])
    make_study(storage, "newer", [(0.7, 1.0)])
    app = create_app(str(journal), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.driver.get(dash_duo.server_url + "/?study=older&trial=2")
    dash_duo.wait_for_text_to_equal("#trial-detail h3", "Trial 2", timeout=20)
    assert _study_value(dash_duo) == "older"
    dash_duo.wait_for_element(".trials-grid .ag-row[row-id='1']", timeout=20)

    _click(dash_duo, _grid_cell(dash_duo, 1))  # selecting updates the address
    dash_duo.wait_for_text_to_equal("#trial-detail h3", "Trial 1", timeout=20)
    until(lambda: dash_duo.driver.current_url.endswith("/?study=older&trial=1"), timeout=10)
    dash_duo.driver.refresh()  # a reload keeps both
    dash_duo.wait_for_text_to_equal("#trial-detail h3", "Trial 1", timeout=20)
    assert _study_value(dash_duo) == "older"

    dash_duo.select_dcc_dropdown("#study-select", index=0)  # newest first: "newer"
    until(lambda: dash_duo.driver.current_url.endswith("/?study=newer"), timeout=10)
    assert "Click a point" in dash_duo.find_element("#trial-detail").text

    dash_duo.driver.get(dash_duo.server_url + "/?study=older&trial=99")
    dash_duo.wait_for_contains_text("#trial-detail", "Study 'older' has no trial 99", timeout=20)
    dash_duo.driver.get(dash_duo.server_url + "/?study=gone&trial=1")
    dash_duo.wait_for_contains_text("#url-message", "No study named 'gone'", timeout=20)
    dash_duo.wait_for_element(POINTS)  # the newest study still draws
    assert _study_value(dash_duo) == "newer"
    assert dash_duo.get_logs() == []


def test_analysis_views_open_on_demand(dash_duo, tmp_path: Path) -> None:
    journal = tmp_path / "bnnx.journal"
    analysed_study(JournalStorage(JournalFileBackend(str(journal))), "analysed", count=12)
    app = create_app(str(journal), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.wait_for_element(POINTS)
    assert not dash_duo.find_elements("#analysis-body .js-plotly-plot")  # nothing until opened

    dash_duo.find_element("#analysis-view input[value='history']").click()
    dash_duo.wait_for_contains_text("#hypervolume-graph", "reference point", timeout=20)
    dash_duo.wait_for_element("#history-graph .main-svg")
    dash_duo.find_element("#analysis-view input[value='importance']").click()
    dash_duo.wait_for_element("#importance-graph .barlayer .point", timeout=30)
    assert not dash_duo.find_elements("#hypervolume-graph")  # only the open view is drawn
    dash_duo.find_element("#analysis-view input[value='parallel']").click()
    dash_duo.wait_for_contains_text("#parallel-graph", "input_quantizer", timeout=20)
    dash_duo.find_element("#analysis-view input[value='marginals']").click()
    dash_duo.wait_for_contains_text("#marginal-graph", "by width", timeout=20)
    dash_duo.select_dcc_dropdown("#marginal-knob", "batch_size")
    dash_duo.wait_for_contains_text("#marginal-graph", "by batch_size", timeout=20)
    assert dash_duo.get_logs() == []


def test_progress_log_stop_and_resume(dash_duo, tmp_path: Path, monkeypatch) -> None:
    """A search started from the form (a stand-in that waits for its signal): its progress,
    its log, Stop, then Resume with a raised budget, whose output goes on in the same log."""
    requests = []
    monkeypatch.setattr(jobs_module, "search_command", lambda request, spec: requests.append(
        request) or [sys.executable, "-c", SIGNALLED_SEARCH])
    resumed = "import sys; print('resumed with', sys.argv[1:])"
    monkeypatch.setattr(jobs_module, "resume_command",
                        lambda study, n, spec: [sys.executable, "-c", resumed, study, str(n)])
    journal = tmp_path / "bnnx.journal"
    app = create_app(str(journal), tmp_path / "runs")
    jobs = app.server.extensions["bnnx_jobs"]
    try:
        dash_duo.driver.set_window_size(1440, 1200)
        dash_duo.start_server(app)
        _type(dash_duo, "#form-study", "live")
        dash_duo.find_element("#form-space input[value='survey']").click()
        dash_duo.find_element("#start-search").click()
        dash_duo.wait_for_contains_text("#search-log", "ready", timeout=30)
        assert [(r.study, r.space) for r in requests] == [("live", "survey")]
        # the stand-in writes no study: the test writes the trials a search would
        storage = JournalStorage(JournalFileBackend(str(journal)))
        make_study(storage, "live", [(0.9, 1.0), (0.8, 0.5)], trials=4)
        dash_duo.wait_for_contains_text("#search-progress", "2/4 finished", timeout=20)
        bar = dash_duo.find_element("#search-progress .part-complete")
        assert bar.get_attribute("style") == "width: 50%;"
        assert dash_duo.find_element("#resume-search").get_attribute("disabled")

        dash_duo.find_element("#stop-search").click()
        dash_duo.wait_for_contains_text("#search-message", "finish its running trials")
        dash_duo.wait_for_contains_text("#search-log", "got SIGINT", timeout=30)
        until(lambda: not dash_duo.find_element("#resume-search").get_attribute("disabled"), 20)
        assert dash_duo.find_element("#stop-search").get_attribute("disabled")
        assert dash_duo.find_element("#resume-trials").get_attribute("value") == "14"
        _type(dash_duo, "#resume-trials", "2")  # not above the finished trials
        dash_duo.find_element("#resume-search").click()
        dash_duo.wait_for_contains_text("#search-message", "from 3")
        _type(dash_duo, "#resume-trials", "6")
        dash_duo.find_element("#resume-search").click()
        dash_duo.wait_for_contains_text("#search-message", "Resumed 'live' up to 6")
        dash_duo.wait_for_contains_text("#search-log", "resumed with ['live', '6']", timeout=30)
        assert "got SIGINT" in dash_duo.find_element("#search-log").text  # the same, whole log
        assert dash_duo.get_logs() == []
    finally:
        jobs.stop_all()


def test_compare_from_table_and_box_select(dash_duo, tmp_path: Path) -> None:
    journal = tmp_path / "bnnx.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    make_study(storage, "cmp", [(0.9, 1.0), (0.8, 0.5), (0.95, 2.0)])
    app = create_app(str(journal), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1100)
    dash_duo.start_server(app)
    dash_duo.wait_for_element(".trials-grid .ag-row[row-id='2']", timeout=20)
    assert "0 trials selected" in dash_duo.find_element("#compare-view").text

    _click(dash_duo, _grid_cell(dash_duo, 0))
    dash_duo.wait_for_text_to_equal("#trial-detail h3", "Trial 0", timeout=20)
    cell = _grid_cell(dash_duo, 2)
    ActionChains(dash_duo.driver).key_down(Keys.CONTROL).click(cell).key_up(Keys.CONTROL).perform()
    dash_duo.wait_for_contains_text("#compare-view", "Latency per image", timeout=20)
    header = dash_duo.find_element("#compare-view .compare-table thead").text
    assert header.split() == ["Trial", "0", "Trial", "2"]
    dash_duo.wait_for_element("#compare-curves .main-svg")
    dash_duo.wait_for_element("#compare-latency .main-svg")

    dash_duo.find_element("#compare-clear").click()
    dash_duo.wait_for_contains_text("#compare-view", "0 trials selected")
    graph = dash_duo.find_element("#pareto-graph")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", graph)
    dash_duo.find_element("#pareto-graph .modebar-btn[data-val='select']").click()
    plot = dash_duo.find_element("#pareto-graph .js-plotly-plot")
    # the plot area in px from the graph's top-left corner: drag a box over all of it
    left, top, width, height = dash_duo.driver.execute_script(
        "const {xaxis, yaxis} = arguments[0]._fullLayout;"
        "return [xaxis._offset, yaxis._offset, xaxis._length, yaxis._length];", plot)
    centre_x, centre_y = plot.size["width"] / 2, plot.size["height"] / 2
    (ActionChains(dash_duo.driver).move_to_element(plot)
     .move_by_offset(int(left + 2 - centre_x), int(top + 2 - centre_y))
     .click_and_hold().move_by_offset(int(width - 4), int(height - 4)).release().perform())
    dash_duo.wait_for_contains_text("#compare-view", "Latency per image", timeout=20)
    header = dash_duo.find_element("#compare-view .compare-table thead").text
    assert sorted(header.split()[1::2]) == ["0", "1", "2"]
    assert dash_duo.get_logs() == []


def _computed(dash_duo, selector: str, prop: str) -> str:
    return dash_duo.driver.execute_script(
        "return getComputedStyle(document.querySelector(arguments[0]))[arguments[1]]",
        selector, prop)


def test_dark_mode_restyles_page_plots_and_hover(dash_duo, tmp_path: Path) -> None:
    journal = tmp_path / "bnnx.journal"
    make_study(JournalStorage(JournalFileBackend(str(journal))), "d1", [(0.9, 1.0), (0.8, 0.5)])
    app = create_app(str(journal), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.wait_for_element(POINTS)
    tick = "#pareto-graph .xtick text"

    def hover_colours() -> tuple[str, str]:
        point = dash_duo.find_elements(POINTS)[0]
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
        ActionChains(dash_duo.driver).move_to_element(point).perform()
        dash_duo.wait_for_element("#pareto-graph .hoverlayer .hovertext")
        box = _computed(dash_duo, "#pareto-graph .hoverlayer .hovertext path", "fill")
        text = _computed(dash_duo, "#pareto-graph .hoverlayer .hovertext text", "fill")
        toolbar = dash_duo.find_element("#study-stats")
        ActionChains(dash_duo.driver).move_to_element(toolbar).perform()  # away: hover ends
        return box, text

    assert hover_colours() == ("rgb(255, 255, 255)", "rgb(15, 23, 42)")  # dark on light
    assert _computed(dash_duo, "body", "backgroundColor") == "rgb(241, 245, 249)"
    dash_duo.find_element("#theme-toggle input").click()
    until(lambda: "dark" in dash_duo.find_element("body").get_attribute("class"), timeout=10)
    assert _computed(dash_duo, "body", "backgroundColor") == "rgb(11, 17, 32)"
    assert _computed(dash_duo, tick, "fill") == "rgb(226, 232, 240)"  # light axis text
    assert hover_colours() == ("rgb(30, 41, 59)", "rgb(248, 250, 252)")  # light on dark
    dash_duo.driver.refresh()  # the choice is kept in the browser
    dash_duo.wait_for_element(POINTS)
    until(lambda: "dark" in dash_duo.find_element("body").get_attribute("class"), timeout=10)
    assert dash_duo.get_logs() == []


def test_space_editor_load_validate_save(dash_duo, tmp_path: Path) -> None:
    """Edit the survey space: a bad range is marked inline, the saved space is checked by the
    spaces package and offered by the search form."""
    app = create_app(str(tmp_path / "bnnx.journal"), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.wait_for_element("#space-load").click()
    dash_duo.wait_for_contains_text("#space-message", "Loaded 'survey'", timeout=60)
    family = dash_duo.find_element("#space-knobs [id*='space-checked'][id*='arch.family']")
    assert "bireal" in family.text

    low = dash_duo.find_element("#space-knobs [id*='space-low'][id*='train.lr']")
    _type(dash_duo, "#space-knobs [id*='space-low'][id*='train.lr']", "0.5")  # above its high
    dash_duo.wait_for_contains_text("#space-knobs [id*='space-error'][id*='train.lr']",
                                    "Low must not exceed high", timeout=20)
    low.send_keys(Keys.CONTROL, "a")
    low.send_keys(Keys.BACK_SPACE, "0.001")
    until(lambda: not dash_duo.find_element(
        "#space-knobs [id*='space-error'][id*='train.lr']").text, timeout=20)
    _type(dash_duo, "#space-name", "../escape")
    dash_duo.find_element("#space-save").click()
    dash_duo.wait_for_contains_text("#space-message", "space name '../escape'", timeout=20)
    _type(dash_duo, "#space-name", "mine")
    dash_duo.find_element("#space-save").click()
    dash_duo.wait_for_contains_text("#space-message", "Saved 'mine'", timeout=60)
    saved = tmp_path / "runs" / "spaces" / "mine.json"
    assert saved.is_file() and [p.name for p in saved.parent.iterdir()] == ["mine.json"]
    dash_duo.wait_for_element("#form-space input[value='mine.json']")
    assert dash_duo.get_logs() == []


def test_enqueue_a_trial_into_another_study(dash_duo, tmp_path: Path) -> None:
    journal = tmp_path / "bnnx.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    make_study(storage, "src", [(0.9, 1.0)])
    make_study(storage, "dst", [])
    app = create_app(str(journal), tmp_path / "runs")
    dash_duo.driver.set_window_size(1440, 1000)
    dash_duo.start_server(app)
    dash_duo.driver.get(dash_duo.server_url + "/?study=src&trial=0")
    dash_duo.wait_for_text_to_equal("#trial-detail h3", "Trial 0", timeout=20)
    dash_duo.select_dcc_dropdown("#enqueue-study", index=0)  # newest first: "dst"
    dash_duo.find_element("#enqueue-button").click()
    dash_duo.wait_for_contains_text("#enqueue-status", "Queued trial 0 of 'src' as trial 0 of "
                                    "'dst'", timeout=60)
    assert dash_duo.get_logs() == []
