"""Plomberie du notebook 06 : embeddings (A), LoRA/QLoRA (B) et fine-tuning complet (C) côte à côte.

* :func:`curve_subset` / :func:`train_embedder` — la courbe d'apprentissage des embeddings : la
  recette du notebook 02 sur moins de paires ;
* :func:`accuracy_at_1` — part des requêtes dont le bon passage arrive premier ;
* :func:`time_per_call` — latence d'une question, appel par appel (médiane et 90ᵉ centile) ;
* :data:`GENERAL_QUESTIONS`, :func:`keyword_hits`, :func:`forgetting_table` — l'oubli
  catastrophique mesuré sur des questions générales (mêmes questions en français et en anglais) ;
* :data:`GENERAL_TEXT_FR`, :func:`text_loss` — perte du modèle sur du français courant ;
* :func:`comparison_table` / :func:`save_comparison` — le tableau ``comparison.csv`` ;
* :func:`plot_learning_curve`, :func:`plot_costs`, :func:`decision_guide` — lecture du tableau.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from .explore import save_table

#: (langue, question, mots attendus) — les dix mêmes questions de culture générale en français et
#: en anglais : SmolLM2-135M a appris l'essentiel de ce qu'il sait en anglais.
GENERAL_QUESTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("fr", "Quelle est la capitale de la France ?", ("paris",)),
    ("fr", "Combien de jours compte une semaine ?", ("sept", "7")),
    ("fr", "De quelle couleur est le ciel par beau temps ?", ("bleu",)),
    ("fr", "Combien font deux plus trois ?", ("cinq", "5")),
    ("fr", "Quel animal aboie ?", ("chien",)),
    ("fr", "Quelle langue parle-t-on en Espagne ?", ("espagnol", "castillan")),
    ("fr", "Combien de mois compte une année ?", ("douze", "12")),
    ("fr", "Quelle est la capitale de l'Italie ?", ("rome",)),
    ("fr", "Quel est le contraire de « chaud » ?", ("froid",)),
    ("fr", "Que fabriquent les abeilles ?", ("miel",)),
    ("en", "What is the capital of France?", ("paris",)),
    ("en", "How many days are there in a week?", ("seven", "7")),
    ("en", "What color is the sky on a clear day?", ("blue",)),
    ("en", "What is two plus three?", ("five", "5")),
    ("en", "Which animal barks?", ("dog",)),
    ("en", "What language is spoken in Spain?", ("spanish",)),
    ("en", "How many months are there in a year?", ("twelve", "12")),
    ("en", "What is the capital of Italy?", ("rome",)),
    ("en", "What is the opposite of hot?", ("cold",)),
    ("en", "What do bees make?", ("honey",)),
)

#: Phrases de français courant, sans rapport avec la biologie médicale, écrites pour le cours :
#: leur perte mesure ce que le modèle garde de la langue générale après fine-tuning.
GENERAL_TEXT_FR: tuple[str, ...] = (
    "Le marché du samedi ouvre tôt : on y trouve des pommes, du fromage et du pain encore chaud.",
    "Quand il pleut, les enfants jouent aux cartes dans la cuisine en attendant le goûter.",
    "Le train pour Lyon part du quai numéro trois à huit heures et quart.",
    "Ma voisine arrose ses tomates chaque soir, sauf les jours d'orage.",
    "Pour préparer une omelette, il faut battre les œufs avec une pincée de sel.",
    "La bibliothèque municipale prête des livres, des bandes dessinées et des disques.",
    "En automne, les feuilles des platanes tombent et couvrent les trottoirs.",
    "Nous avons repeint la chambre en bleu clair pendant les vacances de printemps.",
    "Le facteur passe vers onze heures et dépose le courrier dans la boîte aux lettres.",
    "Au bord du lac, des pêcheurs attendent patiemment depuis l'aube.",
    "Le musée est fermé le mardi, mais il reste ouvert tard le jeudi soir.",
    "Elle apprend la guitare depuis deux ans et joue déjà quelques chansons connues.",
)

#: Colonnes de ``comparison.csv`` (une ligne par bras).
COMPARISON_COLUMNS = (
    "bras", "approche", "modele", "parametres_entraines", "parametres_total", "exemples_vus",
    "secondes_entrainement", "pic_rss_mo", "pic_gpu_mo", "taille_artefact_mo", "latence_ms", "ndcg_at_10",
    "accuracy_at_1", "ndcg_naturel", "ndcg_naturel_base", "exactitude_statuts", "perte_validation", "provenance",
)
_NUMERIC = ("parametres_entraines", "parametres_total", "exemples_vus", "secondes_entrainement",
            "pic_rss_mo", "pic_gpu_mo", "taille_artefact_mo", "latence_ms", "ndcg_at_10", "accuracy_at_1",
            "ndcg_naturel", "ndcg_naturel_base", "exactitude_statuts", "perte_validation")


# --------------------------------------------------------------------------- courbe d'apprentissage
def curve_subset(train_split, n: int, seed: int):
    """Les ``n`` premières paires de ``train_split`` après un mélange fixé par ``seed``.

    Les sous-ensembles sont **emboîtés** (les 100 premières paires sont dans les 300 premières) :
    la courbe ne mesure que l'effet de la quantité de données.
    """
    if n < 1:
        raise ValueError(f"Taille de sous-ensemble invalide : {n} (il faut au moins 1 paire).")
    if n > len(train_split):
        raise ValueError(f"Courbe d'apprentissage : {n} paires demandées, mais le split train n'en "
                         f"a que {len(train_split)} (réglage comparison.curve_sizes du profil).")
    return train_split.shuffle(seed=seed).select(range(n))


def train_embedder(profile, pairs, output_dir: Path | str, log: bool = False) -> dict:
    """Entraîne un modèle d'embeddings neuf avec **la recette du notebook 02** sur ``pairs``.

    Même modèle de départ, même perte (``MatryoshkaLoss`` autour de
    ``MultipleNegativesRankingLoss``), mêmes arguments (:func:`helpers.training.embedding_trainer`),
    sans évaluation ni checkpoint pendant l'entraînement (le 02 les montre). ``pairs`` : colonnes
    ``anchor`` / ``positive`` (``embeddings.training_pairs``). Renvoie ``{"model", "secondes",
    "pas", "pic_rss_mo"}`` ; le pic est celui de l'entraînement seul si le système le permet.
    """
    from .training import train_embeddings

    result = train_embeddings(profile, pairs, output_dir, log=log)
    return {k: result[k] for k in ("model", "secondes", "pas", "pic_rss_mo")}


def accuracy_at_1(per_query: pd.DataFrame, split: str, dim: int, model: str | None = None) -> float:
    """Part des requêtes de ``split`` dont le passage pertinent est classé premier (rang 1).

    ``per_query`` : rangs par requête de ``MatryoshkaIREvaluator.evaluate``.
    """
    sub = per_query[(per_query["split"] == split) & (per_query["dim"] == dim)]
    if model is not None:
        sub = sub[sub["model"] == model]
    if sub.empty:
        raise ValueError(f"Aucune requête pour split={split!r}, dim={dim}"
                         + (f", modèle={model!r}" if model else "") + ".")
    return float((sub["rank"] == 1).mean())


def gain_share(curve: pd.DataFrame, metric: str = "ndcg_at_10") -> pd.DataFrame:
    """Part (%) du gain du plus grand entraînement déjà atteinte à chaque taille.

    Pour chaque (split, dimension) : 100 × (score(n) − score(0)) / (score(max) − score(0)), où 0
    est le modèle de base. C'est la mesure directe de l'affirmation « quelques centaines
    d'exemples suffisent ». NaN si le plus grand entraînement ne gagne rien.
    """
    for col in ("paires", "split", "dim", metric):
        if col not in curve.columns:
            raise ValueError(f"Courbe d'apprentissage : colonne « {col} » manquante.")
    if 0 not in set(curve["paires"]):
        raise ValueError("Courbe d'apprentissage : il faut le modèle de base (paires = 0).")
    table = curve.pivot_table(index=["split", "dim"], columns="paires", values=metric)
    base, top = table[0], table[table.columns.max()]
    span = (top - base).where((top - base) > 0)
    share = table.sub(base, axis=0).div(span, axis=0).mul(100)
    return share.drop(columns=0)


def plot_learning_curve(curve: pd.DataFrame, metric: str = "ndcg_at_10"):
    """NDCG@10 en fonction du nombre de paires d'entraînement (échelle log), une courbe par
    (split, dimension). ``curve`` : colonnes ``paires``, ``split``, ``dim`` et ``metric``."""
    import matplotlib.pyplot as plt

    for col in ("paires", "split", "dim", metric):
        if col not in curve.columns:
            raise ValueError(f"Courbe d'apprentissage : colonne « {col} » manquante.")
    fig, ax = plt.subplots(figsize=(7, 4))
    for (split, dim), sub in curve.groupby(["split", "dim"]):
        sub = sub.sort_values("paires")
        x = sub["paires"].clip(lower=1)  # le modèle de base (0 paire) au bord gauche
        ax.plot(x, sub[metric], marker="o", label=f"{split}, {dim} dim.")
    ax.set_xscale("log")
    ax.set_xlabel("paires d'entraînement (échelle log ; 1 = modèle de base, 0 paire)")
    ax.set_ylabel(metric.replace("_at_", "@"))
    ax.set_title("Courbe d'apprentissage des embeddings (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- latence
def time_per_call(fn: Callable[[object], object], inputs: Sequence, warmup: int = 1) -> dict:
    """Chronomètre ``fn`` entrée par entrée (une question à la fois, comme un utilisateur).

    Les ``warmup`` premiers appels chauffent les caches et ne sont pas comptés. Renvoie la
    médiane et le 90ᵉ centile en millisecondes. ``fn`` doit rendre un résultat déjà calculé (sur
    GPU, un texte décodé ou un tableau copié sur le CPU : l'appel est alors synchrone).
    """
    inputs = list(inputs)
    if len(inputs) <= warmup:
        raise ValueError(f"Il faut plus de {warmup} entrée(s) pour mesurer une latence ({len(inputs)} reçue(s)).")
    for x in inputs[:warmup]:
        fn(x)
    times = []
    for x in inputs[warmup:]:
        start = time.perf_counter()
        fn(x)
        times.append(1000 * (time.perf_counter() - start))
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {"latence_mediane_ms": statistics.median(times), "latence_p90_ms": p90, "appels": len(times)}


# --------------------------------------------------------------------------- oubli
def keyword_hits(answers: Sequence[str], questions=GENERAL_QUESTIONS, label: str = "modèle") -> pd.DataFrame:
    """Une ligne par question : la réponse contient-elle un des mots attendus ?

    Comparaison sans casse ni accents, sur des mots entiers (« 7 » ne valide pas « 17 »).
    """
    import re

    from .llm import _norm

    questions = list(questions)
    if len(answers) != len(questions):
        raise ValueError(f"{len(answers)} réponses pour {len(questions)} questions générales.")
    rows = []
    for (lang, question, expected), answer in zip(questions, answers):
        text = _norm(answer)
        ok = any(re.search(rf"(?<!\w){re.escape(_norm(w))}(?!\w)", text) for w in expected)
        rows.append({"modele": label, "langue": lang, "question": question,
                     "reponse": answer.strip(), "correct": ok})
    return pd.DataFrame(rows)


def text_loss(model, tokenizer, texts: Iterable[str] = GENERAL_TEXT_FR, batch_size: int = 4) -> float:
    """Perte moyenne par jeton (entropie croisée, en nats) du modèle sur ``texts``.

    Chaque jeton compte autant (moyenne pondérée par le nombre de jetons prédits de chaque
    lot). Plus elle monte après un fine-tuning, plus le modèle a perdu de la langue générale.
    """
    import torch

    texts = list(texts)
    if not texts:
        raise ValueError("Aucun texte pour mesurer la perte.")
    pad_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    total, count = 0.0, 0
    device = next(model.parameters()).device
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True).to(device)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            n = int((labels[:, 1:] != -100).sum())
            with torch.no_grad():
                loss = model(**enc, labels=labels).loss
            total += float(loss) * n
            count += n
    finally:
        tokenizer.padding_side = pad_side
    return total / count


def forgetting_table(hits: pd.DataFrame, losses: dict[str, float]) -> pd.DataFrame:
    """Par modèle : part de bonnes réponses aux questions générales (par langue) et perte sur
    le français courant. ``hits`` : :func:`keyword_hits` concaténés ; ``losses`` : modèle → perte."""
    table = hits.pivot_table(index="modele", columns="langue", values="correct", aggfunc="mean", sort=False)
    table.columns = [f"questions_{c}" for c in table.columns]
    missing = sorted(set(table.index) - set(losses))
    if missing:
        raise ValueError(f"Perte sur le français courant manquante pour : {', '.join(missing)}.")
    table["perte_francais_courant"] = [losses[m] for m in table.index]
    return table


# --------------------------------------------------------------------------- tableau
def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """Le tableau côte à côte, colonnes :data:`COMPARISON_COLUMNS` ; une colonne inconnue ou une
    valeur non numérique est une erreur (rien n'est ignoré en silence). Valeur absente = NaN
    (une mesure qui n'a pas de sens pour ce bras, ex. NDCG pour un modèle de langage)."""
    if not rows:
        raise ValueError("Tableau de comparaison vide.")
    for i, row in enumerate(rows, 1):
        unknown = sorted(set(row) - set(COMPARISON_COLUMNS))
        if unknown:
            raise ValueError(f"Ligne {i} ({row.get('bras', '?')}) : colonne(s) inconnue(s) {unknown} ; "
                             f"colonnes possibles : {', '.join(COMPARISON_COLUMNS)}.")
        for key in ("bras", "approche", "provenance"):
            if not row.get(key):
                raise ValueError(f"Ligne {i} : « {key} » est obligatoire.")
        for key in _NUMERIC:
            value = row.get(key)
            if value is not None and not isinstance(value, (int, float)):
                raise ValueError(f"Ligne {i} ({row['bras']}) : « {key} » doit être un nombre, "
                                 f"reçu {value!r}.")
    table = pd.DataFrame(rows).reindex(columns=list(COMPARISON_COLUMNS))
    table[list(_NUMERIC)] = table[list(_NUMERIC)].astype(float)
    return table


def save_comparison(table: pd.DataFrame, profile_name: str) -> Path:
    """Écrit ``outputs/<profil>/comparison/comparison.csv`` (colonnes vérifiées)."""
    if list(table.columns) != list(COMPARISON_COLUMNS):
        raise ValueError("Colonnes inattendues : construisez le tableau avec comparison_table().")
    return save_table(table, profile_name, "comparison", topic="comparison")


def plot_costs(table: pd.DataFrame):
    """Quatre coûts par bras : temps d'entraînement, pic mémoire, taille de l'artefact, latence
    par question. Barres partant de zéro (échelle linéaire, un axe par coût) : une échelle log
    ferait paraître énormes des écarts de quelques pour cent ; la valeur est écrite sur chaque barre."""
    import matplotlib.pyplot as plt

    panels = [("secondes_entrainement", "entraînement (s)"), ("pic_rss_mo", "pic mémoire (Mo)"),
              ("taille_artefact_mo", "artefact sur disque (Mo)"), ("latence_ms", "latence / question (ms)")]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    labels = [str(b) for b in table["bras"]]
    colors = ["tab:blue", "tab:orange", "tab:red", "tab:gray"][: len(labels)]
    for ax, (col, title) in zip(axes, panels):
        values = table[col].astype(float)
        ax.bar(labels, values.fillna(0), color=colors)
        ax.set_ylim(0, 1.15 * max(values.max(), 1e-9))
        ax.set_title(title, fontsize=10)
        for x, v in enumerate(values):
            if not math.isnan(v):
                ax.annotate(_thousands(v), (x, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle("Coûts mesurés des trois approches")
    fig.tight_layout()
    return fig


def _thousands(n: float) -> str:
    """12345678 → « 12 345 678 » (espace insécable fine, usage français)."""
    return f"{n:,.0f}".replace(",", "\u202f")


def _row(table: pd.DataFrame, bras: str) -> pd.Series:
    match = table[table["bras"] == bras]
    if match.empty:
        raise ValueError(f"Bras « {bras} » absent du tableau (présents : {', '.join(map(str, table['bras']))}).")
    return match.iloc[0]


def decision_guide(table: pd.DataFrame, forgetting: pd.DataFrame | None = None) -> list[str]:
    """Phrases du guide de décision **calculées** à partir du tableau mesuré (bras A, B, C).

    Chaque phrase cite les nombres dont elle vient ; aucune n'est écrite d'avance. ``forgetting``
    (facultatif) : :func:`forgetting_table`, lignes ``base nf4`` / ``B`` (le bras B et sa base
    4 bits) et ``base fp32`` / ``C`` (le bras C et son point de départ).
    """
    a, b, c = (_row(table, x) for x in ("A", "B", "C"))
    lines = []
    ratio = c["parametres_entraines"] / a["parametres_entraines"]
    lines.append(f"Paramètres entraînés : A {_thousands(a['parametres_entraines'])}, "
                 f"B {_thousands(b['parametres_entraines'])}, C {_thousands(c['parametres_entraines'])} "
                 f"(C entraîne {ratio:.1f} × plus de poids que A).")
    lines.append(f"Artefact à livrer : A {a['taille_artefact_mo']:.0f} Mo (le modèle d'embeddings entier), "
                 f"B {b['taille_artefact_mo']:.1f} Mo (l'adaptateur seul, la base restant partagée), "
                 f"C {c['taille_artefact_mo']:.0f} Mo (un modèle complet par tâche).")
    per_example = {x: r["secondes_entrainement"] / r["exemples_vus"] for x, r in (("A", a), ("B", b), ("C", c))
                   if r["exemples_vus"] and not math.isnan(r["exemples_vus"])}
    if per_example:
        lines.append("Coût d'entraînement par exemple vu : " + ", ".join(
            f"{x} {s:.2f} s" for x, s in per_example.items()) + ".")
    fastest = min((("A", a), ("B", b), ("C", c)), key=lambda kv: kv[1]["latence_ms"])
    lines.append(f"Latence par question : A {a['latence_ms']:.0f} ms, B {b['latence_ms']:.0f} ms, "
                 f"C {c['latence_ms']:.0f} ms ; la plus rapide : {fastest[0]}.")
    if not math.isnan(a["accuracy_at_1"]):
        lines.append(f"Qualité de A : le bon passage est premier pour {a['accuracy_at_1']:.0%} des questions "
                     f"de test (NDCG@10 {a['ndcg_at_10']:.3f}).")
    if not math.isnan(a.get("ndcg_naturel", math.nan)):
        verb = "dépasse" if a["ndcg_naturel"] > a["ndcg_naturel_base"] else "ne dépasse pas"
        lines.append(f"Sur les questions naturelles (écrites à la main, sans les gabarits de l'entraînement), "
                     f"A {verb} le modèle de base : NDCG@10 {a['ndcg_naturel_base']:.3f} → {a['ndcg_naturel']:.3f} "
                     "(notebook 03 : intervalle de l'écart) ; les questions générées surestiment le gain.")
    better = "B" if b["exactitude_statuts"] > c["exactitude_statuts"] else (
        "C" if c["exactitude_statuts"] > b["exactitude_statuts"] else "aucun des deux")
    lines.append(f"Statuts justes (test) : B {b['exactitude_statuts']:.1%}, C {c['exactitude_statuts']:.1%} "
                 f"— meilleur : {better} ; pertes de validation B {b['perte_validation']:.3f}, "
                 f"C {c['perte_validation']:.3f}.")
    if forgetting is not None:
        col = "perte_francais_courant"
        for arm, base in (("B", "base nf4"), ("C", "base fp32")):
            if {arm, base} <= set(forgetting.index):
                lines.append(f"Oubli ({arm}) : perte sur du français courant {forgetting.loc[base, col]:.2f} "
                             f"({base}) → {forgetting.loc[arm, col]:.2f} ({arm}) ; questions générales en "
                             "anglais justes : " + f"{forgetting.loc[base, 'questions_en']:.0%} → "
                             f"{forgetting.loc[arm, 'questions_en']:.0%}.")
    return lines
