"""Le texte français que lit l'étudiant : nombres, typographie, étiquettes ; et la forme de
comparaison des textes (:func:`normalize`). Couche de base : ne connaît aucun chapitre.

* :func:`normalize` — minuscules, sans accents : pour lire statuts, noms d'analytes, mots-clés ;
* :func:`french_float` — virgule décimale (« 0,902 ») pour les nombres affichés ;
* :func:`french_percent` — un pourcentage à la française (0.939 → « 93,9 % ») ;
* :func:`french_int` — un entier avec ses milliers séparés par une espace fine insécable ;
* :func:`french_decimals` — les points décimaux d'une phrase déjà écrite deviennent des virgules ;
* :func:`french_typography` — espaces insécables avant « : ; ? ! » et à l'intérieur des guillemets
  « », hors du code (``…``), des formules ($…$), des liens et des blocs de code ;
* :func:`typography_issues` — ce qui reste à corriger dans un texte (le test des notebooks s'en sert) ;
* :func:`french_typography_rst` / :func:`rst_typography_issues` — les mêmes règles pour la prose des
  pages reStructuredText de la documentation (code, rôles, liens, directives et blocs littéraux
  intacts) ;
* :func:`french_value` / :func:`row_for_display` — une valeur, un enregistrement (``dict``) de
  mesures, écrits à la française pour l'affichage ;
* :func:`for_display` — un tableau relu par le code (clés anglaises, ``snake_case``) avec les
  étiquettes françaises que lit l'étudiant, au moment de l'afficher (:data:`DISPLAY_LABELS`,
  :data:`SPLIT_LABELS`).

Les fichiers que relit du code (CSV, JSON) gardent le point décimal et les espaces ordinaires.
"""

from __future__ import annotations

import re
import unicodedata

NBSP = "\u00a0"
#: Ce qui ne se touche pas : blocs de code, code en ligne, formules, cibles de liens et d'images.
_PROTECTED = re.compile(r"```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$|\]\([^)\s]*\)|<[^>\n]*>", re.S)
#: Une espace ordinaire là où le français veut une insécable.
_BEFORE = re.compile(r" (?=[:;?!](?:\s|$|[)»*_.,]))")
_AFTER_OPENING = re.compile(r"« ")
_BEFORE_CLOSING = re.compile(r" »")


def normalize(text: str) -> str:
    """Forme de comparaison d'un texte : minuscules, sans accents, apostrophe droite
    (« Élevé’e » → « eleve'e »). Sert à lire les statuts, les noms d'analytes et les mots-clés."""
    text = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in text if not unicodedata.combining(c))


def french_float(x: float) -> str:
    """Un nombre à virgule tel qu'on l'écrit en français : virgule décimale, six chiffres
    significatifs au plus, sans zéros inutiles (``0.9021`` → « 0,9021 », ``293.5`` → « 293,5 »)."""
    return f"{x:.6g}".replace(".", ",")


def french_int(n: float) -> str:
    """12345678 → « 12 345 678 » (espace fine insécable entre les milliers, usage français)."""
    return f"{n:,.0f}".replace(",", "\u202f")


def french_percent(x: float, digits: int = 1) -> str:
    """Une proportion en pourcentage, virgule décimale et espace insécable (0.939 → « 93,9 % »)."""
    return f"{100 * x:.{digits}f}".replace(".", ",") + NBSP + "%"


#: Un nombre décimal isolé : ni numéro de version (« 2.13.0 », « v0.3 »), ni morceau de nom.
_DECIMAL = re.compile(r"(?<![\w.])([-+]?\d+)\.(\d+)(?!\w|\.\d)")
_PERCENT = re.compile(r"(?<=\d)%")


def french_decimals(text: str) -> str:
    """Dans une phrase affichée : « 0.902 » → « 0,902 », « 93.9% » → « 93,9 % ». Les numéros de
    version (« torch 2.13.0 », « v0.3 ») et les noms (« model.safetensors ») ne changent pas."""
    return _PERCENT.sub(NBSP + "%", _DECIMAL.sub(r"\1,\2", text))


def _unprotected(text: str, protected: re.Pattern = _PROTECTED):
    """Les morceaux de ``text`` hors zones ``protected``, avec leur position : ``(début, morceau,
    zone protégée qui suit)``."""
    start = 0
    for match in protected.finditer(text):
        yield start, text[start : match.start()], match.group(0)
        start = match.end()
    yield start, text[start:], ""


def _fix_free(text: str, protected: re.Pattern = _PROTECTED) -> str:
    """Les insécables posées dans ``text``, hors zones ``protected``."""
    out = []
    for _, free, kept in _unprotected(text, protected):
        free = _BEFORE.sub(NBSP, free)
        free = _AFTER_OPENING.sub("«" + NBSP, free)
        free = _BEFORE_CLOSING.sub(NBSP + "»", free)
        out.append(free + kept)
    return "".join(out)


def _free_issues(text: str, context: int, protected: re.Pattern = _PROTECTED) -> list[str]:
    """Les passages de ``text`` (hors zones ``protected``) où manque une insécable."""
    issues = []
    for start, free, _ in _unprotected(text, protected):
        for pattern in (_BEFORE, _AFTER_OPENING, _BEFORE_CLOSING):
            for match in pattern.finditer(free):
                at = start + match.start()
                issues.append(text[max(0, at - context) : at + context].replace("\n", " "))
    return issues


def french_typography(text: str) -> str:
    """``text`` avec des espaces insécables avant « : ; ? ! », après « « » et avant « » », sauf
    dans le code, les formules et les liens (Markdown)."""
    return _fix_free(text)


def typography_issues(text: str, context: int = 25) -> list[str]:
    """Les passages de ``text`` (hors code, formules et liens) où une espace ordinaire se trouve là
    où le français veut une insécable ; liste vide si tout est juste."""
    return _free_issues(text, context)


#: Ce qui ne se touche pas dans du reStructuredText : code en ligne, rôles, liens, substitutions, URL.
_RST_PROTECTED = re.compile(r"``.+?``|:[\w:+-]+:`[^`]*`|`[^`]*`__?|`[^`]*`|\|[^|\n]+\||https?://\S+", re.S)
#: Directives dont le contenu est du code ou une formule : on n'y touche pas.
_RST_LITERAL_DIRECTIVES = {
    "code-block",
    "code",
    "sourcecode",
    "literalinclude",
    "math",
    "raw",
    "highlight",
    "parsed-literal",
    "doctest",
    "testcode",
    "testoutput",
}
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\. ([\w-]+)::")
_RST_FIELD = re.compile(r"^\s*:[\w -]+:(\s|$)")


def _rst_chunks(text: str):
    """Découpe un texte reStructuredText en ``(est_de_la_prose, morceau)`` : la prose d'un côté ; les
    blocs littéraux (après « :: » ou une directive de code), les lignes de directive, d'option et
    de commentaire de l'autre."""
    prose: list[str] = []
    literal_indent = None
    for line in text.splitlines(keepends=True):
        indent = len(line) - len(line.lstrip(" "))
        if literal_indent is not None:
            if not line.strip() or indent > literal_indent:
                yield False, line
                continue
            literal_indent = None
        directive = _RST_DIRECTIVE.match(line)
        if directive or line.lstrip().startswith(".. ") or _RST_FIELD.match(line):
            if prose:
                yield True, "".join(prose)
                prose = []
            yield False, line
            if directive and directive.group(2) in _RST_LITERAL_DIRECTIVES:
                literal_indent = indent
            continue
        prose.append(line)
        if line.rstrip().endswith("::"):
            yield True, "".join(prose)
            prose = []
            literal_indent = indent
    if prose:
        yield True, "".join(prose)


def french_typography_rst(text: str) -> str:
    """:func:`french_typography` pour une page reStructuredText (documentation Sphinx) : la prose
    seulement, jamais le code en ligne, les rôles, les liens, les directives ni les blocs littéraux."""
    return "".join(_fix_free(chunk, _RST_PROTECTED) if is_prose else chunk for is_prose, chunk in _rst_chunks(text))


def rst_typography_issues(text: str, context: int = 25) -> list[str]:
    """Les passages de prose d'une page reStructuredText à corriger (voir :func:`french_typography_rst`)."""
    return [
        issue
        for is_prose, chunk in _rst_chunks(text)
        if is_prose
        for issue in _free_issues(chunk, context, _RST_PROTECTED)
    ]


def fix_notebook(path) -> int:
    """Applique :func:`french_typography` aux cellules Markdown d'un notebook ; renvoie le nombre de
    cellules modifiées. Le reste du fichier (code, identifiants, métadonnées) est intact."""
    import json
    from pathlib import Path

    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    changed = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        before = "".join(cell["source"])
        after = french_typography(before)
        if after != before:
            cell["source"] = after.splitlines(keepends=True)
            changed += 1
    if changed:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


#: Étiquettes françaises des clés que le code écrit et relit (colonnes des CSV, noms de modèles) :
#: appliquées seulement à l'affichage (:func:`for_display`), jamais aux fichiers.
DISPLAY_LABELS = {
    # qui, quoi
    "model": "modèle",
    "arm": "bras",
    "approach": "approche",
    "variant": "variante",
    "baseline": "départ",
    "measure": "mesure",
    "profile": "profil",
    "split": "jeu",  # train, validation ou un jeu de test : le mot vaut pour tous
    "dim": "dimension",
    "full_dim": "pleine dimension",
    "precision": "précision",
    "reference": "référence",
    "role": "rôle",  # aspects des passages du corpus (generate.ASPECTS)
    "prelevement": "prélèvement",
    "finetuned": "fine-tuné",
    "base_few_shot": "base (few-shot)",
    "constante": "réponse constante",
    "readable_status": "statut lisible",
    "most_given_status": "statut le plus donné",
    "most_given_share": "part de ce statut",
    "constant_answer_accuracy": "exactitude de la réponse constante",
    "format_etranger": "format étranger",
    "query_kind": "requête",
    "language": "langue",
    "answer": "réponse",
    "expected": "attendu",
    "predicted": "prédit",
    "family": "famille",
    "view": "vue",
    "rows": "lignes",
    "description": "description",
    # comptes
    "n_cases": "comptes rendus",
    "n_values": "valeurs",
    "values": "valeurs",
    "queries": "requêtes",
    "pairs": "paires",
    "steps": "pas",
    "drills": "exercices",
    "vectors": "vecteurs",
    "candidates": "candidats",
    "examples_seen": "exemples vus",
    "trainable_params": "paramètres entraînés",
    "total_params": "paramètres au total",
    # qualité
    "accuracy": "exactitude",
    "accuracy_at_1": "exactitude@1",
    "ndcg_at_10": "NDCG@10",
    "mrr_at_10": "MRR@10",
    "recall_at_10": "rappel@10",
    "ndcg_natural": "NDCG@10 (questions naturelles)",
    "ndcg_natural_base": "NDCG@10 naturel (base)",
    "ndcg_full": "NDCG@10 pleine dimension",
    "ndcg_dim": "NDCG@10 à cette dimension",
    "ndcg_base": "NDCG@10 base",
    "ndcg_finetuned": "NDCG@10 fine-tuné",
    "ndcg_validation": "NDCG@10 validation",
    "ndcg_test_questions": "NDCG@10 test (questions)",
    "ndcg_test_analytes": "NDCG@10 test (analytes)",
    "ndcg_naturel_test": "NDCG@10 test (naturel)",
    "retention_pct": "rétention (%)",
    "base_score": "score initial",
    "final_score": "score final",
    "gain_pct": "gain (%)",
    "gap": "écart",
    "ci_low": "IC 95 % bas",
    "ci_high": "IC 95 % haut",
    "low": "IC 95 % bas",
    "high": "IC 95 % haut",
    "significant": "significatif",
    "status_accuracy": "exactitude des statuts",
    "status_accuracy_low": "exactitude IC bas",
    "status_accuracy_high": "exactitude IC haut",
    "eval_loss": "perte de validation",
    "fluent_french_loss": "perte (français courant)",
    "baseline_value": "valeur de départ",
    "arm_value": "valeur du bras",
    "hit_at_1": "succès@1",
    "hit_at_3": "succès@3",
    "hit_at_1_low": "succès@1 IC bas",
    "hit_at_1_high": "succès@1 IC haut",
    "recall": "rappel",
    "recall_low": "rappel « bas »",
    "recall_normal": "rappel « normal »",
    "recall_high": "rappel « élevé »",
    "unparsed": "introuvables",
    "reasoning_correct": "raisonnement juste",
    "status_follows_reasoning": "statut conforme au raisonnement",
    "true_positives": "vrais positifs",
    "false_positives": "faux positifs",
    "misses": "manqués",
    "last_value": "dernière valeur",
    "linear_trend": "tendance linéaire",
    "exponential_smoothing": "lissage exponentiel",
    # coûts
    "seconds": "secondes",
    "train_seconds": "entraînement (s)",
    "generation_seconds": "génération (s)",
    "latency_ms": "latence (ms)",
    "peak_rss_mb": "pic RSS (Mo)",
    "peak_gpu_mb": "pic GPU (Mo)",
    "own_memory_mb": "mémoire propre (Mo)",
    "artifact_mb": "artefact (Mo)",
    "start_mb": "départ (Mo)",
    "load_mb": "chargement (Mo)",
    "peak_mb": "pic (Mo)",
    "own_mb": "propre au bras (Mo)",
    "bytes_per_vector": "octets par vecteur",
    "theoretical_bytes": "octets théoriques",
    "mb_per_million": "Mo par million",
    "index_share_pct": "part de l'index (%)",
    # assistant (notebook 08)
    "code": "code",
    "analyte": "analyte",
    "value": "valeur",
    "rule_status": "statut (règle)",
    "model_status": "statut (modèle)",
    "agrees": "concordant",
    "source": "passage",
    "explanation": "ce que dit le passage",
    "setting": "réglage",
    "build_seconds": "construction (s)",
    "file_bytes": "taille du fichier (octets)",
    "load_ms": "chargement (ms)",
    "explanation_found": "passage explicatif premier",
    "report": "compte rendu",
    "p50_s": "latence p50 (s)",
    "p95_s": "latence p95 (s)",
    "mean_s": "latence moyenne (s)",
    "answers_per_minute": "réponses par minute",
    "reports": "comptes rendus",
    "weights_mb": "poids en mémoire (Mo)",
    "same_status": "statuts identiques au 4 bits",
    "shown_as_is": "réponse du modèle montrée",
    "agreement": "statuts concordants",
    "position": "position de la valeur",
    "lab_status": "statut (laboratoire)",
    "fausses_alertes": "fausses alertes",
    "taux": "taux de fausses alertes",
    "questions_fr": "questions (fr)",
    "questions_fr_low": "questions (fr) IC bas",
    "questions_fr_high": "questions (fr) IC haut",
    "questions_en": "questions (en)",
    "questions_en_low": "questions (en) IC bas",
    "questions_en_high": "questions (en) IC haut",
    "n": "effectif",
    "bound": "borne",
    "constant_status": "statut constant",
    "constant_agreement": "réponse constante",
    # étude des variantes d'embeddings (notebook 02, helpers.embedding_study)
    "min_natural_gap": "plus petit écart (questions naturelles)",
    "mean_natural_ndcg": "NDCG@10 moyen (questions naturelles)",
    "mean_templated_gain": "gain moyen (questions générées)",
    # référence d'un changement significatif (notebook 07, helpers.longitudinal.flag_changes)
    "previous": "visite précédente",
    "median": "médiane des visites précédentes",
    # mémoire par format (notebook 04, helpers.memory)
    "octets_par_poids_lineaire": "octets par poids (couches linéaires)",
    "go": "Go",
    "mb": "Mo",
    "fp32_ratio": "rapport à fp32",
    # étanchéité des splits (notebook 01, helpers.data.split_integrity)
    "validation_questions_in_train": "questions de validation déjà à l'entraînement",
    "validation_groups_in_train": "groupes (passage, gabarit) de validation déjà à l'entraînement",
    "test_questions_questions_in_train": "questions inédites déjà à l'entraînement",
    "test_questions_groups_in_train": "groupes (passage, gabarit) des questions inédites à l'entraînement",
    "test_analytes_questions_in_train": "questions des analytes inédits déjà à l'entraînement",
    "test_analytes_groups_in_train": "groupes (passage, gabarit) des analytes inédits à l'entraînement",
    "test_analytes_seen_in_training": "analytes inédits vus à l'entraînement ou en validation",
}


def for_display(table, labels: dict | None = None):
    """Copie de ``table`` (``DataFrame``) pour l'affichage : noms de colonnes et d'index, valeurs des
    en-têtes et des colonnes de texte traduits par :data:`DISPLAY_LABELS` (ou ``labels``), booléens
    écrits « oui » / « non » ; le reste est inchangé. Les fichiers gardent leurs clés : on ne traduit
    qu'au moment d'afficher."""
    labels = DISPLAY_LABELS if labels is None else labels

    def label(x):
        return labels.get(x, x) if isinstance(x, str) else x

    from pandas.api.types import is_bool_dtype, is_object_dtype, is_string_dtype

    out = table.copy()
    for col in out.columns:
        if is_bool_dtype(out[col]):
            out[col] = out[col].map({True: "oui", False: "non"})
        elif is_object_dtype(out[col]) or is_string_dtype(out[col]):
            out[col] = out[col].map(label)
    out = out.rename(columns=label, index=label)
    out.columns = out.columns.set_names([label(n) for n in out.columns.names])
    out.index = out.index.set_names([label(n) for n in out.index.names])
    return out


def french_value(x) -> str:
    """Une valeur affichée à la française : entier avec ses milliers séparés (« 4 884 480 »), de
    même pour un nombre à virgule à partir de 1 000 (arrondi à l'unité), en dessous six chiffres
    significatifs au plus (:func:`french_float`), « — » pour une mesure absente (``None``, NaN), texte
    traduit par :data:`DISPLAY_LABELS` ; booléens « oui » / « non »."""
    import math
    import numbers

    import numpy as np

    if isinstance(x, (bool, np.bool_)):  # bool de Python ou de numpy
        return "oui" if x else "non"
    if x is None or (isinstance(x, numbers.Real) and math.isnan(x)):
        return "—"
    if isinstance(x, numbers.Integral):
        return french_int(x)
    if isinstance(x, numbers.Real):
        return french_int(x) if abs(x) >= 1000 else french_float(float(x))  # 10 349,96 → « 10 350 »
    if isinstance(x, str):
        return DISPLAY_LABELS.get(x, x)
    return str(x)


def row_for_display(row: dict, name: str = "valeur"):
    """Un enregistrement (``dict`` de mesures, clés anglaises) en tableau d'une colonne pour
    l'affichage : une ligne par clé, étiquette française (:data:`DISPLAY_LABELS`), valeur écrite par
    :func:`french_value`. Le ``dict`` lui-même ne change pas : c'est lui que le code relit."""
    import pandas as pd

    return pd.DataFrame(
        {name: [french_value(v) for v in row.values()]},
        index=pd.Index([DISPLAY_LABELS.get(k, k) for k in row], name="mesure"),
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m helpers.text",
        description="Typographie française des cellules Markdown des notebooks et des pages .rst de la documentation.",
    )
    parser.add_argument(
        "--fix", nargs="+", metavar="NOTEBOOK", required=True, help="notebooks (.ipynb) ou pages (.rst) à corriger"
    )
    args = parser.parse_args(argv)
    for name in args.fix:
        if name.endswith(".rst"):
            from pathlib import Path

            path = Path(name)
            before = path.read_text(encoding="utf-8")
            after = french_typography_rst(before)
            if after != before:
                path.write_text(after, encoding="utf-8")
            print(f"{name} : {'corrigé' if after != before else 'rien à corriger'}")
        else:
            print(f"{name} : {fix_notebook(name)} cellule(s) corrigée(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


SPLIT_LABELS = {
    "test_questions": "questions inédites",
    "test_analytes": "analytes inédits",
    "naturel_test": "questions naturelles, écrites à la main",
    "validation": "validation",
    "naturel_validation": "questions naturelles (validation)",
}
