"""Reference statistics: the Gaussian fit of the real images' features that FID compares to."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import sys
import urllib.parse
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from skiptune import downloads
from skiptune._failpoints import failpoint
from skiptune._files import read_input, sha256_file
from skiptune.errors import ConfigurationError, first_line
from skiptune.objectives._cache import DirectoryStatisticsCache, StatisticsCache, statistics_key
from skiptune.objectives._cleanfid_spec import CLEANFID_PREFIX, parse_cleanfid_spec
from skiptune.objectives._features import FeatureExtractor
from skiptune.objectives._maths import gaussian_statistics

__all__ = [
    "CLEANFID_PREFIX",
    "IMAGE_SUFFIXES",
    "ReferenceStatistics",
    "cleanfid_stats_folder",
    "cleanfid_stats_url",
    "edm_fid_refs",
    "load_reference",
    "statistics_identity",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CLEANFID_STATS_URL = "https://www.cs.cmu.edu/~clean-fid/stats/"
CLEANFID_STATS_URL_ENV = "SKIPTUNE_CLEANFID_STATS_URL"
EDM_FID_REFS = ("cifar10-32x32.npz", "ffhq-64x64.npz", "afhqv2-64x64.npz", "imagenet-64x64.npz")
"""The names of EDM's published fid-refs (``https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/``)."""
EDM_PORT_NOTE = (
    "reference {source} is one of EDM's fid-refs, computed with EDM's Inception detector "
    "(it resizes inside the network); skiptune's inception features follow clean-fid (PIL "
    "bicubic resize), so these distances are offset from EDM's and the paper's FID: compare "
    "ρ with ρ = 1 here, or compute the reference from the dataset's images (--ref a folder); "
    "see docs/downloads.md"
)
KID_REFERENCE_SIZE = 10_000
"""Reference features kept for KID; its subsets hold at most 1,000, so more adds nothing."""

_FOLDER_BATCH = 256
_GRAY_MODES = ("1", "L", "LA")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # 16-bit and float: no [0, 255] reading


@dataclass(frozen=True, eq=False)
class ReferenceStatistics:
    """The Gaussian fit (and optionally a feature sample) of a reference image set.

    Attributes:
        mu: mean feature vector, float64 [D].
        sigma: feature covariance, float64 [D, D].
        count: number of reference images, or None when the source does not say.
        identity: hex SHA-256 of ``mu`` and ``sigma`` (:func:`statistics_identity`), so the
            same statistics have the same identity whatever file or cache they came from.
        source: where they came from, for people (a path, a clean-fid name…).
        extractor: identity of the extractor that computed them, when the source says.
        features: float32 [M, D] reference features for KID, or None when not loaded.
        note: one line for people reading a result measured against these statistics, or
            None (e.g. that EDM's fid-refs come from another Inception port than skiptune's).
    """

    mu: np.ndarray
    sigma: np.ndarray
    count: int | None
    identity: str
    source: str
    extractor: str | None = None
    features: np.ndarray | None = None
    note: str | None = None

    @property
    def feature_dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_statistics(
        cls,
        mu: np.ndarray,
        sigma: np.ndarray,
        *,
        source: str,
        count: int | None = None,
        extractor: str | None = None,
        features: np.ndarray | None = None,
        note: str | None = None,
    ) -> ReferenceStatistics:
        """Check shapes and finiteness, convert to float64 and compute the identity."""
        mu = np.asarray(mu, dtype=np.float64)
        sigma = np.asarray(sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ConfigurationError(
                f"reference {source} has mu of shape {mu.shape} and sigma of shape "
                f"{sigma.shape}; expected [D] and [D, D]: pass statistics as clean-fid and EDM "
                "write them"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ConfigurationError(f"reference {source} holds NaN or infinite statistics")
        if features is not None:
            features = np.asarray(features, dtype=np.float32)
            if features.ndim != 2 or features.shape[1] != mu.shape[0]:
                raise ConfigurationError(
                    f"reference {source} has features of shape {features.shape}, expected "
                    f"[M, {mu.shape[0]}]"
                )
        return cls(
            mu=mu,
            sigma=sigma,
            count=count,
            identity=statistics_identity(mu, sigma),
            source=source,
            extractor=extractor,
            features=features,
            note=note,
        )


def statistics_identity(mu: np.ndarray, sigma: np.ndarray) -> str:
    """Hex SHA-256 of float64 little-endian ``mu`` and ``sigma`` and their shapes."""
    digest = hashlib.sha256()
    for array in (mu, sigma):
        array = np.ascontiguousarray(array, dtype="<f8")
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# --- Folders of images ----------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    """PNG and JPEG files under ``folder``, recursively, in a stable (sorted) order."""
    try:
        # rglob skips a folder it may not list, which would make an unreadable folder look
        # empty; listing it once first turns that into the error it is.
        with os.scandir(folder):
            pass
    except OSError as e:
        raise ConfigurationError(
            f"reference folder {folder} cannot be read ({e.strerror or e}); fix its permissions "
            "or point objective.reference at a readable folder of images",
            field="objective.reference",
        ) from e
    files = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    return sorted(files, key=lambda path: path.relative_to(folder).as_posix())


def _content_hash(folder: Path, files: Sequence[Path]) -> str:
    """Hex SHA-256 over each file's relative name and bytes: changes when any image does."""
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(folder).as_posix().encode()
        digest.update(len(name).to_bytes(8, "little") + name)
        try:
            digest.update(bytes.fromhex(sha256_file(path)))
        except OSError as e:
            raise ConfigurationError(
                f"reference image {path} cannot be read ({e.strerror or e}); fix its permissions, "
                "or remove or replace it"
            ) from e
    return digest.hexdigest()


MAX_REFERENCE_IMAGE_PIXELS = 4096 * 4096
"""The most pixels one reference image may have (16.8 M; SDXL's images have 1 M), checked on
the file's header before it is decoded."""


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_REFERENCE_IMAGE_PIXELS:
        raise ConfigurationError(
            f"reference image {path} is {width}×{height} pixels, more than the "
            f"{MAX_REFERENCE_IMAGE_PIXELS:,} a reference image may have; reference images must "
            "have the model's resolution: remove it or resize the folder's images"
        )


def _read_image(path: Path) -> np.ndarray:
    """An image file as uint8 [H, W, C], C = 1 for grayscale, else 3 (alpha dropped)."""
    try:
        with warnings.catch_warnings():
            # The size is checked below, before any pixel is decoded; PIL's own bomb check
            # (an error above 179 M pixels) is caught with the other failures.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(path, image.size)
                image.load()
                mode = image.mode
                array = None if mode in _WIDE_MODES else np.asarray(
                    image.convert("L" if mode in _GRAY_MODES else "RGB")
                )
    except ConfigurationError:          # a ValueError too: _check_pixels's line, as it is
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigurationError(
            f"reference image {path} cannot be read ({first_line(e)}); remove or replace it"
        ) from e
    if array is None:
        raise ConfigurationError(
            f"reference image {path} has {mode} pixels, not 8-bit; save the reference images "
            "as 8-bit grayscale or RGB"
        )
    return array[:, :, None] if array.ndim == 2 else array


def _image_batches(files: Sequence[Path], *, batch_size: int) -> Iterator[torch.Tensor]:
    """Images float [B, C, H, W] in [-1, 1]; every image must have the first one's shape."""
    first_shape: tuple[int, ...] | None = None
    for start in range(0, len(files), batch_size):
        arrays = []
        for path in files[start : start + batch_size]:
            array = _read_image(path)
            if first_shape is None:
                first_shape = array.shape
            elif array.shape != first_shape:
                height, width, channels = array.shape
                raise ConfigurationError(
                    f"reference image {path} is {height}×{width}×{channels}, but "
                    f"{files[0]} is {first_shape[0]}×{first_shape[1]}×{first_shape[2]}; "
                    "give a folder of images of one size and colour mode"
                )
            arrays.append(array)
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        yield batch.to(torch.float32).div_(127.5).sub_(1.0)


class _RunningStatistics:
    """Mean and covariance accumulated batch by batch, without keeping the features.

    Sums are taken of x − shift, with shift the first batch's mean, so that
    Σ = (Σ(x−s)(x−s)ᵀ − n·m·mᵀ)/(n − 1) does not cancel catastrophically when the mean is
    large next to the spread (the shifted-data algorithm).
    """

    def __init__(self) -> None:
        self.count = 0
        self.shift: np.ndarray | None = None
        self.total: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def add(self, features: np.ndarray) -> None:
        batch = np.asarray(features, dtype=np.float64)
        if self.shift is None:
            self.shift = batch.mean(axis=0)
            self.total = np.zeros_like(self.shift)
            self.outer = np.zeros((batch.shape[1], batch.shape[1]))
        centred = batch - self.shift
        self.total += centred.sum(axis=0)
        self.outer += centred.T @ centred
        self.count += len(batch)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) float64, sigma normalised by N − 1 as :func:`gaussian_statistics`."""
        if self.count < 2 or self.shift is None or self.total is None or self.outer is None:
            raise ConfigurationError(
                f"a covariance needs at least 2 reference images, got {self.count}; add images"
            )
        offset = self.total / self.count
        sigma = (self.outer - self.count * np.outer(offset, offset)) / (self.count - 1)
        return self.shift + offset, (sigma + sigma.T) / 2.0


def _folder_features(
    folder: Path,
    files: Sequence[Path],
    extractor: FeatureExtractor,
    *,
    progress: bool,
    keep_features: bool,
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
    """(mu, sigma) of the features of every image in ``files``, with a rich progress bar.

    Only running sums are kept (a 50,000-image folder of 2048-d Inception features would
    otherwise hold 800 MB); with ``keep_features`` also the features, float32 [N, D].
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    running = _RunningStatistics()
    chunks = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        # On stderr, and only on a terminal: stdout may carry --json, and a log file or pipe
        # would get a stray blank line from a transient bar.
        console=Console(stderr=True),
        disable=not progress or not sys.stderr.isatty(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"reference features of {folder}", total=len(files))
        for batch in _image_batches(files, batch_size=_FOLDER_BATCH):
            features = extractor(batch)
            running.add(features)
            failpoint("reference-batch")
            if keep_features:
                chunks.append(np.asarray(features, dtype=np.float32))
            bar.advance(task, len(batch))
    return running.result(), np.concatenate(chunks) if keep_features else None


def _kid_sample(features: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """At most KID_REFERENCE_SIZE rows of float32 [N, D], a seeded subset when there are more."""
    if len(features) <= KID_REFERENCE_SIZE:
        return features
    rows = np.sort(np.random.default_rng(seed).choice(len(features), KID_REFERENCE_SIZE, False))
    return features[rows]


def _check_image_shape(folder: Path, first: Path, image_shape: tuple[int, int, int]) -> None:
    """Refuse reference images of another resolution or colour mode than the model's.

    The extractor resizes both image sets to its own input, but that makes them comparable
    only if they start alike: 64×64 photos shrunk and 28×28 samples enlarged differ in
    sharpness whatever ρ is, and the distance would measure the resampling, not the model.
    So a reference folder holds images at the model's resolution and in its colour mode, as
    EDM's and clean-fid's statistics are computed at the resolution the model generates.
    """
    height, width, channels = _read_image(first).shape
    want_channels, want_height, want_width = image_shape
    if (channels, height, width) != (want_channels, want_height, want_width):
        mode = {1: "grayscale", 3: "RGB"}.get(want_channels, f"{want_channels}-channel")
        raise ConfigurationError(
            f"reference images in {folder} are {height}×{width}×{channels} ({first.name}) but "
            f"the model makes {want_height}×{want_width}×{want_channels} images; convert the "
            f"reference to {want_height}×{want_width} {mode} images (the resolution the model "
            "was trained at), or pass an .npz of statistics computed at that resolution"
        )


def _from_folder(
    folder: Path,
    extractor: FeatureExtractor,
    *,
    cache: StatisticsCache,
    progress: bool,
    need_features: bool,
    image_shape: tuple[int, int, int] | None,
) -> ReferenceStatistics:
    files = _image_files(folder)
    if not files:
        raise ConfigurationError(
            f"reference folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images; "
            "point objective.reference at a folder of real images or an .npz with mu and sigma",
            field="objective.reference",
        )
    if image_shape is not None:
        # One image, before hashing the folder or computing anything: a 50,000-image folder of
        # the wrong size should fail in a second, not after an hour of features.
        _check_image_shape(folder, files[0], image_shape)
    content = _content_hash(folder, files)
    key = statistics_key(content_hash=content, extractor_identity=extractor.identity)
    source = str(folder)
    if not need_features:
        hit = cache.get(key)
        if hit is not None:
            return ReferenceStatistics.from_statistics(
                *hit, source=source, count=len(files), extractor=extractor.identity
            )
    (mu, sigma), features = _folder_features(
        folder, files, extractor, progress=progress, keep_features=need_features
    )
    meta = {
        "source": source,
        "count": len(files),
        "content_hash": content,
        "extractor": extractor.identity,
    }
    cache.put(key, mu, sigma, meta=meta)
    return ReferenceStatistics.from_statistics(
        mu,
        sigma,
        source=source,
        count=len(files),
        extractor=extractor.identity,
        features=None if features is None else _kid_sample(features),
    )


# --- .npz files -----------------------------------------------------------------------------


# The arrays a statistics file may hold; anything else in it is not read.
_NPZ_ARRAYS = ("mu", "sigma", "features", "feats", "count", "extractor", "feature_net")
MAX_REFERENCE_ARRAY_BYTES = 4 * 1024**3
"""The most bytes the arrays of a reference ``.npz`` may declare together (4 GiB: clean-fid's
50,000 Inception features for KID are 0.4 GB), checked on the headers before any is read."""
_SMALL_ARRAY_ELEMENTS = 4096       # count, extractor, feature_net: a number or a short text


def _declared_arrays(data: bytes) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and dtype each known array of an ``.npz`` declares, read from the ``.npy``
    headers alone: only the first bytes of each member are inflated."""
    declared = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in _NPZ_ARRAYS:
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _order, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _order, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"{info.filename} has .npy format version {version}")
            if dtype.hasobject:
                raise ValueError(f"{info.filename} holds Python objects, which are never read")
            declared[name] = (tuple(shape), dtype)
    return declared


def _shape_problem(declared: dict[str, tuple[tuple[int, ...], np.dtype]]) -> str | None:
    """Why the declared shapes cannot be statistics (mu [D], sigma [D, D], features [N, D]
    of one D, a few bytes of the rest, within the size limit), or None."""
    total = sum(int(np.prod(shape, dtype=object)) * dtype.itemsize
                for shape, dtype in declared.values())
    if total > MAX_REFERENCE_ARRAY_BYTES:
        return (f"its arrays declare {total:,} bytes, above the {MAX_REFERENCE_ARRAY_BYTES:,} "
                "a reference may hold")
    dims = {name: shape for name, (shape, _dtype) in declared.items()}
    for name in ("count", "extractor", "feature_net"):
        if name in dims and int(np.prod(dims[name], dtype=object)) > _SMALL_ARRAY_ELEMENTS:
            return f"its {name!r} declares shape {dims[name]}, not a single value"
    d = _declared_dim(dims)
    wanted = {"mu": (d,), "sigma": (d, d)}
    for name, shape in dims.items():
        if name in wanted and shape != wanted[name]:
            return f"its {name!r} declares shape {shape}, not {wanted[name]}"
        if name in ("features", "feats") and (len(shape) != 2 or shape[1] != d):
            return f"its {name!r} declares shape {shape}, not (N, {d})"
    return None


def _declared_dim(dims: dict[str, tuple[int, ...]]) -> int | None:
    """D as the file declares it: mu's length, else the features' width."""
    for name in ("mu", "features", "feats"):
        shape = dims.get(name)
        if shape:
            return shape[-1] if name != "mu" else shape[0]
    return None


def _dimension_error(source: str, dim: int, extractor: FeatureExtractor) -> ConfigurationError:
    return ConfigurationError(
        f"reference {source} has {dim}-d statistics but the {extractor.name} extractor gives "
        f"{extractor.feature_dim}-d features; compute the reference with the same "
        "objective.features",
        field="objective.features",
    )


def _from_npz(
    path: Path, *, need_features: bool, source: str | None = None,
    extractor: FeatureExtractor | None = None,
) -> ReferenceStatistics:
    """Statistics from an .npz: skiptune's, clean-fid's or EDM's (``mu``, ``sigma``).

    Also read: ``count``, ``extractor`` (an extractor identity), ``feature_net`` (a digit
    net fingerprint), and reference features for KID under ``features`` (skiptune) or
    ``feats`` (clean-fid's ``*_kid.npz``); a file with only features gets mu and sigma from them.
    The arrays' declared shapes are checked first (against ``extractor``'s dimension when
    given), so an archive declaring huge or misfitting arrays is refused before any is read.
    """
    source = str(path) if source is None else source
    data = read_input(path, what="reference", fix="pass an .npz with mu and sigma")
    try:
        declared = _declared_arrays(data)
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            problem = _shape_problem(declared)
            dim = _declared_dim({name: shape for name, (shape, _) in declared.items()})
            if problem is None and extractor is not None and dim not in (None,
                                                                         extractor.feature_dim):
                raise _dimension_error(source, int(dim or 0), extractor)
            if problem is not None:
                raise ConfigurationError(
                    f"reference {source} is not usable statistics ({problem}); pass an .npz "
                    "with mu [D] and sigma [D, D]"
                    + (f" for {extractor.feature_dim}-d features" if extractor else "")
                )
            held = sorted(archive.files)
            arrays = {name: archive[name] for name in held if name in declared}
    except ConfigurationError:
        raise
    except Exception as e:  # damaged archives make zipfile and numpy raise anything
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigurationError(
            f"reference {source} is not a readable .npz file ({reason}); "
            f"{downloads.bad_file_fix(path, 'pass an .npz with mu and sigma')}"
        ) from e
    features = arrays.get("features", arrays.get("feats"))
    if "mu" in arrays and "sigma" in arrays:
        mu, sigma = arrays["mu"], arrays["sigma"]
    elif features is not None and not ({"mu", "sigma"} & set(arrays)):
        mu, sigma = gaussian_statistics(features)
    else:
        missing = sorted({"mu", "sigma"} - set(arrays))
        raise ConfigurationError(
            f"reference {source} lacks {missing} (it holds {held[:20]}); pass an .npz with "
            "mu [D] and sigma [D, D], as clean-fid and EDM write them"
        )
    if need_features and features is None:
        raise ConfigurationError(
            f"reference {source} holds no reference features ('features' or 'feats'), which KID "
            "needs; use objective.metric fd, or a folder of reference images",
            field="objective.metric",
        )
    identity = str(arrays["extractor"]) if "extractor" in arrays else None
    if identity is None and "feature_net" in arrays:
        identity = f"digits:{arrays['feature_net']}"
    count = int(arrays["count"]) if "count" in arrays else None
    statistics = ReferenceStatistics.from_statistics(
        mu,
        sigma,
        source=source,
        count=count,
        extractor=identity,
        features=features if need_features else None,
    )
    _check_covariance(statistics.sigma, source=source)
    if edm_fid_refs(source) and set(arrays) == {"mu", "sigma"}:
        return dataclasses.replace(statistics, note=EDM_PORT_NOTE.format(source=source))
    return statistics


# Eigenvalues a float32 covariance computed from features can carry below zero by rounding,
# relative to its largest one; anything more negative is not a covariance.
_PSD_TOLERANCE = 1e-6


def _check_covariance(sigma: np.ndarray, *, source: str) -> None:
    """Refuse a sigma that is not a covariance (asymmetric, or not positive semi-definite):
    the Fréchet distance's matrix square root would turn it into meaningless values (0)."""
    scale = max(float(np.abs(sigma).max(initial=0.0)), 1e-300)
    if not np.allclose(sigma, sigma.T, rtol=0.0, atol=1e-6 * scale):
        raise ConfigurationError(
            f"reference {source} has a sigma that is not symmetric, so not a covariance; pass "
            "statistics computed from features (mu = mean, sigma = np.cov)"
        )
    eigenvalues = np.linalg.eigvalsh(sigma)
    largest = max(float(np.abs(eigenvalues).max(initial=0.0)), 1e-300)
    if eigenvalues[0] < -_PSD_TOLERANCE * largest:
        raise ConfigurationError(
            f"reference {source} has a sigma that is not positive semi-definite (eigenvalue "
            f"{eigenvalues[0]:.3g}), so not a covariance; pass statistics computed from "
            "features (mu = mean, sigma = np.cov)"
        )


# --- clean-fid's published statistics -------------------------------------------------------


def cleanfid_stats_folder() -> Path:
    """The folder where clean-fid keeps (and downloads) its reference statistics."""
    import cleanfid

    return Path(cleanfid.__file__).resolve().parent / "stats"


def cleanfid_stats_url(filename: str) -> str:
    """Where clean-fid's statistics file ``filename`` is downloaded from:
    ``$SKIPTUNE_CLEANFID_STATS_URL`` (a mirror's folder URL) or clean-fid's own."""
    base = os.environ.get(CLEANFID_STATS_URL_ENV) or CLEANFID_STATS_URL
    return f"{base.rstrip('/')}/{filename}"


def edm_fid_refs(source: str) -> bool:
    """Whether a reference named ``source`` (a path or URL) is one of EDM's fid-refs: by its
    place (``/edm/fid-refs/``) or its name. Such files hold only ``mu`` and ``sigma``, as
    clean-fid's do, so the name is what tells them apart."""
    path = urllib.parse.urlsplit(source).path if downloads.is_url(source) else source
    return "/edm/fid-refs/" in path or Path(path).name.lower() in EDM_FID_REFS


def _from_cleanfid(
    spec: str, extractor: FeatureExtractor, *, need_features: bool
) -> ReferenceStatistics:
    """``cleanfid:NAME/SPLIT/RES`` → clean-fid's ``NAME_clean_SPLIT_RES.npz`` (Inception)."""
    name, split, resolution = parse_cleanfid_spec(spec)
    if not extractor.identity.startswith("inception-clean:"):
        raise ConfigurationError(
            f"clean-fid statistics {spec!r} are Inception-v3 features, but the extractor is "
            f"{extractor.name!r}; use objective.features inception",
            field="objective.features",
        )
    filename = f"{name}_clean_{split}_{resolution}{'_kid' if need_features else ''}.npz".lower()
    path = cleanfid_stats_folder() / filename
    if not path.is_file():
        # Not in clean-fid's own folder: fetched once into skiptune's checked cache.
        path = downloads.fetch(
            cleanfid_stats_url(filename), what="clean-fid statistics",
            alternative=f"or into clean-fid's folder {path.parent}",
        )
    statistics = _from_npz(path, need_features=need_features,
                           extractor=extractor)
    # The file carries no extractor identity; it is clean-fid's Inception by construction.
    return ReferenceStatistics.from_statistics(
        statistics.mu,
        statistics.sigma,
        source=spec,
        count=statistics.count,
        extractor=extractor.identity,
        features=statistics.features,
    )


# --- Dispatch -------------------------------------------------------------------------------


def _check_matches(statistics: ReferenceStatistics, extractor: FeatureExtractor) -> None:
    if statistics.feature_dim != extractor.feature_dim:
        raise _dimension_error(statistics.source, statistics.feature_dim, extractor)
    if statistics.extractor is not None and statistics.extractor != extractor.identity:
        raise ConfigurationError(
            f"reference {statistics.source} was computed with extractor "
            f"{statistics.extractor[:60]}, not with {extractor.identity[:60]}; recompute it "
            "with the same objective.features",
            field="objective.features",
        )


def load_reference(
    source: str | os.PathLike[str] | ReferenceStatistics,
    extractor: FeatureExtractor,
    *,
    cache: StatisticsCache | None = None,  # default: DirectoryStatisticsCache()
    progress: bool = True,                 # rich progress bar while computing a folder
    need_features: bool = False,           # also load reference features (KID needs them)
    image_shape: tuple[int, int, int] | None = None,  # the model's (C, H, W); see below
) -> ReferenceStatistics:
    """Load or compute reference statistics for ``extractor``.

    Args:
        source: one of

            * a folder of ``.png``/``.jpg``/``.jpeg`` images (searched recursively; one size
              and colour mode; pixels [0, 255] read as [-1, 1]): features are computed batch
              by batch and (mu, sigma) cached under the folder's content hash (file names
              and bytes) and the extractor identity. With ``image_shape``, the images must
              have the model's resolution and channels: "another resolution" is refused, not
              resized, since resizing generated and real images from different sizes biases
              the distance (see ``_check_image_shape``);
            * an ``.npz`` with ``mu`` [D] and ``sigma`` [D, D] (skiptune's, clean-fid's and
              EDM's layout), optionally ``count``, ``extractor``, ``features``/``feats``;
            * ``cleanfid:NAME/SPLIT/RES`` (e.g. ``cleanfid:cifar10/train/32``): clean-fid's
              published Inception statistics, from clean-fid's stats folder or else fetched
              once into skiptune's checked cache (:func:`cleanfid_stats_url`);
            * an ``http(s)://`` URL of such an ``.npz`` (e.g. EDM's fid-refs), fetched once
              into skiptune's checked cache; ``#sha256=<hex>`` pins it. EDM's fid-refs get a
              ``note``: they come from another Inception port than skiptune's;
            (``self[:SAMPLER:NFE[:N]]``, the model's own samples, is resolved by
            ``build_objective``, which holds the model);
            * a :class:`ReferenceStatistics`, checked and returned.
        extractor: the feature extractor the generated images will be scored with.
        cache: where folder statistics are kept between runs.
        progress: show a progress bar while computing folder features.
        need_features: load a sample of reference features too (for KID).
        image_shape: (channels, height, width) of the generated images; a folder's images
            must match it. None skips the check (statistics files carry no resolution).

    Returns:
        The :class:`ReferenceStatistics`.

    Raises:
        ConfigurationError: the source is missing, empty, unreadable, incomplete, does not
            match the extractor (feature dimension or identity), or holds images of another
            resolution or colour mode than ``image_shape``.
    """
    if isinstance(source, ReferenceStatistics):
        statistics = source
        if need_features and statistics.features is None:
            raise ConfigurationError(
                f"reference {statistics.source} carries no features, which KID needs; "
                "load it with need_features=True"
            )
    else:
        text = os.fspath(source)
        path = Path(text).expanduser()
        if text == "self" or text.startswith("self:"):
            raise ConfigurationError(
                f"reference {text!r} is the model's own samples, which need the model; pass it "
                "to build_objective or search (objective.reference self), not to load_reference",
                field="objective.reference",
            )
        if text.startswith(CLEANFID_PREFIX):
            statistics = _from_cleanfid(text, extractor, need_features=need_features)
        elif downloads.is_url(text):
            cached = downloads.fetch(text, what="reference statistics")
            statistics = _from_npz(cached, need_features=need_features,
                                   source=downloads.split_pin(text)[0],
                                   extractor=extractor)
        elif path.is_dir():
            statistics = _from_folder(
                path,
                extractor,
                cache=DirectoryStatisticsCache() if cache is None else cache,
                progress=progress,
                need_features=need_features,
                image_shape=image_shape,
            )
        elif path.is_file() and path.suffix.lower() == ".npz":
            statistics = _from_npz(path, need_features=need_features,
                                   extractor=extractor)
        elif path.exists():
            raise ConfigurationError(
                f"reference {text} is neither a folder of images nor an .npz file; pass one "
                "of those or cleanfid:NAME/SPLIT/RES"
            )
        else:
            raise ConfigurationError(
                f"reference {text} does not exist; pass a folder of images, an .npz with mu "
                "and sigma, or cleanfid:NAME/SPLIT/RES"
            )
    _check_matches(statistics, extractor)
    return statistics
