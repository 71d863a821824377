"""Lire et noter les statuts (bas, normal, élevé) dans les réponses d'un modèle de langage.

:func:`parse_statuses` retrouve, pour chaque valeur d'un cas, le statut que la réponse lui donne
(accents, négations, synonymes, ordre des valeurs) ; :func:`score_answers` compare ces lectures aux
étiquettes ; :func:`accuracy_table`, :func:`accuracy_gain` (intervalle bootstrap apparié),
:func:`status_recall` et :func:`confusion` résument. Utilisé par les notebooks 05, 06 et 07 et par
les études ; ne dépend d'aucun chapitre.
"""

from __future__ import annotations

import re

import pandas as pd

from .analytes import STATUSES, Analyte, get_analyte
from .text import normalize

_NORMAL = [
    r"\bnormale?s?\b",
    r"\bnormaux\b",
    r"dans les normes",
    r"dans l'intervalle",
    r"dans les valeurs (de reference|usuelles)",
    r"\bpas d'anomalie",
    r"\bsans anomalie",
    r"limite (superieure|inferieure) de la normale",
]


_HIGH = [
    r"\beleve(e|s|es)?\b",
    r"\bhaute?s?\b",
    r"\baugmente(e|s|es)?\b",
    r"\bsuperieure?s? (a|aux?) ",
    r"\bau-dessus\b",
    r"\bau dessus\b",
    r"\bexces\b",
]


_LOW = [
    r"\bbas(ses?)?\b",
    r"\bfaibles?\b",
    r"\bdiminue(e|s|es)?\b",
    r"\babaisse(e|s|es)?\b",
    r"\binferieure?s? (a|aux?) ",
    r"\ben dessous\b",
    r"\bau-dessous\b",
    r"\ben-dessous\b",
]


_NEGATION = re.compile(r"(\bpas\b|\bnon\b|\bni\b|\bjamais\b|\bsans\b)(\s+[^\s,;.:]+){0,2}\s*$")


def _status_in(fragment: str) -> str | None:
    """Premier statut non nié d'un fragment de texte (déjà normalisé, parenthèses retirées)."""
    found = _found_statuses(fragment)
    if not found:
        return None
    direct = [f for f in found if not f[2]]
    return min(direct or found)[1]


def _found_statuses(fragment: str) -> list[tuple[int, str, bool]]:
    """Statuts trouvés dans un fragment : ``(position, statut, déduit d'une négation)``."""
    found = []
    for status, patterns in (("normal", _NORMAL), ("élevé", _HIGH), ("bas", _LOW)):
        for pattern in patterns:
            for m in re.finditer(pattern, fragment):
                before = fragment[max(0, m.start() - 25) : m.start()]
                if status != "normal" and _NEGATION.search(before):
                    found.append((m.start(), "normal", True))  # « pas élevé » = normal
                elif status == "normal" and re.search(r"\b(pas|non)\s+$", before):
                    continue  # « pas normal » : le statut suit ailleurs
                else:
                    found.append((m.start(), status, False))
    return found


def _names(a: Analyte) -> list[str]:
    names = {a.nom, a.nom_court, a.abreviation, *a.synonymes}  # pas le code interne (« MG » ≈ mg/L)
    return sorted({normalize(n) for n in names if n}, key=len, reverse=True)


def parse_statuses(text: str, labels: list[dict]) -> dict[str, str | None]:
    """Statut annoncé pour chaque analyte des ``labels`` dans ``text`` (``None`` si introuvable).

    Chaque ligne est attribuée à l'analyte dont un nom (nom, nom court, abréviation, synonyme ;
    sans accents ni casse) apparaît en tête de ligne, sinon dans la ligne. Dans la suite de la
    ligne, les parenthèses (références) sont ignorées et le premier statut non nié l'emporte :
    « légèrement élevée » → élevé, « dans les normes » → normal, « n'est pas élevé » → normal.
    """
    if not isinstance(text, str):
        raise ValueError("Le texte généré doit être une chaîne.")
    codes = [label["code"] for label in labels]
    names = {code: _names(get_analyte(code)) for code in codes}
    result: dict[str, str | None] = {code: None for code in codes}
    segments = [normalize(raw) for raw in re.split(r"[\n;]|(?<=\.)\s+(?=\D)", text)]
    # 1er passage : lignes structurées « Analyte : … » ; 2e : mentions dans du texte libre.
    for structured in (True, False):
        for line in segments:
            head, colon, rest = line.partition(":")
            head_owner = _find_owner(head, codes, names) if colon else None
            if structured != (head_owner is not None):
                continue
            line = _strip_parentheses(rest if structured else line)
            owner = head_owner
            while line:
                end = 0
                if owner is None:
                    found = _find_owner(line, codes, names, with_end=True)
                    if found is None:
                        break
                    owner, end = found
                tail = line[end:]
                other = _find_owner(tail, [c for c in codes if c != owner], names, with_end=True, start=True)
                line = tail[other[1] :] if other is not None else ""  # la suite parle d'un autre analyte
                if other is not None:
                    tail = tail[: other[1]]
                if result[owner] is None:
                    result[owner] = _status_in(tail)
                owner = None
    if len(codes) == 1 and result[codes[0]] is None:
        # Une seule valeur : une réponse qui ne nomme pas l'analyte (« Le résultat est bas. ») ne peut
        # parler que d'elle ; on la lit si elle ne donne qu'un statut (lecture loyale du modèle de
        # base). « bas, normal ou élevé » (la consigne répétée) ne tranche pas : introuvable.
        text = _strip_parentheses(" ".join(segments))
        if len({status for _, status, _ in _found_statuses(text)}) == 1:
            result[codes[0]] = _status_in(text)
    return result


def _strip_parentheses(text: str) -> str:
    """Retire les parenthèses (références, précisions) : elles ne portent pas le statut."""
    return re.sub(r"\([^)]*\)", " ", text)


def _find_owner(scope: str, codes: list[str], names: dict, with_end: bool = False, start: bool = False):
    """Analyte nommé le plus tôt dans ``scope`` (à position égale, le nom le plus long).

    Avec ``with_end``, renvoie aussi la position de fin du nom (ou de début si ``start``).
    """
    hits = []
    for code in codes:
        for name in names[code]:
            m = re.search(rf"(?<![\w/-]){re.escape(name)}(?![\w/-])", scope)  # « mg/L » n'est pas Mg
            if m:
                hits.append((m.start(), -len(name), code, m.start() if start else m.end()))
                break
    if not hits:
        return None
    _, _, code, end = min(hits)
    return (code, end) if with_end else code


def score_answers(answers: list[str], cases, model_label: str) -> pd.DataFrame:
    """Une ligne par valeur : cas, analyte, statut attendu, statut lu, correct.

    ``cases`` est une séquence de lignes du jeu d'instructions (avec ``id`` et ``labels``) ou de
    cas d'un analyte (:func:`helpers.llm.analyte_cases`, regroupés par ``case_id`` = compte rendu d'origine).
    ``row`` est la position du cas dans ``cases``. Un statut introuvable compte comme faux : rien
    n'est écarté en silence.
    """
    if len(answers) != len(cases):
        raise ValueError(f"{len(answers)} réponses pour {len(cases)} cas : il en faut autant.")
    rows = []
    for i, (answer, case) in enumerate(zip(answers, cases)):
        found = parse_statuses(answer, case["labels"])
        for label in case["labels"]:
            pred = found[label["code"]]
            rows.append(
                {
                    "model": model_label,
                    "row": i,
                    "case_id": case.get("case_id") or case["id"],
                    "code": label["code"],
                    "expected": label["statut"],
                    "predicted": pred or "introuvable",
                    "correct": pred == label["statut"],
                }
            )
    return pd.DataFrame(rows)


def accuracy_table(scored: pd.DataFrame) -> pd.DataFrame:
    """``model,n_cases,n_values,accuracy`` (colonnes de ``status_accuracy.csv``)."""
    out = (
        scored.groupby("model", sort=False)
        .agg(n_cases=("case_id", "nunique"), n_values=("correct", "size"), accuracy=("correct", "mean"))
        .reset_index()
    )
    return out[["model", "n_cases", "n_values", "accuracy"]]


def accuracy_gain(scored: pd.DataFrame, model: str, reference: str, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Gain d'exactitude de ``model`` sur ``reference`` (même valeurs de test, appariées) et son
    intervalle de confiance à 95 % (bootstrap BCa sur les valeurs, :func:`helpers.stats.mean_interval`).

    ``reference`` peut aussi être ``"constante"`` : la réponse constante la plus fréquente du test.
    """
    from .stats import mean_interval

    mine = scored[scored["model"] == model].set_index(["row", "code"])["correct"].astype(float)
    if mine.empty:
        raise ValueError(f"Aucune réponse notée pour « {model} ».")
    if reference == "constante":
        expected = scored[scored["model"] == model].set_index(["row", "code"])["expected"]
        other = (expected == expected.mode().iloc[0]).astype(float)
    else:
        other = scored[scored["model"] == reference].set_index(["row", "code"])["correct"].astype(float)
        if not mine.index.equals(other.index):
            raise ValueError(f"« {model} » et « {reference} » n'ont pas été notés sur les mêmes valeurs.")
    gain, low, high = mean_interval((mine - other).to_numpy(), n_resamples=n_resamples, seed=seed)
    return {"model": model, "reference": reference, "values": len(mine), "gain": gain, "ci_low": low, "ci_high": high}


def status_recall(scored: pd.DataFrame, model_label: str) -> pd.Series:
    """Rappel par statut attendu : part des valeurs « bas » (« normal », « élevé ») lues comme telles."""
    table = confusion(scored, model_label)
    return pd.Series(
        {s: table.loc[s, s] / table.loc[s].sum() if table.loc[s].sum() else float("nan") for s in STATUSES},
        name=model_label,
    )


def confusion(scored: pd.DataFrame, model_label: str) -> pd.DataFrame:
    """Matrice de confusion attendu × lu (avec la colonne « introuvable »)."""
    sub = scored[scored["model"] == model_label]
    cols = [*STATUSES, "introuvable"]
    return pd.crosstab(sub["expected"], sub["predicted"]).reindex(index=list(STATUSES), columns=cols, fill_value=0)
