"""Génération déterministe du jeu de données synthétique « MedAnalyzer-FR ».

    python -m helpers.generate            # réécrit data/medanalyzer_fr/
    python -m helpers.generate --out DIR  # écrit ailleurs (le test de reproductibilité l'utilise)

Trois vues, toutes construites à partir des faits de ``data/reference/`` :

1. **Recherche (RAG)** : un corpus de passages (un aspect d'un analyte chacun : rôle, valeurs
   de référence, causes d'une valeur haute, d'une valeur basse, prélèvement, suivi) et des
   paires (question, passage) de styles variés ; deux splits de test tenus à l'écart
   (questions inédites ; analytes absents de l'entraînement).
2. **Instructions (Alpaca)** : les résultats d'un patient fictif → une interprétation en
   français, avec le statut attendu de chaque valeur stocké comme étiquette.
3. **Longitudinale** : des patients suivis sur plusieurs visites (point de consigne personnel,
   variation intra-individuelle, tendances, anomalies étiquetées).

Tout est tiré d'un ``random.Random`` à graine fixe : régénérer donne des fichiers identiques à
l'octet près (vérifié par ``tests/test_generate.py``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import hashlib
import io
import json
import math
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path

from .analytes import BIOLOGICAL_VARIATION, Analyte, load_analytes, reference_change_value
from .paths import DATASET_DIR, REFERENCE_DIR

SEED = 20261123
ASPECTS = ("role", "reference", "haute", "basse", "prelevement", "suivi")
STYLES = ("clinique", "courant", "abreviation", "situation", "faute", "description")
TEST_ANALYTE_COUNT = 8  # 8 / 46 = 17 % des analytes, absents de l'entraînement
QUESTION_SPLIT = {"test_questions": 0.15, "validation": 0.10}
N_INSTRUCTIONS = 2400
INSTRUCTION_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
N_PATIENTS = 240
LONGITUDINAL_ANALYTES = ("HB", "CREAT", "GLY", "LDL", "TSH", "ALAT", "FERRITINE")

# ---------------------------------------------------------------------------- passages
_REF_TAIL = (
    "Ces intervalles sont indicatifs : chaque laboratoire imprime les siens sur le compte rendu, "
    "et ce sont eux qui font foi.",
    "Les bornes varient d'un laboratoire à l'autre selon la technique ; l'intervalle du compte "
    "rendu reste la référence.",
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    """Minuscule initiale, sauf pour un sigle (« CIVD », « LLC »…)."""
    first = text.split(" ")[0].strip(",:;")
    return text if first.isupper() and len(first) > 1 else text[:1].lower() + text[1:]


def _passages(a: Analyte, rng: random.Random) -> dict[str, str]:
    lo_h, hi_h = a.bounds("homme")
    lo_f, hi_f = a.bounds("femme")
    has_hi = hi_h is not None or hi_f is not None
    has_lo = lo_h is not None or lo_f is not None
    syn = ", ".join(f"« {s} »" for s in a.synonymes)
    abbr = "" if a.abreviation.lower() in a.nom.lower() else f" ({a.abreviation})"
    role = f"{_cap(a.nom)}{abbr} — {a.famille}. {a.role}"
    if syn:
        role += f" Autres noms possibles sur un compte rendu : {syn}."
    reference = (
        f"Valeurs de référence {a.du} chez l'adulte ({a.unite}) : {a.reference_sentence()}. {rng.choice(_REF_TAIL)}"
    )
    if has_hi:
        haute = (
            f"{_cap(a.le)} {a.accord('élevé')} (au-dessus de la borne haute, "
            f"{a.reference_sentence()}) : {_lower_first(a.interpretation_haute)}. "
            "Un léger dépassement isolé est fréquent et se juge avec le contexte et les autres résultats."
        )
    else:
        haute = (
            f"{_cap(a.le)} n'{a.avoir} pas de limite haute de référence ({a.reference_sentence()}). "
            f"Valeur haute : {_lower_first(a.interpretation_haute)}."
        )
    if has_lo:
        basse = (
            f"{_cap(a.le)} {a.accord('bas')} (sous la borne basse, {a.reference_sentence()}) : "
            f"{_lower_first(a.interpretation_basse)}. Une valeur juste sous la limite se contrôle "
            "avant de conclure."
        )
    else:
        basse = (
            f"{_cap(a.le)} n'{a.avoir} pas de limite basse de référence ({a.reference_sentence()}). "
            f"Valeur basse : {_lower_first(a.interpretation_basse)}."
        )
    # « Dosage de la TSH (TSH) » : l'abréviation n'est rappelée que si elle diffère du nom.
    short = "" if a.abreviation.lower() == a.nom_court.lower() else f" ({a.abreviation})"
    prelevement = f"Dosage {a.du}{short} — conditions de prélèvement. {a.prelevement}"
    suivi = f"Suivi et conduite à tenir pour {a.le}{short}. {a.suivi}"
    return {
        "role": role,
        "reference": reference,
        "haute": haute,
        "basse": basse,
        "prelevement": prelevement,
        "suivi": suivi,
    }


# ---------------------------------------------------------------------------- questions
# Chaque gabarit : (identifiant, style, variantes). L'identifiant sert à regrouper les questions
# pour les splits : une question de test n'a jamais de « sœur » du même gabarit, sur le même
# passage, dans l'entraînement.
def _q_templates(a: Analyte, aspect: str) -> list[tuple[str, str, list[str]]]:
    lay = a.mots_courants[0] if a.mots_courants else a.nom_court
    syn = a.synonymes[0] if a.synonymes else a.abreviation
    ab = a.abreviation
    el, ba, an = a.accord("élevé"), a.accord("bas"), a.accord("anormal")
    if aspect == "role":
        return [
            (
                "role_c1",
                "clinique",
                [
                    f"Que mesure le dosage {a.du} ?",
                    f"Quelle est la fonction physiologique {a.du} ?",
                    f"Quelle information clinique apporte le dosage {a.du} ?",
                ],
            ),
            (
                "role_c2",
                "clinique",
                [
                    f"Que désigne « {syn} » sur un compte rendu de biologie ?",
                    f"À quoi correspond le paramètre « {syn} » d'un bilan sanguin ?",
                ],
            ),
            (
                "role_l1",
                "courant",
                [
                    f"C'est quoi {a.le} dans une prise de sang ?",
                    f"À quoi ça sert de regarder {a.le} dans une prise de sang ?",
                ],
            ),
            (
                "role_l2",
                "courant",
                [
                    f"Mon médecin a demandé « {lay} » dans ma prise de sang, ça veut dire quoi ?",
                    f"Prise de sang : pourquoi on regarde « {lay} » ?",
                ],
            ),
            (
                "role_a1",
                "abreviation",
                [
                    f"{ab} c'est quoi ?",
                    f"que veut dire {ab} sur mes analyses",
                    f"{ab} dans un bilan sanguin : définition ?",
                ],
            ),
        ]
    if aspect == "reference":
        return [
            (
                "ref_c1",
                "clinique",
                [
                    f"Quelles sont les valeurs de référence {a.du} chez l'adulte ?",
                    f"Quel est l'intervalle de référence {a.du} ?",
                ],
            ),
            (
                "ref_c2",
                "clinique",
                [
                    f"Les normes {a.du} diffèrent-elles entre l'homme et la femme ?",
                    f"Valeurs usuelles {a.du} selon le sexe ?",
                ],
            ),
            (
                "ref_l1",
                "courant",
                [f"Quel est le taux normal pour {a.le} ?", f"C'est combien la normale pour {a.le} ?"],
            ),
            (
                "ref_l2",
                "courant",
                [
                    f"Quelle valeur de « {lay} » est considérée comme normale ?",
                    f"À partir de quel chiffre « {lay} » n'est plus normal ?",
                ],
            ),
            (
                "ref_a1",
                "abreviation",
                [f"{ab} normes homme femme ?", f"{ab} valeurs normales", f"{ab} : fourchette normale ?"],
            ),
            ("ref_s1", "situation", ["normal"]),
            ("ref_s2", "situation", ["normal"]),
        ]
    if aspect in ("haute", "basse"):
        adj, word = (el, "élevé") if aspect == "haute" else (ba, "bas")
        sens = "élévation" if aspect == "haute" else "baisse"
        trop = f"trop {a.accord('haut')}" if aspect == "haute" else f"trop {a.accord('bas')}"
        trop_lay = "trop haut" if aspect == "haute" else "trop bas"
        return [
            (
                f"{aspect}_c1",
                "clinique",
                [
                    f"Quelles sont les causes d'une {sens} {a.du} ?",
                    f"Que peut traduire {a.un} {adj} ?",
                    f"Étiologies {a.du} {adj} ?",
                ],
            ),
            (
                f"{aspect}_c2",
                "clinique",
                [
                    f"Quelle interprétation donner à {a.un} {adj} sur un bilan ?",
                    f"Quelle signification clinique pour {a.un} {adj} ?",
                ],
            ),
            (
                f"{aspect}_l1",
                "courant",
                [
                    f"J'ai {a.le} {trop}, qu'est-ce que ça veut dire ?",
                    f"{_cap(a.mon)} {a.est} {trop}, c'est grave ?",
                    f"Pourquoi {a.le} {'peuvent' if a.nombre == 'p' else 'peut'} être {trop} ?",
                ],
            ),
            (
                f"{aspect}_l2",
                "courant",
                [
                    f"« {lay} » {trop_lay} sur ma prise de sang : que faut-il comprendre ?",
                    f"Résultat « {lay} » {trop_lay}, ça vient d'où ?",
                ],
            ),
            (
                f"{aspect}_a1",
                "abreviation",
                [f"{ab} {word} causes", f"{ab} {word} = quoi ?", f"{ab} {word} ça veut dire quoi"],
            ),
            (f"{aspect}_s1", "situation", [aspect]),
            (f"{aspect}_s2", "situation", [aspect]),
        ]
    if aspect == "prelevement":
        return [
            (
                "prel_c1",
                "clinique",
                [
                    f"Quelles sont les conditions pré-analytiques du dosage {a.du} ?",
                    f"Quelles précautions de prélèvement pour doser {a.le} ?",
                ],
            ),
            (
                "prel_c2",
                "clinique",
                [
                    f"Quels facteurs pré-analytiques faussent le dosage {a.du} ?",
                    f"Quel tube et quel délai pour le dosage {a.du} ?",
                ],
            ),
            ("prel_l1", "courant", [f"Faut-il être à jeun pour doser {a.le} ?", f"Je dois venir à jeun pour {a.le} ?"]),
            (
                "prel_l2",
                "courant",
                [
                    f"Comment me préparer avant une prise de sang pour « {lay} » ?",
                    f"Prise de sang pour « {lay} » : il y a des consignes ?",
                ],
            ),
            (
                "prel_a1",
                "abreviation",
                [f"{ab} à jeun ou pas ?", f"{ab} prélèvement conditions", f"dosage {ab} précautions"],
            ),
        ]
    return [  # suivi
        (
            "suivi_c1",
            "clinique",
            [
                f"Quelle conduite à tenir devant {a.un} {an} ?",
                f"Quelle surveillance après un résultat anormal {a.du} ?",
            ],
        ),
        (
            "suivi_c2",
            "clinique",
            [f"Quels examens complémentaires demander si {a.le} {a.est} {an} ?", f"Comment explorer {a.un} {an} ?"],
        ),
        (
            "suivi_l1",
            "courant",
            [
                f"{_cap(a.mon)} ne {a.est} pas {a.accord('bon')}, je fais quoi maintenant ?",
                f"Résultat pas normal pour {a.le} : faut-il refaire une prise de sang ?",
            ],
        ),
        (
            "suivi_l2",
            "courant",
            [
                f"« {lay} » anormal : quand faut-il s'inquiéter ?",
                f"« {lay} » pas dans les normes, qu'est-ce qu'on fait ensuite ?",
            ],
        ),
        (
            "suivi_a1",
            "abreviation",
            [f"{ab} anormal suivi ?", f"{ab} hors normes que faire", f"{ab} perturbé : quel contrôle ?"],
        ),
        ("suivi_s1", "situation", ["suivi"]),
    ]


def _normal_band(a: Analyte, sexe: str) -> tuple[float, float]:
    """Où le générateur tire les valeurs normales : l'intervalle de référence, ou, s'il n'a qu'une
    borne, une bande de valeurs courantes de ce côté-là (:func:`_sample_value` n'en garde que les
    90 % du milieu)."""
    lo, hi = a.bounds(sexe)
    pmin, pmax = a.plausible
    a_, b_ = (lo if lo is not None else pmin), (hi if hi is not None else lo + (pmax - lo) * 0.4)
    if lo is None:
        a_ = pmin + (hi - pmin) * 0.15
    return a_, b_


def _sample_value(a: Analyte, sexe: str, status: str, rng: random.Random, mild: bool = True) -> float:
    """Tire une valeur plausible ayant le statut voulu, arrondie aux décimales de l'analyte."""
    lo, hi = a.bounds(sexe)
    pmin, pmax = a.plausible
    for _ in range(200):
        if status == "normal":
            a_, b_ = _normal_band(a, sexe)
            width = b_ - a_
            x = a_ + width * (0.05 + 0.9 * rng.betavariate(2, 2))
        elif status == "élevé":
            u = rng.uniform(0.03, 1.0)
            x = hi + (pmax - hi) * (u ** (3 if mild else 1.5))
        else:
            u = rng.uniform(0.03, 1.0)
            x = lo - (lo - pmin) * (u ** (2 if mild else 1.2))
        x = round(x, a.decimales)
        if a.status(x, sexe) == status and x >= 0:
            return x
    raise RuntimeError(f"Impossible de tirer une valeur « {status} » pour {a.code} ({sexe}).")


def _situation_question(a: Analyte, kind: str, rng: random.Random) -> str:
    sexe = rng.choice(("homme", "femme"))
    age = rng.randint(18, 88)
    who = rng.choice(
        [
            f"{_cap(sexe)} de {age} ans",
            f"Patient{'e' if sexe == 'femme' else ''} de {age} ans",
            f"J'ai {age} ans ({sexe})",
        ]
    )
    possible = a.possible_statuses(sexe)
    if kind == "normal":
        v = _sample_value(a, sexe, "normal", rng)
        return rng.choice(
            [
                f"{who}, {a.le} à {a.fmt(v)} {a.unite} : est-ce dans les normes ?",
                f"{who} : {a.abreviation} = {a.fmt(v)} {a.unite}, est-ce une valeur normale ?",
            ]
        )
    if kind == "suivi":
        status = rng.choice([s for s in possible if s != "normal"])
        v = _sample_value(a, sexe, status, rng, mild=False)
        return rng.choice(
            [
                f"{who}, {a.abreviation} à {a.fmt(v)} {a.unite} : quel suivi ou quel examen complémentaire ?",
                f"{who} avec {a.le} à {a.fmt(v)} {a.unite} : faut-il contrôler et quand ?",
            ]
        )
    lo, hi = a.bounds(sexe)
    if kind == "haute":
        v = (
            _sample_value(a, sexe, "élevé", rng)
            if "élevé" in possible
            else round(lo + (a.plausible[1] - lo) * rng.uniform(0.55, 0.95), a.decimales)
        )
        return rng.choice(
            [
                f"{who}, {a.le} à {a.fmt(v)} {a.unite}. Quelles hypothèses évoquer ?",
                f"{who} : {a.abreviation} à {a.fmt(v)} {a.unite}, pourquoi est-ce si haut ?",
                f"{who}, résultat {a.abreviation} {a.fmt(v)} {a.unite} : qu'est-ce qui peut l'augmenter ?",
            ]
        )
    v = (
        _sample_value(a, sexe, "bas", rng)
        if "bas" in possible
        else round(a.plausible[0] + (hi - a.plausible[0]) * rng.uniform(0.0, 0.1), a.decimales)
    )
    return rng.choice(
        [
            f"{who}, {a.le} à {a.fmt(v)} {a.unite}. Quelles hypothèses évoquer ?",
            f"{who} : {a.abreviation} à {a.fmt(v)} {a.unite}, pourquoi est-ce si bas ?",
            f"{who}, résultat {a.abreviation} {a.fmt(v)} {a.unite} : qu'est-ce qui peut le faire baisser ?",
        ]
    )


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def add_typos(text: str, rng: random.Random) -> str:
    """Version « tapée vite » d'une question : accents perdus, lettres inversées, oubliées…"""
    words = text.split(" ")
    ops = rng.sample(["accents", "swap", "drop", "double", "lower"], 2)
    for op in ops:
        long_words = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if op == "accents":
            words = [_strip_accents(w) for w in words]
        elif op == "lower":
            words = [w.lower() for w in words]
            if words[-1] == "?":
                words = words[:-1]
        elif long_words:
            i = rng.choice(long_words)
            w = words[i]
            j = rng.randrange(1, len(w) - 2)
            if op == "swap":
                w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
            elif op == "drop":
                w = w[:j] + w[j + 1 :]
            else:
                w = w[:j] + w[j] + w[j:]
            words[i] = w
    out = " ".join(words)
    return out if out != text else _strip_accents(text).lower().rstrip(" ?")


def _norm_key(text: str) -> str:
    return " ".join(text.lower().split())


#: Verbes qui séparent le sujet de sa description dans la phrase « rôle » d'un analyte : avec
#: « est » / « sont », la suite est déjà un groupe nominal ; sinon on écrit « l'examen qui … ».
_DESCRIPTION_VERBS = (
    " est ",
    " sont ",
    " mesure ",
    " rapporte ",
    " reflète ",
    " évalue ",
    " estime ",
    " explore ",
    " indique ",
    " sert ",
    " compte ",
    " permet ",
)


def describe(a: Analyte) -> str | None:
    """L'analyte **décrit sans son nom**, tiré de sa phrase « rôle » : « la protéine des globules
    rouges qui transporte l'oxygène des poumons vers les tissus » pour l'hémoglobine. ``None`` si la
    phrase ne se laisse pas couper ainsi, si la suite n'est pas un groupe nominal (article en tête),
    ou si la description contient encore le nom, le nom court, l'abréviation ou un synonyme."""
    plain = re.sub(r"\s*\([^)]*\)", "", a.role.strip().rstrip("."))  # sans les parenthèses
    first = re.split(r" ; |\. | : |, dont ", plain, maxsplit=1)[0]
    cuts = [(first.find(v), v) for v in _DESCRIPTION_VERBS if first.find(v) > 0]
    if not cuts:
        return None
    at, verb = min(cuts)
    rest = first[at + len(verb) :].strip()
    desc = rest if verb in (" est ", " sont ") else f"l'examen qui{verb}{rest}"
    names = [a.nom, a.nom_court, a.abreviation, *a.synonymes]
    article = re.match(r"(le|la|les|un|une|des|de|l')\b|l'", desc)
    if not article or len(desc.split()) < 3 or any(n and n.lower() in desc.lower() for n in names):
        return None
    return desc


def _description_questions(desc: str) -> dict[str, list[str]]:
    """Questions qui désignent l'analyte par sa description, une liste de variantes par aspect."""
    return {
        "role": [f"À quoi sert de doser {desc} ?", f"Pourquoi regarder {desc} dans une prise de sang ?"],
        "reference": [f"Quelle est la valeur normale pour {desc} ?", f"Jusqu'où est-ce normal, pour {desc} ?"],
        "haute": [
            f"Résultat trop élevé pour {desc} : que faut-il comprendre ?",
            f"Trop haut pour {desc} : qu'est-ce que cela peut vouloir dire ?",
        ],
        "basse": [f"Que signifie un résultat bas pour {desc} ?", f"Trop bas pour {desc} : pourquoi ?"],
        "prelevement": [f"Faut-il être à jeun pour doser {desc} ?", f"Comment se passe le prélèvement pour {desc} ?"],
        "suivi": [
            f"Résultat anormal pour {desc} : quel suivi ?",
            f"Que faire ensuite si le résultat pour {desc} n'est pas dans les normes ?",
        ],
    }


def add_description_pairs(
    splits: dict[str, list[dict]], analytes: dict[str, Analyte], test_codes: list[str], seed: int = SEED
) -> int:
    """Ajoute à l'**entraînement seulement** une question par passage qui désigne l'analyte par sa
    description au lieu de son nom (style « description »), pour les analytes hors ``test_analytes``.

    Pourquoi : toutes les autres questions nomment l'analyte (nom, abréviation, synonyme ou mot
    courant) ; un modèle fine-tuné sur elles apprend surtout à repérer ce nom, et perd contre le
    modèle de base sur les questions qui décrivent la chose sans la nommer (notebook 03, questions
    naturelles par style). Tirage par un générateur à part : les autres splits ne changent pas.
    Les profils ne s'en servent pas par défaut (``EmbeddingSettings.described_pairs``) : l'étude du
    notebook 02 les a essayées sans gain sur la validation. Renvoie le nombre de paires ajoutées.
    """
    rng = random.Random(seed + 17)
    seen = {_norm_key(p["question"]) for rows in splits.values() for p in rows}
    added = 0
    for code, a in analytes.items():
        desc = describe(a)
        if code in test_codes or desc is None:
            continue
        for aspect, variants in _description_questions(desc).items():
            q = rng.choice(variants)
            if _norm_key(q) in seen:
                continue
            seen.add(_norm_key(q))
            splits["train"].append(
                {
                    "question": q,
                    "passage_id": f"{code}-{aspect}",
                    "code": code,
                    "aspect": aspect,
                    "style": "description",
                    "template": f"{aspect}_d1",
                    "pair_id": f"train-{len(splits['train']):05d}",
                }
            )
            added += 1
    return added


def build_retrieval(analytes: dict[str, Analyte], seed: int = SEED):
    """Corpus de passages et paires (question, passage) réparties en splits."""
    rng = random.Random(seed)
    corpus, pairs = [], []
    seen: set[str] = set()
    skipped = Counter()  # questions non retenues car identiques à une question déjà générée
    for code, a in analytes.items():
        texts = _passages(a, rng)
        for aspect in ASPECTS:
            pid = f"{code}-{aspect}"
            corpus.append(
                {
                    "passage_id": pid,
                    "code": code,
                    "analyte": a.nom,
                    "famille": a.famille,
                    "aspect": aspect,
                    "text": texts[aspect],
                }
            )
            base_questions = []
            for tid, style, variants in _q_templates(a, aspect):
                for _attempt in range(6):
                    q = _situation_question(a, variants[0], rng) if style == "situation" else rng.choice(variants)
                    if _norm_key(q) not in seen:
                        break
                else:
                    skipped[style] += 1  # toutes les variantes existent déjà : compté, annoncé dans la fiche
                    continue
                seen.add(_norm_key(q))
                pairs.append(
                    {"question": q, "passage_id": pid, "code": code, "aspect": aspect, "style": style, "template": tid}
                )
                if style in ("courant", "abreviation", "clinique"):
                    base_questions.append((tid, q))
            # Deux variantes avec fautes de frappe, rattachées au gabarit de leur question d'origine.
            for tid, q in rng.sample(base_questions, k=min(2, len(base_questions))):
                t = add_typos(q, rng)
                if _norm_key(t) in seen:
                    skipped["faute"] += 1
                    continue
                seen.add(_norm_key(t))
                pairs.append(
                    {
                        "question": t,
                        "passage_id": pid,
                        "code": code,
                        "aspect": aspect,
                        "style": "faute",
                        "template": tid,
                    }
                )
    # Split par analyte : un analyte tiré dans chacune de 8 familles différentes.
    by_family: dict[str, list[str]] = {}
    for code, a in analytes.items():
        by_family.setdefault(a.famille, []).append(code)
    families = sorted(f for f, codes in by_family.items() if len(codes) >= 2)
    rng.shuffle(families)
    test_codes = sorted(rng.choice(sorted(by_family[f])) for f in families[:TEST_ANALYTE_COUNT])
    # Split par question : des groupes (passage, gabarit) entiers, jamais coupés en deux.
    groups = sorted({(p["passage_id"], p["template"]) for p in pairs if p["code"] not in test_codes})
    rng.shuffle(groups)
    n_test = round(len(groups) * QUESTION_SPLIT["test_questions"])
    n_val = round(len(groups) * QUESTION_SPLIT["validation"])
    group_split = {g: "test_questions" for g in groups[:n_test]}
    group_split.update({g: "validation" for g in groups[n_test : n_test + n_val]})
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test_questions": [], "test_analytes": []}
    for p in pairs:
        if p["code"] in test_codes:
            split = "test_analytes"
        else:
            split = group_split.get((p["passage_id"], p["template"]), "train")
        splits[split].append(p)
    for name, rows in splits.items():
        for i, row in enumerate(rows):
            row["pair_id"] = f"{name}-{i:05d}"
    return corpus, splits, test_codes, dict(sorted(skipped.items()))


# ---------------------------------------------------------------------------- instructions
PANELS = {
    "numération formule sanguine": ["HB", "HT", "GR", "VGM", "TCMH", "CCMH", "GB", "PNN", "LYMPH", "PNE", "PLQ"],
    "bilan martial": ["HB", "VGM", "FERRITINE", "FER", "CST", "CRP"],
    "bilan rénal": ["CREAT", "DFG", "UREE", "NA", "K", "AU"],
    "ionogramme": ["NA", "K", "CL", "HCO3", "CA", "MG", "PROT"],
    "bilan hépatique": ["ASAT", "ALAT", "GGT", "PAL", "BILT", "ALB", "TP"],
    "bilan lipidique": ["CT", "LDL", "HDL", "TG", "GLY"],
    "bilan glucidique": ["GLY", "HBA1C", "CREAT", "TG"],
    "bilan thyroïdien": ["TSH", "T4L", "CT", "CPK"],
    "bilan d'anémie macrocytaire": ["HB", "VGM", "B12", "FOLATES", "GGT"],
    "bilan de fatigue": ["HB", "FERRITINE", "TSH", "GLY", "CRP", "VITD"],
    "suivi d'anticoagulant": ["INR", "TP", "HB", "PLQ", "CREAT"],
    "bilan inflammatoire": ["CRP", "GB", "PNN", "PLQ", "FERRITINE", "ALB"],
}
INSTRUCTIONS = (
    "Analysez les résultats de laboratoire suivants et indiquez pour chaque valeur si elle est basse, "
    "normale ou élevée.",
    "Interprétez ce bilan sanguin : pour chaque paramètre, donnez son statut par rapport aux valeurs de "
    "référence et sa signification habituelle.",
    "Voici les résultats d'analyses d'un patient. Expliquez chaque valeur (bas, normal ou élevé) et proposez "
    "une recommandation prudente.",
    "Lisez ce compte rendu de biologie et commentez chaque résultat en le comparant à l'intervalle de référence.",
    "À partir des résultats ci-dessous, rédigez une interprétation claire pour le patient, valeur par valeur.",
    "Quels résultats de ce bilan sortent des valeurs de référence ? Donnez le statut de chaque valeur et une "
    "conduite à tenir prudente.",
)
MARKED_DEVIATION = 0.5  # écart relatif à la borne au-delà duquel on conseille de consulter rapidement
DISCLAIMER = "Cette interprétation est pédagogique et ne remplace pas l'avis d'un médecin."


def _severity(a: Analyte, value: float, sexe: str) -> float:
    """Écart relatif à la borne franchie (0 si la valeur est normale)."""
    lo, hi = a.bounds(sexe)
    if hi is not None and value > hi:
        return (value - hi) / hi
    if lo is not None and value < lo:
        return (lo - value) / lo
    return 0.0


def _value_line(a: Analyte, value: float, sexe: str, status: str, rng: random.Random) -> str:
    head = f"- {a.result_line(value)} — {status} (référence : {a.range_text(sexe)})."
    if status == "normal":
        tail = rng.choice(
            ["Valeur dans l'intervalle de référence.", "Résultat dans les normes.", "Pas d'anomalie sur ce paramètre."]
        )
    elif status == "élevé":
        tail = f"Signification habituelle d'une valeur haute : {_lower_first(a.interpretation_haute)}."
    else:
        tail = f"Signification habituelle d'une valeur basse : {_lower_first(a.interpretation_basse)}."
    return f"{head} {tail}"


def _recommendation(abnormal: list[tuple[Analyte, float, str]], sexe: str) -> str:
    if not abnormal:
        return (
            "Recommandation : tous les résultats fournis sont dans les valeurs de référence ; "
            "ils s'interprètent néanmoins avec l'examen clinique et les antécédents."
        )
    marked = [a for a, v, _ in abnormal if _severity(a, v, sexe) >= MARKED_DEVIATION]
    names = ", ".join(a.nom_court for a, _, _ in abnormal)
    n = len(abnormal)
    text = f"Synthèse : {n} valeur{'s' if n > 1 else ''} hors des valeurs de référence ({names}). "
    if marked:
        text += (
            f"Recommandation : l'écart est marqué pour {', '.join(a.le for a in marked)} ; "
            "il est conseillé de contacter rapidement le médecin traitant pour qu'il interprète "
            "ces résultats et décide de la suite."
        )
    else:
        text += (
            "Recommandation : en parler au médecin prescripteur, qui jugera de l'intérêt d'un "
            "contrôle ou d'examens complémentaires selon le contexte clinique."
        )
    return text


def build_instructions(analytes: dict[str, Analyte], seed: int = SEED) -> dict[str, list[dict]]:
    """Lignes Alpaca (instruction, input, output) avec les statuts attendus en étiquettes."""
    rng = random.Random(seed + 1)
    rows = []
    panel_names = sorted(PANELS)
    for i in range(N_INSTRUCTIONS):
        sexe = rng.choice(("homme", "femme"))
        age = rng.randint(18, 90)
        panel = rng.choice(panel_names)
        codes = rng.sample(PANELS[panel], k=min(len(PANELS[panel]), rng.randint(3, 5)))
        if rng.random() < 0.3:
            extra = rng.choice([c for c in analytes if c not in codes])
            codes.append(extra)
        all_normal = rng.random() < 0.12
        values = []
        for code in codes:
            a = analytes[code]
            possible = a.possible_statuses(sexe)
            if all_normal:
                status = "normal"
            else:
                status = rng.choices(possible, weights=[2 if s == "normal" else 1.4 for s in possible])[0]
            values.append((a, _sample_value(a, sexe, status, rng, mild=rng.random() < 0.7), status))
        decimal_point = rng.random() < 0.15
        label_style = rng.random()
        lines = []
        for a, v, _ in values:
            name = a.abreviation if label_style < 0.25 else _cap(a.nom_court)
            shown = a.fmt(v).replace(",", ".") if decimal_point else a.fmt(v)
            lines.append(f"- {name} : {shown} {a.unite}")
        context = f"Patient : {sexe}, {age} ans ({panel})."
        input_text = context + "\nRésultats :\n" + "\n".join(lines)
        out_lines = [f"Interprétation des résultats ({sexe}, {age} ans) :"]
        out_lines += [_value_line(a, v, sexe, s, rng) for a, v, s in values]
        abnormal = [(a, v, s) for a, v, s in values if s != "normal"]
        out_lines.append(_recommendation(abnormal, sexe))
        out_lines.append(DISCLAIMER)
        rows.append(
            {
                "id": f"inst-{i:05d}",
                "instruction": rng.choice(INSTRUCTIONS),
                "input": input_text,
                "output": "\n".join(out_lines),
                "sexe": sexe,
                "age": age,
                "panel": panel,
                "labels": [
                    {"code": a.code, "analyte": a.nom_court, "valeur": v, "unite": a.unite, "statut": s}
                    for a, v, s in values
                ],
            }
        )
    rng.shuffle(rows)
    n_train = round(len(rows) * INSTRUCTION_SPLIT["train"])
    n_val = round(len(rows) * INSTRUCTION_SPLIT["validation"])
    return {"train": rows[:n_train], "validation": rows[n_train : n_train + n_val], "test": rows[n_train + n_val :]}


# ---------------------------------------------------------------------------- comptes rendus aux bornes
#: Où tombe chaque valeur d'un compte rendu « aux bornes » (:func:`build_boundary_reports`).
BOUNDARY_POSITIONS = ("juste dedans", "sur la borne", "juste dehors")
#: Écart à la borne, en part de la bande où le générateur tire les valeurs normales
#: (:func:`_normal_band`) : sous la marge de 5 % que :func:`_sample_value` laisse à chacune.
BOUNDARY_GAP = (0.005, 0.05)


def _near_bound(a: Analyte, sexe: str, side: str, position: str, rng: random.Random) -> float | None:
    """Une valeur à la position voulue près de la borne ``side`` (« min » ou « max »), arrondie aux
    décimales de l'analyte ; ``None`` si l'arrondi ou les valeurs plausibles l'interdisent."""
    lo, hi = a.bounds(sexe)
    bound = lo if side == "min" else hi
    if round(bound, a.decimales) != bound:
        return None  # borne plus précise que l'affichage : « sur la borne » n'est pas écrivable
    unit = 10**-a.decimales
    band = _normal_band(a, sexe)
    gap = max(unit, round(rng.uniform(*BOUNDARY_GAP) * (band[1] - band[0]), a.decimales))
    inward = 1 if side == "min" else -1  # vers l'intérieur de l'intervalle
    offset = {"juste dedans": inward * gap, "sur la borne": 0.0, "juste dehors": -inward * gap}[position]
    value = round(bound + offset, a.decimales)
    wanted_normal = position != "juste dehors"
    if not a.plausible[0] <= value <= a.plausible[1] or (a.status(value, sexe) == "normal") != wanted_normal:
        return None
    return value


def build_boundary_reports(analytes: dict[str, Analyte], n: int, seed: int = SEED) -> list[dict]:
    """Comptes rendus que le générateur du jeu **n'écrit pas** : chaque valeur est près d'une borne
    de référence — juste dedans (normale), sur la borne (normale : les bornes font partie de
    l'intervalle) ou juste dehors (anormale), à moins de 5 % de l'étendue de référence (ou, pour un
    analyte à une seule borne, de la bande des valeurs normales du générateur) et d'un cran au moins
    de l'affichage (une décimale de l'analyte).

    Le jeu d'instructions laisse toujours cette marge aux valeurs normales (:func:`_sample_value`) :
    ces comptes rendus mesurent un modèle hors de la distribution de son entraînement, là où une
    comparaison pas à pas est la plus longue (les chiffres restent égaux plus longtemps). Même
    schéma que le jeu d'instructions (``id``, ``sexe``, ``age``, ``panel``, ``labels``) ; chaque
    étiquette dit en plus sa ``borne`` (min ou max) et sa ``position``. Déterministe pour une graine.
    """
    if n < 1:
        raise ValueError(f"Nombre de comptes rendus aux bornes : {n} ; il en faut au moins un.")
    rng = random.Random(seed + 5)
    panel_names = sorted(PANELS)
    reports = []
    for i in range(n):
        sexe, age, panel = rng.choice(("homme", "femme")), rng.randint(18, 90), rng.choice(panel_names)
        codes = rng.sample(PANELS[panel], k=min(len(PANELS[panel]), rng.randint(3, 5)))
        labels = []
        for code in codes:
            a = analytes[code]
            sides = [side for side, b in zip(("min", "max"), a.bounds(sexe)) if b is not None]
            tries = [(side, position) for side in sides for position in BOUNDARY_POSITIONS]
            rng.shuffle(tries)
            for side, position in tries:
                value = _near_bound(a, sexe, side, position, rng)
                if value is not None:
                    break
            else:
                continue  # aucune valeur écrivable près des bornes de cet analyte : on passe au suivant
            labels.append(
                {"code": a.code, "analyte": a.nom_court, "valeur": value, "unite": a.unite}
                | {"statut": a.status(value, sexe), "borne": side, "position": position}
            )
        reports.append({"id": f"bornes-{i:03d}", "sexe": sexe, "age": age, "panel": panel, "labels": labels})
    return reports


def restrict_reports(reports: list[dict], codes) -> list[dict]:
    """Les comptes rendus ``reports`` réduits aux valeurs des analytes ``codes`` ; un compte rendu
    qui n'en garde aucune disparaît. Sert à partager des comptes rendus aux bornes par analyte :
    une moitié pour l'entraînement, l'autre pour la mesure (exercice 6 du notebook 08), sans
    qu'une même valeur sur la borne serve aux deux. Les comptes rendus d'origine ne changent pas."""
    codes = set(codes)
    kept = [r | {"labels": [label for label in r["labels"] if label["code"] in codes]} for r in reports]
    return [r for r in kept if r["labels"]]


# ---------------------------------------------------------------------------- longitudinal


def build_longitudinal(analytes: dict[str, Analyte], seed: int = SEED) -> list[dict]:
    """Patients suivis dans le temps ; une ligne par (patient, visite, analyte)."""
    rng = random.Random(seed + 2)
    rows = []
    for p in range(N_PATIENTS):
        pid = f"P{p + 1:04d}"
        sexe = rng.choice(("homme", "femme"))
        age = rng.randint(25, 80)
        n_visits = rng.randint(6, 10)
        start = dt.date(2019, 1, 1) + dt.timedelta(days=rng.randint(0, 3 * 365))
        dates = [start]
        for _ in range(n_visits - 1):
            dates.append(dates[-1] + dt.timedelta(days=rng.randint(60, 270)))
        for code in LONGITUDINAL_ANALYTES:
            a = analytes[code]
            lo, hi = a.bounds(sexe)
            cvi, cva = BIOLOGICAL_VARIATION[code]
            sd = math.hypot(cvi, cva) / 100
            if rng.random() < 0.15:  # point de consigne hors normes (pathologie chronique)
                status = rng.choice([s for s in a.possible_statuses(sexe) if s != "normal"])
                setpoint = _sample_value(a, sexe, status, rng)
            else:
                setpoint = _sample_value(a, sexe, "normal", rng)
            r = rng.random()
            trend = "hausse" if r < 0.12 else "baisse" if r < 0.24 else "stable"
            slope = 0.0 if trend == "stable" else (1 if trend == "hausse" else -1) * rng.uniform(0.06, 0.15)
            rcv = reference_change_value(code)
            step_at = rng.randint(2, n_visits - 1) if rng.random() < 0.06 else None
            # Sauts multiplicatifs en échelle logarithmique : jamais de valeur négative, même pour
            # un analyte très variable (RCV de la TSH ≈ 50 %).
            step = (1 if rng.random() < 0.5 else -1) * rng.uniform(1.3, 2.0) * rcv
            for v, date in enumerate(dates):
                years = (date - dates[0]).days / 365.25
                level = setpoint * (1 + slope * years)
                anomaly = ""
                if step_at is not None and v >= step_at:
                    level *= math.exp(step)
                    anomaly = "rupture" if v == step_at else ""
                value = level * math.exp(rng.gauss(0, sd))
                if not anomaly and v > 0 and rng.random() < 0.04:
                    value *= math.exp((1 if rng.random() < 0.5 else -1) * rng.uniform(1.3, 2.5) * rcv)
                    anomaly = "pic"
                value = max(round(value, a.decimales), 10**-a.decimales)
                rows.append(
                    {
                        "patient_id": pid,
                        "sexe": sexe,
                        "age_inclusion": age,
                        "visite": v + 1,
                        "date": date.isoformat(),
                        "code": code,
                        "valeur": value,
                        "unite": a.unite,
                        "statut": a.status(value, sexe),
                        "anomalie": anomaly,
                        "tendance": trend,
                        "point_consigne": round(setpoint, a.decimales + 1),
                        "pente_relative_par_an": round(slope, 4),
                    }
                )
    return rows


# ---------------------------------------------------------------------------- écriture
#: Styles des questions naturelles (``data/reference/questions_naturelles_fr.csv``), écrites à la main.
NATURAL_STYLES = {
    "profane": "les mots d'un patient (« manque de sel », « sucre dans le sang »)",
    "faute": "tapée vite : fautes, accents oubliés, sans majuscule ni point d'interrogation",
    "marque": "un médicament nommé par sa marque (Levothyrox, Previscan, Lasilix…)",
    "chiffre": "une valeur chiffrée au milieu de la phrase",
    "abrege": "les abréviations d'un clinicien (TGP à 3N, IRC, ATB…)",
    "indirect": "la chose décrite sans son nom : peu de mots en commun avec le passage",
}
NATURAL_FILE = "questions_naturelles_fr.csv"
#: Part de mots communs (indice de Jaccard) au-delà de laquelle une question naturelle est refusée
#: comme quasi-doublon d'une question générée par les gabarits.
NEAR_DUPLICATE = 0.6


@functools.lru_cache(maxsize=None)  # chaque question générée est comparée à chaque question naturelle
def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", _strip_accents(text).lower()))


def jaccard(a: str, b: str) -> float:
    """Part de mots communs à deux questions (sans accents ni casse) : ``|A ∩ B| / |A ∪ B|``."""
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def build_natural(
    corpus: list[dict], templated: list[dict], reference_dir: Path = REFERENCE_DIR, seed: int = SEED
) -> dict[str, list[dict]]:
    """Les questions naturelles, **écrites à la main** (pas par les gabarits), en deux moitiés :
    ``naturel_validation`` (pour les choix) et ``naturel_test`` (rapportée, jamais réglée dessus).

    Chaque ligne du CSV : la question, son ou ses passages pertinents (``HB-basse`` ou
    ``HB-reference|HB-basse``, le premier étant le principal) et son style (:data:`NATURAL_STYLES`).
    Refus, avec le fichier et la ligne : passage inconnu, style inconnu, question en double, ou
    quasi-doublon (:data:`NEAR_DUPLICATE`) d'une question générée (``templated``). Les moitiés sont
    tirées style par style (graine ``seed``) : chaque style est à moitié dans chacune.
    """
    from .data import DatasetValidationError

    path = Path(reference_dir) / NATURAL_FILE
    by_id = {p["passage_id"]: p for p in corpus}
    rows, seen = [], {}
    with path.open(encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            question = (row.get("question") or "").strip()
            if not question:
                raise DatasetValidationError(path, line, "question", "question vide.")
            passages = [p.strip() for p in (row.get("passages") or "").split("|") if p.strip()]
            unknown = [p for p in passages if p not in by_id]
            if not passages or unknown:
                raise DatasetValidationError(
                    path, line, "passages", f"passage(s) inconnu(s) du corpus : {', '.join(unknown) or '(aucun)'}."
                )
            if row.get("style") not in NATURAL_STYLES:
                raise DatasetValidationError(
                    path, line, "style", f"style « {row.get('style')} » inconnu ({', '.join(NATURAL_STYLES)})."
                )
            key = _norm_key(question)
            if key in seen:
                raise DatasetValidationError(path, line, "question", f"même question qu'à la ligne {seen[key]}.")
            seen[key] = line
            rows.append((line, question, passages, row["style"]))
    for line, question, _, _ in rows:
        for t in templated:
            if jaccard(question, t["question"]) >= NEAR_DUPLICATE:
                raise DatasetValidationError(
                    path,
                    line,
                    "question",
                    f"quasi-doublon d'une question générée (« {t['question']} ») : réécrivez-la autrement.",
                )
    rng = random.Random(seed)
    halves: dict[str, list[dict]] = {"naturel_validation": [], "naturel_test": []}
    by_style: dict[str, list] = {}
    for r in rows:
        by_style.setdefault(r[3], []).append(r)
    start = 0
    for style in sorted(by_style):  # chaque style coupé en deux : les deux moitiés ont les mêmes styles
        group = sorted(by_style[style], key=lambda r: (by_id[r[2][0]]["code"], r[0]))
        rng.shuffle(group)
        for i, (_, question, passages, _) in enumerate(group):
            split = ("naturel_validation", "naturel_test")[(start + i) % 2]
            first = by_id[passages[0]]
            halves[split].append(
                {
                    "question": question,
                    "passage_id": passages[0],
                    "passages_pertinents": passages,
                    "code": first["code"],
                    "famille": first["famille"],
                    "aspect": first["aspect"],
                    "style": style,
                }
            )
        start += len(group)
    for split, items in halves.items():
        for i, item in enumerate(items):
            item["pair_id"] = f"{split}-{i:05d}"
    return halves


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def generate(out_dir: Path = DATASET_DIR, reference_dir: Path = REFERENCE_DIR, seed: int = SEED) -> dict:
    """Écrit toutes les vues dans ``out_dir`` et renvoie le manifeste (tailles, empreintes)."""
    load_analytes.cache_clear()
    analytes = load_analytes(Path(reference_dir))
    corpus, retrieval, test_codes, skipped = build_retrieval(analytes, seed)
    described = add_description_pairs(retrieval, analytes, test_codes, seed)
    instructions = build_instructions(analytes, seed)
    longitudinal = build_longitudinal(analytes, seed)
    files = {"corpus.jsonl": _jsonl(corpus)}
    files.update({f"retrieval_{k}.jsonl": _jsonl(v) for k, v in retrieval.items()})
    natural = build_natural(corpus, [p for v in retrieval.values() for p in v], reference_dir, seed)
    files.update({f"retrieval_{k}.jsonl": _jsonl(v) for k, v in natural.items()})
    files.update({f"instructions_{k}.jsonl": _jsonl(v) for k, v in instructions.items()})
    files["longitudinal.csv"] = _csv_text(longitudinal)
    stats = {
        "seed": seed,
        "analytes": len(analytes),
        "test_analytes": test_codes,
        "corpus_passages": len(corpus),
        "retrieval_pairs": {k: len(v) for k, v in retrieval.items()},
        "retrieval_duplicates_skipped": skipped,
        "retrieval_described_pairs": described,
        "retrieval_styles": dict(sorted(Counter(p["style"] for v in retrieval.values() for p in v).items())),
        "natural_questions": {k: len(v) for k, v in natural.items()},
        "natural_styles": dict(sorted(Counter(p["style"] for v in natural.values() for p in v).items())),
        "natural_max_overlap": round(
            max(
                jaccard(q["question"], t["question"])
                for v in natural.values()
                for q in v
                for vt in retrieval.values()
                for t in vt
            ),
            3,
        ),
        "instructions": {k: len(v) for k, v in instructions.items()},
        "instruction_statuses": dict(
            sorted(Counter(lab["statut"] for v in instructions.values() for r in v for lab in r["labels"]).items())
        ),
        "longitudinal_patients": N_PATIENTS,
        "longitudinal_rows": len(longitudinal),
        "longitudinal_anomalies": dict(sorted(Counter(r["anomalie"] or "aucune" for r in longitudinal).items())),
        "files": {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in sorted(files.items())},
    }
    from .datacard import render_card

    files["README.md"] = render_card(stats, analytes)
    files["manifest.json"] = json.dumps(stats, ensure_ascii=False, indent=2) + "\n"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out_dir / name).write_bytes(text.encode("utf-8"))
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.generate", description="Génère le jeu de données synthétique MedAnalyzer-FR."
    )
    parser.add_argument("--out", type=Path, default=DATASET_DIR, help="dossier de sortie")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    stats = generate(args.out, seed=args.seed)
    print(json.dumps({k: v for k, v in stats.items() if k != "files"}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
