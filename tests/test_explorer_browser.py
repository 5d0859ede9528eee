"""The explorer end to end in real Chromium: start a tiny search, inspect a trial, export it.

Runs the real `app.py search` (training 2 trials of 1 epoch on digits), so it is slow. Needs
chromium + chromedriver on PATH and pytest's `--headless` flag (from dash[testing]) on machines
without a display.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from dash.testing.wait import until
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from explorer import create_app

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
        study = dash_duo.find_element("#form-study").get_attribute("value")
        dash_duo.find_element("#start-search").click()
        dash_duo.wait_for_contains_text("#form-message", f"Started search '{study}'")

        # points appear live while the search process trains; then let it finish so the
        # plot stops changing under the mouse
        dash_duo.wait_for_element(POINTS, timeout=300)
        assert dash_duo.find_element("#study-select").text.startswith(study)
        dash_duo.wait_for_element("#jobs-panel .job-finished", timeout=300)

        point = dash_duo.find_elements(POINTS)[0]
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
        ActionChains(dash_duo.driver).move_to_element(point).click().perform()
        dash_duo.wait_for_contains_text("#trial-detail", "Validation accuracy", timeout=20)
        number = int(dash_duo.find_element("#trial-detail h3").text.split()[-1])
        for figure in ("#learning-curve", "#layer-latency"):
            dash_duo.wait_for_element(f"{figure} .main-svg")

        dash_duo.find_element("#export-button").click()
        dash_duo.wait_for_contains_text("#export-status", f"Exported trial {number}", timeout=120)
        archive = runs / "exports" / study / f"trial-{number}.zip"
        assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no temporaries
        names = zipfile.ZipFile(archive).namelist()
        assert {f"trial-{number}/{name}" for name in EXPORTED} <= set(names)
        download = Path(dash_duo.download_path) / f"trial-{number}.zip"
        until(download.is_file, timeout=30)  # dcc.Download delivered the zip to the browser
        assert dash_duo.get_logs() == []
    finally:
        jobs.stop_all()
