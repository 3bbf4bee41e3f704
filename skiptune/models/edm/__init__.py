"""NVlabs EDM network snapshots, read as data and computed by skiptune's own networks.

``load_model("network-snapshot-….pkl")`` dispatches here: :mod:`._snapshot` reads the
pickle with a restricted unpickler (nothing in the file is imported or executed),
:mod:`._networks` rebuilds the network under EDM's parameter names, and :mod:`._adapter`
wraps it as a :class:`~skiptune.models.TunableModel` with one skip site per concatenated
skip, bottom → top, and per-seed class labels for class-conditional models.
"""

from __future__ import annotations

from skiptune.models.edm._adapter import (
    EDM_SAMPLER_SIGMA_RANGE,
    ClassLabels,
    build_network,
    load,
    wrap_network,
)
from skiptune.models.edm._networks import (
    NETWORKS,
    PRECONDITIONERS,
    DhariwalUNet,
    EDMPrecond,
    SongUNet,
    VEPrecond,
    VPPrecond,
    iDDPMPrecond,
)
from skiptune.models.edm._snapshot import (
    KNOWN_NETWORK_SOURCES,
    TRUSTED_SOURCES_ENV,
    EDMSnapshot,
    UnsafeSnapshotError,
    looks_like_edm_snapshot,
    read_snapshot,
)

__all__ = [
    "EDM_SAMPLER_SIGMA_RANGE",
    "KNOWN_NETWORK_SOURCES",
    "NETWORKS",
    "PRECONDITIONERS",
    "TRUSTED_SOURCES_ENV",
    "ClassLabels",
    "DhariwalUNet",
    "EDMPrecond",
    "EDMSnapshot",
    "SongUNet",
    "UnsafeSnapshotError",
    "VEPrecond",
    "VPPrecond",
    "build_network",
    "iDDPMPrecond",
    "load",
    "looks_like_edm_snapshot",
    "read_snapshot",
    "wrap_network",
]
