"""Suivi longitudinal (notebook 07) : anomalies, tendances, prévision de la visite suivante.

Toutes les fonctions prennent un ``DataFrame`` au format de ``longitudinal.csv`` (une ligne par
patient, visite et analyte : ``patient_id``, ``visite``, ``date``, ``code``, ``valeur``, ``statut``…)
et renvoient des tableaux ; rien n'est tracé ni écrit ici.

* :func:`flag_changes` — variation significative entre visites, au sens de la valeur de référence
  du changement (RCV) : par rapport à la visite précédente, ou à la médiane des visites passées ;
* :func:`precision_recall` — détections comparées aux anomalies étiquetées ;
* :func:`series_slopes` — pente relative annuelle de chaque série (régression sur le logarithme) ;
* :func:`forecast_last_visit` — trois prévisions simples de la dernière visite (dernière valeur,
  tendance linéaire, lissage exponentiel) et leur erreur absolue.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

REQUIRED = ("patient_id", "visite", "date", "code", "valeur")


def _check(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"Colonnes manquantes dans le tableau longitudinal : {', '.join(missing)}.")
    bad = df[~(pd.to_numeric(df["valeur"], errors="coerce") > 0)]
    if len(bad):
        row = bad.iloc[0]
        raise ValueError(
            f"Valeur non strictement positive ou non numérique : patient {row['patient_id']}, "
            f"visite {row['visite']}, analyte {row['code']} (« {row['valeur']} »)."
        )
    out = df.copy()
    out["date"] = pd.to_datetime(out["date"])
    return out.sort_values(["patient_id", "code", "visite"]).reset_index(drop=True)


def reference_change_values(cv: dict[str, tuple[float, float]], z: float = 1.96) -> dict[str, float]:
    """RCV (fraction) de chaque analyte : z × √2 × √(CVi² + CVa²), CV donnés en % ; ``z = 1,96``
    pour un seuil à 95 %, 2,58 pour 99 % (exercice 1 du notebook 07)."""
    from .analytes import rcv_from_cv

    return {code: rcv_from_cv(cvi, cva, z) for code, (cvi, cva) in cv.items()}


def flag_changes(df: pd.DataFrame, rcv: dict[str, float], baseline: str = "previous") -> pd.DataFrame:
    """Ajoute ``variation`` (écart relatif en log) et ``change_significatif`` à chaque ligne.

    ``baseline="previous"`` compare à la visite précédente ; ``"median"`` à la médiane des visites
    précédentes (plus robuste : la visite qui suit un pic n'est pas signalée à son tour). Le seuil
    est ``ln(1 + RCV)`` de l'analyte, symétrique en échelle logarithmique. La première visite n'a
    pas de référence : jamais signalée.
    """
    if baseline not in ("previous", "median"):
        raise ValueError(f"Référence inconnue « {baseline} » (attendu : previous ou median).")
    out = _check(df)
    unknown = sorted(set(out["code"]) - set(rcv))
    if unknown:
        raise ValueError(f"RCV manquante pour : {', '.join(unknown)}.")
    logv = np.log(out["valeur"].astype(float))
    groups = logv.groupby([out["patient_id"], out["code"]])
    if baseline == "previous":
        ref = groups.shift(1)
    else:
        ref = groups.transform(lambda s: s.expanding().median().shift(1))
    out["variation"] = logv - ref
    threshold = np.log1p(out["code"].map(rcv))
    out["change_significatif"] = (out["variation"].abs() > threshold).fillna(False).astype(bool)
    return out


def labelled_anomalies(df: pd.DataFrame) -> pd.Series:
    """Booléen par ligne : une anomalie (``pic`` ou ``rupture``) est étiquetée (vide ou NaN = non)."""
    if "anomalie" not in df.columns:
        raise ValueError("Colonne « anomalie » absente : pas d'étiquettes à comparer.")
    return df["anomalie"].fillna("").astype(str).str.strip() != ""


def precision_recall(flags: pd.Series, labels: pd.Series) -> dict:
    """Précision, rappel et F1 de détections booléennes contre des étiquettes booléennes."""
    flags, labels = flags.astype(bool), labels.astype(bool)
    if len(flags) != len(labels):
        raise ValueError(f"{len(flags)} détections pour {len(labels)} étiquettes.")
    tp = int((flags & labels).sum())
    fp = int((flags & ~labels).sum())
    fn = int((~flags & labels).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "true_positives": tp,
        "false_positives": fp,
        "misses": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def false_alarm_sources(flagged: pd.DataFrame) -> pd.DataFrame:
    """D'où viennent les fausses alertes de :func:`flag_changes` : chaque comparaison **sans anomalie
    étiquetée** est rangée selon son contexte — la visite qui suit un pic (la valeur revient à son
    niveau : le changement est réel, mais l'étiquette est sur le pic), celle qui suit une rupture,
    une série avec une tendance (hausse ou baisse lente, jamais étiquetée), une série stable — avec
    le nombre de comparaisons, de fausses alertes et leur taux. ``flagged`` : la sortie de
    :func:`flag_changes` (colonnes ``anomalie`` et ``tendance`` du jeu longitudinal)."""
    for column in ("change_significatif", "variation", "anomalie", "tendance"):
        if column not in flagged.columns:
            raise ValueError(
                f"Colonne « {column} » absente : passez la sortie de flag_changes sur le jeu longitudinal."
            )
    df = flagged.sort_values(["patient_id", "code", "visite"])
    previous = df.groupby(["patient_id", "code"])["anomalie"].shift(1).fillna("").astype(str)
    compared = df["variation"].notna() & ~labelled_anomalies(df)
    context = np.select(
        [previous == "pic", previous == "rupture", df["tendance"] != "stable"],
        ["visite après un pic", "visite après une rupture", "série avec tendance"],
        "série stable",
    )
    table = (
        pd.DataFrame({"contexte": context, "alerte": df["change_significatif"]})[compared]
        .groupby("contexte")["alerte"]
        .agg(comparaisons="size", fausses_alertes="sum")
    )
    table["taux"] = table["fausses_alertes"] / table["comparaisons"]
    table.loc["total"] = [
        table["comparaisons"].sum(),
        table["fausses_alertes"].sum(),
        table["fausses_alertes"].sum() / table["comparaisons"].sum(),
    ]
    return table.astype({"comparaisons": int, "fausses_alertes": int})


#: Les deux références de :func:`flag_changes`, dans l'ordre où la leçon les présente.
BASELINES = ("previous", "median")


def false_alarms_by_baseline(df: pd.DataFrame, rcv: dict[str, float], baselines=BASELINES) -> pd.DataFrame:
    """:func:`false_alarm_sources` pour chaque référence de :func:`flag_changes`, côte à côte :
    colonnes ``(référence, fausses_alertes)`` et ``(référence, taux)``, plus ``("", "comparaisons")``
    (le même nombre pour toutes les références). Ce qu'une référence gagne dans un contexte, elle
    peut le perdre dans un autre : le tableau le montre contexte par contexte."""
    tables = {name: false_alarm_sources(flag_changes(df, rcv, baseline=name)) for name in baselines}
    first = next(iter(tables.values()))
    parts = {("", "comparaisons"): first["comparaisons"]}
    for name, table in tables.items():
        parts[(name, "fausses_alertes")] = table["fausses_alertes"]
        parts[(name, "taux")] = table["taux"]
    return pd.DataFrame(parts)


def describe_baselines(table: pd.DataFrame) -> list[str]:
    """Une phrase française par contexte de :func:`false_alarms_by_baseline` (deux références) :
    le taux de fausses alertes avec chacune, et laquelle en donne le moins."""
    from .text import DISPLAY_LABELS, french_percent

    names = [name for name in dict.fromkeys(table.columns.get_level_values(0)) if name]
    if len(names) != 2:
        raise ValueError(f"Deux références attendues, {len(names)} reçues : {', '.join(names)}.")
    first, second = names
    label = {name: DISPLAY_LABELS.get(name, name) for name in names}
    lines = []
    for context, row in table.iterrows():
        a, b = row[(first, "taux")], row[(second, "taux")]
        fewer = "" if math.isclose(a, b, abs_tol=0.005) else f" — moins avec la {label[first if a < b else second]}"
        lines.append(
            f"{context} : {french_percent(a)} d'alertes avec la {label[first]}, "
            f"{french_percent(b)} avec la {label[second]}{fewer}"
        )
    return lines


def series_slopes(df: pd.DataFrame, min_visits: int = 3) -> pd.DataFrame:
    """Pente relative annuelle de chaque série (patient, analyte), par moindres carrés sur ln(valeur).

    ``pente_relative_par_an`` = exp(b) − 1, où b est la pente de ln(valeur) en fonction des années
    écoulées : +0,10 = +10 % par an. Les séries de moins de ``min_visits`` visites sont refusées.
    """
    out = _check(df)
    rows = []
    for (pid, code), s in out.groupby(["patient_id", "code"], sort=True):
        if len(s) < min_visits:
            raise ValueError(f"Série {pid} / {code} : {len(s)} visite(s), il en faut au moins {min_visits}.")
        years = (s["date"] - s["date"].iloc[0]).dt.days.to_numpy() / 365.25
        b, _ = np.polyfit(years, np.log(s["valeur"].to_numpy(dtype=float)), 1)
        rows.append({"patient_id": pid, "code": code, "visites": len(s), "pente_relative_par_an": math.expm1(b)})
    return pd.DataFrame(rows)


def forecast_last_visit(df: pd.DataFrame, alpha: float = 0.5) -> pd.DataFrame:
    """Prévoit la **dernière** visite de chaque série à partir des précédentes, de trois façons.

    * ``last_value`` : la valeur de l'avant-dernière visite ;
    * ``linear_trend`` : droite des moindres carrés (valeur en fonction de la date)
      prolongée jusqu'à la date de la dernière visite ;
    * ``exponential_smoothing`` : moyenne exponentielle des visites passées
      (``pandas.Series.ewm(alpha=alpha)``).

    Renvoie une ligne par série : valeur observée, prévisions et erreurs absolues (``ae_*``).
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha doit être dans ]0, 1] (reçu : {alpha}).")
    out = _check(df)
    rows = []
    for (pid, code), s in out.groupby(["patient_id", "code"], sort=True):
        if len(s) < 3:
            raise ValueError(f"Série {pid} / {code} : {len(s)} visite(s), il en faut au moins 3 pour prévoir.")
        past, last = s.iloc[:-1], s.iloc[-1]
        days = (past["date"] - past["date"].iloc[0]).dt.days.to_numpy(dtype=float)
        slope, intercept = np.polyfit(days, past["valeur"].to_numpy(dtype=float), 1)
        horizon = (last["date"] - past["date"].iloc[0]).days
        preds = {
            "last_value": float(past["valeur"].iloc[-1]),
            "linear_trend": float(intercept + slope * horizon),
            "exponential_smoothing": float(past["valeur"].ewm(alpha=alpha).mean().iloc[-1]),
        }
        row = {"patient_id": pid, "code": code, "observe": float(last["valeur"]), **preds}
        row.update({f"ae_{k}": abs(v - row["observe"]) for k, v in preds.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def forecast_mae(forecasts: pd.DataFrame, relative: bool = True) -> pd.DataFrame:
    """Erreur absolue moyenne de chaque méthode, par analyte ; relative à la valeur observée
    (en %) par défaut, pour comparer des analytes d'unités différentes."""
    methods = [c.removeprefix("ae_") for c in forecasts.columns if c.startswith("ae_")]
    if not methods:
        raise ValueError("Aucune colonne ae_* : passez la sortie de forecast_last_visit.")
    table = forecasts.copy()
    if relative:
        for m in methods:
            table[f"ae_{m}"] = 100 * table[f"ae_{m}"] / table["observe"]
    return table.groupby("code")[[f"ae_{m}" for m in methods]].mean().rename(columns={f"ae_{m}": m for m in methods})


# --------------------------------------------------------------------------- graphiques
def plot_series(flagged: pd.DataFrame, patient_id: str, code: str, bounds: tuple | None = None):
    """Une série (patient, analyte) : valeurs, intervalle de référence, changements signalés
    (cercles rouges) et anomalies étiquetées (croix), pour juger un détecteur à l'œil."""
    import matplotlib.pyplot as plt

    s = flagged[(flagged["patient_id"] == patient_id) & (flagged["code"] == code)]
    if s.empty:
        raise ValueError(f"Aucune mesure pour le patient {patient_id} et l'analyte {code}.")
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(s["date"], s["valeur"], marker="o", color="tab:blue", label="valeur")
    if bounds is not None:
        lo, hi = bounds
        if lo is not None:
            ax.axhline(lo, ls="--", color="grey", lw=1)
        if hi is not None:
            ax.axhline(hi, ls="--", color="grey", lw=1, label="bornes de référence")
    if "change_significatif" in s:
        hit = s[s["change_significatif"]]
        ax.scatter(hit["date"], hit["valeur"], s=160, facecolors="none", edgecolors="tab:red", label="changement > RCV")
    if "anomalie" in s:
        lab = s[s["anomalie"].fillna("").astype(str) != ""]
        ax.scatter(lab["date"], lab["valeur"], marker="x", s=80, color="black", label="anomalie étiquetée")
    ax.set_title(f"{patient_id} — {code}")
    ax.set_ylabel(str(s["unite"].iloc[0]) if "unite" in s else "valeur")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_forecast_mae(mae: pd.DataFrame):
    """Barres groupées : erreur absolue moyenne (%) de chaque méthode de prévision, par analyte."""
    import matplotlib.pyplot as plt

    if mae.empty:
        raise ValueError("Tableau d'erreurs vide : rien à tracer.")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    mae.plot.bar(ax=ax, rot=0)
    ax.set_xlabel("analyte")
    ax.set_ylabel("erreur absolue moyenne (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, title="méthode")
    fig.tight_layout()
    return fig


def plot_slopes(slopes: pd.DataFrame, truth_column: str = "pente_vraie", group_column: str = "tendance"):
    """Pente estimée contre pente vraie (%/an), un point par série, couleur = tendance étiquetée.

    La diagonale est l'estimation parfaite ; l'écart vient du bruit biologique et analytique,
    d'autant plus grand que la série est courte.
    """
    import matplotlib.pyplot as plt

    missing = [c for c in ("pente_relative_par_an", truth_column, group_column) if c not in slopes]
    if missing:
        raise ValueError(f"Colonnes manquantes pour le graphique des pentes : {', '.join(missing)}.")
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, g in slopes.groupby(group_column):
        ax.scatter(100 * g[truth_column], 100 * g["pente_relative_par_an"], s=12, alpha=0.6, label=str(name))
    lim = 100 * max(slopes[truth_column].abs().max(), slopes["pente_relative_par_an"].abs().max())
    ax.plot([-lim, lim], [-lim, lim], color="grey", lw=1, ls="--")
    ax.set_xlabel("pente vraie (% par an)")
    ax.set_ylabel("pente estimée (% par an)")
    ax.grid(alpha=0.3)
    ax.legend(title="tendance", fontsize=8)
    fig.tight_layout()
    return fig
