"""Vos données : lire et valider les fichiers de l'utilisateur (paires question / passage,
exemples d'instructions, résultats d'analyses) et les mettre au format des notebooks 02 et 04 et
des scripts ``train_embeddings.py`` / ``train_qlora.py`` (page « Vos données » de la
documentation). Chaque erreur est française et nomme le fichier, la ligne et la colonne.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from .data import SCHEMAS, DatasetValidationError, decode_file, read_csv, read_jsonl

#: Formats de fichiers utilisateur (CSV avec en-tête, ou JSON Lines) et leur usage.
USER_FORMATS = {
    "paires": "question, passage — paires question / passage pertinent (embeddings, notebook 02)",
    "instructions_utilisateur": "instruction, input (peut être vide), output — exemples Alpaca (QLoRA, notebook 04)",
    "resultats": "patient_id, sexe, age, analyte, valeur, unite — résultats d'analyses, une ligne par "
    "valeur ; le statut est calculé avec les intervalles de référence du cours",
}


def _key(text: str) -> str:
    """Clé de comparaison d'un nom ou d'une unité : sans accents ni casse (:func:`helpers.text.normalize`), sans
    espaces, « µ » écrit « u » (« µg/L », « μg/L » et « ug/L » se valent)."""
    from .text import normalize

    return normalize(text).replace("μ", "u").replace(" ", "")


def find_analyte(name: str):
    """L'analyte nommé ``name`` (code, nom, nom court, abréviation ou synonyme, sans tenir compte
    des accents ni de la casse), ou ``None``."""
    from .analytes import load_analytes

    wanted = _key(name)
    for a in load_analytes().values():
        if wanted in {_key(n) for n in (a.code, a.nom, a.nom_court, a.abreviation, *a.synonymes) if n}:
            return a
    return None


def check_result_row(path: Path, line: int, row: dict, seen: dict) -> None:
    """Une ligne de résultats : analyte connu, sexe, unité du cours, valeur plausible, pas de
    doublon ; ajoute ``code`` et ``statut`` (calculé avec l'intervalle de référence)."""
    from .analytes import SEXES

    a = find_analyte(row["analyte"])
    if a is None:
        raise DatasetValidationError(
            path, line, "analyte", f"analyte inconnu « {row['analyte']} » (liste : data/reference/analytes_fr.csv)."
        )
    if row["sexe"] not in SEXES:
        raise DatasetValidationError(path, line, "sexe", f"« {row['sexe']} » : homme ou femme attendu.")
    if not 0 <= row["age"] <= 120:
        raise DatasetValidationError(path, line, "age", f"âge impossible : {row['age']}.")
    if _key(row["unite"]) != _key(a.unite):
        raise DatasetValidationError(
            path,
            line,
            "unite",
            f"unité inconnue « {row['unite']} » pour {a.le} : le cours attend {a.unite} (convertissez la valeur).",
        )
    lo, hi = a.plausible
    if not lo <= row["valeur"] <= hi:
        raise DatasetValidationError(
            path,
            line,
            "valeur",
            f"{a.fmt(row['valeur'])} {a.unite} n'est pas plausible pour {a.le} "
            f"(entre {a.fmt(lo)} et {a.fmt(hi)} attendu) : erreur d'unité ou de saisie ?",
        )
    key = (row["patient_id"], a.code)
    if key in seen:
        raise DatasetValidationError(path, line, "analyte", f"doublon (patient, analyte) de la ligne {seen[key]}.")
    seen[key] = line
    person = seen.setdefault(("personne", row["patient_id"]), (line, row["sexe"], row["age"]))
    if person[1:] != (row["sexe"], row["age"]):
        raise DatasetValidationError(
            path,
            line,
            "sexe" if person[1] != row["sexe"] else "age",
            f"le patient « {row['patient_id']} » a un autre sexe ou âge ligne {person[0]}.",
        )
    row.update(code=a.code, unite=a.unite, statut=a.status(row["valeur"], row["sexe"]))


def read_user_file(path: Path | str, kind: str) -> list[dict]:
    """Lit et valide **votre** fichier (``.csv`` avec en-tête ou ``.jsonl``) au format ``kind``
    (une clé de :data:`USER_FORMATS`). Toute erreur nomme le fichier, la ligne et la colonne."""
    if kind not in USER_FORMATS:
        raise ValueError(f"Format inconnu « {kind} » ; formats possibles : {', '.join(USER_FORMATS)}.")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, kind)
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path, kind)
    raise DatasetValidationError(
        path, None, None, f"extension « {suffix or '(aucune)'} » non prise en charge : .csv ou .jsonl attendu."
    )


def detect_user_format(path: Path | str, allowed=tuple(USER_FORMATS)) -> str:
    """Le format d'un fichier utilisateur, reconnu à ses colonnes (première ligne)."""
    path = Path(path)
    text = decode_file(path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if path.suffix.lower() == ".csv":
        columns = set(next(csv.reader([first]), []))
    else:
        try:
            columns = set(json.loads(first)) if first else set()
        except (json.JSONDecodeError, TypeError):
            raise DatasetValidationError(path, 1, None, "JSON invalide sur la première ligne.") from None
    for kind in allowed:
        if {c.name for c in SCHEMAS[kind]} <= columns:
            return kind
    expected = " ; ".join(f"{k} : {USER_FORMATS[k].split(' — ')[0]}" for k in allowed)
    raise DatasetValidationError(path, 1, None, f"colonnes {sorted(columns)} : aucun format reconnu ({expected}).")


def _holdout(n: int, share: float, seed: int, path: Path) -> tuple[list[int], list[int]]:
    if n < 2:
        raise DatasetValidationError(
            path, None, None, f"{n} exemple(s) : il en faut au moins 2 (un pour entraîner, un pour valider)."
        )
    n_val = max(1, round(n * share))
    val = set(random.Random(seed).sample(range(n), n_val))
    return [i for i in range(n) if i not in val], sorted(val)


def load_user_pairs(path: Path | str, validation_share: float = 0.1, seed: int = 42):
    """Vos paires question / passage, au format de :func:`helpers.data.load_retrieval` : ``DatasetDict`` avec
    ``corpus`` (passages uniques), ``train`` et ``validation`` (questions tirées au hasard)."""
    from datasets import Dataset, DatasetDict

    path = Path(path)
    rows = read_user_file(path, "paires")
    passage_ids: dict[str, str] = {}
    for r in rows:
        passage_ids.setdefault(r["passage"], f"p{len(passage_ids):05d}")
    records = [
        {"question": r["question"], "passage_id": passage_ids[r["passage"]], "pair_id": f"q{i:05d}"}
        for i, r in enumerate(rows)
    ]
    train, val = _holdout(len(records), validation_share, seed, path)
    corpus = [{"passage_id": pid, "text": text} for text, pid in passage_ids.items()]
    return DatasetDict(
        {
            "corpus": Dataset.from_list(corpus),
            "train": Dataset.from_list([records[i] for i in train]),
            "validation": Dataset.from_list([records[i] for i in val]),
        }
    )


def results_to_reports(rows: list[dict]) -> list[dict]:
    """Regroupe des lignes ``resultats`` validées en comptes rendus (un par patient), au schéma
    du jeu d'instructions : étiquettes (de quoi appeler ``llm.analyte_cases``), consigne et entrée
    écrites comme celles du jeu (« Patient : femme, 54 ans (…). Résultats : - Sodium : … »)."""
    from .analytes import load_analytes
    from .generate import INSTRUCTIONS

    analytes = load_analytes()
    reports: dict[str, dict] = {}
    for r in rows:
        rep = reports.setdefault(
            r["patient_id"],
            {
                "id": str(r["patient_id"]),
                "instruction": INSTRUCTIONS[0],
                "sexe": r["sexe"],
                "age": r["age"],
                "panel": "personnel",
                "labels": [],
            },
        )
        rep["labels"].append(
            {
                "code": r["code"],
                "analyte": analytes[r["code"]].nom,
                "valeur": r["valeur"],
                "unite": r["unite"],
                "statut": r["statut"],
            }
        )
    for rep in reports.values():
        lines = []
        for label in rep["labels"]:
            a = analytes[label["code"]]
            lines.append(f"- {a.nom_court[:1].upper() + a.nom_court[1:]} : {a.fmt(label['valeur'])} {a.unite}")
        rep["input"] = f"Patient : {rep['sexe']}, {rep['age']} ans (résultats personnels).\nRésultats :\n" + "\n".join(
            lines
        )
    return list(reports.values())


def load_user_instructions(path: Path | str, validation_share: float = 0.1, seed: int = 42):
    """Vos exemples pour le QLoRA : ``DatasetDict`` ``train`` / ``validation`` et le format lu.

    ``instructions_utilisateur`` : colonnes ``instruction`` / ``input`` / ``output`` ;
    ``resultats`` : un compte rendu par patient, avec ``labels`` (statuts calculés), à découper
    ensuite par ``llm.analyte_cases``. La validation est tirée au hasard (par patient).
    """
    from datasets import Dataset, DatasetDict

    path = Path(path)
    kind = detect_user_format(path, ("instructions_utilisateur", "resultats"))
    rows = read_user_file(path, kind)
    if kind == "resultats":
        rows = results_to_reports(rows)
    train, val = _holdout(len(rows), validation_share, seed, path)
    return DatasetDict(
        {"train": Dataset.from_list([rows[i] for i in train]), "validation": Dataset.from_list([rows[i] for i in val])}
    ), kind
