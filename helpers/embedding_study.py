"""Étude de généralisation du fine-tuning des embeddings (profil cpu), **sur les splits de validation
seulement**.

    python -m helpers.embedding_study --liste
    python -m helpers.embedding_study lr_2e-4 negatifs_durs      # quelques variantes
    python -m helpers.embedding_study                            # toutes (≈ 4 min chacune, 2 cœurs)

Le fine-tuning du notebook 02 gagne beaucoup sur les questions écrites par les gabarits du jeu, mais
les questions naturelles (écrites à la main, ``naturel_validation``) disent s'il a appris la tâche ou
les gabarits. Chaque variante part du profil ``cpu`` (même modèle, même perte Matryoshka), change un
levier (taux d'apprentissage, négatifs difficiles, perte à lots plus grands, couches gelées, poids des
dimensions, questions d'entraînement qui décrivent l'analyte sans le nommer), entraîne, puis mesure
le NDCG@10 **du modèle de base et du modèle fine-tuné** à chaque dimension sur ``naturel_validation``
et ``validation`` — jamais sur les splits de test, qui servent à la mesure finale des notebooks 02
et 03. Chaque variante ajoute (ou remplace) ses lignes
dans ``docs/mesures/etude_embeddings_cpu.csv`` (versionné, avec commit, date et threads). Le notebook
02 affiche ce tableau et en tire le réglage du profil (:func:`best_variant`).
Pour des durées comparables, lancez les variantes une à une, machine au repos.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import pandas as pd

#: Chaque variante fixe **tous** les leviers étudiés (le profil cpu change après l'étude).
_BEFORE = {
    "learning_rate": 1e-4,
    "batch_size": 32,
    "hard_negatives": 0,
    "loss_mini_batch": None,
    "frozen_layers": 0,
    "matryoshka_weights": None,
    "described_pairs": False,
}
VARIANTS: dict[str, dict] = {
    "avant_etude": {
        "embedding": dict(_BEFORE),
        "description": "le cours avant l'étude : taux 1e-4, lots de 32, perte simple",
    },
    "lr_2e-4": {"embedding": {**_BEFORE, "learning_rate": 2e-4}, "description": "taux d'apprentissage doublé (2e-4)"},
    "lr_5e-5": {
        "embedding": {**_BEFORE, "learning_rate": 5e-5},
        "description": "taux d'apprentissage divisé par deux (5e-5)",
    },
    "negatifs_durs": {
        "embedding": {**_BEFORE, "learning_rate": 2e-4, "hard_negatives": 1},
        "description": "taux 2e-4 et un négatif difficile par paire (le passage le plus proche "
        "selon la base, hors pertinent)",
    },
    "lots_128": {
        "embedding": {**_BEFORE, "learning_rate": 2e-4, "batch_size": 128, "loss_mini_batch": 32},
        "description": "taux 2e-4, lots de 128 (perte mise en cache, sous-lots de 32) : quatre fois "
        "plus de négatifs par question, quatre fois moins de pas",
    },
    "lr_3e-4": {"embedding": {**_BEFORE, "learning_rate": 3e-4}, "description": "taux d'apprentissage triplé (3e-4)"},
    "lr_5e-4": {
        "embedding": {**_BEFORE, "learning_rate": 5e-4},
        "description": "taux d'apprentissage multiplié par cinq (5e-4)",
    },
    "poids_pleine_dim": {
        "embedding": {**_BEFORE, "learning_rate": 2e-4, "matryoshka_weights": (4, 1, 1, 1, 1)},
        "description": "taux 2e-4, la pleine dimension pèse dans la perte autant que les quatre "
        "autres ensemble (poids 4, 1, 1, 1, 1)",
    },
    "poids_lr_3e-4": {
        "embedding": {**_BEFORE, "learning_rate": 3e-4, "matryoshka_weights": (4, 1, 1, 1, 1)},
        "description": "les deux meilleurs leviers ensemble : taux 3e-4 et poids 4, 1, 1, 1, 1",
    },
    "descriptions_lr_3e-4": {
        "embedding": {**_BEFORE, "learning_rate": 3e-4, "described_pairs": True},
        "description": "taux 3e-4 et 150 questions d'entraînement qui décrivent l'analyte sans "
        "le nommer (style « description »)",
    },
    "descriptions_lr_2e-4": {
        "embedding": {**_BEFORE, "learning_rate": 2e-4, "described_pairs": True},
        "description": "taux 2e-4 et les 150 questions « description »",
    },
    "gel_6_couches": {
        "embedding": {**_BEFORE, "learning_rate": 2e-4, "frozen_layers": 6},
        "description": "taux 2e-4, les 6 couches basses (sur 12) gelées",
    },
}
#: La variante retenue pour le profil cpu (un test vérifie qu'il l'applique).
CHOSEN_VARIANT = "lr_3e-4"
#: Secondes d'entraînement (2 cœurs) que laisse le budget de 8 minutes des notebooks 02 + 03 :
#: environ 2 min 30 vont au reste (évaluations, latence, index quantifiés).
TRAINING_BUDGET_S = 300
STUDY_SPLITS = ("naturel_validation", "validation")
STUDY_COLUMNS = [
    "variant",
    "description",
    "split",
    "dim",
    "ndcg_base",
    "ndcg_finetuned",
    "gap",
    "pairs",
    "steps",
    "train_seconds",
    "peak_rss_mb",
    "threads",
    "commit",
    "date",
]


def study_path():
    """``docs/mesures/etude_embeddings_cpu.csv`` : l'étude est une **mesure versionnée**."""
    from .measures import MEASURES_DIR

    return MEASURES_DIR / "etude_embeddings_cpu.csv"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Une ligne par variante : plus petit écart au modèle de base sur les questions naturelles (toutes
    dimensions), NDCG@10 moyen sur elles, gain moyen sur la validation des gabarits, durée."""
    rows = []
    for name, group in table.groupby("variant", sort=False):
        natural = group[group["split"] == "naturel_validation"]
        templated = group[group["split"] == "validation"]
        rows.append(
            {
                "variant": name,
                "description": group["description"].iloc[0],
                "min_natural_gap": natural["gap"].min(),
                "mean_natural_ndcg": natural["ndcg_finetuned"].mean(),
                "mean_templated_gain": templated["gap"].mean(),
                "train_seconds": group["train_seconds"].iloc[0],
                "steps": group["steps"].iloc[0],
                "pairs": group["pairs"].iloc[0],
            }
        )
    return pd.DataFrame(rows)


def best_variant(table: pd.DataFrame, budget_s: float = TRAINING_BUDGET_S) -> str:
    """La variante retenue : parmi celles qui s'entraînent en au plus ``budget_s`` secondes et ne font
    **jamais moins bien que la base** sur les questions naturelles de validation (à aucune dimension),
    celle de meilleur NDCG@10 moyen sur elles ; si aucune ne tient la base partout, celle dont le
    pire écart est le moins mauvais."""
    rows = summary(table)
    rows = rows[rows["train_seconds"] <= budget_s]
    if rows.empty:
        raise ValueError(f"Aucune variante de l'étude ne s'entraîne en {budget_s:.0f} s ou moins.")
    safe = rows[rows["min_natural_gap"] >= 0]
    if safe.empty:
        return str(rows.loc[rows["min_natural_gap"].idxmax(), "variant"])
    return str(safe.loc[safe["mean_natural_ndcg"].idxmax(), "variant"])


def run_variant(name: str, profile=None, base_scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Entraîne la variante ``name``, la mesure sur les splits de validation ; renvoie ses lignes."""
    from . import training
    from .data import load_retrieval
    from .embeddings import MatryoshkaIREvaluator, training_pairs
    from .models import load_sentence_transformer
    from .profiles import get_profile
    from .runtime import configure_threads, git_commit

    spec = VARIANTS[name]
    base_profile = profile or get_profile("cpu")
    profile = replace(base_profile, embedding=replace(base_profile.embedding, **spec["embedding"]))
    cfg = profile.embedding
    threads = configure_threads()
    data = load_retrieval(profile)
    evaluator = MatryoshkaIREvaluator(
        {s: data[s] for s in STUDY_SPLITS}, data["corpus"], cfg.matryoshka_dims, batch_size=cfg.eval_batch_size
    )
    if base_scores is None:
        base = load_sentence_transformer(cfg.model_id, cfg.offline_model)
        base.max_seq_length = cfg.max_seq_length  # comme le modèle que le trainer entraîne
        base_scores, _ = evaluator.evaluate(base, "base")
    result = training.train_embeddings(profile, training_pairs(data["train"], data["corpus"]), f"/tmp/etude_emb_{name}")
    tuned, _ = evaluator.evaluate(result["model"], "fine_tune")
    merged = base_scores[["split", "dim", "ndcg_at_10"]].merge(
        tuned[["split", "dim", "ndcg_at_10"]], on=["split", "dim"], suffixes=("_base", "_ft")
    )
    rows = pd.DataFrame(
        {
            "variant": name,
            "description": spec["description"],
            "split": merged["split"],
            "dim": merged["dim"],
            "ndcg_base": merged["ndcg_at_10_base"].round(4),
            "ndcg_finetuned": merged["ndcg_at_10_ft"].round(4),
            "gap": (merged["ndcg_at_10_ft"] - merged["ndcg_at_10_base"]).round(4),
            "pairs": len(data["train"]),
            "steps": result["steps"],
            "train_seconds": round(result["seconds"], 1),
            "peak_rss_mb": result["peak_rss_mb"],
            "threads": threads,
            "commit": git_commit(),
            "date": time.strftime("%Y-%m-%d"),
        }
    )
    save_rows(rows)
    return rows


def save_rows(rows: pd.DataFrame, path=None) -> pd.DataFrame:
    """Remplace les lignes de la variante de ``rows`` dans l'étude (:func:`study_path`)."""
    from .measures import replace_variant_rows

    return replace_variant_rows(rows, path or study_path(), STUDY_COLUMNS)


def study_table() -> pd.DataFrame | None:
    """Le résumé de l'étude pour le notebook 02 (:func:`summary`), ou ``None`` si elle n'existe pas."""
    path = study_path()
    return summary(pd.read_csv(path)) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    from .measures import study_main

    base_scores = None  # les scores du modèle de base, mesurés une fois pour toutes les variantes

    def run(name: str) -> None:
        nonlocal base_scores
        rows = run_variant(name, base_scores=base_scores)
        base_scores = rows.rename(columns={"ndcg_base": "ndcg_at_10"})[["split", "dim", "ndcg_at_10"]]
        print(
            rows[["variant", "split", "dim", "ndcg_base", "ndcg_finetuned", "gap", "train_seconds"]].to_string(
                index=False
            ),
            flush=True,
        )

    return study_main(
        argv, prog="python -m helpers.embedding_study", description=__doc__.splitlines()[0], variants=VARIANTS, run=run
    )


if __name__ == "__main__":
    sys.exit(main())
