"""Export a trial into runs/exports and zip it for download; compiling only, never training.

Each export works in a temporary folder of its own and renames only the finished zip into place,
so two tabs (or a double click) exporting one trial never see each other's half-written files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .paths import export_dir


def export_zip(storage_spec: str, study_name: str, trial_number: int, runs_dir: Path,
               formats: Sequence[str] | None = None) -> Path:
    """runs/exports/<study>/trial-<n>.zip holding the folder search.export writes, with the
    deploy `formats` (search.deploy.FORMATS, e.g. ["bnnx", "onnx"]; None: bnnx only)."""
    from search.export import export_trial

    target = export_dir(runs_dir, study_name, trial_number)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        folder = Path(export_trial(storage_spec, study_name, trial_number, work / target.name,
                                   formats=tuple(formats or ("bnnx",))))
        archive = shutil.make_archive(str(work / target.name), "zip", root_dir=folder.parent,
                                      base_dir=folder.name)
        zipped = target.with_suffix(".zip")
        os.replace(archive, zipped)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # this call's own temporary folder
    return zipped
