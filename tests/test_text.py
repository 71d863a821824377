"""Typographie française des textes que lit l'étudiant (notebooks)."""

import json

import pytest

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


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prose_follows_french_typography(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    issues = [
        f"cellule {i} : …{snippet}…"
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown"
        for snippet in typography_issues("".join(c["source"]))
    ]
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
