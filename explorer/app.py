"""`create_app` builds the Dash app on one storage; `run_app` serves it on localhost."""

from __future__ import annotations

import ipaddress
import sys
import threading
import webbrowser
from pathlib import Path

import dash
import flask

from search.stale import recover_and_report
from search.storage import is_url, masked

from .actions import Explorer
from .callbacks import register_callbacks
from .data import available_datasets, list_studies, open_storage
from .jobs import JobManager
from .layout import build_layout
from .space_editor import space_options

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
        storage_spec, ex.datasets, list_studies(ex.storage), jobs.running_studies(),
        space_options(runs_dir),
    )
    register_callbacks(app, ex)
    app.server.extensions["bnnx_jobs"] = jobs
    return app


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def guard_host_header(server: flask.Flask, port: int) -> None:
    """Answer only requests addressed to this machine's loopback names (DNS rebinding: a web
    page on another site resolving its own name to 127.0.0.1 cannot drive the explorer)."""
    allowed = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}

    @server.before_request
    def _check_host() -> flask.Response | None:
        if flask.request.host not in allowed:
            return flask.Response("bnnx explorer: Host header not allowed\n", status=403)
        return None


def run_app(
    storage_spec: str,
    runs_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8050,
    open_browser: bool = True,
    allow_remote: bool = False,
) -> None:
    """Serve until interrupted; on loopback only, unless `allow_remote`.

    Searches started from the page run in their own sessions and outlive the explorer: closing
    the browser or the dashboard never stops (or half-writes) a study; a restarted explorer
    shows their progress from the storage.
    """
    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise ValueError(f"--host {host} serves the explorer to the network with no "
                         "authentication (anyone who reaches it can start searches and download "
                         "models); add --allow-remote to do so, or use 127.0.0.1")
    app = create_app(storage_spec, runs_dir)
    if remote:
        print(f"warning: the explorer on {host}:{port} has no authentication; anyone who can "
              "reach this address can start searches and download models", file=sys.stderr)
    else:
        guard_host_header(app.server, port)
    if not is_url(storage_spec):  # a journal has no heartbeat: fail its dead local trials
        recover_and_report(open_storage(storage_spec))
    url = f"http://{host}:{port}/"
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    print(f"bnnx explorer on {url}  (storage: {masked(storage_spec)}; Ctrl+C to stop)",
          flush=True)
    app.run(host=host, port=port, debug=False)
