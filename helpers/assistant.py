"""Notebook 08 : un assistant local pour un compte rendu d'analyses, assemblé avec les pièces du cours.

* :func:`chosen_retrieval` — la dimension et la précision d'index retenues au notebook 03
  (``embeddings/recommandations.csv``, ligne « compromis » par défaut) ;
* :class:`PassageIndex` — l'index faiss des passages du corpus à cette dimension et cette précision,
  construit une fois, enregistré, rechargé (recherche binaire avec « rescoring » par
  ``sentence_transformers.quantization.semantic_search_faiss``) ;
* :class:`Assistant` — pour chaque compte rendu : les statuts calculés **par la règle** (intervalles
  de référence du cours), la réponse du modèle de langage fine-tuné, les passages qui expliquent
  chaque valeur anormale, le contrôle de prudence du notebook 07 ; une réponse dont un statut
  contredit la règle est signalée et **remplacée** par le résumé de la règle ; l'avertissement
  médical termine chaque réponse (:class:`Reply`) ;
* :func:`rows_from_text`, :func:`rows_from_table` — vos résultats collés ou saisis, lus et validés
  comme un fichier « Vos données » (mêmes messages d'erreur, qui nomment la ligne et la colonne) ;
* :func:`latency_summary`, :func:`index_costs` — l'assistant mesuré comme un produit.

Les statuts affichés sont toujours ceux de la règle : le modèle de langage ne fait qu'expliquer, et
on vérifie qu'il n'a rien contredit. Rien de ceci n'est un avis médical : le jeu de données est
synthétique.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import MEDICAL_DISCLAIMER

#: Ligne de ``embeddings/recommandations.csv`` retenue par défaut : le compromis du notebook 03
#: (la plus légère qui garde au moins 98 % du meilleur NDCG@10 de validation).
DEFAULT_USAGE = "compromis"
#: Candidats relus en float32 par le « rescoring » binaire, comme au notebook 03.
RESCORE_MULTIPLIER = 4
#: Ce que dit chaque statut de la règle, pour le lecteur.
STATUS_WORDS = {"bas": "sous l'intervalle de référence", "normal": "dans l'intervalle", "élevé": "au-dessus"}
#: Colonnes de :attr:`Reply.table` (clés anglaises ; étiquettes françaises à l'affichage).
REPLY_COLUMNS = ("analyte", "value", "rule_status", "model_status", "agrees", "source", "explanation")


@dataclass(frozen=True)
class RetrievalChoice:
    """Dimension et précision de l'index ; ``rescore`` : binaire relu en float32."""

    usage: str
    dim: int
    precision: str  #: float32, int8 ou binaire
    rescore: bool = False

    @property
    def label(self) -> str:
        return f"{self.dim} dimensions, {self.precision}" + (" + rescoring" if self.rescore else "")


def chosen_retrieval(profile_name: str, usage: str = DEFAULT_USAGE) -> RetrievalChoice:
    """Le réglage d'index recommandé par le notebook 03 pour ``usage`` (début du libellé :
    « performance », « compromis » ou « ressources »). Erreur française si le notebook 03 n'a pas
    été exécuté ou si l'usage n'existe pas."""
    from .outputs import load_table

    table = load_table(profile_name, "embeddings/recommandations.csv")
    match = table[table["usage"].str.startswith(usage)]
    if match.empty:
        raise ValueError(f"Usage « {usage} » absent des recommandations du notebook 03 : {', '.join(table['usage'])}.")
    row = match.iloc[0]
    precision, _, rescoring = str(row["precision"]).partition(" + ")
    return RetrievalChoice(str(row["usage"]), int(row["dimension"]), precision, rescoring == "rescoring")


class PassageIndex:
    """Index faiss des passages du corpus à une dimension Matryoshka et une précision données."""

    def __init__(self, index, choice: RetrievalChoice, passage_ids: list[str]):
        self.index, self.choice, self.passage_ids = index, choice, list(passage_ids)

    @classmethod
    def build(cls, embedder, corpus: list[dict], choice: RetrievalChoice, batch_size: int = 64) -> PassageIndex:
        """Encode les passages (prompt « document » d'e5), garde ``choice.dim`` composantes,
        renormalise et construit l'index (:func:`helpers.costs.build_index`)."""
        from .costs import build_index, truncate_normalize

        vectors = embedder.encode_document(
            [p["text"] for p in corpus], batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        index = build_index(truncate_normalize(vectors, choice.dim), choice.precision)
        return cls(index, choice, [p["passage_id"] for p in corpus])

    def save(self, folder: Path | str) -> Path:
        """``index.faiss`` et ``index.json`` (réglage, identifiants des passages) dans ``folder``."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write = faiss.write_index_binary if self.choice.precision == "binaire" else faiss.write_index
        write(self.index, str(folder / "index.faiss"))
        meta = {"choice": self.choice.__dict__, "passage_ids": self.passage_ids}
        (folder / "index.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path | str, corpus: list[dict] | None = None) -> PassageIndex:
        """Recharge un index enregistré ; avec ``corpus``, vérifie qu'il a été construit sur ces
        passages, dans cet ordre (sinon erreur française : reconstruisez-le)."""
        import faiss

        folder = Path(folder)
        if not (folder / "index.faiss").is_file() or not (folder / "index.json").is_file():
            raise FileNotFoundError(f"Pas d'index enregistré dans {folder.name}/ (index.faiss et index.json attendus).")
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        choice = RetrievalChoice(**meta["choice"])
        if corpus is not None and [p["passage_id"] for p in corpus] != meta["passage_ids"]:
            raise ValueError(
                f"L'index de {folder.name}/ a été construit sur un autre corpus ({len(meta['passage_ids'])} passages, "
                f"contre {len(corpus)} ici) : reconstruisez-le (PassageIndex.build)."
            )
        read = faiss.read_index_binary if choice.precision == "binaire" else faiss.read_index
        return cls(read(str(folder / "index.faiss")), choice, meta["passage_ids"])

    def size_bytes(self) -> int:
        """Taille de l'index sérialisé (octets)."""
        from .costs import serialized_bytes

        return serialized_bytes(self.index)

    def search(self, embedder, queries: list[str], k: int = 1) -> list[list[dict]]:
        """Les ``k`` meilleurs passages de chaque requête : ``[[{"corpus_id", "score"}, …], …]``."""
        from .costs import truncate_normalize

        q = embedder.encode_query(list(queries), convert_to_numpy=True, normalize_embeddings=True)
        q = truncate_normalize(q, self.choice.dim)
        if self.choice.precision == "binaire":
            from sentence_transformers.quantization import semantic_search_faiss

            results = semantic_search_faiss(  # (résultats, secondes)
                q,
                corpus_index=self.index,
                corpus_precision="ubinary",
                top_k=k,
                rescore=self.choice.rescore,
                rescore_multiplier=RESCORE_MULTIPLIER,
            )[0]
            return [[{"corpus_id": int(h["corpus_id"]), "score": float(h["score"])} for h in hits] for hits in results]
        scores, ids = self.index.search(q, k)
        return [
            [{"corpus_id": int(i), "score": float(s)} for s, i in zip(sr, ir) if i >= 0] for sr, ir in zip(scores, ids)
        ]

    def searcher(self, embedder) -> Callable[[list[str], int], list[list[dict]]]:
        """La recherche sous la forme qu'attendent :func:`helpers.rag.retrieve_contexts` et
        :func:`helpers.rag.explanation_passages` (paramètre ``search``)."""
        return lambda queries, k: self.search(embedder, queries, k)


@dataclass
class Reply:
    """La réponse de l'assistant pour un compte rendu."""

    report_id: str
    table: pd.DataFrame  #: une ligne par valeur (:data:`REPLY_COLUMNS`)
    text: str  #: ce que lit l'utilisateur, avertissement médical compris
    flagged: list[str] = field(default_factory=list)  #: statuts du modèle contraires à la règle
    tone_issues: list[str] = field(default_factory=list)  #: contrôle du ton (notebook 07)
    model_text: str = ""  #: ce qu'a écrit le modèle (montré seulement s'il ne contredit rien)
    seconds: float = 0.0

    @property
    def shown_as_is(self) -> bool:
        """Vrai si le texte du modèle est montré tel quel (ni contradiction, ni ton imprudent)."""
        return not (self.flagged or self.tone_issues)


def rule_summary(items: list[dict], report_id: str) -> str:
    """Résumé construit **par la règle** seule (statuts du laboratoire et passages), quand la
    réponse du modèle ne peut pas être montrée."""
    from .rag import first_sentence

    lines = [f"Compte rendu {report_id} — statuts calculés avec les intervalles de référence du cours :"]
    for i in items:
        line = f"  • {i['value']} — {i['lab_status']} ({STATUS_WORDS.get(i['lab_status'], '?')})"
        if i["lab_status"] != "normal" and i.get("passage"):
            line += f". Repère : « {first_sentence(i['passage'])} »"
        lines.append(line)
    return "\n".join(lines)


class Assistant:
    """L'assistant : un modèle d'embeddings et son index, un modèle de langage (``generate`` :
    liste de prompts → liste de réponses), le profil qui dit sa tâche et son format de réponse.

    ``use_context`` : mettre les passages retrouvés dans le prompt. Par défaut seulement pour la
    tâche « rapport » : sur cpu (tâche « analyte »), le notebook 07 a mesuré qu'un contexte que le
    modèle n'a jamais vu à l'entraînement fait chuter l'exactitude des statuts."""

    def __init__(
        self,
        profile,
        embedder,
        index: PassageIndex,
        corpus: list[dict],
        generate: Callable[[list[str]], list[str]],
        *,
        use_context: bool | None = None,
        k: int = 1,
    ):
        if [p["passage_id"] for p in corpus] != index.passage_ids:
            raise ValueError("L'index et le corpus ne correspondent pas : reconstruisez l'index (PassageIndex.build).")
        self.profile, self.embedder, self.index, self.corpus = profile, embedder, index, list(corpus)
        self.generate, self.k = generate, k
        self.use_context = profile.llm.task == "rapport" if use_context is None else use_context
        self._source = {p["text"]: p["passage_id"] for p in self.corpus}

    def prompts(self, report: dict) -> tuple[list[dict], list[list[str]], list[str]]:
        """Les cas du modèle de langage pour ``report`` (un par valeur pour la tâche « analyte »),
        les passages retrouvés pour chacun et les prompts (gabarit du notebook 04)."""
        from .llm import analyte_cases, format_prompt
        from .rag import retrieve_contexts, with_context

        llm = self.profile.llm
        cases = list(analyte_cases([report], llm.answer_format, llm.instruction)) if llm.task == "analyte" else [report]
        contexts = retrieve_contexts(
            self.embedder, cases, self.corpus, k=self.k, search=self.index.searcher(self.embedder)
        )
        prompts = [
            format_prompt(
                c["instruction"], with_context(c["input"], ctx) if self.use_context else c["input"], llm.prompt_style
            )
            for c, ctx in zip(cases, contexts)
        ]
        return cases, contexts, prompts

    def answer_report(self, report: dict) -> Reply:
        """La réponse pour un compte rendu (:func:`helpers.user_data.results_to_reports`)."""
        from .rag import (
            explanation_passages,
            first_sentence,
            prudence_issues,
            prudent_summary,
            status_issues,
            summary_items,
        )

        start = time.perf_counter()
        cases, contexts, prompts = self.prompts(report)
        answers = self.generate(prompts)
        if len(answers) != len(prompts):
            raise ValueError(f"{len(answers)} réponses pour {len(prompts)} prompts : generate doit en rendre autant.")
        items = summary_items(cases, answers, contexts, report["id"])
        items = explanation_passages(self.embedder, items, self.corpus, search=self.index.searcher(self.embedder))
        model_text = prudent_summary(items, report["id"]) if self.profile.llm.task == "analyte" else answers[0]
        flagged, tone = status_issues(items), prudence_issues(model_text)
        if flagged or tone:
            reasons = "; ".join(flagged + tone)
            text = f"⚠️ Réponse du modèle de langage retenue (non montrée) : {reasons}.\n\n" + rule_summary(
                items, report["id"]
            )
        else:
            text = model_text
        table = pd.DataFrame(
            [
                {
                    "analyte": i["title"],
                    "value": i["value"],
                    "rule_status": i["lab_status"],
                    "model_status": i["model_status"] or "illisible",
                    "agrees": i["model_status"] == i["lab_status"],
                    "source": self._source.get(i["passage"], ""),
                    "explanation": first_sentence(i["passage"]) if i["passage"] else "",
                }
                for i in items
            ],
            columns=list(REPLY_COLUMNS),
        )
        return Reply(
            report_id=report["id"],
            table=table,
            text=f"{text}\n\n{MEDICAL_DISCLAIMER}",
            flagged=flagged,
            tone_issues=tone,
            model_text=model_text,
            seconds=time.perf_counter() - start,
        )

    def answer_rows(self, rows: list[dict]) -> list[Reply]:
        """Les réponses pour des lignes « resultats » validées (un compte rendu par patient)."""
        from .user_data import results_to_reports

        if not rows:
            raise ValueError("Aucun résultat à analyser : le fichier ne contient aucune ligne.")
        return [self.answer_report(report) for report in results_to_reports(rows)]


# --------------------------------------------------------------------------- vos résultats
RESULT_COLUMNS = ("patient_id", "sexe", "age", "analyte", "valeur", "unite")


def _read_as(name: str, text: str) -> list[dict]:
    """Écrit ``text`` dans un fichier temporaire nommé ``name`` et le lit comme vos fichiers ; les
    messages d'erreur nomment ``name`` seul (aucun chemin de la machine)."""
    from .data import DatasetValidationError
    from .user_data import read_user_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        try:
            return read_user_file(path, "resultats")
        except DatasetValidationError as err:
            raise DatasetValidationError(name, err.line, err.column, err.problem) from None


def rows_from_text(text: str, name: str = "texte collé") -> list[dict]:
    """Résultats collés au format CSV « Vos données » (en-tête compris), validés ligne par ligne."""
    if not text or not text.strip():
        raise ValueError(
            "Rien à analyser : collez des résultats au format CSV (en-tête compris) ou choisissez un fichier."
        )
    return _read_as(f"{name}.csv", text.strip() + "\n")


def rows_from_table(table: pd.DataFrame, name: str = "formulaire") -> list[dict]:
    """Résultats saisis dans un tableau (colonnes :data:`RESULT_COLUMNS`), validés comme un fichier ;
    les lignes entièrement vides sont ignorées (un formulaire en garde toujours une)."""
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"Colonnes manquantes dans le {name} : {', '.join(missing)}.")
    table = table[list(RESULT_COLUMNS)].fillna("").astype(str).map(str.strip)
    table = table[(table != "").any(axis=1)]
    if table.empty:
        raise ValueError(f"Le {name} est vide : saisissez au moins une ligne de résultats.")
    return _read_as(f"{name}.csv", table.to_csv(index=False))


def rows_from_file(path: Path | str) -> list[dict]:
    """Un fichier « Vos données » (.csv ou .jsonl), validé ; les erreurs nomment le fichier par son nom."""
    path = Path(path)
    return _read_as(path.name, path.read_text(encoding="utf-8")) if path.suffix.lower() == ".csv" else _read_jsonl(path)


def _read_jsonl(path: Path) -> list[dict]:
    from .data import DatasetValidationError
    from .user_data import read_user_file

    try:
        return read_user_file(path, "resultats")
    except DatasetValidationError as err:
        raise DatasetValidationError(path.name, err.line, err.column, err.problem) from None


def report_rows(report: dict) -> list[dict]:
    """Les lignes « Vos données » d'un compte rendu du jeu d'instructions (pour mesurer
    l'assistant sur les comptes rendus de test, par le même chemin qu'un fichier utilisateur)."""
    return [
        {
            "patient_id": report["id"],
            "sexe": report["sexe"],
            "age": report["age"],
            "analyte": label["analyte"],
            "valeur": label["valeur"],
            "unite": label["unite"],
        }
        for label in report["labels"]
    ]


# --------------------------------------------------------------------------- mesures
def latency_summary(seconds: list[float]) -> dict:
    """Latence par compte rendu : médiane (p50), p95, moyenne, et réponses par minute."""
    if not seconds:
        raise ValueError("Aucune latence mesurée.")
    s = np.asarray(seconds, dtype=float)
    return {
        "reports": len(s),
        "p50_s": float(np.percentile(s, 50)),
        "p95_s": float(np.percentile(s, 95)),
        "mean_s": float(s.mean()),
        "answers_per_minute": float(60 / s.mean()),
    }


def index_costs(
    embedder, corpus: list[dict], choices: list[RetrievalChoice], folder: Path, loads: int = 5
) -> pd.DataFrame:
    """Pour chaque réglage : temps de construction, taille du fichier enregistré, temps de
    rechargement (médiane de ``loads`` lectures). Sert à comparer la dimension choisie à la pleine dimension."""
    rows = []
    for choice in choices:
        start = time.perf_counter()
        index = PassageIndex.build(embedder, corpus, choice)
        built = time.perf_counter() - start
        where = index.save(Path(folder) / f"{choice.dim}_{choice.precision}")
        times = []
        for _ in range(loads):
            start = time.perf_counter()
            PassageIndex.load(where)
            times.append(time.perf_counter() - start)
        rows.append(
            {
                "setting": choice.label,
                "dim": choice.dim,
                "precision": choice.precision + (" + rescoring" if choice.rescore else ""),
                "build_seconds": built,
                "file_bytes": (where / "index.faiss").stat().st_size,
                "load_ms": 1000 * float(np.median(times)),
            }
        )
    return pd.DataFrame(rows)
