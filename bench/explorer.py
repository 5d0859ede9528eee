"""The explorer at scale: page load to a fully drawn Pareto plot, and a polling update, with
thousands of trials of real bnnx shape in one journal file, in headless Chromium.

The study is generated, not trained: one real trial is trained first (digits, the survey space,
1 epoch) and every generated trial carries a copy of its user attributes (config, metrics,
learning curve, summary, per-layer latency: about 4 KB), with its own parameters sampled from the
same space and its own accuracy and latency, so the explorer parses what a real study holds.
Rows, each the median of --repeats:
  - page load: navigation start to every trial's point drawn in the Pareto plot (goal < 1 s),
    a fresh navigation each time, after one untimed load (the browser's cache warm);
  - idle poll: the browser's round trip of a poll that finds nothing new;
  - update: a trial written to the journal, from the poll that brings it (or the write, if that
    poll was already under way) to its point drawn (goal < 200 ms);
  - optuna-dashboard (the `bench` extra installs it), the peer on the same file: navigation
    start to its Pareto-front plot drawn with every point; its page loads and bnnx's are
    interleaved, the first contender rotating.
Prints a table and writes JSON (default runs/bench/explorer.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ goes first on sys.path; the packages live at the root

import optuna  # noqa: E402
from optuna.distributions import (  # noqa: E402
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial  # noqa: E402

from search import SearchSettings, run_search  # noqa: E402
from search.enqueue import enqueue_configs  # noqa: E402
from search.hypervolume import (  # noqa: E402
    HV_REFERENCE_ATTR,
    HYPERVOLUME_ATTR,
    hypervolume_history,
)
from search.storage import open_storage  # noqa: E402
from search.study import create_study  # noqa: E402
from spaces import Config, SearchSpace  # noqa: E402

LOAD_GOAL_S, UPDATE_GOAL_S = 1.0, 0.2
STUDY = "scale"
DIRECTIONS = ("maximize", "minimize")  # (val_accuracy, latency_ms)
TEMPLATE_ARCH = {"family": "bireal", "width": 16, "depth": 2, "blocks_per_stage": 1}
REFERENCE = (0.0, 10.0)  # accuracy 0, latency 10 ms: beyond every generated latency
# Resolves with performance.now() once the plot at `selector` shows `count` markers; the time
# origin of performance.now() is the navigation start.
DRAWN_JS = """
const [selector, count, done] = arguments;
function markers(gd) {
  let n = 0;
  for (const t of gd._fullData || []) {
    if (t.visible === true && String(t.mode || 'markers').includes('markers')) {
      n += (t.x || []).length;
    }
  }
  return n;
}
(function check() {
  const gd = document.querySelector(selector);
  if (gd && gd._fullLayout && markers(gd) >= count) {
    requestAnimationFrame(() => done(performance.now()));
  } else {
    setTimeout(check, 2);
  }
})();
"""
# Records every Dash callback request: when it started and ended, and whether a poll fired it.
RECORD_FETCH_JS = """
window.__bnnxRequests = [];
const realFetch = window.fetch;
window.fetch = async function (url, init) {
  const start = performance.now();
  const response = await realFetch.apply(this, arguments);
  const body = init && typeof init.body === 'string' ? init.body : '';
  if (String(url).includes('_dash-update-component')) {
    const poll = body.includes('"poll"');
    response.clone().text().then(() => window.__bnnxRequests.push(
      {start, end: performance.now(), poll}));
  }
  return response;
};
"""


def template_trial(folder: Path) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """One real trained trial and its study: the survey space on digits, 1 epoch, a small
    Bi-Real network enqueued (a sampled one might distil from a teacher and take minutes)."""
    spec = str(folder / "template.journal")
    create_study(spec, "template", SearchSettings(space="survey", trials=1, epochs=1,
                                                  early_stop="off"))
    config = folder / "config.json"
    config.write_text(Config.from_dict({"arch": TEMPLATE_ARCH}).to_json())
    enqueue_configs(spec, "template", [config])
    study = run_search(spec, "template", None)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    if not done:
        raise RuntimeError(f"the template trial did not complete: {study.trials[0].user_attrs}")
    return study, done[0]


class RandomTrial:
    """Draws a space's knobs uniformly (spaces.space.TrialLike) and keeps Optuna's record of
    them: an Optuna study would slow down with every trial it holds."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def _keep(self, name: str, value: Any, distribution: BaseDistribution) -> Any:
        self.params[name], self.distributions[name] = value, distribution
        return value

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._keep(name, self.rng.choice(list(choices)),
                          CategoricalDistribution(list(choices)))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return self._keep(name, self.rng.randint(low, high), IntDistribution(low, high, log=log))

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        value = (math.exp(self.rng.uniform(math.log(low), math.log(high))) if log
                 else self.rng.uniform(low, high))
        return self._keep(name, value, FloatDistribution(low, high, log=log))


def generated_trials(template: optuna.trial.FrozenTrial, count: int, seed: int
                     ) -> list[optuna.trial.FrozenTrial]:
    """`count` COMPLETE trials shaped like `template`, parameters drawn from the survey space,
    accuracy and latency drawn around a realistic trade-off."""
    rng = random.Random(seed)
    space = SearchSpace("survey")
    trials = []
    for _ in range(count):
        trial = RandomTrial(rng)
        config = space.sample(trial, epochs=1)
        latency = 10 ** rng.uniform(-2.0, 0.5)  # ms: the span of digits/MNIST candidates
        accuracy = min(0.99, max(0.05, 0.85 + 0.05 * math.log10(latency) + rng.gauss(0, 0.03)))
        attrs = copy.deepcopy(template.user_attrs)
        attrs["config"] = config.to_dict()
        attrs["metrics"] = {**attrs["metrics"], "val_accuracy": accuracy,
                            "latency_ms": latency}
        trials.append(create_trial(state=TrialState.COMPLETE, values=[accuracy, latency],
                                   params=trial.params, distributions=trial.distributions,
                                   user_attrs=attrs))
    history = hypervolume_history([t.values for t in trials], DIRECTIONS, REFERENCE)
    for t, hv in zip(trials, history, strict=True):
        t.user_attrs[HYPERVOLUME_ATTR] = hv
    return trials


def write_study(spec: str, source: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> None:
    """A journal study with `source`'s attributes and `trials`."""
    study = optuna.create_study(storage=open_storage(spec, create=True), study_name=STUDY,
                                directions=list(DIRECTIONS))
    study.set_metric_names(source.metric_names)
    for key, value in source.user_attrs.items():
        study.set_user_attr(key, value)
    study.set_user_attr(HV_REFERENCE_ATTR, list(REFERENCE))
    study.add_trials(trials)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(command: list[str], url: str, log: Path) -> subprocess.Popen:
    """Start a server process and wait until `url` answers."""
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command[:3]} exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own loopback server
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{url} did not answer within 120 s")


def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options)
    driver.set_script_timeout(120)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_FETCH_JS})
    return driver


def drawn_ms(driver, url: str, selector: str, count: int) -> float:
    """Navigation start to `count` markers drawn in the plot at `selector`."""
    driver.get(url)
    return float(driver.execute_async_script(DRAWN_JS, selector, count))


@dataclass
class Page:
    """A contender: its server process, the page to load and the plot that must be drawn."""

    name: str
    proc: subprocess.Popen
    url: str
    selector: str


def start_pages(spec: str, folder: Path) -> list[Page]:
    """The explorer, and optuna-dashboard when installed, serving the same journal."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    pages = [Page("bnnx", serve([sys.executable, "app.py", "--storage", spec, "--runs",
                                 str(folder / "runs"), "--port", str(port), "--no-browser"],
                                url, folder / "explorer.log"), url,
                  "#pareto-graph .js-plotly-plot")]
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name(
        "optuna-dashboard"))
    if not Path(exe).exists():
        print("optuna-dashboard not installed (pip install optuna-dashboard): its row is "
              "skipped")
        return pages
    port = free_port()
    root = f"http://127.0.0.1:{port}/"
    proc = serve([exe, "--port", str(port), "--host", "127.0.0.1", spec], root,
                 folder / "dashboard.log")
    # the generated study is the journal's first (id 0); its page holds the Pareto-front plot
    pages.append(Page("optuna-dashboard", proc, f"{root}dashboard/studies/0",
                      "#graph-pareto-front"))
    return pages


def page_loads(driver, pages: list[Page], count: int, repeats: int) -> dict[str, list[float]]:
    """Each page loaded `repeats` times, interleaved with the first page rotating, after one
    untimed load each (the browser's cache warm, as on a user's second visit)."""
    for page in pages:
        drawn_ms(driver, page.url, page.selector, count)
    loads: dict[str, list[float]] = {page.name: [] for page in pages}
    for r in range(repeats):
        for page in pages[r % len(pages):] + pages[: r % len(pages)]:
            loads[page.name].append(drawn_ms(driver, page.url, page.selector, count))
    return loads


def poll_rows(driver, page: Page, spec: str, count: int, repeats: int,
              extra: Callable[[int], optuna.trial.FrozenTrial]) -> dict[str, list[float]]:
    """The explorer's polls on an open page: idle round trips, and new trials drawn."""
    drawn_ms(driver, page.url, page.selector, count)
    time.sleep(5)  # a few polls that find nothing new
    idle = [r["end"] - r["start"] for r in driver.execute_script("return window.__bnnxRequests")
            if r["poll"]]
    updates = []
    storage = open_storage(spec)
    for i in range(repeats):
        before = driver.execute_script("return performance.now()")
        optuna.load_study(study_name=STUDY, storage=storage).add_trial(extra(i))
        drawn = float(driver.execute_async_script(DRAWN_JS, page.selector, count + i + 1))
        polls = [r["start"] for r in driver.execute_script("return window.__bnnxRequests")
                 if r["poll"] and r["start"] <= drawn]
        # Polls run seconds apart: the last one before the drawing brought the trial (one that
        # started before the write counts from the write).
        updates.append(drawn - max([before, *polls]))
    return {"idle_poll_ms": idle, "update_ms": updates}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5000, help="trials in the generated study")
    p.add_argument("--repeats", type=int, default=5, help="page loads (and updates) per row")
    p.add_argument("--quick", action="store_true", help="200 trials, 2 repeats (smoke run)")
    p.add_argument("--json", default="runs/bench/explorer.json")
    args = p.parse_args()
    if args.quick:
        args.trials, args.repeats = 200, 2
    if args.trials < 1 or args.repeats < 1:
        p.error("--trials and --repeats must be >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="bnnx-bench-explorer-"))
    try:
        source, template = template_trial(folder)
        trials = generated_trials(template, args.trials + args.repeats, seed=0)
        spec = str(folder / "scale.journal")
        write_study(spec, source, trials[: args.trials])
        size_mb = os.path.getsize(spec) / 2**20
        pages = start_pages(spec, folder)
        driver = browser()
        try:
            loads = page_loads(driver, pages, args.trials, args.repeats)
            rows = {"load_ms": loads["bnnx"], **poll_rows(
                driver, pages[0], spec, args.trials, args.repeats,
                lambda i: trials[args.trials + i])}
            peer = ({"load_ms": loads[pages[1].name], "url": pages[1].url}
                    if len(pages) > 1 else None)
        finally:
            driver.quit()
            for page in pages:
                page.proc.terminate()
                page.proc.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    attrs_kb = len(json.dumps(template.user_attrs)) / 1024
    report = {"trials": args.trials, "repeats": args.repeats, "journal_mb": size_mb,
              "attrs_kb_per_trial": attrs_kb, "cpus": os.cpu_count(), "bnnx": rows,
              "optuna_dashboard": peer}
    load, update = median(rows["load_ms"]), median(rows["update_ms"])
    print(f"\n{args.trials} trials, {attrs_kb:.1f} KB of attributes each, journal "
          f"{size_mb:.1f} MB; medians of {args.repeats}, headless Chromium")
    print(f"{'row':<44} {'median':>10} {'range':>20} {'goal':>9} {'met':>8}")

    def row(name: str, values: list[float], goal_s: float | None) -> None:
        if not values:
            print(f"{name:<44} {'-':>10}")
            return
        met = "-" if goal_s is None else ("MET" if median(values) < 1e3 * goal_s else "not met")
        goal = "-" if goal_s is None else f"< {1e3 * goal_s:.0f} ms"
        print(f"{name:<44} {median(values):>8.0f}ms {min(values):>8.0f}-{max(values):.0f} ms "
              f"{goal:>9} {met:>8}")

    row("bnnx: page load to every point drawn", rows["load_ms"], LOAD_GOAL_S)
    row("bnnx: idle poll round trip", rows["idle_poll_ms"], None)
    row("bnnx: new trial, poll to its point drawn", rows["update_ms"], UPDATE_GOAL_S)
    if peer:
        row("optuna-dashboard: page load to Pareto drawn", peer["load_ms"], None)
        report["load_ratio_vs_dashboard"] = load / median(peer["load_ms"])
        print(f"bnnx / optuna-dashboard page load: {report['load_ratio_vs_dashboard']:.2f}")
    report["met"] = {"load": load is not None and load < 1e3 * LOAD_GOAL_S,
                     "update": update is not None and update < 1e3 * UPDATE_GOAL_S}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
