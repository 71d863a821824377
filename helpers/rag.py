"""Recherche de passages pour les résultats anormaux d'un patient (RAG, notebook 07).

* :func:`abnormal_queries` — une question par valeur anormale (« Que signifie une ferritine
  basse ? ») et le passage qui y répond (``<code>-haute`` ou ``<code>-basse`` du corpus) ;
* :func:`hit_rates` — taux de succès à k (le bon passage est-il parmi les k premiers ?) d'un
  modèle d'embeddings, calculé avec ``sentence_transformers.util.semantic_search`` ;
  :func:`hit_rates_by` — les mêmes taux par groupe de questions (analytes vus ou jamais vus à
  l'entraînement), avec leur intervalle de confiance ;
* :func:`encode_corpus` — les passages encodés une fois par modèle, réutilisés par les recherches ;
* :func:`retrieve_contexts` / :func:`with_context` — les passages retrouvés pour chaque valeur, et
  l'entrée du prompt Alpaca enrichie de ces passages ;
* :func:`explanation_passages` — pour le résumé, le passage qui explique chaque valeur anormale
  (cherché avec le statut du laboratoire) ;
* :func:`status_issues` — les statuts du modèle confrontés à ceux du laboratoire : une valeur
  anormale dite normale est le défaut le plus grave d'un résumé.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from .analytes import load_analytes
from .data import STATUS_ASPECT

ASPECT = STATUS_ASPECT  # le passage qui explique un statut anormal (défini avec le jeu de données)


def abnormal_queries(cases: Iterable[dict], corpus: Iterable[dict], style: str = "question") -> pd.DataFrame:
    """Questions sur les valeurs anormales de ``cases`` (lignes du jeu d'instructions).

    ``style="question"`` : « Que signifie une ferritine basse ? » (question de patient, facile) ;
    ``style="ligne"`` : la ligne du compte rendu suivie du statut, « Ferritine : 8 µg/L — bas »
    (ce dont dispose un assistant qui vient de lire le bilan ; plus difficile : le nom de
    l'analyte est souvent abrégé et le sens doit venir du seul mot « bas » ou « élevé »).

    Colonnes : ``case_id``, ``code``, ``statut``, ``query``, ``relevant`` (identifiant du passage
    attendu). Une valeur normale ne produit pas de question. Erreur claire si le passage attendu
    manque au corpus.
    """
    if style not in ("question", "ligne"):
        raise ValueError(f"Style de requête inconnu « {style} » (attendu : question ou ligne).")
    analytes = load_analytes()
    passage_ids = {p["passage_id"] for p in corpus}
    rows = []
    for case in cases:
        for label in case["labels"]:
            if label["statut"] == "normal":
                continue
            if label["statut"] not in ASPECT:
                raise ValueError(f"{case['id']} : statut inconnu « {label['statut']} ».")
            a = analytes[label["code"]]
            relevant = f"{a.code}-{ASPECT[label['statut']]}"
            if relevant not in passage_ids:
                raise ValueError(f"Passage « {relevant} » absent du corpus (cas {case['id']}).")
            adjective = a.accord("élevé" if label["statut"] == "élevé" else "bas")
            if style == "question":
                verb = "signifient" if a.nombre == "p" else "signifie"
                query = f"Que {verb} {a.un} {adjective} ?"
            else:
                query = f"{a.result_line(label['valeur'])} — {label['statut']}"
            rows.append(
                {"case_id": case["id"], "code": a.code, "statut": label["statut"], "query": query, "relevant": relevant}
            )
    return pd.DataFrame(rows, columns=["case_id", "code", "statut", "query", "relevant"])


def encode_corpus(embedder, corpus: list[dict], batch_size: int = 64):
    """Embeddings normalisés des passages (prompt « document »), à calculer une fois par modèle."""
    return embedder.encode_document(
        [p["text"] for p in corpus], batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True
    )


def _search(embedder, queries: list[str], corpus, corpus_embeddings, k: int, batch_size: int):
    """``semantic_search`` des requêtes (prompt « query ») dans le corpus ; encode le corpus s'il
    n'est pas fourni."""
    from sentence_transformers import util

    if corpus_embeddings is None:
        corpus_embeddings = encode_corpus(embedder, corpus, batch_size)
    q = embedder.encode_query(queries, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    return util.semantic_search(q, corpus_embeddings, top_k=k)


def _ranks(model, queries: pd.DataFrame, corpus: list[dict], k: int, batch_size: int, corpus_embeddings):
    """Pour chaque question, la liste des ``k`` identifiants de passages retrouvés, dans l'ordre."""
    if queries.empty:
        raise ValueError("Aucune question : pas de valeur anormale dans ces cas.")
    results = _search(model, list(queries["query"]), corpus, corpus_embeddings, k, batch_size)
    ids = [p["passage_id"] for p in corpus]
    return [[ids[hit["corpus_id"]] for hit in hits] for hits in results]


def hit_rates(
    model,
    queries: pd.DataFrame,
    corpus: list[dict],
    ks: tuple[int, ...] = (1, 3),
    batch_size: int = 64,
    corpus_embeddings=None,
) -> dict:
    """Part des questions dont le passage attendu est parmi les ``k`` premiers, pour chaque k.

    Requêtes encodées avec le prompt « query » du modèle, passages avec « document » (prompts e5) ;
    ``corpus_embeddings`` (:func:`encode_corpus`) évite de réencoder le corpus à chaque appel.
    """
    ranked = _ranks(model, queries, corpus, max(ks), batch_size, corpus_embeddings)
    return {
        f"hit_at_{k}": sum(rel in r[:k] for rel, r in zip(queries["relevant"], ranked)) / len(queries) for k in ks
    } | {"questions": len(queries)}


def hit_rates_by(
    model,
    queries: pd.DataFrame,
    corpus: list[dict],
    by: str,
    ks: tuple[int, ...] = (1, 3),
    batch_size: int = 64,
    corpus_embeddings=None,
) -> pd.DataFrame:
    """:func:`hit_rates` pour toutes les questions (ligne « tous ») puis pour chaque valeur de la
    colonne ``by`` de ``queries`` (par exemple analytes vus / jamais vus à l'entraînement), avec
    l'intervalle de Wilson à 95 % du succès au premier rang (``hit_at_1_low``, ``hit_at_1_high`` ;
    :func:`helpers.stats.proportion_interval`) : un groupe d'une dizaine de questions ne dit pas
    grand-chose sans lui. Une seule recherche pour tous les groupes."""
    from .stats import proportion_interval

    if by not in queries.columns:
        raise ValueError(f"Colonne « {by} » absente des questions (colonnes : {', '.join(queries.columns)}).")
    ranked = _ranks(model, queries, corpus, max(ks), batch_size, corpus_embeddings)
    found = pd.DataFrame({f"hit_at_{k}": [rel in r[:k] for rel, r in zip(queries["relevant"], ranked)] for k in ks})
    groups = [("tous", found)] + [
        (value, found[(queries[by] == value).to_numpy()]) for value in queries[by].drop_duplicates()
    ]
    rows = []
    for value, sub in groups:
        _, low, high = proportion_interval(int(sub[f"hit_at_{ks[0]}"].sum()), len(sub))
        rows.append(
            {
                by: value,
                **{col: float(sub[col].mean()) for col in found.columns},
                f"hit_at_{ks[0]}_low": low,
                f"hit_at_{ks[0]}_high": high,
                "questions": len(sub),
            }
        )
    return pd.DataFrame(rows)


def with_context(input_text: str, passages: list[str]) -> str:
    """Ajoute les passages retrouvés à l'entrée du prompt, sous un titre « Contexte »."""
    if not passages:
        return input_text
    context = "\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, 1))
    return f"{input_text.rstrip()}\n\nContexte (extraits de référence) :\n{context}"


def result_queries(case: dict) -> list[str]:
    """Une requête par valeur du cas, **sans** le statut (c'est ce que le modèle doit trouver) :
    « Ferritine : 8 µg/L »."""
    analytes = load_analytes()
    return [analytes[label["code"]].result_line(label["valeur"]) for label in case["labels"]]


def retrieve_contexts(
    embedder, cases, corpus: list[dict], k: int = 1, batch_size: int = 64, corpus_embeddings=None, search=None
) -> list[list[str]]:
    """Pour chaque cas, les ``k`` meilleurs passages de chacune de ses valeurs (sans doublon).
    ``search(queries, k)`` remplace la recherche exacte en pleine dimension (par exemple l'index
    faiss de l'assistant du notebook 08) ; il renvoie, par requête, des ``{"corpus_id": …}``."""
    cases = list(cases)
    per_case = [result_queries(c) for c in cases]
    flat = [q for qs in per_case for q in qs]
    if not flat:
        raise ValueError("Aucune valeur dans ces cas : rien à rechercher.")
    found = search(flat, k) if search else _search(embedder, flat, corpus, corpus_embeddings, k, batch_size)
    hits = iter(found)
    contexts = []
    for qs in per_case:
        texts: list[str] = []
        for _ in qs:
            for hit in next(hits):
                text = corpus[hit["corpus_id"]]["text"]
                if text not in texts:
                    texts.append(text)
        contexts.append(texts)
    return contexts


def explanation_passages(
    embedder, items: list[dict], corpus: list[dict], batch_size: int = 64, corpus_embeddings=None, search=None
) -> list[dict]:
    """Les valeurs de :func:`summary_items`, chacune avec le passage qui peut **aider** le lecteur.

    Le contexte donné au modèle de langage est cherché avec la valeur seule (le modèle doit trouver
    le statut) : il tombe souvent sur le passage « valeurs de référence », qui répète les bornes
    déjà imprimées sur le compte rendu. Pour le résumé, le statut est connu — celui du laboratoire,
    qui fait foi — : chaque valeur anormale est cherchée avec lui (« Sodium : 134 mmol/L — bas »),
    ce qui retrouve le passage qui explique une valeur basse ou haute. Les valeurs normales gardent
    leur passage, ou sont cherchées seules si elles n'en ont pas (valeurs d'un compte rendu entier,
    tâche « rapport », dont les passages ne s'attribuent pas à une valeur). Renvoie de nouveaux
    dictionnaires (``items`` n'est pas modifié) ; ``search`` : comme pour :func:`retrieve_contexts`.
    """
    items = [dict(i) for i in items]
    wanted = [i for i in items if i["lab_status"] in ASPECT or not i.get("passage")]
    if wanted:
        queries = [f"{i['value']} — {i['lab_status']}" if i["lab_status"] in ASPECT else i["value"] for i in wanted]
        found = search(queries, 1) if search else _search(embedder, queries, corpus, corpus_embeddings, 1, batch_size)
        for item, hits in zip(wanted, found):
            item["passage"] = corpus[hits[0]["corpus_id"]]["text"]
    return items


def status_issues(items: list[dict]) -> list[str]:
    """Les statuts du modèle (``model_status``) qui contredisent ceux du laboratoire
    (``lab_status``), du plus grave au moins grave : une valeur **anormale dite normale** (le
    lecteur serait rassuré à tort), un sens inversé (basse dite élevée), une valeur normale dite
    anormale (inquiétude inutile), un statut illisible. Liste vide : tous conformes.

    Un résumé bien tourné et prudent peut reposer sur un statut faux : :func:`prudence_issues` lit
    le ton, cette fonction lit le fond ; le contrôle d'un résumé appelle les deux.
    """
    kinds = {"rassure": [], "inverse": [], "alarme": [], "illisible": []}
    for i in items:
        lab, model = i["lab_status"], i["model_status"]
        if model == lab:
            continue
        if model not in READ_AS:
            kinds["illisible"].append(i)
        elif model == "normal":
            kinds["rassure"].append(i)
        elif lab == "normal":
            kinds["alarme"].append(i)
        else:
            kinds["inverse"].append(i)
    what = {
        "rassure": "valeur anormale présentée comme normale",
        "inverse": "sens inversé (basse dite élevée ou l'inverse)",
        "alarme": "valeur normale présentée comme anormale",
        "illisible": "statut illisible dans la réponse du modèle",
    }
    return [
        f"{what[kind]} : "
        + ", ".join(
            f"{i['title']} (laboratoire : {i['lab_status']} ; modèle : "
            f"{i['model_status'] if i['model_status'] in READ_AS else '?'})"
            for i in found
        )
        for kind, found in kinds.items()
        if found
    ]


# --------------------------------------------------------------------------- résumé prudent
READ_AS = {"bas": "lue comme basse", "élevé": "lue comme élevée", "normal": "lue comme normale"}
_UNSAFE = (
    (r"\bvous (avez|souffrez|etes atteinte?)\b", "affirme un diagnostic (« vous avez… »)"),
    (r"\b(prenez|arretez|augmentez|diminuez|commencez) ", "donne une consigne de traitement"),
    (r"\b(certainement|sans aucun doute|a coup sur|forcement)\b", "prend un ton affirmatif"),
    (r"\b(pas besoin|inutile) de (consulter|voir)\b", "déconseille de consulter"),
)


def first_sentence(text: str) -> str:
    """La première phrase d'un passage (jusqu'au premier point suivi d'un espace)."""
    import re

    parts = re.split(r"(?<=\.)\s+", text.strip(), maxsplit=1)
    return parts[0] if parts else ""


def summary_items(cases, answers: list[str], contexts: list[list[str]], case_id: str) -> list[dict]:
    """Les valeurs d'un compte rendu, avec le statut **lu dans la réponse du modèle**, le statut
    du laboratoire et le premier passage retrouvé.

    ``cases`` : cas d'un analyte (``case_id`` = compte rendu d'origine) ou comptes rendus entiers ;
    ``answers`` / ``contexts`` : une réponse et une liste de passages par cas, dans le même ordre.
    """
    from .status import parse_statuses

    analytes = load_analytes()
    cases = list(cases)
    if not (len(cases) == len(answers) == len(contexts)):
        raise ValueError(f"{len(cases)} cas, {len(answers)} réponses et {len(contexts)} contextes : il en faut autant.")
    items = []
    for case, answer, passages in zip(cases, answers, contexts):
        if case.get("case_id", case["id"]) != case_id:
            continue
        read = parse_statuses(answer, case["labels"])
        # Un compte rendu entier (tâche « rapport ») a ses passages mêlés, sans doublon : on ne sait
        # pas lequel va avec quelle valeur ; :func:`explanation_passages` cherche alors celui de chacune.
        passage = passages[0] if passages and len(case["labels"]) == 1 else ""
        for label in case["labels"]:
            a = analytes[label["code"]]
            items.append(
                {
                    "code": a.code,
                    "title": a.titre,
                    "value": a.result_line(label["valeur"]),
                    "lab_status": label["statut"],
                    "model_status": read[label["code"]],
                    "passage": passage,
                }
            )
    if not items:
        raise ValueError(f"Compte rendu « {case_id} » introuvable parmi les cas.")
    return items


def prudent_summary(items: list[dict], case_id: str) -> str:
    """Résumé en français, prudent, des valeurs d'un compte rendu (:func:`summary_items`).

    Les statuts sont ceux **lus dans les réponses du modèle de langage** ; pour chaque valeur lue
    comme anormale, la première phrase du passage retrouvé donne le repère. Toute valeur dont le
    statut lu diffère de celui du laboratoire est signalée (le compte rendu fait foi). Le texte ne
    pose aucun diagnostic et renvoie vers un professionnel de santé.
    """
    if not items:
        raise ValueError("Aucune valeur à résumer.")
    abnormal = [i for i in items if i["model_status"] in ("bas", "élevé")]
    normal = [i for i in items if i["model_status"] == "normal"]
    unread = [i for i in items if i["model_status"] not in READ_AS]
    lines = [
        f"Résumé prudent du compte rendu {case_id} (patient fictif), à partir des statuts donnés "
        "par le modèle de langage fine-tuné et des passages de référence retrouvés :"
    ]
    if abnormal:
        lines.append(f"{len(abnormal)} valeur(s) sur {len(items)} lue(s) hors de l'intervalle de référence :")
        for i in abnormal:
            lines.append(
                f"  • {i['value']} — {READ_AS[i['model_status']]}. Ce que dit le passage "
                f"de référence : « {first_sentence(i['passage'])} »"
            )
    elif normal:
        lines.append(
            f"Aucune des {len(normal)} valeur(s) au statut lisible n'est lue hors de l'intervalle de référence."
        )
    if normal:
        lines.append("Valeur(s) lue(s) comme normale(s) : " + ", ".join(i["title"] for i in normal) + ".")
    if unread:
        lines.append(
            "Statut non lisible dans la réponse du modèle pour : " + ", ".join(i["title"] for i in unread) + "."
        )
    disagree = [i for i in items if i["model_status"] in READ_AS and i["model_status"] != i["lab_status"]]
    if disagree:
        lines.append(
            f"Attention : pour {len(disagree)} valeur(s), le statut lu par le modèle diffère de celui "
            "du laboratoire, dont le compte rendu fait foi : "
            + "; ".join(
                f"{i['title']} (laboratoire : {i['lab_status']} ; modèle : {i['model_status']})" for i in disagree
            )
            + "."
        )
    lines.append(
        "Un résultat isolé hors des bornes n'est pas une maladie : il se lit avec les autres "
        "résultats, les résultats antérieurs et l'histoire clinique. Ce résumé automatique ne "
        "pose aucun diagnostic ; seul un médecin ou un autre professionnel de santé peut "
        "interpréter ces analyses."
    )
    return "\n".join(lines)


def prudence_issues(text: str) -> list[str]:
    """Ce qui manque de prudence dans un texte généré (liste vide = rien détecté).

    Vérifie la présence d'un renvoi vers un professionnel de santé et l'absence de formulations
    qui affirment un diagnostic, prescrivent ou découragent de consulter. Un garde-fou simple,
    par expressions régulières : il attrape les dérives évidentes, pas toutes.
    """
    import re

    from .text import normalize

    norm = normalize(text)
    issues = [why for pattern, why in _UNSAFE if re.search(pattern, norm)]
    if not re.search(r"medecin|professionnel de sante", norm):
        issues.append("ne renvoie pas vers un médecin ou un professionnel de santé")
    return issues
