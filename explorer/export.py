"""Export a trial into runs/exports and zip it for download; compiling only, never training."""

from __future__ import annotations

import shutil
from pathlib import Path

from .paths import export_dir


def export_zip(storage_spec: str, study_name: str, trial_number: int, runs_dir: Path) -> Path:
    """Write runs/exports/<study>/trial-<n>/ via search.export, then zip it beside the folder."""
    from search.export import export_trial

    out_dir = export_dir(runs_dir, study_name, trial_number)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(export_trial(storage_spec, study_name, trial_number, out_dir))
    archive = shutil.make_archive(str(out_dir), "zip", root_dir=folder.parent, base_dir=folder.name)
    return Path(archive)
