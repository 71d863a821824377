"""Durée attendue de chaque notebook, par profil : une **mesure versionnée**.

``make course`` (:func:`helpers.course.main`) enregistre, pour chaque notebook exécuté sans erreur,
sa durée et son pic mémoire dans ``docs/mesures/durees.csv`` (une ligne par profil et notebook,
avec la date, le commit et le nombre de threads). :func:`helpers.setup_course` relit ce fichier et
affiche, en tête de chaque notebook, ce qu'il a coûté sur chaque profil ; la documentation en tire
le tableau de la page « Durées mesurées » (:func:`helpers.docs.write_durations_page`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

COLUMNS = ["profile", "notebook", "seconds", "peak_rss_mb", "threads", "date", "commit", "cpu_4bit"]
#: Colonnes ajoutées après coup : absentes d'un fichier plus ancien, elles restent vides.
OPTIONAL = ("cpu_4bit",)
PROFILE_ORDER = ("gpu", "cpu", "smoke")


def durations_path() -> Path:
    """``docs/mesures/durees.csv`` (versionné)."""
    from .measures import MEASURES_DIR

    return MEASURES_DIR / "durees.csv"


def notebook_prefix(title: str) -> str | None:
    """Le numéro « NN » d'un titre de leçon (« 02 — fine-tuning… ») ; ``None`` pour un titre sans
    numéro ou pour un notebook de solutions (sa durée n'est pas celle de la leçon)."""
    match = re.match(r"\s*(\d\d)\b", title or "")
    if not match or "solution" in title.lower():
        return None
    return match.group(1)


def load_durations(path: Path | None = None) -> pd.DataFrame:
    """Le tableau des durées (vide, avec ses colonnes, s'il n'existe pas encore). Erreur française
    si une colonne manque."""
    path = Path(path or durations_path())
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype={"notebook": str, "commit": str, "cpu_4bit": str})
    for column in OPTIONAL:
        if column not in table.columns:
            table[column] = pd.NA
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path.name} : colonnes manquantes {', '.join(missing)}.")
    table["notebook"] = table["notebook"].str.zfill(2)
    return table[COLUMNS]


def record_durations(
    profile_name: str,
    results: list[dict],
    *,
    threads: int,
    commit: str,
    date: str,
    cpu_4bit: str | None = None,
    path: Path | None = None,
) -> pd.DataFrame:
    """Remplace, pour ``profile_name``, les lignes des notebooks de ``results`` exécutés sans erreur
    (``statut == "ok"``) ; garde les autres profils et notebooks. ``cpu_4bit`` : comment ce
    processeur calcule le 4 bits (:func:`helpers.runtime.cpu_4bit_kernel`), ``None`` sur GPU.
    Renvoie le tableau écrit."""
    path = Path(path or durations_path())
    rows = [
        {
            "profile": profile_name,
            "notebook": r["notebook"][:2],
            "seconds": float(r["seconds"]),
            "peak_rss_mb": r.get("kernel_peak_rss_mb"),
            "threads": threads,
            "date": date,
            "commit": commit,
            "cpu_4bit": cpu_4bit,
        }
        for r in results
        if r.get("status") == "ok"
    ]
    table = load_durations(path)
    if rows:
        new = pd.DataFrame(rows, columns=COLUMNS)
        keep = ~(table["profile"].eq(profile_name) & table["notebook"].isin(new["notebook"]))
        table = pd.concat([table[keep], new], ignore_index=True) if keep.any() else new
        order = {p: i for i, p in enumerate(PROFILE_ORDER)}
        table = table.sort_values(
            ["notebook", "profile"], key=lambda s: s.map(order).fillna(9) if s.name == "profile" else s
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        return load_durations(path)  # tel que relu (cases vides comprises)
    return table.reset_index(drop=True)


def where_4bit(row) -> str:
    """Threads de la mesure et, sur CPU, comment le processeur calculait le 4 bits : les durées des
    notebooks 04 à 08 en dépendent (:func:`helpers.runtime.cpu_4bit_kernel`)."""
    from .runtime import CPU_4BIT_SHORT

    text = f"{int(row['threads'])} thread(s)"
    kernel = row.get("cpu_4bit")
    if isinstance(kernel, str) and kernel:
        text += ", " + CPU_4BIT_SHORT[kernel]
    return text


def format_seconds(seconds: float) -> str:
    """« 45 s », « 4 min 53 s », « 1 h 02 min »."""
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def measures_by_profile(table: pd.DataFrame, prefix: str, describe) -> list[str]:
    """Pour le notebook ``prefix``, un texte par profil de :data:`PROFILE_ORDER` : ``describe(ligne)``
    pour un profil mesuré, « pas encore mesurée » sinon (page de la documentation et en-tête des
    notebooks)."""
    rows = table[table["notebook"] == prefix].set_index("profile")
    return [describe(rows.loc[p]) if p in rows.index else "pas encore mesurée" for p in PROFILE_ORDER]


def duration_lines(prefix: str, path: Path | None = None) -> list[str]:
    """Une ligne par profil pour le notebook ``prefix`` : durée, pic mémoire, date et threads de la
    mesure ; « pas encore mesurée » pour un profil sans ligne."""

    def describe(r) -> str:
        memory = (
            ", pic " + f"{int(r['peak_rss_mb']):,}".replace(",", "\u202f") + " Mo" if pd.notna(r["peak_rss_mb"]) else ""
        )
        return f"{format_seconds(r['seconds'])}{memory} (make course du {r['date']}, {where_4bit(r)})"

    texts = measures_by_profile(load_durations(path), prefix, describe)
    return [f"{profile} : {text}" for profile, text in zip(PROFILE_ORDER, texts)]
