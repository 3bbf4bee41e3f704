"""What the benchmark scripts keep between runs: a schedule's file name, and files written
whole or not at all, so a killed run resumes from what it had measured."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from skiptune.schedule import TuningSchedule


def key_of(schedule: TuningSchedule) -> str:
    """A short stable name of a schedule, for file names."""
    text = json.dumps(schedule.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` whole or not at all (a killed run leaves no torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)


def save_array(path: Path, values: Any) -> None:
    """Save ``values`` as ``path`` (.npy) whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".partial.npy"), values)
    os.replace(path.with_suffix(".partial.npy"), path)
