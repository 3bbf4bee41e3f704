"""Cost of one proxy-FID evaluation at small N: the N×N route against the D×D route.

    python benchmarks/frechet_speed.py [--dim 2048] [--sizes 64,256,1024] [--repeats 5]

Random features (reference 5,000 × D, generated N × D, float64), √Σ_ref computed once as the
objective does. Prints, per N, the median seconds of the D×D route the objective used before
(generated covariance, √Σ_ref Σ_gen √Σ_ref, a D×D eigen-decomposition) and of
``frechet_distance_to_features`` (the route it uses now), their ratio, and the relative
difference of the values.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from skiptune.objectives import frechet_distance_to_features, gaussian_statistics


def median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median wall time of ``fn()`` over ``repeats`` calls, and its last value."""
    times, value = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def covariance_route(mu_ref, sigma_ref, root_ref, features) -> float:
    """d² through the D×D generated covariance, with √Σ_ref given (the former objective route)."""
    mu, sigma = gaussian_statistics(features)
    inner = root_ref @ sigma @ root_ref
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu_ref - mu
    return float(diff @ diff + np.trace(sigma_ref) + np.trace(sigma) - 2 * trace_sqrt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension D")
    parser.add_argument("--sizes", default="64,256,1024", help="generated sample counts N")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    mu_ref, sigma_ref = gaussian_statistics(rng.normal(size=(5000, args.dim)))
    eigenvalues, vectors = np.linalg.eigh(sigma_ref)
    root_ref = (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T
    print(f"D = {args.dim}, median of {args.repeats}")
    print(f"{'N':>6} {'D×D route s':>12} {'N×N route s':>12} {'speed-up':>9} {'rel. diff':>10}")
    for num in (int(n) for n in args.sizes.split(",")):
        features = rng.normal(loc=0.05, size=(num, args.dim))
        slow, expected = median_seconds(
            lambda f=features: covariance_route(mu_ref, sigma_ref, root_ref, f),
            args.repeats,
        )
        fast, value = median_seconds(
            lambda f=features: frechet_distance_to_features(
                mu_ref, sigma_ref, f, root_ref=root_ref
            ),
            args.repeats,
        )
        print(f"{num:>6} {slow:>12.4f} {fast:>12.4f} {slow / fast:>8.1f}× "
              f"{abs(value - expected) / expected:>10.1e}")


if __name__ == "__main__":
    main()
