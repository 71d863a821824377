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

from .outputs import save_table
from .text import french_decimals, french_float, french_int, french_percent, normalize

#: (langue, question, mots attendus) — les vingt mêmes questions de culture générale en français et
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
    ("fr", "Quel est le plus grand océan du monde ?", ("pacifique",)),
    ("fr", "Combien de pattes a une araignée ?", ("huit", "8")),
    ("fr", "Quelle est la capitale de l'Allemagne ?", ("berlin",)),
    ("fr", "Que devient l'eau quand elle gèle ?", ("glace",)),
    ("fr", "Sur quelle planète vivons-nous ?", ("terre",)),
    ("fr", "Combien font dix moins quatre ?", ("six", "6")),
    ("fr", "De quelle couleur est l'herbe ?", ("vert", "verte")),
    ("fr", "Quel animal miaule ?", ("chat",)),
    ("fr", "Quelle est la capitale du Japon ?", ("tokyo",)),
    ("fr", "Combien d'heures compte une journée ?", ("vingt-quatre", "24")),
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
    ("en", "What is the largest ocean on Earth?", ("pacific",)),
    ("en", "How many legs does a spider have?", ("eight", "8")),
    ("en", "What is the capital of Germany?", ("berlin",)),
    ("en", "What does water become when it freezes?", ("ice",)),
    ("en", "Which planet do we live on?", ("earth",)),
    ("en", "What is ten minus four?", ("six", "6")),
    ("en", "What color is grass?", ("green",)),
    ("en", "Which animal meows?", ("cat",)),
    ("en", "What is the capital of Japan?", ("tokyo",)),
    ("en", "How many hours are there in a day?", ("twenty-four", "24")),
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
    "arm",
    "approach",
    "model",
    "trainable_params",
    "total_params",
    "examples_seen",
    "train_seconds",
    "peak_rss_mb",
    "peak_gpu_mb",
    "own_memory_mb",
    "artifact_mb",
    "latency_ms",
    "ndcg_at_10",
    "accuracy_at_1",
    "ndcg_natural",
    "ndcg_natural_base",
    "status_accuracy",
    "status_accuracy_low",
    "status_accuracy_high",
    "eval_loss",
    "provenance",
)
_NUMERIC = tuple(c for c in COMPARISON_COLUMNS if c not in ("arm", "approach", "model", "provenance"))


# --------------------------------------------------------------------------- courbe d'apprentissage
def curve_subset(train_split, n: int, seed: int):
    """Les ``n`` premières paires de ``train_split`` après un mélange fixé par ``seed``.

    Les sous-ensembles sont **emboîtés** (les 100 premières paires sont dans les 300 premières) :
    la courbe ne mesure que l'effet de la quantité de données.
    """
    if n < 1:
        raise ValueError(f"Taille de sous-ensemble invalide : {n} (il faut au moins 1 paire).")
    if n > len(train_split):
        raise ValueError(
            f"Courbe d'apprentissage : {n} paires demandées, mais le split train n'en "
            f"a que {len(train_split)} (réglage comparison.curve_sizes du profil)."
        )
    return train_split.shuffle(seed=seed).select(range(n))


def train_embedder(profile, pairs, output_dir: Path | str, log: bool = False) -> dict:
    """Entraîne un modèle d'embeddings neuf avec **la recette du notebook 02** sur ``pairs``.

    Même modèle de départ, même perte (``MatryoshkaLoss`` autour de
    ``MultipleNegativesRankingLoss``), mêmes arguments (:func:`helpers.training.embedding_trainer`),
    sans évaluation ni checkpoint pendant l'entraînement (le 02 les montre). ``pairs`` : colonnes
    ``anchor`` / ``positive`` (``embeddings.training_pairs``). Renvoie ``{"model", "seconds",
    "steps", "peak_rss_mb"}`` ; le pic est celui de l'entraînement seul si le système le permet.
    """
    from .training import train_embeddings

    result = train_embeddings(profile, pairs, output_dir, log=log)
    return {k: result[k] for k in ("model", "seconds", "steps", "peak_rss_mb")}


def accuracy_at_1(per_query: pd.DataFrame, split: str, dim: int, model: str | None = None) -> float:
    """Part des requêtes de ``split`` dont le passage pertinent est classé premier (rang 1).

    ``per_query`` : rangs par requête de ``MatryoshkaIREvaluator.evaluate``.
    """
    sub = per_query[(per_query["split"] == split) & (per_query["dim"] == dim)]
    if model is not None:
        sub = sub[sub["model"] == model]
    if sub.empty:
        raise ValueError(
            f"Aucune requête pour split={split!r}, dim={dim}" + (f", modèle={model!r}" if model else "") + "."
        )
    return float((sub["rank"] == 1).mean())


def gain_share(curve: pd.DataFrame, metric: str = "ndcg_at_10") -> pd.DataFrame:
    """Part (%) du gain du plus grand entraînement déjà atteinte à chaque taille.

    Pour chaque (split, dimension) : 100 × (score(n) − score(0)) / (score(max) − score(0)), où 0
    est le modèle de base. C'est la mesure directe de l'affirmation « quelques centaines
    d'exemples suffisent ». NaN si le plus grand entraînement ne gagne rien.
    """
    for col in ("pairs", "split", "dim", metric):
        if col not in curve.columns:
            raise ValueError(f"Courbe d'apprentissage : colonne « {col} » manquante.")
    if 0 not in set(curve["pairs"]):
        raise ValueError("Courbe d'apprentissage : il faut le modèle de base (paires = 0).")
    table = curve.pivot_table(index=["split", "dim"], columns="pairs", values=metric)
    base, top = table[0], table[table.columns.max()]
    span = (top - base).where((top - base) > 0)
    share = table.sub(base, axis=0).div(span, axis=0).mul(100)
    return share.drop(columns=0)


def plot_learning_curve(curve: pd.DataFrame, metric: str = "ndcg_at_10"):
    """NDCG@10 en fonction du nombre de paires d'entraînement (échelle log), une courbe par
    (split, dimension). ``curve`` : colonnes ``paires``, ``split``, ``dim`` et ``metric``."""
    import matplotlib.pyplot as plt

    for col in ("pairs", "split", "dim", metric):
        if col not in curve.columns:
            raise ValueError(f"Courbe d'apprentissage : colonne « {col} » manquante.")
    from .text import SPLIT_LABELS

    fig, ax = plt.subplots(figsize=(7, 4))
    for (split, dim), sub in curve.groupby(["split", "dim"]):
        sub = sub.sort_values("pairs")
        x = sub["pairs"].clip(lower=1)  # le modèle de base (0 paire) au bord gauche
        ax.plot(x, sub[metric], marker="o", label=f"{SPLIT_LABELS.get(split, split)}, {dim} dim.")
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
    return {"median_latency_ms": statistics.median(times), "p90_latency_ms": p90, "appels": len(times)}


def describe_latency(latency: dict) -> str:
    """Le résultat de :func:`time_per_call` en une phrase française (« médiane 51,6 ms, 90ᵉ centile
    60,3 ms, sur 20 appels »)."""
    return french_decimals(
        f"médiane {latency['median_latency_ms']:.1f} ms, 90ᵉ centile {latency['p90_latency_ms']:.1f} ms, "
        f"sur {latency['appels']} appels"
    )


# --------------------------------------------------------------------------- oubli
def keyword_hits(answers: Sequence[str], questions=GENERAL_QUESTIONS, label: str = "model") -> pd.DataFrame:
    """Une ligne par question : la réponse contient-elle un des mots attendus ?

    Comparaison sans casse ni accents, sur des mots entiers (« 7 » ne valide pas « 17 »).
    """
    import re

    questions = list(questions)
    if len(answers) != len(questions):
        raise ValueError(f"{len(answers)} réponses pour {len(questions)} questions générales.")
    rows = []
    for (lang, question, expected), answer in zip(questions, answers):
        text = normalize(answer)
        ok = any(re.search(rf"(?<!\w){re.escape(normalize(w))}(?!\w)", text) for w in expected)
        rows.append({"model": label, "language": lang, "question": question, "answer": answer.strip(), "correct": ok})
    return pd.DataFrame(rows)


def text_losses(model, tokenizer, texts: Iterable[str] = GENERAL_TEXT_FR, batch_size: int = 4) -> list[dict]:
    """Pour chaque texte : ``{"perte": perte moyenne par jeton (nats), "jetons": jetons prédits}``.

    Une ligne par texte pour pouvoir apparier deux modèles texte par texte (intervalle de l'écart,
    :func:`forgetting_deltas`). Plus la perte monte après un fine-tuning, plus le modèle a perdu
    de la langue générale.
    """
    import torch

    texts = list(texts)
    if not texts:
        raise ValueError("Aucun texte pour mesurer la perte.")
    pad_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = []
    device = next(model.parameters()).device
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            with torch.no_grad():
                logits = model(**enc).logits[:, :-1].float()
            target = labels[:, 1:]
            per_token = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), target, ignore_index=-100, reduction="none"
            )
            mask = target != -100
            for losses, keep in zip(per_token, mask):
                n = int(keep.sum())
                rows.append({"perte": float(losses[keep].sum()) / n, "jetons": n})
    finally:
        tokenizer.padding_side = pad_side
    return rows


def text_loss(model, tokenizer, texts: Iterable[str] = GENERAL_TEXT_FR, batch_size: int = 4) -> float:
    """Perte moyenne par jeton (entropie croisée, en nats) du modèle sur ``texts`` : chaque jeton
    compte autant (:func:`text_losses` pondérées par leur nombre de jetons)."""
    return _mean_loss(text_losses(model, tokenizer, texts, batch_size))


def _mean_loss(value) -> float:
    """Perte d'un modèle : un nombre, ou les lignes de :func:`text_losses` (moyenne par jeton)."""
    if isinstance(value, (int, float)):
        return float(value)
    return sum(r["perte"] * r["jetons"] for r in value) / sum(r["jetons"] for r in value)


def forgetting_table(hits: pd.DataFrame, losses: dict) -> pd.DataFrame:
    """Par modèle : part de bonnes réponses aux questions générales par langue, avec son intervalle
    de Wilson à 95 % (colonnes ``questions_<langue>``, ``_low``, ``_high`` : vingt questions par
    langue, l'intervalle est large), et la perte sur le français courant. ``hits`` :
    :func:`keyword_hits` concaténés ; ``losses`` : modèle → perte (nombre ou :func:`text_losses`)."""
    from .stats import proportion_interval

    missing = sorted(set(hits["model"]) - set(losses))
    if missing:
        raise ValueError(f"Perte sur le français courant manquante pour : {', '.join(missing)}.")
    rows = []
    for model, sub in hits.groupby("model", sort=False):
        row = {"model": model}
        for lang, answers in sub.groupby("language", sort=False):
            share, low, high = proportion_interval(int(answers["correct"].sum()), len(answers))
            row.update({f"questions_{lang}": share, f"questions_{lang}_low": low, f"questions_{lang}_high": high})
        row["fluent_french_loss"] = _mean_loss(losses[model])
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def forgetting_deltas(hits: pd.DataFrame, losses: dict, pairs) -> pd.DataFrame:
    """L'oubli de chaque bras par rapport à son modèle de départ, **apparié** question par question
    et texte par texte, avec un intervalle à 95 % (bootstrap BCa, :func:`helpers.stats.mean_interval`).

    ``pairs`` : ``[(bras, départ), ...]``, par exemple ``[("B", "base nf4"), ("C", "base fp32")]`` ;
    ``losses`` : modèle → lignes de :func:`text_losses`. Une ligne par (bras, mesure) : écart de la
    part de bonnes réponses par langue (négatif = oubli) et de la perte sur le français courant
    (positif = oubli). Un intervalle qui contient 0 ne montre pas d'oubli à cette taille d'échantillon.
    """
    from .stats import mean_interval

    rows = []
    for arm, base in pairs:
        for name in (arm, base):
            if name not in set(hits["model"]) or name not in losses:
                raise ValueError(
                    f"Oubli : pas de mesure pour « {name} » (présents : {', '.join(dict.fromkeys(hits['model']))})."
                )
        mine = hits[hits["model"] == arm].set_index("question")
        ref = hits[hits["model"] == base].set_index("question")
        for lang in dict.fromkeys(mine["language"]):
            questions = mine.index[mine["language"] == lang]
            diff = mine.loc[questions, "correct"].astype(float) - ref.loc[questions, "correct"].astype(float)
            mean, low, high = mean_interval(diff.to_numpy())
            rows.append(
                {
                    "arm": arm,
                    "baseline": base,
                    "measure": f"questions_{lang}",
                    "baseline_value": ref.loc[questions, "correct"].mean(),
                    "arm_value": mine.loc[questions, "correct"].mean(),
                    "gap": mean,
                    "low": low,
                    "high": high,
                    "n": len(questions),
                }
            )
        if isinstance(losses[arm], (int, float)) or isinstance(losses[base], (int, float)):
            raise ValueError("Oubli : il faut les pertes texte par texte (text_losses) pour l'intervalle.")
        diff = [a["perte"] - b["perte"] for a, b in zip(losses[arm], losses[base])]
        mean, low, high = mean_interval(diff)
        rows.append(
            {
                "arm": arm,
                "baseline": base,
                "measure": "fluent_french_loss",
                "baseline_value": _mean_loss(losses[base]),
                "arm_value": _mean_loss(losses[arm]),
                "gap": mean,
                "low": low,
                "high": high,
                "n": len(diff),
            }
        )
    return pd.DataFrame(rows)


def status_accuracy_interval(n_correct: int, n_values: int) -> dict:
    """Exactitude des statuts et son intervalle de Wilson à 95 % : ``{"status_accuracy",
    "status_accuracy_low", "status_accuracy_high"}`` (colonnes du tableau)."""
    from .stats import proportion_interval

    share, low, high = proportion_interval(int(n_correct), int(n_values))
    return {"status_accuracy": share, "status_accuracy_low": low, "status_accuracy_high": high}


def constant_baseline(scored: pd.DataFrame) -> dict:
    """La réponse constante : toujours le statut le plus fréquent des étiquettes de test.
    ``{"status", "accuracy", "low", "high", "n"}`` (intervalle de Wilson)."""
    from .stats import proportion_interval

    expected = scored.drop_duplicates(["row", "code"])["expected"]
    top = expected.value_counts()
    share, low, high = proportion_interval(int(top.iloc[0]), len(expected))
    return {"status": top.index[0], "accuracy": share, "low": low, "high": high, "n": len(expected)}


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
            raise ValueError(
                f"Ligne {i} ({row.get('bras', '?')}) : colonne(s) inconnue(s) {unknown} ; "
                f"colonnes possibles : {', '.join(COMPARISON_COLUMNS)}."
            )
        for key in ("arm", "approach", "provenance"):
            if not row.get(key):
                raise ValueError(f"Ligne {i} : « {key} » est obligatoire.")
        for key in _NUMERIC:
            value = row.get(key)
            if value is not None and not isinstance(value, (int, float)):
                raise ValueError(f"Ligne {i} ({row['arm']}) : « {key} » doit être un nombre, reçu {value!r}.")
    table = pd.DataFrame(rows).reindex(columns=list(COMPARISON_COLUMNS))
    table[list(_NUMERIC)] = table[list(_NUMERIC)].astype(float)
    return table


def save_comparison(table: pd.DataFrame, profile_name: str) -> Path:
    """Écrit ``outputs/<profil>/comparison/comparison.csv`` (colonnes vérifiées)."""
    if list(table.columns) != list(COMPARISON_COLUMNS):
        raise ValueError("Colonnes inattendues : construisez le tableau avec comparison_table().")
    return save_table(table, profile_name, "comparison/comparison.csv")


def plot_costs(table: pd.DataFrame):
    """Quatre coûts par bras : temps d'entraînement, pic mémoire, taille de l'artefact, latence
    par question. Barres partant de zéro (échelle linéaire, un axe par coût) : une échelle log
    ferait paraître énormes des écarts de quelques pour cent ; la valeur est écrite sur chaque barre."""
    import matplotlib.pyplot as plt

    memory = (
        ("own_memory_mb", "mémoire ajoutée (Mo)")
        if table["own_memory_mb"].notna().any()
        else ("peak_rss_mb", "pic mémoire (Mo)")
    )
    panels = [
        ("train_seconds", "entraînement (s)"),
        memory,
        ("artifact_mb", "artefact sur disque (Mo)"),
        ("latency_ms", "latence / question (ms)"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    labels = [str(b) for b in table["arm"]]
    colors = ["tab:blue", "tab:orange", "tab:red", "tab:gray"][: len(labels)]
    for ax, (col, title) in zip(axes, panels):
        values = table[col].astype(float)
        ax.bar(labels, values.fillna(0), color=colors)
        ax.set_ylim(0, 1.15 * max(values.max(), 1e-9))
        ax.set_title(title, fontsize=10)
        for x, v in enumerate(values):
            if not math.isnan(v):
                ax.annotate(french_int(v), (x, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle("Coûts mesurés des trois approches")
    fig.tight_layout()
    return fig


def plot_loss_by_examples(curves: dict, points: dict | None = None):
    """Perte d'entraînement en fonction du nombre d'**exemples vus**, une courbe par modèle.

    ``curves`` : libellé → ``(log_history, examples_per_step)`` (l'historique d'un ``Trainer`` :
    les entrées qui ont une ``loss`` et un ``step``) ; ``points`` : libellé → ``(exemples, perte de
    validation)``, tracés en losange. Sert à comparer deux méthodes à exemples égaux (notebook 06)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, (history, per_step) in curves.items():
        logged = [(h["step"] * per_step, h["loss"]) for h in history if "loss" in h and "step" in h]
        if not logged:
            raise ValueError(f"Courbe « {label} » : aucune perte d'entraînement dans l'historique.")
        ax.plot(*zip(*logged), marker=".", label=f"{label} — entraînement")
    for label, (examples, loss) in (points or {}).items():
        ax.scatter([examples], [loss], marker="D", s=40, zorder=3, label=f"{label} — validation")
    ax.set_xlabel("exemples vus")
    ax.set_ylabel("perte (nats par jeton)")
    ax.set_yscale("log")
    ax.set_title("Perte en fonction des exemples vus (mêmes exemples, même ordre)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Le tableau de :func:`comparison_table` prêt à lire : une colonne par bras, entiers avec
    espaces fines, décimaux avec virgule (trois chiffres significatifs au moins), « — » pour une
    mesure sans objet, étiquettes françaises (:func:`helpers.text.for_display`). Pour l'affichage
    seulement : ``comparison.csv`` garde les nombres et ses clés anglaises."""

    def fmt(value):
        if isinstance(value, str):
            return value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if float(value).is_integer() and abs(value) >= 1:
            return french_int(value)
        return french_float(float(f"{value:.4g}"))

    from .text import for_display

    return for_display(table.set_index("arm").T.map(fmt))


def _row(table: pd.DataFrame, bras: str) -> pd.Series:
    match = table[table["arm"] == bras]
    if match.empty:
        raise ValueError(f"Bras « {bras} » absent du tableau (présents : {', '.join(map(str, table['arm']))}).")
    return match.iloc[0]


def _percent(x: float) -> str:
    """0.366 → « 36,6 % » (:func:`helpers.text.french_percent`)."""
    return french_percent(x)


def _status_text(row: pd.Series) -> str:
    text = _percent(row["status_accuracy"])
    low, high = row.get("status_accuracy_low"), row.get("status_accuracy_high")
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        text += f" [{_percent(low)} ; {_percent(high)}]"
    return text


def decision_guide(
    table: pd.DataFrame, forgetting: pd.DataFrame | None = None, constant: dict | None = None
) -> list[str]:
    """Phrases du guide de décision **calculées** à partir du tableau mesuré (bras A, B, C et, s'il
    y est, B' : le bras B entraîné sur autant d'exemples que C).

    Chaque phrase cite les nombres dont elle vient ; aucune n'est écrite d'avance. ``forgetting``
    (facultatif) : :func:`forgetting_deltas` (écarts appariés et leurs intervalles) ; ``constant`` :
    :func:`constant_baseline`, montrée à côté des exactitudes.
    """
    a, b, c = (_row(table, x) for x in ("A", "B", "C"))
    matched = _row(table, "B'") if "B'" in set(table["arm"]) else None
    lines = []
    ratio = c["trainable_params"] / a["trainable_params"]
    lines.append(
        f"Paramètres entraînés : A {french_int(a['trainable_params'])}, "
        f"B {french_int(b['trainable_params'])}, C {french_int(c['trainable_params'])} "
        f"(C entraîne {ratio:.1f} × plus de poids que A)."
    )
    lines.append(
        f"Artefact à livrer : A {a['artifact_mb']:.0f} Mo (le modèle d'embeddings entier), "
        f"B {b['artifact_mb']:.1f} Mo (l'adaptateur seul, la base restant partagée), "
        f"C {c['artifact_mb']:.0f} Mo (un modèle complet par tâche)."
    )
    arms = [(str(r["arm"]), r) for _, r in table.iterrows()]
    per_example = {
        x: r["train_seconds"] / r["examples_seen"]
        for x, r in arms
        if r["examples_seen"] and not math.isnan(r["examples_seen"])
    }
    if per_example:
        lines.append(
            "Coût d'entraînement par exemple vu : " + ", ".join(f"{x} {s:.2f} s" for x, s in per_example.items()) + "."
        )
    own = {x: r["own_memory_mb"] for x, r in arms if not math.isnan(r["own_memory_mb"])}
    memory = {x: r["peak_rss_mb"] for x, r in arms if not math.isnan(r["peak_rss_mb"])}
    if own:
        lines.append(
            "Mémoire ajoutée par l'entraînement (pic moins mémoire au départ, chaque bras seul) : "
            + ", ".join(f"{x} {french_int(v)} Mo" for x, v in own.items())
            + "."
        )
    elif memory:
        lines.append(
            "Pic mémoire de l'entraînement : " + ", ".join(f"{x} {french_int(v)} Mo" for x, v in memory.items()) + "."
        )
    fastest = min((("A", a), ("B", b), ("C", c)), key=lambda kv: kv[1]["latency_ms"])
    lines.append(
        f"Latence par question : A {french_int(a['latency_ms'])} ms, B {french_int(b['latency_ms'])} ms, "
        f"C {french_int(c['latency_ms'])} ms ; la plus rapide : {fastest[0]}."
    )
    if not math.isnan(a["accuracy_at_1"]):
        lines.append(
            f"Qualité de A : le bon passage est premier pour {_percent(a['accuracy_at_1'])} des "
            f"questions de test (NDCG@10 {a['ndcg_at_10']:.3f})."
        )
    if not math.isnan(a.get("ndcg_natural", math.nan)):
        verb = "dépasse" if a["ndcg_natural"] > a["ndcg_natural_base"] else "ne dépasse pas"
        lines.append(
            f"Sur les questions naturelles (écrites à la main, sans les gabarits de l'entraînement), "
            f"A {verb} le modèle de base : NDCG@10 {a['ndcg_natural_base']:.3f} → {a['ndcg_natural']:.3f} "
            "(notebook 03 : intervalle de l'écart) ; les questions générées surestiment le gain."
        )
    better = (
        "B"
        if b["status_accuracy"] > c["status_accuracy"]
        else ("C" if c["status_accuracy"] > b["status_accuracy"] else "aucun des deux")
    )
    line = (
        f"Statuts justes (test, intervalles à 95 %) : B {_status_text(b)} "
        f"({french_int(b['examples_seen'])} exemples vus), C {_status_text(c)} "
        f"({french_int(c['examples_seen'])} exemples vus) — meilleur : {better}"
    )
    if constant is not None:
        line += f" ; réponse constante « {constant['status']} » : {_percent(constant['accuracy'])}"
    lines.append(line + ".")
    if matched is not None:
        overlap = not (
            matched["status_accuracy_high"] < c["status_accuracy_low"]
            or c["status_accuracy_high"] < matched["status_accuracy_low"]
        )
        verdict = (
            "les intervalles se chevauchent : pas d'écart démontré à cette taille"
            if overlap
            else ("B' devant" if matched["status_accuracy"] > c["status_accuracy"] else "C devant")
        )
        if constant is not None and max(matched["status_accuracy"], c["status_accuracy"]) <= constant["accuracy"]:
            verdict += (
                f", mais aucun des deux ne dépasse la réponse constante ({_percent(constant['accuracy'])}) : "
                "à ce budget, ni l'une ni l'autre méthode n'a appris la tâche"
            )
        lines.append(
            f"À exemples égaux ({french_int(c['examples_seen'])}) : B' {_status_text(matched)}, "
            f"C {_status_text(c)} — {verdict}."
        )
    lines.append(
        f"Pertes de validation : B {b['eval_loss']:.3f}, C {c['eval_loss']:.3f}"
        + (f", B' {matched['eval_loss']:.3f}" if matched is not None else "")
        + "."
    )
    if forgetting is not None:
        for arm, sub in forgetting.groupby("arm", sort=False):
            loss = sub[sub["measure"] == "fluent_french_loss"].iloc[0]
            en = sub[sub["measure"] == "questions_en"]
            text = (
                f"Oubli ({arm}, depuis {loss['baseline']}) : perte sur du français courant "
                f"{loss['baseline_value']:.2f} → {loss['arm_value']:.2f} "
                f"(écart {loss['gap']:+.2f} [{loss['low']:+.2f} ; {loss['high']:+.2f}])"
            )
            if not en.empty:
                e = en.iloc[0]
                text += (
                    f" ; questions générales en anglais justes {_percent(e['baseline_value'])} → "
                    f"{_percent(e['arm_value'])} (écart {100 * e['gap']:+.0f} points "
                    f"[{100 * e['low']:+.0f} ; {100 * e['high']:+.0f}] sur {int(e['n'])} questions)"
                )
                if e["baseline_value"] == 0:
                    text += (
                        f" — {e['baseline']} n'en réussissait aucune : ces questions ne peuvent pas montrer "
                        "d'oubli pour ce bras, seule la perte le peut"
                    )
            lines.append(text + ".")
    return [french_decimals(line) for line in lines]
