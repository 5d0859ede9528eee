"""The bnnx explorer: a local Dash app that starts searches and watches their Pareto fronts.

It only reads Optuna storage and launches subprocesses (`app.py search`, `enqueue` and
`remeasure`, and space_probe for what the `spaces` package knows); it never trains, so its
modules import neither torch nor lightning.
"""

from .app import create_app, run_app

__all__ = ["create_app", "run_app"]
