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
REPLY_COLUMNS = ("code", "analyte", "value", "rule_status", "model_status", "agrees", "source", "explanation")


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


def corpus_digest(corpus: list[dict]) -> str:
    """Empreinte SHA-256 des passages (identifiants **et** textes, dans l'ordre) : un index construit
    sur un passage depuis réécrit chercherait avec les vecteurs de l'ancien texte."""
    import hashlib

    pairs = [[p["passage_id"], p["text"]] for p in corpus]
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


class PassageIndex:
    """Index faiss des passages du corpus à une dimension Matryoshka et une précision données."""

    def __init__(self, index, choice: RetrievalChoice, passage_ids: list[str], signature: str = "", digest: str = ""):
        self.index, self.choice, self.passage_ids, self.signature = index, choice, list(passage_ids), signature
        self.corpus_digest = digest

    @classmethod
    def build(
        cls, embedder, corpus: list[dict], choice: RetrievalChoice, batch_size: int = 64, signature: str = ""
    ) -> PassageIndex:
        """Encode les passages (prompt « document » d'e5), garde ``choice.dim`` composantes,
        renormalise et construit l'index (:func:`helpers.costs.build_index`). ``signature`` : celle
        du modèle d'embeddings (:func:`folder_signature`), pour refuser plus tard un index périmé."""
        from .costs import build_index, truncate_normalize

        vectors = embedder.encode_document(
            [p["text"] for p in corpus], batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        index = build_index(truncate_normalize(vectors, choice.dim), choice.precision)
        return cls(index, choice, [p["passage_id"] for p in corpus], signature, corpus_digest(corpus))

    def save(self, folder: Path | str) -> Path:
        """``index.faiss`` et ``index.json`` (réglage, identifiants des passages) dans ``folder``."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write = faiss.write_index_binary if self.choice.precision == "binaire" else faiss.write_index
        write(self.index, str(folder / "index.faiss"))
        meta = {"choice": self.choice.__dict__, "signature": self.signature, "corpus_digest": self.corpus_digest}
        meta["passage_ids"] = self.passage_ids
        (folder / "index.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path | str, corpus: list[dict] | None = None, signature: str | None = None) -> PassageIndex:
        """Recharge un index enregistré ; avec ``corpus``, vérifie qu'il a été construit sur ces
        passages, dans cet ordre et avec ces textes (:func:`corpus_digest`), et avec ``signature``,
        par ce modèle (sinon erreur française : reconstruisez-le)."""
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
        if corpus is not None and meta.get("corpus_digest") != corpus_digest(corpus):
            raise ValueError(
                f"L'index de {folder.name}/ a été construit sur d'autres textes des mêmes passages (corpus "
                "régénéré depuis ?) : reconstruisez-le (PassageIndex.build)."
            )
        if signature is not None and meta.get("signature") != signature:
            raise ValueError(
                f"L'index de {folder.name}/ a été construit avec un autre modèle d'embeddings (réentraîné "
                "depuis ?) : reconstruisez-le (PassageIndex.build)."
            )
        read = faiss.read_index_binary if choice.precision == "binaire" else faiss.read_index
        index = read(str(folder / "index.faiss"))
        return cls(index, choice, meta["passage_ids"], meta.get("signature", ""), meta.get("corpus_digest", ""))

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


def folder_signature(folder: Path | str) -> str:
    """Empreinte d'un dossier de modèle : nom, taille et début (1 Mio) de chacun de ses fichiers.
    Un modèle réentraîné change d'empreinte ; l'index construit avec l'ancien est alors refusé."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != "README.md"):
        digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
        with path.open("rb") as fh:
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def explanation_hits(index: PassageIndex, embedder, reports: list[dict]) -> dict:
    """Recherche seule, sans modèle de langage : pour chaque valeur anormale des ``reports``, le
    passage qui l'explique (``<code>-haute`` / ``<code>-basse``) est-il premier quand on cherche
    « Ferritine : 8 µg/L — bas » (requêtes « ligne » de :func:`helpers.rag.abnormal_queries`) ?
    Part retrouvée, intervalle de Wilson et nombre de valeurs."""
    from .rag import abnormal_queries
    from .stats import proportion_interval

    wanted = abnormal_queries(reports, ({"passage_id": p} for p in index.passage_ids), style="ligne")
    if wanted.empty:
        raise ValueError("Aucune valeur anormale dans ces comptes rendus : rien à chercher.")
    hits = index.search(embedder, list(wanted["query"]), k=1)
    found = sum(index.passage_ids[h[0]["corpus_id"]] == expected for h, expected in zip(hits, wanted["relevant"]))
    share, low, high = proportion_interval(found, len(wanted))
    return {"explanation_found": share, "ci_low": low, "ci_high": high, "values": len(wanted)}


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

    def to_json(self) -> dict:
        """La réponse entière, pour ``assistant/exemple.json`` (tableau en liste de lignes)."""
        return {
            "report_id": self.report_id,
            "text": self.text,
            "shown_as_is": self.shown_as_is,
            "flagged": list(self.flagged),
            "tone_issues": list(self.tone_issues),
            "model_text": self.model_text,
            "seconds": round(self.seconds, 3),
            "table": self.table.to_dict(orient="records"),
        }


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
                    "code": i["code"],
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


def _read_named(path: Path, name: str) -> list[dict]:
    """Lit ``path`` comme vos fichiers « resultats » ; une erreur nomme ``name`` au lieu du chemin
    (aucun chemin de la machine dans les messages)."""
    from .data import DatasetValidationError
    from .user_data import read_user_file

    try:
        return read_user_file(path, "resultats")
    except DatasetValidationError as err:
        raise DatasetValidationError(name, err.line, err.column, err.problem) from None


def _read_as(name: str, text: str) -> list[dict]:
    """Écrit ``text`` dans un fichier temporaire nommé ``name`` et le lit comme vos fichiers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        return _read_named(path, name)


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
    """Un fichier « Vos données » (.csv ou .jsonl), validé ; les erreurs le nomment par son nom."""
    path = Path(path)
    return _read_named(path, path.name)


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
def measure_reports(assistant: Assistant, reports: list[dict], desc: str = "comptes rendus"):
    """Chaque compte rendu du jeu d'instructions passé à ``assistant`` par le chemin d'un fichier
    d'utilisateur (:func:`report_rows`, :func:`rows_from_text`), avec une barre de progression.

    Renvoie deux tableaux : un compte rendu par ligne (``report``, ``values``, ``seconds``,
    ``shown_as_is``, ``agreement``) et une valeur par ligne (``report`` puis :data:`REPLY_COLUMNS`)."""
    from tqdm.auto import tqdm

    rows, tables = [], []
    for case in tqdm(reports, desc=desc):
        csv_text = pd.DataFrame(report_rows(case)).to_csv(index=False)
        answer = assistant.answer_rows(rows_from_text(csv_text, name=case["id"]))[0]
        tables.append(answer.table.assign(report=case["id"])[["report", *REPLY_COLUMNS]])
        rows.append(
            {"report": case["id"], "values": len(answer.table), "seconds": answer.seconds}
            | {"shown_as_is": answer.shown_as_is, "agreement": answer.table["agrees"].mean()}
        )
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True)


#: Lignes de :func:`boundary_agreement` qui résument la mesure : toutes les valeurs aux bornes, et le test.
BOUNDARY_ALL, BOUNDARY_TEST = "aux bornes (toutes)", "test (générateur)"


def boundary_versus_test(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Les deux lignes à comparer d'une sortie de :func:`boundary_agreement` (ou de
    ``assistant/bornes.csv``) : toutes les valeurs aux bornes, puis le test du générateur."""
    rows = table.set_index("position")
    return rows.loc[BOUNDARY_ALL], rows.loc[BOUNDARY_TEST]


def boundary_agreement(reports: list[dict], values: pd.DataFrame, test_values: pd.DataFrame) -> pd.DataFrame:
    """Concordance des statuts du modèle avec la règle sur des comptes rendus aux bornes
    (:func:`helpers.generate.build_boundary_reports`) : par position des valeurs (juste dedans, sur
    la borne, juste dehors), toutes ensemble, puis sur les comptes rendus de test du générateur
    (``test_values``) pour comparer. Chaque ligne : intervalle de Wilson et réponse constante du
    groupe (toujours son statut le plus fréquent). ``values`` : sortie de :func:`measure_reports`."""
    from .generate import BOUNDARY_POSITIONS
    from .stats import proportion_interval

    where = pd.DataFrame(
        [
            {"report": r["id"], "code": label["code"], "position": label["position"]}
            for r in reports
            for label in r["labels"]
        ]
    )
    placed = values.merge(where, on=["report", "code"], how="left")
    if len(placed) != len(values) or placed["position"].isna().any():
        raise ValueError("Valeurs sans position : mesurez les comptes rendus aux bornes donnés ici (measure_reports).")
    groups = [(p, placed[placed["position"] == p]) for p in BOUNDARY_POSITIONS]
    groups += [(BOUNDARY_ALL, placed), (BOUNDARY_TEST, test_values)]
    rows = []
    for name, group in groups:
        if group.empty:
            continue
        share, low, high = proportion_interval(int(group["agrees"].sum()), len(group))
        top = group["rule_status"].value_counts()
        rows.append(
            {"position": name, "values": len(group), "agreement": share, "ci_low": low, "ci_high": high}
            | {"constant_status": top.index[0], "constant_agreement": float(top.iloc[0] / len(group))}
        )
    return pd.DataFrame(rows)


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


def describe_product_memory(measures: dict) -> str:
    """Les relevés de mémoire d'une mesure de l'assistant (``assistant/mesures.json``) en français,
    par :func:`helpers.memory.describe_memory` : pic du processus, puis, si la mesure a été faite sur
    GPU (:func:`helpers.memory.gpu_peaks`), pics GPU réservé et alloué."""
    from .memory import MEMORY_LABELS, describe_memory

    return describe_memory({k: v for k, v in measures.items() if k in MEMORY_LABELS})


def plot_latencies(latencies: pd.DataFrame):
    """Latence de chaque compte rendu selon son nombre de valeurs (sortie de :func:`measure_reports`) :
    points pleins quand la réponse du modèle est montrée telle quelle, creux quand le contrôle l'a
    retenue ; médiane (p50) et p95 en lignes horizontales, légendées à la française."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .text import french_float

    missing = {"values", "seconds", "shown_as_is"} - set(latencies.columns)
    if missing or latencies.empty:
        raise ValueError(f"Latences à tracer : colonnes manquantes {sorted(missing)} ou tableau vide.")
    summary = latency_summary(latencies["seconds"].tolist())
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    shown = latencies["shown_as_is"].astype(bool)
    for mask, face, label in ((shown, "tab:blue", "réponse du modèle montrée"), (~shown, "none", "réponse retenue")):
        if mask.any():
            rows = latencies[mask]
            ax.scatter(rows["values"], rows["seconds"], facecolors=face, edgecolors="tab:blue", label=label)
    for key, name, style in (("p50_s", "médiane", "--"), ("p95_s", "p95", ":")):
        ax.axhline(
            summary[key], color="grey", linestyle=style, label=f"{name} : {french_float(round(summary[key], 2))} s"
        )
    ax.set_xlabel("valeurs dans le compte rendu")
    ax.set_ylabel("latence (s)")
    ax.set_ylim(0, 1.1 * float(latencies["seconds"].max()))  # le point le plus lent reste visible
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # des nombres de valeurs entiers
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def serving_summary(name: str, model, latencies: pd.DataFrame, values: pd.DataFrame, reference=None) -> dict:
    """Une façon de servir le modèle de langage, mesurée dans l'assistant : latence (p50, p95,
    réponses par minute), mémoire des poids (``get_memory_footprint`` de transformers), concordance
    de ses statuts avec la règle (intervalle de Wilson) et, si ``reference`` (les valeurs d'une autre
    façon de servir, mêmes comptes rendus), la part des statuts identiques aux siens.

    ``latencies`` : une ligne par compte rendu (colonne ``seconds``) ; ``values`` : une ligne par
    valeur (colonnes ``model_status`` et ``agrees``, :data:`REPLY_COLUMNS`)."""
    from .stats import proportion_interval

    agreement, low, high = proportion_interval(int(values["agrees"].sum()), len(values))
    row = {"model": name} | latency_summary(latencies["seconds"].tolist())
    row |= {
        "weights_mb": round(model.get_memory_footprint() / 1e6, 1),
        "agreement": agreement,
        "ci_low": low,
        "ci_high": high,
        "same_status": float("nan"),
    }
    if reference is not None:
        if len(reference) != len(values):
            raise ValueError(f"{len(values)} valeurs contre {len(reference)} : mesurez les mêmes comptes rendus.")
        row["same_status"] = float((values["model_status"].to_numpy() == reference["model_status"].to_numpy()).mean())
    return row


def index_costs(
    embedder, corpus: list[dict], choices: list[RetrievalChoice], folder: Path, loads: int = 5, reports=None
) -> pd.DataFrame:
    """Pour chaque réglage : temps de construction, taille du fichier enregistré, temps de
    rechargement (médiane de ``loads`` lectures) et, avec ``reports``, la part des valeurs anormales
    dont le passage explicatif est retrouvé premier (:func:`explanation_hits`). Sert à comparer la
    dimension choisie à la pleine dimension."""
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
        row = {
            "setting": choice.label,
            "dim": choice.dim,
            "precision": choice.precision + (" + rescoring" if choice.rescore else ""),
            "build_seconds": built,
            "file_bytes": (where / "index.faiss").stat().st_size,
            "load_ms": 1000 * float(np.median(times)),
        }
        if reports is not None:
            row |= explanation_hits(index, embedder, reports)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- cartes des modèles
CARD_MARKER = "<!-- carte écrite par le notebook 08 du cours -->"


def _card(front: dict, title: str, sections: list[tuple[str, str]], previous: str = "") -> str:
    from .text import french_decimals

    front = {k: v for k, v in front.items() if k != "base_model" or "/" in str(v)}  # un identifiant du hub seulement
    yaml = "\n".join(
        f"{k}: {v}" if not isinstance(v, list) else f"{k}:\n" + "\n".join(f"- {x}" for x in v) for k, v in front.items()
    )
    body = "\n\n".join(f"## {name}\n\n{french_decimals(text.strip())}" for name, text in sections)
    card = f"---\n{yaml}\n---\n{CARD_MARKER}\n\n# {title}\n\n> {MEDICAL_DISCLAIMER}\n\n{body}\n"
    if previous and CARD_MARKER not in previous:  # la fiche technique écrite par la bibliothèque, gardée en annexe
        card += "\n## Annexe : fiche technique générée à l'enregistrement\n\n" + previous.split("\n---\n", 1)[-1]
    return card


def _accuracy_line(profile_name: str) -> str:
    from .outputs import load_table
    from .stats import proportion_interval
    from .text import DISPLAY_LABELS, french_percent

    table = load_table(profile_name, "llm/status_accuracy.csv").set_index("model")
    lines = []
    for model in table.index:
        n = int(table.loc[model, "n_values"])
        share, low, high = proportion_interval(round(table.loc[model, "accuracy"] * n), n)
        shown = DISPLAY_LABELS.get(model, model)
        lines.append(f"| {shown} | {french_percent(share)} | [{french_percent(low)} ; {french_percent(high)}] | {n} |")
    return "| modèle | exactitude des statuts | IC 95 % (Wilson) | valeurs |\n|---|---|---|---|\n" + "\n".join(lines)


def _merged_line(profile_name: str) -> str | None:
    """Le modèle fusionné mesuré dans l'assistant (notebook 08, ``assistant/modele_fusionne.csv``),
    ou ``None`` si cette mesure n'existe pas encore."""
    from .outputs import load_table, written_path
    from .text import french_percent

    if not written_path(profile_name, "assistant/modele_fusionne.csv").exists():
        return None
    rows = load_table(profile_name, "assistant/modele_fusionne.csv").to_dict(orient="records")
    lines = [
        f"| {r['model']} | {french_percent(r['agreement'])} | [{french_percent(r['ci_low'])} ; "
        f"{french_percent(r['ci_high'])}] | {'—' if pd.isna(r['same_status']) else french_percent(r['same_status'])} |"
        for r in rows
    ]
    return (
        "Mêmes comptes rendus de test, statuts lus dans les réponses comparés à ceux de la règle :\n\n"
        "| servi par | statuts conformes à la règle | IC 95 % (Wilson) | statuts identiques au 4 bits |\n"
        "|---|---|---|---|\n" + "\n".join(lines)
    )


def _boundary_line(profile_name: str) -> str:
    """Phrase des limites de la carte : la concordance mesurée aux bornes (notebook 08,
    ``assistant/bornes.csv``) contre celle du test, ou une phrase générale sans cette mesure."""
    from .outputs import load_table, written_path
    from .text import french_percent

    if not written_path(profile_name, "assistant/bornes.csv").exists():
        return "Les valeurs proches d'une borne de référence n'ont pas été mesurées (notebook 08)."
    edge, test = boundary_versus_test(load_table(profile_name, "assistant/bornes.csv"))
    return (
        f"Sur des valeurs proches d'une borne, que le générateur n'écrit pas (notebook 08, base 4 bits + adaptateur), "
        f"{french_percent(edge['agreement'])} des statuts concordent avec la règle "
        f"[{french_percent(edge['ci_low'])} ; {french_percent(edge['ci_high'])}], contre "
        f"{french_percent(test['agreement'])} sur le test ({int(edge['values'])} et {int(test['values'])} valeurs)."
    )


def llm_card(profile, folder_key: str = "llm/merged") -> str:
    """Carte (``README.md``) du modèle de langage : données, entraînement, mesures sur le test
    (notebooks 04 et 05, et 08 pour le modèle fusionné), limites, avertissement. Tout vient des
    sorties du profil. ``folder_key`` : ``llm/merged`` (modèle fusionné) ou ``llm/adapter``."""
    from .outputs import load_json
    from .text import french_int

    if folder_key not in ("llm/merged", "llm/adapter"):
        raise ValueError(f"Carte pour « {folder_key} » : attendu llm/merged ou llm/adapter.")
    training = load_json(profile.name, "llm/training.json")
    llm = profile.llm
    if folder_key == "llm/adapter":
        content = "Ce dossier contient l'adaptateur seul : chargez la base en 4 bits, puis l'adaptateur (peft)."
    elif llm.backend == "unsloth":
        content = "Adaptateur fusionné par Unsloth (merged_16bit) dans les poids 16 bits d'origine de la base."
    else:
        content = "Adaptateur fusionné dans les poids 4 bits déquantifiés de la base, ceux sur lesquels il a appris."
    merged = _merged_line(profile.name) if folder_key == "llm/merged" else None
    measures = [("Mesures (test, notebook 05 : base 4 bits + adaptateur)", _accuracy_line(profile.name))]
    if merged:
        measures.append(("Le modèle de ce dossier, mesuré dans l'assistant (test, notebook 08)", merged))
    return _card(
        {
            "language": ["fr"],
            "base_model": llm.model_id,
            "library_name": "transformers",
            "tags": ["medical", "lora", "education"],
        },
        f"{llm.model_id} fine-tuné (QLoRA) pour lire des bilans biologiques — profil {profile.name}",
        [
            (
                "Données",
                "MedAnalyzer-FR, jeu **synthétique et pédagogique** du cours (aucun patient réel) : "
                f"{training['train_examples']} exemples d'entraînement, {training['eval_examples']} de validation ; "
                "les mesures ci-dessous sont faites sur le split de test, jamais vu à l'entraînement.",
            ),
            (
                "Entraînement",
                f"QLoRA (base en 4 bits nf4, adaptateurs LoRA r={llm.lora_r}, alpha={llm.lora_alpha}) : "
                f"{training['steps']} pas en {training['train_seconds']:.0f} s, "
                f"{french_int(training['trainable_params'])} "
                f"paramètres entraînés ; perte de validation {training['eval_loss_base']:.3f} → "
                f"{training['eval_loss_finetuned']:.3f}. Tâche « {llm.task} », format de réponse "
                f"« {llm.answer_format} » (notebook 04). {content}",
            ),
            *measures,
            (
                "Limites",
                "Les questions de test sortent des mêmes gabarits que l'entraînement : ces chiffres surestiment "
                f"ce que donnerait un texte écrit autrement. {_boundary_line(profile.name)} "
                "Le modèle ne connaît que les analytes et les "
                "intervalles de référence du cours ; il peut se tromper de statut, c'est pourquoi l'assistant "
                "du notebook 08 calcule chaque statut par la règle et ne montre jamais une réponse qui la contredit.",
            ),
        ],
    )


def embedding_card(profile, previous: str = "") -> str:
    """Carte du modèle d'embeddings fine-tuné : NDCG@10 de test par dimension, base contre
    fine-tuné, dont les questions écrites à la main (notebooks 02 et 03)."""
    from .outputs import load_json, load_table
    from .text import french_int

    summary = load_json(profile.name, "embeddings/training_summary.json")
    scores = load_table(profile.name, "embeddings/ndcg.csv")
    wide = scores.pivot_table(index=["split", "dim"], columns="model", values="ndcg_at_10").reset_index()
    wide = wide[wide["split"] != "validation"].sort_values(["split", "dim"], ascending=[True, False])
    rows = "\n".join(f"| {r.split} | {r.dim} | {r.base:.3f} | {r.finetuned:.3f} |" for r in wide.itertuples())
    cfg = profile.embedding
    return _card(
        {
            "language": ["fr"],
            "base_model": cfg.model_id,
            "library_name": "sentence-transformers",
            "tags": ["matryoshka", "education"],
        },
        f"{cfg.model_id} fine-tuné (Matryoshka) pour retrouver des passages de biologie — profil {profile.name}",
        [
            (
                "Données et entraînement",
                f"{french_int(summary['train_pairs'])} paires question / passage de MedAnalyzer-FR (**synthétique**), "
                "MultipleNegativesRankingLoss dans une MatryoshkaLoss (dimensions "
                f"{', '.join(map(str, cfg.matryoshka_dims))}), "
                f"{summary['steps']} pas en {summary['train_seconds']:.0f} s (notebook 02).",
            ),
            (
                "Mesures (NDCG@10, test)",
                "| split | dimension | base | fine-tuné |\n|---|---|---|---|\n" + rows + "\n\n`naturel_test` : "
                "questions écrites à la main, hors gabarits — la mesure la plus honnête ; les autres splits "
                "sortent des gabarits de l'entraînement et surestiment le gain.",
            ),
            (
                "Limites",
                "Corpus limité aux passages du cours (MedAnalyzer-FR) ; les dimensions réduites et l'index "
                "binaire se choisissent sur la validation (notebook 03), pas sur ce tableau.",
            ),
        ],
        previous,
    )


def push_to_hub(folder: Path | str, repo_id: str) -> bool:
    """Publie ``folder`` sur le hub **seulement** avec un jeton (``HF_TOKEN``), hors CI et avec le
    réseau ; sinon dit en français pourquoi rien n'est envoyé et renvoie ``False``."""
    import os

    from .runtime import hub_reachable

    reasons = []
    if os.environ.get("CI"):
        reasons.append("intégration continue")
    if not os.environ.get("HF_TOKEN"):
        reasons.append("pas de jeton HF_TOKEN")
    if not reasons and not hub_reachable():
        reasons.append("hub injoignable")
    if reasons:
        print(f"Publication de {Path(folder).name}/ vers {repo_id} non faite : {', '.join(reasons)}.")
        return False
    from huggingface_hub import upload_folder

    upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model")
    print(f"Publié : {repo_id}")
    return True


# --------------------------------------------------------------------------- l'assistant des sorties du cours
def open_index(profile, embedder, corpus: list[dict], choice: RetrievalChoice, model_dir: Path) -> PassageIndex:
    """L'index enregistré par le notebook 08 s'il est à jour (même corpus, même modèle, même
    réglage), sinon un index reconstruit et enregistré à sa place."""
    from .outputs import output_path

    folder, signature = output_path(profile.name, "assistant/index"), folder_signature(model_dir)
    try:
        index = PassageIndex.load(folder, corpus, signature)
        if index.choice == choice:
            return index
    except (FileNotFoundError, ValueError):
        pass
    index = PassageIndex.build(embedder, corpus, choice, signature=signature)
    index.save(folder)
    return index


def make_generate(model, tokenizer, max_new_tokens: int) -> Callable[[list[str]], list[str]]:
    """L'appel à ``generate`` du notebook 08 (décodage glouton, remplissage à gauche), pour la page web."""
    import torch

    from .llm import generation_tokenizer

    gen_tokenizer = generation_tokenizer(tokenizer)

    def generate(prompts: list[str]) -> list[str]:
        encoded = gen_tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            output = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=gen_tokenizer.pad_token_id
            )
        return gen_tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)

    return generate


def load_assistant(profile, usage: str = DEFAULT_USAGE) -> Assistant:
    """L'assistant construit sur les sorties du profil (notebooks 02 à 05) : erreur française qui
    nomme le notebook manquant s'il faut d'abord exécuter ``make course``."""
    from sentence_transformers import SentenceTransformer

    from .data import load_retrieval
    from .embeddings import require_model
    from .qlora import load_finetuned_llm

    choice = chosen_retrieval(profile.name, usage)
    model_dir = require_model(profile.name)
    embedder = SentenceTransformer(str(model_dir))
    corpus = list(load_retrieval(profile)["corpus"])
    index = open_index(profile, embedder, corpus, choice, model_dir)
    model, tokenizer = load_finetuned_llm(profile)
    return Assistant(profile, embedder, index, corpus, make_generate(model, tokenizer, profile.llm.max_new_tokens))
