"""Screenshots of the explorer's main views for the README, from a real study, in headless
Chromium (selenium, as dash[testing] provides).

Without --storage it first trains a small study on digits (the survey space, random sampler,
3 epochs, a 0.15 ms latency budget so big candidates are recorded infeasible, not trained:
a few minutes on 2 cores). The explorer runs as `app.py` in its own process, as a user starts
it. Writes at most four PNGs (Pareto view, trial detail, analysis, trials table) under --out,
each quantised to 256 colours and scaled down until it is under 150 KB.

    .venv/bin/python docs/screenshots.py                      # trains, then shoots
    .venv/bin/python docs/screenshots.py --storage runs/bnnx.journal --study NAME
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from bench.explorer import free_port, serve  # noqa: E402

MAX_BYTES = 150 * 1024
MAX_HEIGHT = 1000  # px: a taller view is cut at the bottom (the detail card runs long)
WINDOW = (1360, 1000)
SEARCH = ["--dataset", "digits", "--space", "survey", "--trials", "12", "--epochs", "3",
          "--seed", "2", "--sampler", "random", "--max-latency-ms", "0.15",
          "--early-stop", "off"]


def train_study(folder: Path, study: str) -> str:
    """A small real study, trained by `app.py search` (its log beside the journal)."""
    spec = str(folder / "bnnx.journal")
    command = [sys.executable, str(ROOT / "app.py"), "search", *SEARCH, "--storage", spec,
               "--study", study]
    print("training:", " ".join(command[1:]), file=sys.stderr)
    with (folder / "search.log").open("w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return spec


def shown_trial(spec: str, study: str) -> int:
    """The trial the detail view shows: the most accurate one on the front."""
    from search.storage import load_study

    best = load_study(spec, study).best_trials
    if not best:
        raise SystemExit(f"study {study!r} has no completed trial to show")
    return max(best, key=lambda t: (t.values[0], -t.values[1])).number


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options)


def wait_for(driver: webdriver.Chrome, selector: str, timeout: float = 60) -> None:
    WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def small_png(png: bytes) -> bytes:
    """The screenshot cut to MAX_HEIGHT, in 256 colours, scaled down until under MAX_BYTES."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.crop((0, 0, image.width, min(image.height, MAX_HEIGHT)))
    while True:
        out = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, "PNG",
                                                                         optimize=True)
        if out.tell() <= MAX_BYTES:
            return out.getvalue()
        image = image.resize((int(image.width * 0.85), int(image.height * 0.85)),
                             Image.Resampling.LANCZOS)


def shoot(driver: webdriver.Chrome, selector: str, path: Path, start: str | None = None) -> None:
    """The element at `selector` (scrolled into view, animations settled) saved to `path`;
    with `start`, only from the top of the element at that selector down."""
    element = driver.find_element(By.CSS_SELECTOR, selector)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
    time.sleep(1.0)  # plotly's transitions and the grid's row rendering
    png = element.screenshot_as_png
    if start is not None:
        top = driver.execute_script(
            "return arguments[1].getBoundingClientRect().top"
            " - arguments[0].getBoundingClientRect().top",
            element, driver.find_element(By.CSS_SELECTOR, start))
        image = Image.open(io.BytesIO(png))
        buffer = io.BytesIO()
        image.crop((0, int(top), image.width, image.height)).save(buffer, "PNG")
        png = buffer.getvalue()
    path.write_bytes(small_png(png))
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
          f"{path.stat().st_size / 1024:.0f} KB", file=sys.stderr)


def card_of(element_id: str) -> str:
    """A selector for the card holding element `element_id` (the first .card around it)."""
    return f".card:has(#{element_id})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", help="journal of an existing study (default: train one)")
    p.add_argument("--study", default="digits-survey", help="the study to show")
    p.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bnnx-shots-") as tmp:
        folder = Path(tmp)
        spec = args.storage or train_study(folder, args.study)
        number = shown_trial(spec, args.study)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = serve([sys.executable, str(ROOT / "app.py"), "--storage", spec, "--runs",
                        str(folder / "runs"), "--port", str(port), "--no-browser"],
                       url, folder / "explorer.log")
        driver = browser()
        try:
            driver.get(f"{url}/?study={args.study}&trial={number}")
            wait_for(driver, "#pareto-graph .scatterlayer path.point")
            wait_for(driver, ".trials-grid .ag-row")
            wait_for(driver, "#architecture-table")
            shoot(driver, card_of("pareto-graph"), out / "pareto.png")
            driver.set_window_size(WINDOW[0], 4000)  # the whole detail card in one shot
            # its curves, per-layer latency, architecture and latency by machine
            shoot(driver, ".card.detail", out / "trial-detail.png", start="#learning-curve")
            driver.set_window_size(*WINDOW)
            shoot(driver, card_of("trials-table"), out / "trials-table.png")
            driver.find_element(By.CSS_SELECTOR,
                                "#analysis-view input[value='history']").click()
            wait_for(driver, "#hypervolume-graph .main-svg")
            wait_for(driver, "#history-graph .main-svg")
            shoot(driver, ".card.analysis", out / "analysis.png")
        finally:
            driver.quit()
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
