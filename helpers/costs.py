"""Ce que coûte une dimension (notebook 03) : taille d'index, latence faiss, quantification.

* :func:`index_sizes` — octets par vecteur et Mo par million de documents en float32, int8
  et binaire, **mesurés** sur des index faiss sérialisés (et comparés au calcul théorique) ;
* :func:`search_latency` — latence d'une requête sur un corpus répliqué à ≥ 100 000 vecteurs ;
* :func:`quantized_scores` — NDCG@10 avec des embeddings quantifiés int8 (8 bits scalaires) ou
  binaires, avec ou sans « rescoring », via ``quantize_embeddings`` et
  ``semantic_search_faiss`` de sentence-transformers ; les métriques viennent de
  ``InformationRetrievalEvaluator.compute_metrics`` ;
* :func:`rescoring_at_scale` — les mêmes recherches binaires, avec et sans rescoring, dans un index
  grossi de distracteurs jusqu'à ≥ 100 000 vecteurs : le rescoring y reclasse 40 candidats sur
  100 000, et non plus sur 276.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import pandas as pd

PRECISIONS = ("float32", "int8", "binaire")
THEORETICAL_BYTES = {"float32": lambda d: 4 * d, "int8": lambda d: d, "binaire": lambda d: d / 8}


def truncate_normalize(embeddings, dim: int) -> np.ndarray:
    """Garde les ``dim`` premières composantes et renormalise (produit scalaire = cosinus)."""
    emb = np.asarray(embeddings.cpu() if hasattr(embeddings, "cpu") else embeddings, dtype=np.float32)
    if dim > emb.shape[1]:
        raise ValueError(f"Dimension {dim} supérieure à celle des embeddings ({emb.shape[1]}).")
    out = np.ascontiguousarray(emb[:, :dim])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("Embedding nul : impossible de le normaliser.")
    return out / norms


def build_index(vectors: np.ndarray, precision: str):
    """Index faiss exact pour une précision : ``IndexFlatIP`` (float32),
    ``IndexScalarQuantizer`` 8 bits (int8) ou ``IndexBinaryFlat`` (binaire, distance de Hamming)."""
    import faiss
    from sentence_transformers.util.quantization import quantize_embeddings

    d = vectors.shape[1]
    if precision == "float32":
        index = faiss.IndexFlatIP(d)
    elif precision == "int8":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    elif precision == "binaire":
        index = faiss.IndexBinaryFlat(d)
        vectors = quantize_embeddings(vectors, precision="ubinary")
    else:
        raise ValueError(f"Précision inconnue « {precision} » (attendu : {', '.join(PRECISIONS)}).")
    index.add(vectors)
    return index


def query_vectors(queries: np.ndarray, precision: str) -> np.ndarray:
    """Requêtes au format de l'index (bits compactés pour l'index binaire)."""
    if precision == "binaire":
        from sentence_transformers.util.quantization import quantize_embeddings

        return quantize_embeddings(queries, precision="ubinary")
    return queries


def serialized_bytes(index) -> int:
    """Taille de l'index faiss une fois sérialisé (ce qu'il occupe sur disque)."""
    import faiss

    if isinstance(index, faiss.IndexBinary):
        return int(faiss.serialize_index_binary(index).size)
    return int(faiss.serialize_index(index).size)


def replicate(vectors: np.ndarray, min_vectors: int) -> np.ndarray:
    """Répète le corpus jusqu'à au moins ``min_vectors`` vecteurs (pour mesurer la latence)."""
    if len(vectors) == 0:
        raise ValueError("Corpus vide : rien à répliquer.")
    copies = max(1, math.ceil(min_vectors / len(vectors)))
    return np.ascontiguousarray(np.tile(vectors, (copies, 1)))


def search_latency(
    corpus_emb,
    query_emb,
    dims,
    *,
    min_vectors: int = 100_000,
    n_queries: int = 50,
    k: int = 10,
    threads: int | None = None,
) -> pd.DataFrame:
    """Latence d'une requête (médiane, requêtes envoyées une à une) et taille mesurée de l'index.

    Le corpus (embeddings pleine dimension) est tronqué à chaque dimension, renormalisé et
    répliqué jusqu'à ``min_vectors`` vecteurs ; la taille par vecteur est lue sur l'index faiss
    sérialisé. Les temps dépendent de la machine : comparez les rapports, pas les valeurs.
    """
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    rows = []
    for dim in dims:
        corpus = replicate(truncate_normalize(corpus_emb, dim), min_vectors)
        queries = truncate_normalize(query_emb, dim)[:n_queries]
        for precision in PRECISIONS:
            index = build_index(corpus, precision)
            q = query_vectors(queries, precision)
            index.search(q[:1], k)  # échauffement
            times = []
            for i in range(len(q)):
                start = time.perf_counter()
                index.search(q[i : i + 1], k)
                times.append(time.perf_counter() - start)
            per_vector = serialized_bytes(index) / index.ntotal
            rows.append(
                {
                    "dim": dim,
                    "precision": precision,
                    "vectors": index.ntotal,
                    "latency_ms": 1000 * statistics.median(times),
                    "bytes_per_vector": per_vector,
                    "theoretical_bytes": THEORETICAL_BYTES[precision](dim),
                }
            )
            del index
    return pd.DataFrame(rows)


def index_sizes(latency: pd.DataFrame, n_docs: int = 1_000_000) -> pd.DataFrame:
    """Taille d'un index d'un million de documents (Mo), par dimension et par précision.

    Calculée à partir des octets par vecteur mesurés (:func:`search_latency`) ; la colonne
    ``theorique`` donne 4·d, d et d/8 octets pour comparaison.
    """
    table = latency.pivot(index="dim", columns="precision", values="bytes_per_vector")
    out = pd.DataFrame(index=table.index)
    for precision in PRECISIONS:
        out[f"{precision} (Mo)"] = table[precision] * n_docs / 1e6
    out["float32 théorique (Mo)"] = [4 * d * n_docs / 1e6 for d in out.index]
    return out.sort_index(ascending=False).round(1)


def quantized_scores(evaluator, corpus_emb, query_embs: dict, *, rescore_multiplier: int = 4) -> pd.DataFrame:
    """NDCG@10 par split, dimension et précision : float32, int8, binaire, binaire + rescoring.

    ``evaluator`` est un :class:`helpers.embeddings.MatryoshkaIREvaluator` (identifiants,
    passages pertinents, calcul des métriques) ; ``corpus_emb`` et ``query_embs`` viennent de
    ``evaluator.encode(model)``. La recherche passe par ``semantic_search_faiss`` de
    sentence-transformers : pour float32 et int8, sur les index faiss de :func:`build_index`
    (ceux dont :func:`search_latency` mesure la latence ; l'index int8 est entraîné sur le
    corpus, jamais sur les requêtes de test) ; pour le binaire, sur les bits produits par
    ``quantize_embeddings``, distance de Hamming. Le « rescoring » cherche
    ``rescore_multiplier × 10`` candidats en binaire puis les reclasse avec la requête float32.
    """
    from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss

    rows = []
    for (split, dim), ir in evaluator.evaluators.items():
        corpus = truncate_normalize(corpus_emb, dim)
        queries = truncate_normalize(query_embs[split], dim)
        bits = quantize_embeddings(corpus, precision="ubinary")
        searches = {
            "float32": dict(corpus_index=build_index(corpus, "float32"), rescore=False),
            "int8": dict(corpus_index=build_index(corpus, "int8"), rescore=False),
            "binaire": dict(corpus_embeddings=bits, corpus_precision="ubinary", rescore=False),
            "binaire + rescoring": dict(
                corpus_embeddings=bits, corpus_precision="ubinary", rescore=True, rescore_multiplier=rescore_multiplier
            ),
        }
        for label, kwargs in searches.items():
            hits, _ = semantic_search_faiss(queries, top_k=evaluator.k, **kwargs)
            hits = [[{"corpus_id": evaluator.corpus_ids[h["corpus_id"]], "score": h["score"]} for h in q] for q in hits]
            ndcg = ir.compute_metrics(hits)["ndcg@k"][evaluator.k]
            rows.append({"split": split, "dim": dim, "precision": label, "ndcg_at_10": float(ndcg)})
    return pd.DataFrame(rows)


def _measured(latency: pd.DataFrame, precision: str, dim: int, column: str):
    """Valeur mesurée de ``column`` pour (dimension, précision) ; le rescoring binaire garde
    l'index binaire en mémoire et y cherche ses candidats. ``None`` si non mesuré."""
    base = precision.split(" + ")[0]
    row = latency[(latency["dim"] == dim) & (latency["precision"] == base)]
    return float(row[column].iloc[0]) if len(row) else None


def _bytes_for(precision: str, dim: int, latency: pd.DataFrame) -> float:
    """Octets par vecteur mesurés (à défaut, théoriques)."""
    measured = _measured(latency, precision, dim, "bytes_per_vector")
    return measured if measured is not None else float(THEORETICAL_BYTES[precision.split(" + ")[0]](dim))


def _latency_for(precision: str, dim: int, latency: pd.DataFrame) -> float:
    measured = _measured(latency, precision, dim, "latency_ms")
    return measured if measured is not None else math.nan


def plot_tradeoff(quant: pd.DataFrame, latency: pd.DataFrame, splits=None):
    """NDCG@10 en fonction des octets par vecteur : chaque point est une (dimension, précision) ;
    un panneau par split de test (par défaut :data:`helpers.embeddings.TEST_SPLITS`)."""
    import matplotlib.pyplot as plt

    from .embeddings import reported_splits
    from .text import SPLIT_LABELS

    splits = [s for s in splits if s in set(quant["split"])] if splits else reported_splits(quant)

    fig, axes = plt.subplots(1, len(splits), figsize=(5.8 * len(splits), 4.2), squeeze=False, sharey=True)
    colors = {"float32": "tab:blue", "int8": "tab:green", "binaire": "tab:red", "binaire + rescoring": "tab:orange"}
    for ax, split in zip(axes[0], splits):
        sub = quant[quant["split"] == split]
        for precision, color in colors.items():
            pts = sub[sub["precision"] == precision].sort_values("dim")
            x = [_bytes_for(precision, d, latency) for d in pts["dim"]]
            ax.plot(x, pts["ndcg_at_10"], marker="o", color=color, label=precision)
            for xi, yi, d in zip(x, pts["ndcg_at_10"], pts["dim"]):
                ax.annotate(str(d), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("octets par vecteur dans l'index (échelle log)")
        ax.set_title(SPLIT_LABELS.get(split, split))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("NDCG@10 (modèle fine-tuné)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def recommendations(
    quant: pd.DataFrame,
    latency: pd.DataFrame,
    *,
    select_on: str = "validation",
    report_on=None,
    compromise: float = 0.98,
    limited: float = 0.90,
    n_docs: int = 1_000_000,
) -> pd.DataFrame:
    """Trois configurations recommandées, **choisies sur la validation**, rapportées sur le test.

    * performance maximale : le meilleur NDCG@10 de validation (à égalité, la plus légère) ;
    * compromis : la plus légère qui garde ``compromise`` × ce maximum ;
    * ressources limitées : la plus légère qui garde ``limited`` × ce maximum.
    """
    from .embeddings import reported_splits

    val = quant[quant["split"] == select_on]
    if val.empty:
        raise ValueError(
            f"Aucun score sur le split « {select_on} » : impossible de choisir sans toucher aux splits de test."
        )
    table = val[["dim", "precision", "ndcg_at_10"]].rename(columns={"ndcg_at_10": f"ndcg_{select_on}"})
    table["octets"] = [_bytes_for(p, d, latency) for p, d in zip(table["precision"], table["dim"])]
    best = table[f"ndcg_{select_on}"].max()
    picks = {
        "performance maximale": table.sort_values([f"ndcg_{select_on}", "octets"], ascending=[False, True]).iloc[0],
        f"compromis (≥ {compromise:.0%} du max)": table[table[f"ndcg_{select_on}"] >= compromise * best]
        .sort_values("octets")
        .iloc[0],
        f"ressources limitées (≥ {limited:.0%} du max)": table[table[f"ndcg_{select_on}"] >= limited * best]
        .sort_values("octets")
        .iloc[0],
    }
    rows = []
    for usage, pick in picks.items():
        dim, precision = int(pick["dim"]), pick["precision"]
        row = {
            "usage": usage,
            "dimension": dim,
            "precision": precision,
            "bytes_per_vector": round(pick["octets"], 1),
            "mb_per_million": round(pick["octets"] * n_docs / 1e6, 1),
            "latency_ms": round(_latency_for(precision, dim, latency), 3),
            f"ndcg_{select_on}": round(pick[f"ndcg_{select_on}"], 4),
        }
        for split in report_on or reported_splits(quant):
            hit = quant[(quant["split"] == split) & (quant["dim"] == dim) & (quant["precision"] == precision)]
            row[f"ndcg_{split}"] = round(float(hit["ndcg_at_10"].iloc[0]), 4) if len(hit) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def distractors(corpus: np.ndarray, n: int, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """``n`` vecteurs unitaires **qui ne répondent à aucune question**, tirés dans la région de
    l'espace qu'occupent les passages : une loi normale de même moyenne et de même covariance que le
    corpus (combinaison aléatoire de **tous** les passages centrés, aucun ne domine), plus un bruit
    gaussien (``noise`` × l'écart-type de chaque composante) qui comble les directions que 276
    passages n'engendrent pas, puis renormalisée.

    De simples copies du corpus (comme pour la latence) ne conviennent pas : une copie du bon passage
    aurait exactement son score. Des mélanges de deux passages non plus : chaque passage reviendrait
    dans des centaines de quasi-doublons à moitié pertinents. Des vecteurs uniformes sur la sphère,
    enfin, seraient loin de tout et ne gêneraient aucune recherche.
    """
    if n < 0:
        raise ValueError(f"Nombre de distracteurs négatif : {n}.")
    rng = np.random.default_rng(seed)
    mean, std = corpus.mean(axis=0), corpus.std(axis=0)
    centered = corpus - mean
    weights = rng.standard_normal((n, len(corpus))).astype(np.float32) / np.sqrt(len(corpus))
    mixed = mean + weights @ centered + rng.standard_normal((n, corpus.shape[1])).astype(np.float32) * (noise * std)
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def rescoring_at_scale(
    evaluator,
    corpus_emb,
    query_embs: dict,
    dim: int,
    *,
    min_vectors: int = 100_000,
    multipliers=(4, 40),
    splits=None,
    seed: int = 0,
) -> pd.DataFrame:
    """NDCG@10 en float32, en binaire et en binaire + rescoring (``multiplier × 10`` candidats),
    dans un index grossi de :func:`distractors` jusqu'à ``min_vectors`` vecteurs.

    Les passages du corpus gardent leurs identifiants ; un distracteur retrouvé compte comme un
    passage non pertinent. Colonnes : ``split``, ``precision``, ``candidates``, ``index_share_pct``
    (candidats / taille de l'index, en %), ``ndcg_at_10``, ``vecteurs``.
    """
    from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss

    corpus = truncate_normalize(corpus_emb, dim)
    big = np.ascontiguousarray(np.vstack([corpus, distractors(corpus, max(0, min_vectors - len(corpus)), seed)]))
    ids = list(evaluator.corpus_ids)
    bits = quantize_embeddings(big, precision="ubinary")
    flat = build_index(big, "float32")
    k = evaluator.k
    searches = {
        ("float32", k): dict(corpus_index=flat, rescore=False),
        ("binaire", k): dict(corpus_embeddings=bits, corpus_precision="ubinary", rescore=False),
    }
    for m in multipliers:
        searches[("binaire + rescoring", m * k)] = dict(
            corpus_embeddings=bits, corpus_precision="ubinary", rescore=True, rescore_multiplier=m
        )
    rows = []
    for split in splits or sorted({s for s, _ in evaluator.evaluators}):
        if (split, dim) not in evaluator.evaluators:
            raise ValueError(f"Split « {split} » non évalué à {dim} dimensions par cet évaluateur.")
        queries = truncate_normalize(query_embs[split], dim)
        for (label, candidates), kwargs in searches.items():
            hits, _ = semantic_search_faiss(queries, top_k=k, **kwargs)
            hits = [
                [
                    {
                        "corpus_id": ids[h["corpus_id"]]
                        if h["corpus_id"] < len(ids)
                        else f"distracteur-{h['corpus_id']}",
                        "score": h["score"],
                    }
                    for h in q
                ]
                for q in hits
            ]
            ndcg = evaluator.evaluators[(split, dim)].compute_metrics(hits)["ndcg@k"][k]
            rows.append(
                {
                    "split": split,
                    "precision": label,
                    "candidates": candidates,
                    "index_share_pct": 100 * candidates / len(big),
                    "ndcg_at_10": float(ndcg),
                    "vectors": len(big),
                }
            )
    return pd.DataFrame(rows)
