"""`create_app` builds the Dash app on one storage; `run_app` serves it on localhost."""

from __future__ import annotations

import threading
import webbrowser
from pathlib import Path

import dash

from .callbacks import Explorer, register_callbacks
from .data import available_datasets, list_studies, open_storage
from .jobs import JobManager
from .layout import build_layout

ASSETS = Path(__file__).resolve().parent / "assets"


def create_app(storage_spec: str, runs_dir: Path) -> dash.Dash:
    """The explorer on `storage_spec` (journal path or DB URL), writing logs/exports in runs_dir.

    The JobManager is kept in `app.server.extensions["bnnx_jobs"]` so that tests (or an embedding
    server) can stop the searches it started.
    """
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    jobs = JobManager(storage_spec, runs_dir)
    ex = Explorer(storage_spec, open_storage(storage_spec), runs_dir, jobs, available_datasets())
    app = dash.Dash(
        __name__,
        title="bnnx explorer",
        assets_folder=str(ASSETS),
        update_title=None,
    )
    # A function, so that every page load gets a fresh default study name and current studies.
    app.layout = lambda: build_layout(
        storage_spec, ex.datasets, list_studies(ex.storage), jobs.running_studies()
    )
    register_callbacks(app, ex)
    app.server.extensions["bnnx_jobs"] = jobs
    return app


def run_app(
    storage_spec: str,
    runs_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8050,
    open_browser: bool = True,
) -> None:
    """Serve until interrupted.

    Searches started from the page run in their own sessions and outlive the explorer: closing
    the browser or the dashboard never stops (or half-writes) a study; a restarted explorer
    shows their progress from the storage.
    """
    app = create_app(storage_spec, runs_dir)
    url = f"http://{host}:{port}/"
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    print(f"bnnx explorer on {url}  (storage: {storage_spec}; Ctrl+C to stop)", flush=True)
    app.run(host=host, port=port, debug=False)
