"""Typographie française des textes que lit l'étudiant (notebooks)."""

import json

import pytest
from notebook_code import python_code

from helpers.paths import NOTEBOOKS_DIR
from helpers.paths import REPO_ROOT as ROOT
from helpers.text import NBSP, french_typography, typography_issues

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb")) + sorted((NOTEBOOKS_DIR / "solutions").glob("*.ipynb"))


def test_french_typography_spares_code_formulas_and_links():
    text = (
        "Objectif : mesurer ; vraiment ? Oui ! « citation » `a : b` $x : y$ [lien](http://x.fr/a?b) "
        "voir :doc:`gpu`\n```\nx = {'a' : 1}\n```\nfin :"
    )
    fixed = french_typography(text)
    assert f"Objectif{NBSP}: mesurer{NBSP}; vraiment{NBSP}? Oui{NBSP}! «{NBSP}citation{NBSP}»" in fixed
    assert "`a : b`" in fixed and "$x : y$" in fixed and "(http://x.fr/a?b)" in fixed
    assert "voir :doc:`gpu`" in fixed and "{'a' : 1}" in fixed and fixed.endswith(f"fin{NBSP}:")
    assert typography_issues(fixed) == [] and len(typography_issues(text)) == 7
    assert french_typography(fixed) == fixed  # idempotent


def _cell_findings(nb, cell_type: str, check) -> list[str]:
    """« cellule i : constat » pour chaque constat de ``check(texte)`` dans les cellules
    ``cell_type`` (``markdown`` ou ``code``) du notebook ``nb``."""
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return [
        f"cellule {i} : {finding}"
        for i, cell in enumerate(cells)
        if cell["cell_type"] == cell_type
        for finding in check("".join(cell["source"]))
    ]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prose_follows_french_typography(nb):
    issues = _cell_findings(nb, "markdown", lambda text: [f"…{snippet}…" for snippet in typography_issues(text)])
    assert not issues, (
        f"{nb.name} : espace ordinaire avant « : ; ? ! » ou dans « » "
        f"(python -m helpers.text --fix {nb.name}) :\n" + "\n".join(issues[:10])
    )


def test_french_percent_and_decimals():
    from helpers.text import french_decimals, french_int, french_percent

    assert french_int(21639552) == "21\u202f639\u202f552" and french_int(999) == "999"

    assert french_percent(0.939) == "93,9\u00a0%" and french_percent(0.5, 0) == "50\u00a0%"
    assert french_decimals("exactitude 93.9% (0.902) NDCG@10") == "exactitude 93,9\u00a0% (0,902) NDCG@10"
    assert french_decimals("écart -0.5 ; +1.05.") == "écart -0,5 ; +1,05."
    kept = "torch 2.13.0, mistral-7b-v0.3, model.safetensors, 192.168.0.1"
    assert french_decimals(kept) == kept


def test_for_display_translates_keys_only_on_a_copy():
    import pandas as pd

    from helpers.text import for_display

    table = pd.DataFrame({"model": ["base", "finetuned"], "accuracy": [0.1, 0.9], "note": ["finetuned", "x"]})
    shown = for_display(table)
    assert list(shown.columns) == ["modèle", "exactitude", "note"]
    assert list(shown["modèle"]) == ["base", "fine-tuné"] and list(table["model"]) == ["base", "finetuned"]
    assert list(for_display(table.assign(ok=[True, False]))["ok"]) == ["oui", "non"]
    pivot = for_display(table.pivot_table(index="note", columns="model", values="accuracy"))
    assert list(pivot.columns) == ["base", "fine-tuné"] and pivot.columns.name == "modèle"


def test_rst_typography_keeps_code_and_fixes_prose():
    from helpers.text import french_typography_rst, rst_typography_issues

    page = (
        "Titre : voir\n============\n\nLancez ``a : b`` puis :doc:`x` ; lien `t <https://a.b/?q=1>`_ !\n\n"
        "Exemple ::\n\n    a = {1 : 2} ; b ?\n\n.. code-block:: bash\n\n   echo \"x : y\"\n\nFin : ok\n"
    )
    fixed = french_typography_rst(page)
    assert "Titre\u00a0: voir" in fixed and "``a : b``" in fixed and ":doc:`x`\u00a0;" in fixed
    assert "a = {1 : 2} ; b ?" in fixed and 'echo "x : y"' in fixed and "Fin\u00a0: ok" in fixed
    assert len(rst_typography_issues(page)) == 4 and rst_typography_issues(fixed) == []


@pytest.mark.parametrize("page", [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))], ids=lambda p: p.name)
def test_docs_pages_follow_french_typography(page):
    """Espaces insécables dans la prose des pages (``python -m helpers.text --fix README.rst docs/*.rst``)."""
    from helpers.text import rst_typography_issues

    assert rst_typography_issues(page.read_text(encoding="utf-8")) == []


def test_normalize_drops_case_accents_and_curly_apostrophes():
    from helpers.text import normalize

    assert normalize("Élevée d’après") == "elevee d'apres"
    assert normalize("µg/L") == "μg/l"  # le micro devient la lettre grecque mu (NFKD), que user_data._key réécrit


#: Ce qui écrit un nombre à la française : un nombre formaté à l'intérieur de ces appels est correct.
FRENCH_WRITERS = {"french_decimals", "french_float", "french_percent", "french_int"}


def _decimal_specs_outside_french_writers(source: str) -> list[str]:
    """Les champs d'f-string de ``source`` passés à ``print`` et formatés avec une partie décimale
    (``:.3f``, ``:.1e``, ``:g``, ``:%``) hors d'un appel de :data:`FRENCH_WRITERS` et d'un
    ``.replace(".", ",")`` : ils afficheraient un point décimal. Les lignes magiques (``!``, ``%``) sont ignorées."""
    import ast
    import re

    tree = ast.parse(python_code(source))
    covered = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", None))
        comma = name == "replace" and [getattr(a, "value", None) for a in node.args] == [".", ","]
        if name in FRENCH_WRITERS or comma:  # french_decimals(f"…") ou f"…".replace(".", ",")
            covered.update(id(sub) for sub in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"):
            continue
        for sub in (s for arg in node.args for s in ast.walk(arg)):
            if isinstance(sub, ast.FormattedValue) and sub.format_spec is not None and id(sub) not in covered:
                spec = "".join(v.value for v in sub.format_spec.values if isinstance(v, ast.Constant))
                if re.search(r"\.[1-9]\d*f$|[eEgG%]$", spec):
                    found.append(ast.unparse(sub))
    return found


def test_decimal_check_sees_points_and_spares_french_writers():
    assert _decimal_specs_outside_french_writers('print(f"{x:.2f} s, {n:.0f} pas, {p:.0%}")') == ["{x:.2f}", "{p:.0%}"]
    assert _decimal_specs_outside_french_writers('print(french_decimals(f"{x:.2f} s"))\n!pip x') == []
    assert _decimal_specs_outside_french_writers('print(f"{x:.2f} s".replace(".", ","))') == []
    assert _decimal_specs_outside_french_writers('label = f"{x:.2f}"') == []  # pas affiché par print


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_printed_decimals_use_a_comma(nb):
    """Un nombre décimal imprimé par un notebook passe par ``french_decimals`` (ou ``french_float``…) :
    « 0,4720 », pas « 0.4720 » (les tableaux pandas ont déjà la virgule, :func:`helpers.setup_course`)."""
    found = _cell_findings(nb, "code", _decimal_specs_outside_french_writers)
    assert found == [], found


def test_row_for_display_writes_each_value_in_french_and_keeps_the_dict():
    import numpy as np

    from helpers.text import french_value, row_for_display

    row = {
        "arm": "A",
        "trainable_params": 21639552,
        "train_seconds": 375.2,
        "ndcg_natural": np.float64(0.609959),
        "peak_rss_mb": 1375.0,
        "latency_ms": None,
        "eval_loss": float("nan"),
        "agrees": True,
    }
    shown = row_for_display(row, "A")
    assert list(shown.index)[:3] == ["bras", "paramètres entraînés", "entraînement (s)"]
    assert list(shown["A"]) == ["A", "21\u202f639\u202f552", "375,2", "0,609959", "1\u202f375", "—", "—", "oui"]
    assert row["train_seconds"] == 375.2 and "arm" in row  # le dict ne change pas
    assert french_value(0.5) == "0,5" and french_value(np.int64(12)) == "12" and french_value(3.0) == "3"
    assert french_value(10349.959) == "10\u202f350" and french_value(487.429534) == "487,43"
    assert french_value(np.bool_(False)) == "non"


def test_display_labels_leave_the_margin_words_alone():
    """Les étiquettes valent pour tous les tableaux affichés : un mot courant des marges (« total » de
    ``pd.crosstab``, notebooks 01 et 07) n'y est pas traduit par le sens qu'il a ailleurs."""
    import pandas as pd

    from helpers.text import DISPLAY_LABELS, for_display

    table = pd.crosstab(
        pd.Series(["a", "b"], name="split"), pd.Series(["x", "y"], name="style"), margins=True, margins_name="total"
    )
    assert "total" not in DISPLAY_LABELS and "total" in for_display(table).columns
