"""Typographie française des textes que lit l'étudiant (notebooks)."""
import json

import pytest

from helpers.paths import NOTEBOOKS_DIR
from helpers.text import NBSP, french_typography, typography_issues

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb")) + sorted((NOTEBOOKS_DIR / "solutions").glob("*.ipynb"))


def test_french_typography_spares_code_formulas_and_links():
    text = ("Objectif : mesurer ; vraiment ? Oui ! « citation » `a : b` $x : y$ [lien](http://x.fr/a?b) "
            "voir :doc:`gpu`\n```\nx = {'a' : 1}\n```\nfin :")
    fixed = french_typography(text)
    assert f"Objectif{NBSP}: mesurer{NBSP}; vraiment{NBSP}? Oui{NBSP}! «{NBSP}citation{NBSP}»" in fixed
    assert "`a : b`" in fixed and "$x : y$" in fixed and "(http://x.fr/a?b)" in fixed
    assert "voir :doc:`gpu`" in fixed and "{'a' : 1}" in fixed and fixed.endswith(f"fin{NBSP}:")
    assert typography_issues(fixed) == [] and len(typography_issues(text)) == 7
    assert french_typography(fixed) == fixed  # idempotent


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prose_follows_french_typography(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    issues = [f"cellule {i} : …{snippet}…" for i, c in enumerate(cells) if c["cell_type"] == "markdown"
              for snippet in typography_issues("".join(c["source"]))]
    assert not issues, (f"{nb.name} : espace ordinaire avant « : ; ? ! » ou dans « » "
                        f"(python -m helpers.text --fix {nb.name}) :\n" + "\n".join(issues[:10]))
