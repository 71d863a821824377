"""Chargement et validation du jeu de données MedAnalyzer-FR (objets ``datasets``).

Chaque fichier est validé ligne par ligne avant d'être converti : colonne manquante, texte
vide, NaN, doublon, mauvais type ou mauvais encodage lèvent une :class:`DatasetValidationError`
dont le message (en français) nomme le fichier, la ligne et la colonne. Rien n'est ignoré en
silence.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import DATASET_DIR, shown

# Séquences typiques d'un texte UTF-8 relu en Latin-1 (« Ã© » pour « é »), ou caractère de
# remplacement : signe d'un fichier mal encodé.
_MOJIBAKE = re.compile(r"Ã[\u0080-\u00bf]|â€|Â[\u00a0-\u00bf]|\ufffd")


class DatasetValidationError(ValueError):
    """Donnée invalide : le message nomme le fichier, la ligne et la colonne. Le fichier y est écrit
    comme dans les notebooks (:func:`helpers.paths.shown`) : relatif au dépôt ou aux résultats,
    sinon son seul nom, jamais le chemin de la machine ; ``path`` garde le chemin complet."""

    def __init__(self, path: Path | str, line: int | None, column: str | None, problem: str):
        self.path, self.line, self.column, self.problem = str(path), line, column, problem
        where = shown(path)
        if line is not None:
            where += f", ligne {line}"
        if column is not None:
            where += f", colonne « {column} »"
        super().__init__(f"{where} : {problem}")


@dataclass(frozen=True)
class Column:
    """Une colonne attendue : nom, type Python, texte non vide exigé, valeurs uniques."""

    name: str
    type: type = str
    non_empty: bool = True
    unique: bool = False
    max_chars: int | None = None  #: longueur maximale d'un texte (None = pas de limite)


SCHEMAS: dict[str, tuple[Column, ...]] = {
    "corpus": (
        Column("passage_id", unique=True),
        Column("code"),
        Column("analyte"),
        Column("famille"),
        Column("aspect"),
        Column("text", unique=True),
    ),
    "retrieval": (
        Column("question", unique=True),
        Column("passage_id"),
        Column("code"),
        Column("aspect"),
        Column("style"),
        Column("template"),
        Column("pair_id", unique=True),
    ),
    # Questions écrites à la main (helpers.generate.build_natural) : un ou plusieurs passages justes.
    "naturel": (
        Column("question", unique=True),
        Column("passage_id"),
        Column("passages_pertinents", list),
        Column("code"),
        Column("famille"),
        Column("aspect"),
        Column("style"),
        Column("pair_id", unique=True),
    ),
    "instructions": (
        Column("id", unique=True),
        Column("instruction"),
        Column("input"),
        Column("output"),
        Column("sexe"),
        Column("age", int),
        Column("panel"),
        Column("labels", list),
    ),
    "longitudinal": (
        Column("patient_id"),
        Column("sexe"),
        Column("age_inclusion", int),
        Column("visite", int),
        Column("date"),
        Column("code"),
        Column("valeur", float),
        Column("unite"),
        Column("statut"),
        Column("anomalie", non_empty=False),
        Column("tendance"),
        Column("point_consigne", float),
        Column("pente_relative_par_an", float),
    ),
    # Vos propres données (voir la page « Vos données » de la documentation et USER_FORMATS).
    "paires": (Column("question", max_chars=1_000), Column("passage", max_chars=4_000)),
    "instructions_utilisateur": (
        Column("instruction", max_chars=2_000),
        Column("input", non_empty=False, max_chars=8_000),
        Column("output", max_chars=8_000),
    ),
    "resultats": (
        Column("patient_id"),
        Column("sexe"),
        Column("age", int),
        Column("analyte"),
        Column("valeur", float),
        Column("unite"),
    ),
}
LABEL_KEYS = {"code": str, "analyte": str, "valeur": float, "unite": str, "statut": str}
_LONGITUDINAL_KEY = ("patient_id", "visite", "code")


def decode_file(path: Path) -> str:
    """Contenu texte UTF-8 du fichier ; erreur française s'il manque ou est mal encodé."""
    if not path.exists():
        raise DatasetValidationError(
            path, None, None, "fichier introuvable (régénérez-le : python -m helpers.generate)."
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DatasetValidationError(
            path, line, None, f"encodage invalide (UTF-8 attendu), octet 0x{raw[err.start]:02x}."
        ) from None
    return text.removeprefix("\ufeff")


def _check_value(path: Path, line: int, col: Column, value: Any) -> Any:
    expected = col.type
    if value is None:
        raise DatasetValidationError(path, line, col.name, "valeur absente (null).")
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DatasetValidationError(
                path, line, col.name, f"nombre attendu, trouvé {type(value).__name__} « {value} »."
            )
        if math.isnan(value) or math.isinf(value):
            raise DatasetValidationError(path, line, col.name, "valeur NaN ou infinie.")
        return float(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetValidationError(
                path, line, col.name, f"entier attendu, trouvé {type(value).__name__} « {value} »."
            )
        return value
    if not isinstance(value, expected):
        raise DatasetValidationError(
            path, line, col.name, f"type {expected.__name__} attendu, trouvé {type(value).__name__}."
        )
    if expected is str:
        if col.non_empty and not value.strip():
            raise DatasetValidationError(path, line, col.name, "texte vide.")
        if value.strip().lower() == "nan":
            raise DatasetValidationError(path, line, col.name, "valeur « NaN » à la place d'un texte.")
        if col.max_chars is not None and len(value) > col.max_chars:
            raise DatasetValidationError(
                path, line, col.name, f"texte trop long ({len(value)} caractères, maximum {col.max_chars})."
            )
        if _MOJIBAKE.search(value):
            bad = _MOJIBAKE.search(value).group(0)
            raise DatasetValidationError(
                path, line, col.name, f"texte mal encodé (séquence « {bad} » : fichier relu en Latin-1 ?)."
            )
    if expected is list and col.non_empty and not value:
        raise DatasetValidationError(path, line, col.name, "liste vide.")
    return value


def _check_labels(path: Path, line: int, labels: list) -> None:
    for i, lab in enumerate(labels):
        if not isinstance(lab, dict):
            raise DatasetValidationError(path, line, "labels", f"élément {i} : objet attendu.")
        for key, typ in LABEL_KEYS.items():
            if key not in lab:
                raise DatasetValidationError(path, line, "labels", f"élément {i} : clé « {key} » manquante.")
            _check_value(path, line, Column(f"labels[{i}].{key}", typ), lab[key])
        if lab["statut"] not in ("bas", "normal", "élevé"):
            raise DatasetValidationError(
                path, line, f"labels[{i}].statut", f"statut « {lab['statut']} » inconnu (bas, normal ou élevé)."
            )


def validate_records(records: list[tuple[int, dict]], schema: str, path: Path | str) -> list[dict]:
    """Valide des enregistrements ``(numéro de ligne, dict)`` selon ``SCHEMAS[schema]``."""
    path = Path(path)
    columns = SCHEMAS[schema]
    if not records:
        raise DatasetValidationError(path, None, None, "fichier vide : aucune ligne de données.")
    seen: dict[str, dict[Any, int]] = {c.name: {} for c in columns if c.unique}
    seen_keys: dict[tuple, int] = {}
    out = []
    for line, rec in records:
        if not isinstance(rec, dict):
            raise DatasetValidationError(path, line, None, "objet JSON attendu sur chaque ligne.")
        clean = {}
        for col in columns:
            if col.name not in rec:
                raise DatasetValidationError(path, line, col.name, "colonne manquante.")
            clean[col.name] = _check_value(path, line, col, rec[col.name])
            if col.unique:
                key = " ".join(str(clean[col.name]).lower().split())
                if key in seen[col.name]:
                    raise DatasetValidationError(path, line, col.name, f"doublon de la ligne {seen[col.name][key]}.")
                seen[col.name][key] = line
        extra = sorted(set(rec) - {c.name for c in columns})
        if extra:
            raise DatasetValidationError(path, line, extra[0], "colonne inattendue (faute de frappe ?).")
        if schema == "instructions":
            _check_labels(path, line, clean["labels"])
        if schema == "resultats":  # résultats de l'utilisateur : analyte connu, unité, doublons
            from .user_data import check_result_row

            check_result_row(path, line, clean, seen_keys)
        if schema == "longitudinal":
            key = tuple(clean[k] for k in _LONGITUDINAL_KEY)
            if key in seen_keys:
                raise DatasetValidationError(
                    path, line, None, f"doublon (patient, visite, analyte) de la ligne {seen_keys[key]}."
                )
            seen_keys[key] = line
        out.append(clean)
    return out


def read_jsonl(path: Path | str, schema: str) -> list[dict]:
    """Lit et valide un fichier JSON Lines (une ligne = un objet)."""
    path = Path(path)
    records = []
    for n, raw in enumerate(decode_file(path).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            records.append((n, json.loads(raw)))
        except json.JSONDecodeError as err:
            raise DatasetValidationError(path, n, None, f"JSON invalide ({err.msg}, caractère {err.colno}).") from None
    return validate_records(records, schema, path)


def _csv_cell(path: Path, line: int, col: Column, raw: str | None) -> Any:
    if raw is None:
        raise DatasetValidationError(path, line, col.name, "cellule manquante (ligne trop courte).")
    if col.type in (int, float):
        text = raw.strip()
        if text == "":
            raise DatasetValidationError(path, line, col.name, "nombre attendu, cellule vide.")
        if text.lower() == "nan":
            raise DatasetValidationError(path, line, col.name, "valeur NaN.")
        try:
            return col.type(text.replace(",", ".")) if col.type is float else int(text)
        except ValueError:
            raise DatasetValidationError(
                path, line, col.name, f"{'entier' if col.type is int else 'nombre'} attendu, trouvé « {text} »."
            ) from None
    return raw


def read_csv(path: Path | str, schema: str) -> list[dict]:
    """Lit et valide un fichier CSV (en-tête en première ligne)."""
    path = Path(path)
    rows = list(csv.reader(decode_file(path).splitlines()))
    if not rows:
        raise DatasetValidationError(path, None, None, "fichier vide.")
    header = rows[0]
    columns = SCHEMAS[schema]
    for col in columns:
        if col.name not in header:
            raise DatasetValidationError(path, 1, col.name, "colonne manquante dans l'en-tête.")
    records = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise DatasetValidationError(
                path, n, None, f"{len(row)} cellules pour {len(header)} colonnes (virgule en trop ?)."
            )
        cells = dict(zip(header, row))
        records.append((n, {c.name: _csv_cell(path, n, c, cells.get(c.name)) for c in columns}))
    return validate_records(records, schema, path)


# ---------------------------------------------------------------------------- vues
def _subsample(rows: list[dict], n: int | None, seed: int) -> list[dict]:
    if n is None or n >= len(rows):
        return rows
    idx = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in idx]


#: Passage du corpus qui explique un statut anormal : ``<code>-haute`` ou ``<code>-basse``
#: (recherche d'explications du notebook 07, :mod:`helpers.rag`).
STATUS_ASPECT = {"élevé": "haute", "bas": "basse"}


def _reduce_corpus(corpus: list[dict], splits: dict, n: int | None, seed: int, profile=None) -> list[dict]:
    """Au moins ``n`` passages du corpus (``None`` : tous) : ceux qui sont pertinents pour une
    requête gardée dans un split, ceux qui expliquent une valeur anormale des comptes rendus gardés
    par le profil (notebook 07), complétés par un tirage des autres ; ordre du fichier conservé."""
    if n is None or n >= len(corpus):
        return corpus
    relevant = (r.get("passages_pertinents") or [r["passage_id"]] for rows in splits.values() for r in rows)
    needed = {pid for ids in relevant for pid in ids}
    if profile is not None:
        for split in load_instructions(profile).values():
            needed |= {
                f"{label['code']}-{STATUS_ASPECT[label['statut']]}"
                for case in split
                for label in case["labels"]
                if label["statut"] in STATUS_ASPECT
            }
    others = [i for i, p in enumerate(corpus) if p["passage_id"] not in needed]
    extra = set(random.Random(seed).sample(others, max(0, min(len(others), n - len(needed)))))
    return [p for i, p in enumerate(corpus) if p["passage_id"] in needed or i in extra]


#: Les deux moitiés des questions **écrites à la main** (pas par les gabarits) : voir la fiche du jeu.
NATURAL_SPLITS = ("naturel_validation", "naturel_test")


def load_retrieval(profile=None, data_dir: Path = DATASET_DIR):
    """Vue recherche : ``DatasetDict`` avec ``corpus``, ``train``, ``validation``,
    ``test_questions``, ``test_analytes`` et, s'ils existent, ``naturel_validation`` et
    ``naturel_test`` (questions écrites à la main, un ou plusieurs passages pertinents dans
    ``passages_pertinents``).

    Le profil limite le nombre de paires d'entraînement (``embedding.train_pairs``) et de
    requêtes de test (``embedding.eval_queries``). Le corpus reste complet, sauf si le profil
    fixe ``embedding.corpus_passages`` (profil smoke seulement) : voir :func:`_reduce_corpus`.
    """
    from datasets import Dataset, DatasetDict

    data_dir = Path(data_dir)
    corpus = read_jsonl(data_dir / "corpus.jsonl", "corpus")
    ids = {p["passage_id"] for p in corpus}
    splits = {}
    for name in ("train", "validation", "test_questions", "test_analytes") + NATURAL_SPLITS:
        path = data_dir / f"retrieval_{name}.jsonl"
        if name in NATURAL_SPLITS and not path.exists():
            continue  # questions naturelles : seulement dans MedAnalyzer-FR (facultatives ailleurs)
        rows = read_jsonl(path, "naturel" if name in NATURAL_SPLITS else "retrieval")
        for i, r in enumerate(rows):
            for pid in r.get("passages_pertinents") or [r["passage_id"]]:
                if pid not in ids:
                    raise DatasetValidationError(
                        path, i + 1, "passage_id", f"passage « {pid} » absent de corpus.jsonl."
                    )
        splits[name] = rows
    if profile is not None:
        seed = profile.seed
        if not profile.embedding.described_pairs:
            splits["train"] = [r for r in splits["train"] if r.get("style") != "description"]
        splits["train"] = _subsample(splits["train"], profile.embedding.train_pairs, seed)
        for name in [n for n in splits if n != "train"]:
            splits[name] = _subsample(splits[name], profile.embedding.eval_queries, seed)
        corpus = _reduce_corpus(corpus, splits, profile.embedding.corpus_passages, seed, profile)
    return DatasetDict({"corpus": Dataset.from_list(corpus), **{k: Dataset.from_list(v) for k, v in splits.items()}})


def load_instructions(profile=None, data_dir: Path = DATASET_DIR):
    """Vue instructions : ``DatasetDict`` ``train`` / ``validation`` / ``test`` (Alpaca + labels)."""
    from datasets import Dataset, DatasetDict

    data_dir = Path(data_dir)
    splits = {
        name: read_jsonl(data_dir / f"instructions_{name}.jsonl", "instructions")
        for name in ("train", "validation", "test")
    }
    if profile is not None:
        splits["train"] = _subsample(splits["train"], profile.llm.train_examples, profile.seed)
        for name in ("validation", "test"):
            splits[name] = _subsample(splits[name], profile.llm.eval_examples, profile.seed)
    return DatasetDict({k: Dataset.from_list(v) for k, v in splits.items()})


def load_longitudinal(profile=None, data_dir: Path = DATASET_DIR):
    """Vue longitudinale : ``Dataset`` (une ligne par patient, visite et analyte)."""
    from datasets import Dataset

    rows = read_csv(Path(data_dir) / "longitudinal.csv", "longitudinal")
    n = profile.data.longitudinal_patients if profile is not None else None
    if n is not None:
        patients = sorted({r["patient_id"] for r in rows})[:n]
        keep = set(patients)
        rows = [r for r in rows if r["patient_id"] in keep]
    return Dataset.from_list(rows)


# ---------------------------------------------------------------------------- hub
HUB_COLUMN_ALIASES = {
    "instruction": ("instruction", "question", "prompt", "Instruction"),
    "input": ("input", "context", "Input"),
    "output": ("output", "response", "answer", "Response", "Output"),
}


def map_hub_columns(dataset, source: str = "jeu du hub"):
    """Renomme les colonnes d'un jeu Alpaca du hub en ``instruction`` / ``input`` / ``output``.

    ``input`` peut manquer (colonne vide ajoutée) ; ``instruction`` et ``output`` sont exigées.
    """
    columns = list(dataset.column_names)
    rename = {}
    for target, aliases in HUB_COLUMN_ALIASES.items():
        found = next((c for c in aliases if c in columns), None)
        if found is None:
            if target == "input":
                dataset = dataset.add_column("input", [""] * len(dataset))
                continue
            raise DatasetValidationError(
                source, None, target, f"colonne introuvable ; colonnes présentes : {', '.join(columns)}."
            )
        if found != target:
            rename[found] = target
    dataset = dataset.rename_columns(rename) if rename else dataset
    return dataset.select_columns(["instruction", "input", "output"])


def load_hub_instructions(dataset_id: str, split: str = "train", loader=None):
    """Charge un jeu Alpaca du hub (profil gpu), colonnes renommées puis **validées comme vos
    fichiers** (schéma ``instructions_utilisateur`` : textes non vides, sans NaN ni mauvais
    encodage, longueurs bornées ; l'erreur nomme la ligne). Échoue vite hors ligne.

    ``loader`` remplace ``datasets.load_dataset`` (tests)."""
    from datasets import Dataset

    from . import runtime

    if loader is None:
        if not runtime.hub_reachable():
            raise ConnectionError(f"Hub Hugging Face injoignable : impossible de charger « {dataset_id} ».")
        from datasets import load_dataset as loader
    mapped = map_hub_columns(loader(dataset_id, split=split), source=dataset_id)
    rows = validate_records(
        list(enumerate(mapped.to_list(), start=1)), "instructions_utilisateur", f"{dataset_id} (hub, split {split})"
    )
    return Dataset.from_list(rows)


def with_hub_examples(train, profile, loader=None):
    """Le split d'entraînement des comptes rendus, complété par le jeu du hub du profil
    (``profile.data.hub_dataset``, ``Nassira/MedAnalyzr`` sur GPU) quand il est joignable et valide.

    Renvoie ``(train, message)`` : ``train`` réduit aux colonnes ``instruction`` / ``input`` /
    ``output`` si des exemples du hub s'ajoutent ; sinon inchangé, et ``message`` dit pourquoi
    (hub injoignable, jeu absent, colonnes inattendues, ligne invalide) : le cours continue avec
    MedAnalyzer-FR seul. Les splits de validation et de test restent ceux de MedAnalyzer-FR, les
    seuls dont les statuts sont étiquetés.
    """
    from datasets import concatenate_datasets

    dataset_id = profile.data.hub_dataset
    if not dataset_id:
        return train, "Jeu d'entraînement : MedAnalyzer-FR (aucun jeu du hub pour ce profil)."
    try:
        hub = load_hub_instructions(dataset_id, loader=loader)
    except Exception as err:  # noqa: BLE001 — hub coupé, jeu privé ou supprimé, colonnes, données
        return train, (
            f"Jeu du hub « {dataset_id} » non utilisé ({type(err).__name__} : {err}). "
            "Entraînement sur MedAnalyzer-FR seul."
        )
    limit = profile.data.hub_max_examples
    if limit is not None and len(hub) > limit:
        hub = hub.shuffle(seed=profile.seed).select(range(limit))
    columns = ["instruction", "input", "output"]
    merged = concatenate_datasets([train.select_columns(columns), hub.select_columns(columns)])
    return merged.shuffle(seed=profile.seed), (
        f"Jeu d'entraînement : MedAnalyzer-FR ({len(train)} comptes rendus) + « {dataset_id} » "
        f"({len(hub)} exemples du hub, validés). Validation et test : MedAnalyzer-FR."
    )


# ---------------------------------------------------------------------------- intégrité
def split_integrity(retrieval) -> dict:
    """Vérifie qu'aucune question ni aucun analyte de test ne fuit dans l'entraînement.

    Renvoie un dictionnaire de compteurs (tous à 0 si les splits sont propres).
    """

    def norm(q: str) -> str:
        return " ".join(q.lower().split())

    train_q = {norm(q) for q in retrieval["train"]["question"]}
    fit_codes = set(retrieval["train"]["code"]) | set(retrieval["validation"]["code"])
    train_groups = set(zip(retrieval["train"]["passage_id"], retrieval["train"]["template"]))
    report = {}
    for split in ("validation", "test_questions", "test_analytes"):
        ds = retrieval[split]
        report[f"{split}_questions_in_train"] = sum(norm(q) in train_q for q in ds["question"])
        report[f"{split}_groups_in_train"] = sum(g in train_groups for g in zip(ds["passage_id"], ds["template"]))
    report["test_analytes_seen_in_training"] = len(set(retrieval["test_analytes"]["code"]) & fit_codes)
    return report


def check_split_integrity(retrieval, source: str = "retrieval_*.jsonl") -> dict:
    """Comme :func:`split_integrity`, mais lève :class:`DatasetValidationError` en cas de fuite
    (``source`` : les fichiers nommés par le message)."""
    report = split_integrity(retrieval)
    leaks = {k: v for k, v in report.items() if v}
    if leaks:
        detail = ", ".join(f"{k} = {v}" for k, v in leaks.items())
        raise DatasetValidationError(
            source,
            None,
            None,
            f"Fuite entre splits ({detail}) : des questions ou analytes de test sont vus à l'entraînement.",
        )
    return report


def ir_inputs(split, corpus) -> tuple[dict, dict, dict]:
    """``(queries, corpus, relevant_docs)`` au format de ``InformationRetrievalEvaluator`` (tous les
    passages de ``passages_pertinents`` comptent comme pertinents, si la colonne existe)."""
    if len(split) == 0:
        raise ValueError("Ensemble de requêtes vide : impossible d'évaluer la recherche.")
    if len(corpus) == 0:
        raise ValueError("Corpus vide : impossible d'évaluer la recherche.")
    queries = dict(zip(split["pair_id"], split["question"]))
    docs = dict(zip(corpus["passage_id"], corpus["text"]))
    if "passages_pertinents" in split.column_names:  # questions naturelles : parfois deux passages justes
        relevant = {pid: set(docs_) for pid, docs_ in zip(split["pair_id"], split["passages_pertinents"])}
    else:
        relevant = {pid: {doc} for pid, doc in zip(split["pair_id"], split["passage_id"])}
    return queries, docs, relevant
