"""Comparer une valeur à ses bornes **pas à pas**, en texte : la tâche « analyte » d'un petit modèle.

Décider « bas / normal / élevé », c'est comparer un nombre à deux bornes. Un modèle de 135 M de
paramètres ne sait pas le faire en un seul jeton (notebook 05, section 8). On écrit donc dans la
réponse attendue une comparaison courte **et vérifiable**, chiffre par chiffre, avant le statut :

* les nombres sont écrits **alignés** (même nombre de chiffres avant et après la virgule, zéros en
  tête) : la comparaison devient une simple lecture de gauche à droite, sans rien calculer. Aligner
  l'entrée facilite la tâche sans donner la réponse ;
* chaque paire de chiffres s'écrit ``xy`` suivi du signe (``=``, ``<`` ou ``>``), jusqu'au premier
  chiffre qui diffère ; le signe final suit ``→`` ;
* une ligne par borne (``min`` puis ``max``), puis la ligne « Nom : statut » que lit le lecteur du
  cours (:func:`helpers.status.parse_statuses`) — les lignes de raisonnement ne nomment aucun analyte.

Exemple, « Volume globulaire moyen : 091 fL (référence : 080 à 100 fL) » ::

    min 091 / 080 : 00= 98> → >
    max 091 / 100 : 01< → <
    Volume globulaire moyen : normal

:func:`check_reasoning` relit une réponse générée et dit si chaque ligne est juste et si le statut
suit le raisonnement ; :func:`drills` fabrique des exercices de comparaison seuls (nombres
aléatoires), pour un échauffement avant la tâche.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .analytes import Analyte

SIGNS = ("<", "=", ">")
#: Consigne courte de la tâche pas à pas (11 jetons au lieu de 30 pour SmolLM2) : le format de la
#: réponse, appris au fine-tuning, dit le reste.
STEPWISE_INSTRUCTION = "Comparez la valeur à ses bornes."
_LINE = re.compile(r"^(min|max) (\S+) / (\S+) : ((?:\d\d[<=>] ?)+)→ ([<=>])\s*$")


def decimals_of(value: float) -> int:
    """Nombre de décimales d'un nombre tel qu'on l'écrit (« 3,5 » → 1, « 100 » → 0)."""
    text = f"{value:g}"
    return len(text.split(".")[1]) if "." in text else 0


def aligned(values: list[float], decimals: int) -> list[str]:
    """Les nombres écrits avec ``decimals`` décimales (virgule française) et la même largeur de
    partie entière, complétée de zéros : ``aligned([91, 80, 100], 0)`` → ``["091", "080", "100"]``."""
    if any(v < 0 for v in values):
        raise ValueError(f"Valeurs négatives non prises en charge : {values}.")
    texts = [f"{v:.{decimals}f}" for v in values]
    width = max(len(t.split(".")[0]) for t in texts)
    return [t.split(".")[0].zfill(width) + ("," + t.split(".")[1] if decimals else "") for t in texts]


def digit_steps(a: str, b: str) -> tuple[str, str]:
    """Compare deux nombres **alignés** chiffre par chiffre : ``("00= 98>", ">")``.

    S'arrête au premier chiffre qui diffère ; si tous sont égaux, le signe est ``=``.
    """
    da, db = a.replace(",", ""), b.replace(",", "")
    if len(da) != len(db) or len(a) != len(b) or not (da.isdigit() and db.isdigit()):
        raise ValueError(f"Nombres non alignés : « {a} » et « {b} ».")
    steps = []
    for x, y in zip(da, db):
        sign = "<" if x < y else ">" if x > y else "="
        steps.append(f"{x}{y}{sign}")
        if sign != "=":
            return " ".join(steps), sign
    return " ".join(steps), "="


def comparison_line(kind: str, value: str, bound: str) -> str:
    """Une ligne de raisonnement : ``min 091 / 080 : 00= 98> → >``."""
    steps, sign = digit_steps(value, bound)
    return f"{kind} {value} / {bound} : {steps} → {sign}"


@dataclass(frozen=True)
class StepwiseCase:
    """Un cas de la tâche pas à pas : l'entrée (valeur et intervalle alignés) et la réponse."""

    input: str
    output: str
    status: str


def stepwise_case(analyte: Analyte, value: float, sexe: str, *, stop_early: bool = False) -> StepwiseCase:
    """Entrée alignée et réponse pas à pas d'une valeur ; le statut est celui de
    :meth:`Analyte.status` (les bornes elles-mêmes sont normales).

    ``stop_early`` : on s'arrête dès que le statut est décidé. Une valeur sous la borne basse est
    « bas » sans regarder la borne haute ; la ligne du statut suit alors **directement** le signe qui
    la décide (``< `` de la ligne ``min`` → bas ; ``>`` de la ligne ``max`` → élevé ; sinon normal),
    et les réponses « bas » sont plus courtes.
    """
    lo, hi = analyte.bounds(sexe)
    bounds = [b for b in (lo, hi) if b is not None]
    decimals = max([analyte.decimales] + [decimals_of(b) for b in bounds])
    texts = aligned([value] + bounds, decimals)
    v, rest = texts[0], dict(zip([k for k, b in (("min", lo), ("max", hi)) if b is not None], texts[1:]))
    if lo is not None and hi is not None:
        reference = f"{rest['min']} à {rest['max']}"
    elif hi is not None:
        reference = f"≤ {rest['max']}"
    elif lo is not None:
        reference = f"≥ {rest['min']}"
    else:
        raise ValueError(f"{analyte.code} : aucune borne de référence pour « {sexe} ».")
    lines = []
    for kind, bound in rest.items():
        lines.append(comparison_line(kind, v, bound))
        if stop_early and kind == "min" and lines[-1].endswith("→ <"):
            break
    status = analyte.status(value, sexe)
    lines.append(f"{analyte.titre} : {status}")
    return StepwiseCase(
        input=f"{analyte.titre} : {v} {analyte.unite} (référence : {reference} {analyte.unite})",
        output="\n".join(lines),
        status=status,
    )


def status_from_signs(signs: dict[str, str]) -> str:
    """Le statut qu'impose le raisonnement : sous la borne basse → bas, au-dessus de la haute →
    élevé, sinon normal (une valeur égale à une borne est normale)."""
    if signs.get("min") == "<":
        return "bas"
    if signs.get("max") == ">":
        return "élevé"
    return "normal"


def check_reasoning(text: str) -> dict:
    """Relit une réponse pas à pas générée.

    Renvoie ``{"lines": n, "correct": k, "signs": {"min": s, "max": s}, "reasoning_status":
    …}`` : une ligne est juste si ses chiffres recopiés et chacun de ses signes sont exacts (elle est
    recalculée à partir des deux nombres qu'elle cite). ``reasoning_status`` est ``None`` si
    aucune ligne n'est lisible.
    """
    lines = justes = 0
    signs: dict[str, str] = {}
    for raw in text.splitlines():
        m = _LINE.match(raw.strip())
        if not m:
            continue
        lines += 1
        kind, value, bound, _, sign = m.groups()
        signs[kind] = sign
        try:
            justes += comparison_line(kind, value, bound) == raw.strip()
        except ValueError:
            pass
    return {
        "lines": lines,
        "correct": justes,
        "signs": signs,
        "reasoning_status": status_from_signs(signs) if signs else None,
    }


def drill_pair(rng: random.Random) -> tuple[str, str]:
    """Deux nombres alignés à comparer : 1 à 4 chiffres avant la virgule, 0 à 2 après, le premier
    chiffre différent à une position tirée au hasard ; égaux une fois sur dix."""
    int_digits, decimals = rng.randint(1, 4), rng.randint(0, 2)
    n = int_digits + decimals
    a = [rng.randint(0, 9) for _ in range(n)]
    b = list(a)
    if rng.random() >= 0.1:
        pos = rng.randrange(n)
        b[pos] = rng.choice([d for d in range(10) if d != a[pos]])
        b[pos + 1 :] = [rng.randint(0, 9) for _ in range(n - pos - 1)]

    def text(digits: list[int]) -> str:
        s = "".join(map(str, digits))
        return s[:int_digits] + ("," + s[int_digits:] if decimals else "")

    return text(a), text(b)


DRILL_INSTRUCTION = "Comparez chaque paire de nombres."


def drills(n: int, seed: int = 0, pairs: int = 1) -> list[dict]:
    """``n`` exercices de comparaison seuls, au format d'instruction du cours (``instruction`` /
    ``input`` / ``output``) : l'entrée donne ``pairs`` paires de nombres alignés, une par ligne
    (« 0487,6 et 0475,9 ») ; la réponse, une ligne de raisonnement par paire (``min`` ou ``max``
    tiré au hasard). Plusieurs paires par exemple partagent le coût du prompt."""
    if n < 0 or pairs < 1:
        raise ValueError(f"Exercices invalides : {n} exemples de {pairs} paire(s).")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        inputs, outputs = [], []
        for _ in range(pairs):
            a, b = drill_pair(rng)
            inputs.append(f"{a} et {b}")
            outputs.append(comparison_line(rng.choice(("min", "max")), a, b))
        rows.append({"instruction": DRILL_INSTRUCTION, "input": "\n".join(inputs), "output": "\n".join(outputs)})
    return rows


TABLE_INSTRUCTION = "Comparez les deux chiffres de chaque paire."


def digit_table_drills(n: int, seed: int = 0, pairs: int = 20) -> list[dict]:
    """``n`` exercices de la **table des signes** : l'entrée donne ``pairs`` paires de chiffres
    (« 43 79 55 »), la réponse recopie chaque paire suivie de son signe (« 43> 79< 55= »), exactement
    comme dans une ligne de raisonnement. Une erreur de la tâche sur deux ou presque est un signe faux
    entre deux chiffres : ces exercices entraînent les 100 paires sans rien d'autre autour."""
    if n < 0 or pairs < 1:
        raise ValueError(f"Exercices invalides : {n} exemples de {pairs} paire(s).")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        digits = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(pairs)]
        signs = ["<" if x < y else ">" if x > y else "=" for x, y in digits]
        rows.append(
            {
                "instruction": TABLE_INSTRUCTION,
                "input": " ".join(f"{x}{y}" for x, y in digits),
                "output": " ".join(f"{x}{y}{s}" for (x, y), s in zip(digits, signs)),
            }
        )
    return rows


def reasoning_scores(answers: list[str], cases) -> dict:
    """Part des lignes de raisonnement justes, et part des réponses dont le statut lu suit le
    raisonnement (:func:`helpers.stepwise.check_reasoning`)."""
    from .status import parse_statuses

    lines = right = follows = readable = 0
    for text, case in zip(answers, cases):
        check = check_reasoning(text)
        lines += check["lines"]
        right += check["correct"]
        status = parse_statuses(text, case["labels"]).get(case["labels"][0]["code"])
        if check["reasoning_status"] is not None and status is not None:
            readable += 1
            follows += status == check["reasoning_status"]
    return {
        "reasoning_correct": right / lines if lines else None,
        "status_follows_reasoning": follows / readable if readable else None,
    }


#: Les sortes d'erreurs du raisonnement, dans l'ordre où :func:`reasoning_errors` les cherche.
ERROR_KINDS = (
    "ligne manquante ou en trop",
    "nombres mal recopiés",
    "chiffres des paires",
    "signe entre deux chiffres",
    "comparaison arrêtée trop tôt ou trop tard",
    "signe final",
    "statut contraire au raisonnement",
)


def _pairs(steps: str) -> list[str]:
    return steps.split()


def reasoning_errors(answer: str, gold: str) -> list[str]:
    """Les erreurs d'une réponse pas à pas, comparée ligne à ligne à la réponse attendue ``gold``
    (une sorte d'erreur par ligne fautive, parmi :data:`ERROR_KINDS`) ; liste vide si tout est juste."""

    def lines(text):
        return {m.group(1): m for m in (_LINE.match(raw.strip()) for raw in text.splitlines()) if m}

    got, want = lines(answer), lines(gold)
    errors = []
    if set(got) != set(want):
        errors.append(ERROR_KINDS[0])
    for kind in set(got) & set(want):
        g, w = got[kind], want[kind]
        gp, wp = _pairs(g.group(4)), _pairs(w.group(4))
        if g.group(2, 3) != w.group(2, 3):
            errors.append(ERROR_KINDS[1])
        elif [p[:2] for p in gp][: len(wp)] != [p[:2] for p in wp][: len(gp)]:
            errors.append(ERROR_KINDS[2])
        elif any(a != b for a, b in zip(gp, wp)):
            errors.append(ERROR_KINDS[3])
        elif len(gp) != len(wp):
            errors.append(ERROR_KINDS[4])
        elif g.group(5) != w.group(5):
            errors.append(ERROR_KINDS[5])
    check = check_reasoning(answer)
    final = answer.strip().splitlines()[-1] if answer.strip() else ""
    status = next((s for s in ("élevé", "normal", "bas") if final.endswith(f": {s}")), None)
    if check["reasoning_status"] is not None and status is not None and status != check["reasoning_status"]:
        errors.append(ERROR_KINDS[6])
    return errors


def error_table(answers: list[str], cases):
    """Nombre de réponses touchées par chaque sorte d'erreur (:func:`reasoning_errors`)."""
    import pandas as pd

    counts = dict.fromkeys(ERROR_KINDS, 0)
    for text, case in zip(answers, cases):
        for kind in set(reasoning_errors(text, case["output"])):
            counts[kind] += 1
    return pd.Series(counts, name="réponses")
