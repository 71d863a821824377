"""Intervalles de confiance du cours : bootstrap apparié (``scipy.stats.bootstrap``, méthode BCa) pour
les écarts moyens, intervalle de Wilson (``scipy.stats.binomtest``) pour une proportion."""

from __future__ import annotations

import math

import numpy as np


def mean_interval(
    diff, *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
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
    res = bootstrap(
        (diff,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(proportion, borne basse, borne haute)`` d'une proportion observée ``successes / n``, par
    l'intervalle de Wilson (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``).

    Contrairement au bootstrap, il reste informatif quand tout est juste (10 sur 10 donne
    [0,72 ; 1], pas [1 ; 1]) : c'est l'intervalle à montrer à côté d'une exactitude ou d'un taux de
    succès sur un petit échantillon. ``n = 0`` : NaN.
    """
    from scipy.stats import binomtest

    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"Proportion impossible : {successes} succès sur {n}.")
    if n == 0:
        return math.nan, math.nan, math.nan
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return successes / n, float(ci.low), float(ci.high)
