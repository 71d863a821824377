"""Tableaux et graphiques du notebook 01 (exploration des données).

Chaque fonction renvoie un ``pandas.DataFrame`` ou une figure ``matplotlib`` ; les fonctions
``save_*`` écrivent les résultats sous ``outputs/<profil>/data/``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from .analytes import Analyte, load_analytes


def dataset_sizes(retrieval, instructions, longitudinal) -> pd.DataFrame:
    """Nombre de lignes de chaque vue et de chaque split."""
    rows = [("recherche", name, len(ds)) for name, ds in retrieval.items()]
    rows += [("instructions", name, len(ds)) for name, ds in instructions.items()]
    patients = len(set(longitudinal["patient_id"]))
    rows.append(("longitudinale", f"mesures ({patients} patients)", len(longitudinal)))
    return pd.DataFrame(rows, columns=["view", "split", "rows"])


def analytes_per_family(analytes: dict[str, Analyte] | None = None) -> pd.DataFrame:
    """Nombre d'analytes par famille, avec leurs codes."""
    analytes = analytes or load_analytes()
    df = pd.DataFrame([{"family": a.famille, "code": a.code} for a in analytes.values()])
    out = df.groupby("family")["code"].agg(["count", lambda s: ", ".join(s)])
    out.columns = ["analytes", "codes"]
    return out.sort_values("analytes", ascending=False).reset_index()


def style_table(retrieval) -> pd.DataFrame:
    """Tableau croisé split × style de question."""
    frames = [retrieval[s].to_pandas().assign(split=s) for s in retrieval if s != "corpus"]
    df = pd.concat(frames)
    return pd.crosstab(df["split"], df["style"], margins=True, margins_name="total")


def style_examples(retrieval, per_style: int = 2, seed: int = 0) -> pd.DataFrame:
    """Quelques questions d'entraînement par style, avec leur passage cible."""
    df = retrieval["train"].to_pandas()
    sample = df.groupby("style").sample(n=per_style, random_state=seed)
    return sample[["style", "question", "passage_id"]].sort_values("style").reset_index(drop=True)


def text_lengths(retrieval, instructions) -> pd.DataFrame:
    """Longueurs (en mots) des questions par style, des passages et des textes d'instructions."""
    parts = []
    q = retrieval["train"].to_pandas()
    parts.append(pd.DataFrame({"texte": "question · " + q["style"], "mots": q["question"].str.split().str.len()}))
    c = retrieval["corpus"].to_pandas()
    parts.append(pd.DataFrame({"texte": "passage", "mots": c["text"].str.split().str.len()}))
    ins = instructions["train"].to_pandas()
    parts.append(pd.DataFrame({"texte": "instruction · input", "mots": ins["input"].str.split().str.len()}))
    parts.append(pd.DataFrame({"texte": "instruction · output", "mots": ins["output"].str.split().str.len()}))
    return pd.concat(parts, ignore_index=True)


def plot_family_counts(table: pd.DataFrame):
    """Barres horizontales : analytes par famille."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(table["family"], table["analytes"], color="#4a5568")
    ax.invert_yaxis()
    ax.set_xlabel("nombre d'analytes")
    ax.set_title("Analytes par famille")
    fig.tight_layout()
    return fig


def plot_text_lengths(lengths: pd.DataFrame):
    """Boîtes à moustaches des longueurs de texte (en mots), échelle logarithmique."""
    order = sorted(lengths["texte"].unique())
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.boxplot([lengths.loc[lengths["texte"] == t, "mots"] for t in order], vert=False)
    ax.set_yticks(range(1, len(order) + 1), order)
    ax.set_xscale("log")
    ax.set_xlabel("longueur (mots, échelle log)")
    ax.set_title("Longueur des textes")
    fig.tight_layout()
    return fig


def plot_reference_ranges(analytes: dict[str, Analyte] | None = None, ncols: int = 6):
    """Une petite vignette par analyte : intervalle de référence homme et femme.

    Les unités diffèrent d'un analyte à l'autre : chaque vignette a son propre axe. Une borne
    absente (limite unilatérale, ex. CRP ≤ 5 mg/L) est dessinée jusqu'à la valeur plausible
    extrême, en pointillés.
    """
    analytes = analytes or load_analytes()
    items = list(analytes.values())
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 1.25 * nrows))
    for ax, a in zip(axes.flat, items):
        for y, sexe, color in ((1, "homme", "#2c5282"), (0, "femme", "#b83280")):
            lo, hi = a.bounds(sexe)
            left = lo if lo is not None else a.plausible[0]
            right = hi if hi is not None else min(a.plausible[1], (lo or 1) * 2)
            ax.plot(
                [left, right],
                [y, y],
                color=color,
                lw=5,
                solid_capstyle="butt",
                ls="-" if lo is not None and hi is not None else ":",
            )
        ax.set_ylim(-0.8, 1.8)
        ax.set_yticks([0, 1], ["F", "H"], fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{a.code} ({a.unite})", fontsize=8)
    for ax in list(axes.flat)[len(items) :]:
        ax.axis("off")
    fig.suptitle("Intervalles de référence par analyte (H = homme, F = femme ; pointillés = borne unique)")
    fig.tight_layout()
    return fig


def plot_patient_series(longitudinal, patient_id: str, analytes: dict[str, Analyte] | None = None):
    """Toutes les séries d'un patient : valeurs, bande de référence, anomalies étiquetées."""
    analytes = analytes or load_analytes()
    df = longitudinal.to_pandas() if hasattr(longitudinal, "to_pandas") else longitudinal
    df = df[df["patient_id"] == patient_id].copy()
    if df.empty:
        raise ValueError(f"Patient « {patient_id} » absent de la vue longitudinale.")
    df["date"] = pd.to_datetime(df["date"])
    sexe = df["sexe"].iloc[0]
    codes = list(dict.fromkeys(df["code"]))
    fig, axes = plt.subplots(len(codes), 1, figsize=(8, 1.9 * len(codes)), sharex=True)
    for ax, code in zip(axes, codes):
        a = analytes[code]
        s = df[df["code"] == code]
        lo, hi = a.bounds(sexe)
        ymin, ymax = s["valeur"].min(), s["valeur"].max()
        ax.axhspan(
            lo if lo is not None else min(ymin, 0),
            hi if hi is not None else max(ymax, lo) * 1.2,
            color="#c6f6d5",
            alpha=0.6,
            label="intervalle de référence",
        )
        ax.plot(s["date"], s["valeur"], "o-", color="#2d3748", ms=4)
        for kind, marker in (("pic", "X"), ("rupture", "s")):
            m = s[s["anomalie"] == kind]
            if len(m):
                ax.scatter(m["date"], m["valeur"], marker=marker, s=80, color="#e53e3e", zorder=3, label=kind)
        trend = s["tendance"].iloc[0]
        ax.set_ylabel(f"{code}\n({a.unite})", fontsize=8)
        ax.set_title(f"{a.nom} — tendance simulée : {trend}", fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Patient {patient_id} ({sexe}, {df['age_inclusion'].iloc[0]} ans à l'inclusion)")
    fig.tight_layout()
    return fig
