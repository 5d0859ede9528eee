"""Running the search: datasets, Lightning training, the trial objective, studies, storage.

Names resolve lazily, so `search.storage` (used by the explorer's web process) does not pull in
torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DATASETS": "datasets",
    "Dataset": "datasets",
    "get_dataset": "datasets",
    "ModelFolderError": "export",
    "export_trial": "export",
    "load_packed": "export",
    "torch_model": "export",
    "write_model_folder": "export",
    "DEFAULT_STORAGE": "storage",
    "StorageError": "storage",
    "load_study": "storage",
    "open_storage": "storage",
    "SearchSettings": "settings",
    "create_study": "study",
    "run_search": "study",
    "raise_budget": "study",
    "run_worker": "study",
    "study_settings": "study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
