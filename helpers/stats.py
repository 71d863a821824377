"""Intervalles de confiance du cours : bootstrap apparié (``scipy.stats.bootstrap``, méthode BCa)."""
from __future__ import annotations

import math

import numpy as np


def mean_interval(diff, *, n_resamples: int = 2000, seed: int = 0,
                  confidence: float = 0.95) -> tuple[float, float, float]:
    """``(moyenne, borne basse, borne haute)`` de la moyenne de ``diff`` (écarts appariés : le même
    élément mesuré pour les deux modèles), par bootstrap BCa. Écarts tous égaux (ou un seul) :
    l'intervalle se réduit à la moyenne ; aucun écart : NaN."""
    from scipy.stats import bootstrap

    diff = np.asarray(diff, dtype=float)
    if len(diff) == 0:
        return math.nan, math.nan, math.nan
    mean = float(diff.mean())
    if len(diff) < 2 or np.all(diff == diff[0]):
        return mean, mean, mean
    res = bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="BCa",
                    rng=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)
