"""Plomberie des notebooks 02–03 : paires d'entraînement, évaluation Matryoshka, résultats.

Le code à apprendre (la perte, les arguments du trainer, l'appel à l'évaluateur de
sentence-transformers) reste visible dans les notebooks. Ici :

* :func:`check_dims` — valide une liste de dimensions Matryoshka contre un modèle ;
* :func:`training_pairs` — colonnes ``anchor`` / ``positive`` pour ``MultipleNegativesRankingLoss`` ;
* :class:`MatryoshkaIREvaluator` — NDCG@10, MRR@10, Recall@10 à **chaque** dimension et sur
  **chaque** split en n'encodant les textes qu'une fois. Les métriques sont calculées par
  ``InformationRetrievalEvaluator.compute_metrics`` de la bibliothèque (mêmes formules, mêmes
  départages d'ex-æquo) ; un test vérifie l'égalité avec l'évaluateur appelé dimension par
  dimension (``truncate_dim``), qui encode tout à nouveau pour chaque dimension ;
* sauvegarde / relecture de ``ndcg.csv`` et des rangs par requête (intervalles bootstrap du
  notebook 03).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator, SentenceEvaluator

from .data import ir_inputs
from .outputs import load_json, output_path, require_output
from .text import SPLIT_LABELS

SCORE_COLUMNS = ["split", "model", "dim", "ndcg_at_10", "mrr_at_10", "recall_at_10"]
PER_QUERY_COLUMNS = ["split", "model", "dim", "pair_id", "rank", "ndcg_at_10"]
#: Les splits de test rapportés : deux générés par les gabarits, et les questions naturelles écrites
#: à la main (``naturel_test`` ; leur moitié ``naturel_validation`` sert aux choix).
TEST_SPLITS = ("test_questions", "test_analytes", "naturel_test")


def reported_splits(table: pd.DataFrame) -> list[str]:
    """Les splits de :data:`TEST_SPLITS` présents dans ``table`` (colonne ``split``), dans cet ordre :
    des résultats plus anciens, sans les questions naturelles, restent lisibles."""
    present = set(table["split"])
    return [s for s in TEST_SPLITS if s in present]


class DimensionError(ValueError):
    """Liste de dimensions Matryoshka invalide pour le modèle."""


class MissingResultsError(FileNotFoundError):
    """Résultats d'un notebook précédent absents ou incomplets."""


# --------------------------------------------------------------------------- dimensions
def model_dimension(model) -> int:
    """Dimension des embeddings produits par ``model`` (sentence-transformers)."""
    dim = model.get_embedding_dimension()
    if not dim:
        raise DimensionError("Le modèle n'annonce pas de dimension d'embedding.")
    return int(dim)


def check_dims(dims: Iterable, model_dim: int, where: str = "matryoshka_dims") -> tuple[int, ...]:
    """Valide des dimensions Matryoshka et les renvoie de la plus grande à la plus petite.

    Chaque dimension doit être un entier strictement positif, au plus égal à la dimension du
    modèle (on ne peut tronquer un vecteur de 384 composantes à 512), sans doublon.
    """
    dims = list(dims)
    if not dims:
        raise DimensionError(f"{where} : liste de dimensions vide.")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise DimensionError(f"{where} : « {d!r} » n'est pas un entier.")
        if d <= 0:
            raise DimensionError(f"{where} : la dimension {d} doit être strictement positive.")
        if d > model_dim:
            raise DimensionError(
                f"{where} : la dimension {d} dépasse celle du modèle ({model_dim}). "
                f"Un embedding Matryoshka se tronque, il ne s'allonge pas : gardez des "
                f"dimensions ≤ {model_dim}."
            )
    if len(set(dims)) != len(dims):
        raise DimensionError(f"{where} : dimensions en double dans {dims}.")
    return tuple(sorted((int(d) for d in dims), reverse=True))


def matryoshka_dims(cfg, model) -> tuple[int, ...]:
    """Les dimensions Matryoshka à utiliser avec ``model`` : celles du profil (``cfg``), validées.

    Exception : si le modèle chargé est un modèle **de repli** hors ligne (hub coupé pendant le
    chargement), il apporte ses propres dimensions (``OFFLINE_MODELS[...].matryoshka_dims``) — on
    ne tronque pas un embedding de 384 composantes à 1 024. Le changement est affiché.
    """
    from .models import OFFLINE_MODELS

    dimension = model_dimension(model)
    offline = getattr(model, "course_offline_name", None)
    if offline and max(cfg.matryoshka_dims) > dimension and OFFLINE_MODELS[offline].matryoshka_dims:
        own = OFFLINE_MODELS[offline].matryoshka_dims
        print(
            f"Modèle de repli « {offline} » ({dimension} dimensions) : dimensions Matryoshka {own} "
            f"au lieu de {tuple(cfg.matryoshka_dims)}."
        )
        return check_dims(own, dimension, where=f"dimensions de « {offline} »")
    return check_dims(cfg.matryoshka_dims, dimension)


# --------------------------------------------------------------------------- sauvegarde
def same_weights(model, reloaded) -> bool:
    """Vrai si ``reloaded`` a exactement les poids de ``model`` (mêmes noms, valeurs identiques,
    comparées dans le type de ``model``) : la sauvegarde n'a rien perdu."""
    import torch

    saved, loaded = model.state_dict(), reloaded.state_dict()
    if saved.keys() != loaded.keys():
        return False
    return all(torch.equal(saved[k].detach().cpu(), loaded[k].detach().cpu().to(saved[k].dtype)) for k in saved)


def reload_tolerance(precision: str) -> float:
    """Écart admis entre les embeddings du modèle en mémoire et ceux du modèle rechargé.

    Après un entraînement en précision mixte (``bf16`` ou ``fp16``), le modèle en mémoire calcule
    encore sous *autocast* (le trainer a enveloppé son ``forward``), alors que le modèle rechargé
    calcule en fp32 : mêmes poids, arrondis différents. Les composantes d'un embedding normalisé
    sont inférieures à 1 en valeur absolue ; on admet l'epsilon du format de calcul
    (``torch.finfo``) : 2⁻⁷ ≈ 7,8e-3 en bf16, 2⁻¹⁰ ≈ 9,8e-4 en fp16, et 1e-5 en fp32 (ordre des
    additions). Mesuré : 1,9e-4 (bf16) et 2,5e-5 (fp16) sur GPU, 8,8e-4 (bf16) sur CPU.
    """
    import torch

    from .runtime import torch_dtype

    dtype = torch_dtype(precision)  # erreur française si la précision est inconnue
    return 1e-5 if dtype == torch.float32 else float(torch.finfo(dtype).eps)


# --------------------------------------------------------------------------- entraînement
def training_pairs(split, corpus):
    """``Dataset`` à deux colonnes ``anchor`` (question) / ``positive`` (passage pertinent).

    L'ordre des colonnes compte pour ``MultipleNegativesRankingLoss`` : la première est
    l'ancre, la deuxième le positif ; les positifs des autres paires du lot servent de négatifs.
    """
    from datasets import Dataset

    if len(split) == 0:
        raise ValueError("Aucune paire d'entraînement : le split est vide.")
    text = dict(zip(corpus["passage_id"], corpus["text"]))
    missing = sorted({pid for pid in split["passage_id"] if pid not in text})
    if missing:
        raise ValueError(f"Passages absents du corpus : {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
    return Dataset.from_dict(
        {"anchor": list(split["question"]), "positive": [text[pid] for pid in split["passage_id"]]}
    )


def freeze_word_embeddings(model) -> int:
    """Gèle la table des embeddings de mots (vocabulaire) ; renvoie le nombre de poids gelés.

    Pour multilingual-e5, cette table (≈ 250 000 mots × d) pèse plus que tout le reste du réseau :
    la geler divise la mémoire de l'optimiseur et ne touche pas aux couches qui apprennent
    à rapprocher questions et passages.
    """
    frozen = 0
    for module in model.modules():
        emb = getattr(module, "word_embeddings", None)
        if emb is not None and hasattr(emb, "weight"):
            emb.weight.requires_grad_(False)
            frozen += emb.weight.numel()
    if frozen == 0:
        raise ValueError("Aucune table « word_embeddings » trouvée dans ce modèle.")
    return frozen


def freeze_lower_layers(model, n: int) -> int:
    """Gèle les ``n`` premières couches du transformeur (``encoder.layer``) ; renvoie le nombre de
    poids gelés. Les couches basses portent surtout la langue générale : les geler limite ce que
    l'entraînement peut en défaire, et raccourcit le calcul des gradients."""
    import torch

    layers = [
        m for name, m in model.named_modules() if name.endswith("encoder.layer") and isinstance(m, torch.nn.ModuleList)
    ]
    if not layers:
        raise ValueError("Aucune pile de couches « encoder.layer » trouvée dans ce modèle.")
    stack = layers[0]
    if not 0 <= n <= len(stack):
        raise ValueError(f"frozen_layers = {n} : le modèle a {len(stack)} couches (0 à {len(stack)} attendu).")
    frozen = 0
    for layer in stack[:n]:
        for weight in layer.parameters():
            weight.requires_grad_(False)
            frozen += weight.numel()
    return frozen


def add_hard_negatives(pairs, model, n: int, *, relative_margin: float | None = None):
    """Ajoute à chaque paire ``n`` **négatifs difficiles** : les passages que ``model`` (le modèle de
    départ) classe le plus haut pour la question sans qu'ils soient son passage pertinent
    (``sentence_transformers.util.mine_hard_negatives``).

    Les candidats sont les passages des paires d'entraînement seulement (jamais ceux des analytes
    de test). ``relative_margin`` (aucune par défaut) écarterait les passages presque aussi proches
    que le pertinent, souvent pertinents eux aussi ; sur ce corpus, où le modèle de départ donne
    des similarités serrées (0,8 à 0,9), une marge de 1 % retire déjà un cinquième des paires — les
    plus instructives, celles où la base se trompe. Une paire sans assez de négatifs est une
    erreur qui la nomme, jamais une ligne retirée en silence.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(
        pairs,
        model,
        anchor_column_name="anchor",
        positive_column_name="positive",
        num_negatives=n,
        relative_margin=relative_margin,
        sampling_strategy="top",
        query_prompt_name="query",
        corpus_prompt_name="document",
        output_format="n-tuple",
        batch_size=64,
        verbose=False,
    )
    negatives = {}
    for row in mined:
        negatives.setdefault((row["anchor"], row["positive"]), [row[f"negative_{i + 1}"] for i in range(n)])
    missing = [i for i, key in enumerate(zip(pairs["anchor"], pairs["positive"])) if key not in negatives]
    if missing:  # un même lot ne peut pas mêler paires et n-uplets : on le dit plutôt que d'en retirer
        raise ValueError(
            f"Négatifs difficiles : {len(missing)} paires sur {len(pairs)} n'en reçoivent pas {n} "
            f"(première : ligne {missing[0] + 1}, « {pairs['anchor'][missing[0]]} ») ; baissez "
            "relative_margin ou le nombre de négatifs."
        )
    return Dataset.from_list(
        [
            {"anchor": a, "positive": p, **{f"negative_{i + 1}": neg for i, neg in enumerate(negatives[a, p])}}
            for a, p in zip(pairs["anchor"], pairs["positive"])
        ]
    )


def set_model_card(model, profile, source: str = "") -> None:
    """Renseigne la fiche du modèle (``README.md`` écrit par ``save_pretrained``)."""
    card = model.model_card_data
    card.language = ["fr"]
    card.license = "mit"  # licence de multilingual-e5
    card.model_name = (
        f"{profile.embedding.model_id} fine-tuné (Matryoshka) sur MedAnalyzer-FR — jeu synthétique, usage pédagogique"
    )
    card.local_files_only = profile.name != "gpu"
    card.tags = list(dict.fromkeys([*card.tags, "matryoshka", "medical", "french", "synthetic-data"]))
    card.task_name = (
        "recherche de passages sur les analyses de biologie médicale (RAG pédagogique) ; pas un dispositif médical"
    )
    if source:
        model.course_source = source


def parameter_counts(model) -> dict:
    """Paramètres totaux et entraînables du modèle."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_pct": round(100 * trainable / total, 1)}


# --------------------------------------------------------------------------- évaluation
class MatryoshkaIREvaluator(SentenceEvaluator):
    """Évaluation de la recherche à plusieurs dimensions Matryoshka et sur plusieurs splits.

    Pour chaque split et chaque dimension, un ``InformationRetrievalEvaluator`` de
    sentence-transformers est construit (``truncate_dim=d``, prompts e5 par leur nom). Au lieu
    de laisser chacun réencoder corpus et requêtes, on encode **une fois** à pleine dimension,
    on tronque, on cherche les 10 plus proches voisins (``util.semantic_search``, cosinus), puis
    la bibliothèque calcule les métriques (``compute_metrics``). Utilisable aussi comme
    évaluateur du ``SentenceTransformerTrainer`` (métriques ``<split>_dim<d>_ndcg@10``).
    """

    def __init__(
        self,
        splits: dict,
        corpus,
        dims: Iterable[int],
        *,
        k: int = 10,
        batch_size: int = 32,
        name: str = "",
        show_progress_bar: bool = False,
        use_prompts: bool = True,
    ):
        super().__init__()
        if not splits:
            raise ValueError("Aucun split de requêtes à évaluer.")
        self.dims = tuple(sorted(dims, reverse=True))
        if not self.dims:
            raise DimensionError("Liste de dimensions vide.")
        self.k, self.batch_size, self.name = k, batch_size, name
        self.show_progress_bar = show_progress_bar
        self.use_prompts = use_prompts
        self.splits = {}
        self.evaluators = {}
        for split_name, split in splits.items():
            queries, docs, relevant = ir_inputs(split, corpus)  # erreurs claires si vide
            self.splits[split_name] = (queries, relevant)
            for dim in self.dims:
                self.evaluators[split_name, dim] = InformationRetrievalEvaluator(
                    queries,
                    docs,
                    relevant,
                    name=f"{split_name}_{dim}",
                    truncate_dim=dim,
                    query_prompt_name="query",
                    corpus_prompt_name="document",
                    mrr_at_k=[k],
                    ndcg_at_k=[k],
                    accuracy_at_k=[1, k],
                    precision_recall_at_k=[k],
                    map_at_k=[k],
                    batch_size=batch_size,
                )
        self.corpus_ids = list(docs)
        self.corpus_texts = [docs[c] for c in self.corpus_ids]
        first = next(iter(self.splits))
        self.primary_metric = f"{first}_dim{self.dims[0]}_ndcg@{k}"

    def _prompt(self, name: str) -> dict:
        # encode_query / encode_document appliquent d'eux-mêmes le prompt « query » / « document »
        # du modèle : pour l'expérience « sans prompt », il faut passer un prompt vide explicite.
        return {"prompt_name": name} if self.use_prompts else {"prompt": ""}

    def encode(self, model) -> tuple:
        """Embeddings pleine dimension : ``(corpus, {split: requêtes})`` (tenseurs torch)."""
        common = dict(batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=self.show_progress_bar)
        corpus = model.encode_document(self.corpus_texts, **self._prompt("document"), **common)
        queries = {
            split_name: model.encode_query(list(qs.values()), **self._prompt("query"), **common)
            for split_name, (qs, _) in self.splits.items()
        }
        return corpus, queries

    def evaluate(self, model, label: str = "model") -> tuple[pd.DataFrame, pd.DataFrame]:
        """Scores par (split, dimension) et rangs par requête, pour le modèle ``label``.

        Renvoie ``(scores, per_query)`` aux colonnes :data:`SCORE_COLUMNS` et
        :data:`PER_QUERY_COLUMNS`. ``rank`` est le rang (1 = premier) du passage pertinent,
        vide s'il n'est pas dans les ``k`` premiers.
        """
        from sentence_transformers.util import cos_sim, semantic_search

        check_dims(self.dims, model_dimension(model))
        corpus_emb, query_embs = self.encode(model)
        rows, per_query = [], []
        for (split_name, dim), ir in self.evaluators.items():
            hits = semantic_search(
                query_embs[split_name][:, :dim], corpus_emb[:, :dim], top_k=self.k, score_function=cos_sim
            )
            hits = [[{"corpus_id": self.corpus_ids[h["corpus_id"]], "score": h["score"]} for h in q] for q in hits]
            metrics = ir.compute_metrics(hits)
            rows.append(
                {
                    "split": split_name,
                    "model": label,
                    "dim": dim,
                    "ndcg_at_10": float(metrics["ndcg@k"][self.k]),
                    "mrr_at_10": float(metrics["mrr@k"][self.k]),
                    "recall_at_10": float(metrics["recall@k"][self.k]),
                }
            )
            for qid, q_hits in zip(ir.queries_ids, hits):
                per_query.append(self._query_row(ir, split_name, label, dim, qid, q_hits))
        return pd.DataFrame(rows, columns=SCORE_COLUMNS), pd.DataFrame(per_query, columns=PER_QUERY_COLUMNS)

    def _query_row(self, ir, split_name, label, dim, qid, q_hits) -> dict:
        relevant = ir.relevant_docs[qid]
        ranked = sorted(q_hits, key=lambda h: (-h["score"], h["corpus_id"]))[: self.k]
        predicted = [1 if h["corpus_id"] in relevant else 0 for h in ranked]
        ideal = ir.compute_dcg_at_k([1] * len(relevant), self.k)
        rank = next((i + 1 for i, rel in enumerate(predicted) if rel), None)
        return {
            "split": split_name,
            "model": label,
            "dim": dim,
            "pair_id": qid,
            "rank": rank,
            "ndcg_at_10": ir.compute_dcg_at_k(predicted, self.k) / ideal,
        }

    # -- interface SentenceEvaluator (pour le trainer) ------------------------------------
    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
        scores, _ = self.evaluate(model)
        metrics = {f"{r.split}_dim{r.dim}_ndcg@{self.k}": r.ndcg_at_10 for r in scores.itertuples()}
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict:
        return {"dims": list(self.dims), "k": self.k}

    @property
    def description(self) -> str:
        return "Information Retrieval (Matryoshka)"


# --------------------------------------------------------------------------- résultats
def scores_path(profile_name: str) -> Path:
    return output_path(profile_name, "embeddings/ndcg.csv")


def per_query_path(profile_name: str) -> Path:
    return output_path(profile_name, "embeddings/per_query.csv")


def model_dir(profile_name: str) -> Path:
    """Dossier du modèle fine-tuné (``SentenceTransformer(model_dir(...))`` le recharge)."""
    return output_path(profile_name, "embeddings/model")


def training_summary_path(profile_name: str) -> Path:
    """``outputs/<profil>/embeddings/training_summary.json`` (écrit par :func:`save_results`)."""
    return output_path(profile_name, "embeddings/training_summary.json")


def require_model(profile_name: str) -> Path:
    """Dossier du modèle fine-tuné par le notebook 02, ou erreur claire s'il n'existe pas."""
    return require_output(profile_name, "embeddings/model", MissingResultsError)


def checkpoint_dir(profile_name: str) -> Path:
    return output_path(profile_name, "embeddings/checkpoints")


def save_results(scores: pd.DataFrame, per_query: pd.DataFrame, profile_name: str, extra: dict | None = None) -> Path:
    """Écrit ``ndcg.csv`` (colonnes :data:`SCORE_COLUMNS`) et ``per_query.csv``."""
    _check_columns(scores, SCORE_COLUMNS, "scores")
    _check_columns(per_query, PER_QUERY_COLUMNS, "per_query")
    path = scores_path(profile_name)
    scores[SCORE_COLUMNS].sort_values(["split", "model", "dim"], ascending=[True, True, False]).to_csv(
        path, index=False, float_format="%.6f"
    )
    per_query[PER_QUERY_COLUMNS].to_csv(per_query_path(profile_name), index=False, float_format="%.6f")
    if extra is not None:
        training_summary_path(profile_name).write_text(
            json.dumps(extra, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
    return path


def load_training_summary(profile_name: str) -> dict:
    """Relit ``training_summary.json`` du notebook 02 (paires, pas, temps, mémoire, paramètres)."""
    return load_json(profile_name, "embeddings/training_summary.json", MissingResultsError)


def _check_columns(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"Tableau « {what} » : colonnes manquantes {missing}.")


def load_results(profile_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Relit ``ndcg.csv`` et ``per_query.csv`` écrits par le notebook 02.

    Erreur en français si le notebook 02 n'a pas tourné pour ce profil, ou si un fichier a
    des colonnes manquantes, ou s'il manque le modèle de base ou le modèle fine-tuné.
    """
    path, pq_path = scores_path(profile_name), per_query_path(profile_name)
    for p in (path, pq_path):
        if not p.exists():
            raise MissingResultsError(
                f"{p} introuvable : exécutez d'abord le notebook 02 avec le profil « {profile_name} »."
            )
    scores, per_query = pd.read_csv(path), pd.read_csv(pq_path)
    _check_columns(scores, SCORE_COLUMNS, str(path))
    _check_columns(per_query, PER_QUERY_COLUMNS, str(pq_path))
    models = set(scores["model"])
    if not {"base", "finetuned"} <= models:
        raise MissingResultsError(f"{path} : il faut les lignes « base » et « finetuned » (trouvé : {sorted(models)}).")
    return scores, per_query


def results_table(scores: pd.DataFrame, split: str, metric: str = "ndcg_at_10") -> pd.DataFrame:
    """Tableau du cours pour un split : Dimension | Score initial | Score final | Gain."""
    sub = scores[scores["split"] == split]
    if sub.empty:
        raise ValueError(f"Aucun score pour le split « {split} ».")
    wide = sub.pivot(index="dim", columns="model", values=metric).sort_index(ascending=False)
    table = pd.DataFrame(
        {"dim": wide.index, "base_score": wide["base"].to_numpy(), "final_score": wide["finetuned"].to_numpy()}
    )
    table["gain"] = table["final_score"] - table["base_score"]
    table["gain_pct"] = 100 * table["gain"] / table["base_score"]
    return table.round(4).reset_index(drop=True)


def retention(scores: pd.DataFrame, metric: str = "ndcg_at_10") -> pd.DataFrame:
    """Part du score pleine dimension conservée à chaque dimension, par split et par modèle (%)."""
    out = []
    for (split, model), grp in scores.groupby(["split", "model"]):
        full = grp.loc[grp["dim"].idxmax(), metric]
        for row in grp.sort_values("dim", ascending=False).itertuples():
            out.append(
                {
                    "split": split,
                    "model": model,
                    "dim": row.dim,
                    "retention_pct": round(100 * getattr(row, metric) / full, 1),
                }
            )
    return pd.DataFrame(out)


def plot_ndcg_vs_dim(scores: pd.DataFrame, metric: str = "ndcg_at_10"):
    """NDCG@10 en fonction de la dimension, base contre fine-tuné, un panneau par split."""
    import matplotlib.pyplot as plt

    splits = reported_splits(scores)
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False, sharey=True)
    styles = {"base": ("tab:gray", "o", "modèle de base"), "finetuned": ("tab:blue", "s", "fine-tuné")}
    for ax, split in zip(axes[0], splits):
        for model, (color, marker, label) in styles.items():
            sub = scores[(scores["split"] == split) & (scores["model"] == model)].sort_values("dim")
            ax.plot(sub["dim"], sub[metric], marker=marker, color=color, label=label)
        ax.set_xscale("log", base=2)
        dims = sorted(scores["dim"].unique())
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_title(f"{split} ({SPLIT_LABELS.get(split, split)})")
        ax.set_xlabel("dimension de l'embedding (échelle log)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric.replace("_at_", "@").upper().replace("NDCG", "NDCG"))
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def bootstrap_gains(
    per_query: pd.DataFrame,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    new: str = "finetuned",
    old: str = "base",
) -> pd.DataFrame:
    """Gain moyen de NDCG@10 (``new`` − ``old`` ; par défaut fine-tuné − base) et son intervalle de
    confiance bootstrap, par split et par dimension.

    Bootstrap apparié : on rééchantillonne les **requêtes** avec remise (la même requête pour
    les deux modèles), via ``scipy.stats.bootstrap`` (méthode BCa).
    """
    from .stats import mean_interval

    rows = []
    for (split, dim), grp in per_query.groupby(["split", "dim"], sort=False):
        wide = grp.pivot(index="pair_id", columns="model", values="ndcg_at_10")
        if not {old, new} <= set(wide.columns):
            raise ValueError(
                f"{split}, dimension {dim} : il manque les rangs de « {old} » ou de « {new} » "
                f"(modèles présents : {', '.join(map(str, wide.columns))})."
            )
        if wide[[old, new]].isna().any().any():
            raise ValueError(f"{split}, dimension {dim} : requêtes évaluées pour un seul des modèles.")
        diff = (wide[new] - wide[old]).to_numpy()
        gain, low, high = mean_interval(diff, n_resamples=n_resamples, seed=seed, confidence=confidence)
        rows.append(
            {
                "split": split,
                "dim": int(dim),
                "queries": len(diff),
                "gain": gain,
                "ci_low": low,
                "ci_high": high,
                "significant": bool(low > 0 or high < 0),
            }
        )
    return pd.DataFrame(rows).sort_values(["split", "dim"], ascending=[True, False]).reset_index(drop=True)


def dimension_gap(
    per_query: pd.DataFrame,
    small_dim: int,
    *,
    model: str = "finetuned",
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Écart de NDCG@10 d'un même modèle entre ``small_dim`` et sa pleine dimension, par split, avec
    son intervalle bootstrap apparié (mêmes requêtes aux deux dimensions).

    Sert à lire une rétention au-dessus de 100 % : si l'intervalle contient 0, les deux dimensions
    ne se distinguent pas sur ces requêtes.
    """
    from .stats import mean_interval

    rows = []
    for split, grp in per_query[per_query["model"] == model].groupby("split", sort=False):
        full = int(grp["dim"].max())
        if small_dim not in set(grp["dim"]):
            raise DimensionError(
                f"{split} : dimension {small_dim} non évaluée (dimensions : {sorted(set(grp['dim']), reverse=True)})."
            )
        wide = grp.pivot(index="pair_id", columns="dim", values="ndcg_at_10")
        diff = (wide[small_dim] - wide[full]).to_numpy()
        gap, low, high = mean_interval(diff, n_resamples=n_resamples, seed=seed, confidence=confidence)
        rows.append(
            {
                "split": split,
                "full_dim": full,
                "ndcg_full": wide[full].mean(),
                "dim": small_dim,
                "ndcg_dim": wide[small_dim].mean(),
                "retention_pct": 100 * wide[small_dim].mean() / wide[full].mean(),
                "gap": gap,
                "ci_low": low,
                "ci_high": high,
                "queries": len(diff),
                "significant": bool(low > 0 or high < 0),
            }
        )
    if not rows:
        raise ValueError(f"Aucun rang du modèle « {model} » dans ces résultats.")
    return pd.DataFrame(rows)


def scores_by_style(per_query: pd.DataFrame, split, dim: int) -> pd.DataFrame:
    """NDCG@10 moyen par **style de question** et par modèle, à la dimension ``dim``.

    ``split`` : le split évalué (``Dataset`` ou liste de lignes avec ``pair_id`` et ``style``), par
    exemple ``naturel_test`` ; ``per_query`` : les rangs par requête de
    :meth:`MatryoshkaIREvaluator.evaluate`. Une ligne par style (libellé de
    ``helpers.generate.NATURAL_STYLES`` s'il existe), une colonne par modèle, le nombre de
    questions et l'écart fine-tuné − base si les deux modèles sont là.
    """
    from .generate import NATURAL_STYLES

    rows = list(split)
    if not rows or "style" not in rows[0]:
        raise ValueError("Split sans colonne « style » : scores_by_style attend par exemple naturel_test.")
    name = rows[0]["pair_id"].rsplit("-", 1)[0]
    styles = {r["pair_id"]: r["style"] for r in rows}
    sub = per_query[(per_query["split"] == name) & (per_query["dim"] == dim)]
    if sub.empty:
        raise ValueError(f"Aucun rang pour le split « {name} » à la dimension {dim}.")
    sub = sub.assign(style=sub["pair_id"].map(styles))
    table = sub.pivot_table(index="style", columns="model", values="ndcg_at_10", aggfunc="mean")
    table.insert(0, "questions", sub[sub["model"] == sub["model"].iloc[0]].groupby("style").size())
    if {"base", "finetuned"} <= set(table.columns):
        table["gap"] = table["finetuned"] - table["base"]
    table.index = [f"{s} — {NATURAL_STYLES[s]}" if s in NATURAL_STYLES else s for s in table.index]
    return table.sort_values("gap" if "gap" in table else table.columns[-1])


def plot_training_log(log_history: list[dict]):
    """Perte d'entraînement (et NDCG@10 de validation s'il a été mesuré) au fil des pas."""
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if not train:
        raise ValueError("Historique d'entraînement vide : rien à tracer.")
    evals = [
        (h["step"], v)
        for h in log_history
        for k, v in h.items()
        if k.startswith("eval_") and k.endswith("ndcg@10") and "_dim" in k and "step" in h
    ]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(*zip(*train), marker=".", color="tab:red", label="perte (somme sur les dimensions)")
    ax.set_xlabel("pas d'optimisation")
    ax.set_ylabel("perte MatryoshkaLoss")
    ax.grid(alpha=0.3)
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o", color="tab:blue", label="NDCG@10 validation")
        ax2.set_ylabel("NDCG@10 (validation)")
        ax2.set_ylim(0, 1)
        fig.legend(loc="upper right")
    else:
        ax.legend()
    fig.tight_layout()
    return fig


def check_targets(scores: pd.DataFrame, small_dim: int = 64, min_retention: float = 96.0) -> pd.DataFrame:
    """Les objectifs de qualité du cours, vérifiés sur les scores mesurés (un tableau, pas d'assert).

    1. le modèle fine-tuné bat le modèle de base à chaque dimension, sur chaque split de test ;
    2. à ``small_dim`` dimensions, il garde au moins ``min_retention`` % de son NDCG@10 pleine dimension ;
    3. à ``small_dim`` dimensions, il bat le modèle de base à pleine dimension.
    """
    rows = []
    for split in reported_splits(scores):
        sub = scores[scores["split"] == split]
        wide = sub.pivot(index="dim", columns="model", values="ndcg_at_10")
        full = wide.index.max()
        worst = (wide["finetuned"] - wide["base"]).min()
        rows.append(
            {
                "split": split,
                "critère": "fine-tuné > base à chaque dimension",
                "mesure": f"plus petit écart {worst:+.4f}",
                "atteint": bool(worst > 0),
            }
        )
        if small_dim in wide.index:
            kept = 100 * wide.loc[small_dim, "finetuned"] / wide.loc[full, "finetuned"]
            rows.append(
                {
                    "split": split,
                    "critère": f"rétention à {small_dim} dims ≥ {min_retention:g} %",
                    "mesure": f"{kept:.1f} %",
                    "atteint": bool(kept >= min_retention),
                }
            )
            ft, base = wide.loc[small_dim, "finetuned"], wide.loc[full, "base"]
            rows.append(
                {
                    "split": split,
                    "critère": f"fine-tuné à {small_dim} dims > base à {full} dims",
                    "mesure": f"{ft:.4f} contre {base:.4f}",
                    "atteint": bool(ft > base),
                }
            )
    from .text import french_decimals

    return pd.DataFrame([{**row, "mesure": french_decimals(row["mesure"])} for row in rows])
