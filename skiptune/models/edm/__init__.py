"""NVlabs EDM network snapshots, read as data and computed by skiptune's own networks.

``load_model("network-snapshot-….pkl")`` dispatches here: :mod:`._snapshot` reads the
pickle with a restricted unpickler (nothing in the file is imported or executed),
:mod:`._networks` rebuilds the network under EDM's parameter names, and :mod:`._adapter`
wraps it as a :class:`~skiptune.models.TunableModel` with one skip site per concatenated
skip, bottom → top, and per-seed class labels for class-conditional models.
"""

from __future__ import annotations

from skiptune.models.edm._adapter import load, wrap_network
from skiptune.models.edm._networks import EDMPrecond, VEPrecond, VPPrecond, iDDPMPrecond
from skiptune.models.edm._snapshot import UnsafeSnapshotError, looks_like_edm_snapshot

# The contract: reading a snapshot (skiptune.models dispatches here), computing a network
# built without one (the preconditioners wrap_network takes), and the error a refused snapshot
# raises. The rest is imported from the module that defines it.
__all__ = [
    "EDMPrecond",
    "UnsafeSnapshotError",
    "VEPrecond",
    "VPPrecond",
    "iDDPMPrecond",
    "load",
    "looks_like_edm_snapshot",
    "wrap_network",
]
