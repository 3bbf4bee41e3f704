"""What names a study and what makes two measurements the same.

A study is named ``skiptune-<group>-<sampler>-nfe<NFE>``; its stored configuration is
compared field by field on every resume (``config_differences``); measurements of several
studies may be compared on one front only when their ``comparison_key`` is equal.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skiptune.errors import ConfigurationError

__all__ = [
    "check_group",
    "comparison_key",
    "config_differences",
    "default_group",
    "describe_differences",
    "study_name",
]

# Fields that may change between runs of one study: the total to reach, where the weights
# file lies now (the fingerprint is what identifies them), and throughput knobs that do not
# change the measured values.
_MAY_DIFFER = frozenset({"trials", "model", "pruning", "objective.batch_size"})
_NOT_IDENTITY_KEYS = frozenset({"batch_size", "device"})


def check_group(group: str) -> None:
    if not isinstance(group, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", group):
        raise ConfigurationError(
            f"study group {group!r} must be 1–64 letters, digits, '_', '.' or '-', starting with "
            "a letter or digit; pass e.g. group mymodel",
            field="group",
        )


def default_group(model: str | Path) -> str:
    """The study group named after the model: the file or folder stem, or an adapter's module.

    ``my_unets:adapter`` and ``pkg.my_unets:build`` both give ``my_unets``: the attribute is
    usually a generic word ("adapter", "load") that would put every adapter in one group.
    """
    text = str(model).rstrip("/\\")
    if ":" in text and not Path(text).exists():
        name = text.rsplit(":", 1)[0].rsplit(".", 1)[-1]
    else:
        name = Path(text).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")[:64]
    return name or "default"


def study_name(*, group: str, sampler: str, nfe: int) -> str:
    """The study's name, ``skiptune-<group>-<sampler>-nfe<NFE>``.

    Deliberately no hash of the configuration in it: rerunning with other weights, another
    metric or other seeds must meet the stored study and be refused by the comparison, not
    start a fresh study silently. ``--study`` picks another group for a separate study.
    """
    return f"skiptune-{group}-{sampler}-nfe{nfe}"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(data, (list, tuple)):
        return {prefix[:-1]: json.dumps(list(data), sort_keys=True, default=str)}
    return {prefix[:-1]: data}


def _ignored(name: str) -> bool:
    if name in _MAY_DIFFER:
        return True
    return name.startswith("objective_identity.") and name.rsplit(".", 1)[-1] in _NOT_IDENTITY_KEYS


def config_differences(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fields whose values differ, e.g. ``objective.metric``, sorted.

    Fields that may change between runs of a study (``trials``, ``model``, ``pruning``, batch
    size) are left out. Numbers compare by value (1 == 1.0).
    """
    old, new = _flatten(stored), _flatten(requested)
    names = sorted(set(old) | set(new))
    absent = "<absent>"
    return [n for n in names if not _ignored(n) and old.get(n, absent) != new.get(n, absent)]


def describe_differences(
    stored: Mapping[str, Any], requested: Mapping[str, Any], names: Sequence[str], *, limit: int = 4
) -> str:
    """``field: stored → requested`` for the first few differing fields, in one line."""
    old, new = _flatten(stored), _flatten(requested)

    def show(value: Any) -> str:
        text = "<absent>" if value is None else str(value)
        return text if len(text) <= 24 else text[:10] + "…" + text[-6:]

    parts = [f"{n}: {show(old.get(n))} → {show(new.get(n))}" for n in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "; ".join(parts) + more


def comparison_key(
    identity: Mapping[str, Any],
    *,
    num_samples: int,
    seed: int,
    validation: tuple[int, int] | None = None,   # (N, seed) of a validation on fresh seeds
) -> str:
    """Short hash equal only for measurements that may be compared across step budgets.

    The objective identity without the sampler, NFE, rungs and batch size, plus the final N
    and the noise seed: the same metric, features and reference at the same N and seeds.
    Validated values are measured at the validation's N and seeds, so those join the key.
    """

    def strip(data: Any) -> Any:
        if isinstance(data, Mapping):
            return {
                k: strip(v)
                for k, v in data.items()
                if k not in {"sampler", "nfe", "rungs", "batch_size", "device"}
            }
        if isinstance(data, (list, tuple)):
            return [strip(v) for v in data]
        return data

    payload: dict[str, Any] = {
        "identity": strip(identity), "num_samples": num_samples, "seed": seed
    }
    if validation is not None:
        payload["validation"] = list(validation)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
