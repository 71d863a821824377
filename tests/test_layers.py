"""Les couches du paquet ``helpers`` (:data:`helpers.LAYERS`) : chaque module n'importe que sa
couche et celles du dessous, un chapitre n'importe pas d'utilitaire d'un autre chapitre, et les
notebooks non plus. Les imports sont lus par ``ast`` (y compris ceux placés dans les fonctions)."""

from __future__ import annotations

import ast
import json
from collections import defaultdict

import pytest
from notebook_code import python_code

from helpers import CHAPTERS, LAYERS
from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT

ORDER = list(LAYERS)
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}

#: Imports qui franchissent une règle, voulus : (importeur, module importé) → raison.
ALLOWED = {
    ("profiles", "stepwise"): "le profil cpu configure la tâche pas à pas avec la consigne de ce chapitre",
    ("data", "user_data"): "le schéma « resultats » valide une ligne par la règle de vos fichiers (import tardif)",
}

#: Un notebook (ou sa solution) peut relire ce qu'un chapitre précédent a produit : le modèle,
#: les résultats, le prompt du modèle fine-tuné. (chapitre du notebook, module) → raison.
NOTEBOOK_ALLOWED = {
    ("06", "embeddings"): "le bras A est le modèle, l'évaluateur et les résultats du notebook 02",
    ("06", "llm"): "le bras B est interrogé avec le prompt du notebook 05",
    ("06", "qlora"): "le bras B est l'adaptateur du notebook 04 et ses résultats du notebook 05",
    ("07", "embeddings"): "l'étude de cas cherche les passages avec le modèle du notebook 02",
    ("07", "llm"): "le modèle fine-tuné est interrogé avec le prompt du notebook 05",
    ("07", "qlora"): "l'adaptateur du notebook 04 et les réponses du notebook 05",
    ("08", "embeddings"): "l'assistant cherche avec le modèle fine-tuné du notebook 02",
    ("08", "llm"): "l'assistant génère avec le tokenizer de génération du notebook 05",
    ("08", "qlora"): "l'assistant répond avec l'adaptateur du notebook 04",
    ("08", "stepwise"): "l'exercice 5 relit le raisonnement pas à pas avec l'outil du notebook 05",
}


def imported_modules(tree: ast.AST) -> dict[str, set[str]]:
    """Modules de ``helpers`` importés (``from .x``, ``from helpers.x``, ``from helpers import x``)
    et les noms importés de chacun."""
    found: dict[str, set[str]] = defaultdict(set)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        names = {a.name for a in node.names}
        if node.level == 1 and node.module:
            found[node.module.split(".")[0]] |= names
        elif node.level == 1 or node.module == "helpers":
            for name in names:
                found[name if name in LAYER_OF else "__init__"].add(name)
        elif node.module and node.module.startswith("helpers."):
            found[node.module.split(".")[1]] |= names
    return found


def module_imports(module: str) -> dict[str, set[str]]:
    tree = ast.parse((REPO_ROOT / "helpers" / f"{module}.py").read_text(encoding="utf-8"))
    return {m: n for m, n in imported_modules(tree).items() if m not in (module, "__init__")}


def violations(module: str, imports) -> list[str]:
    """Les imports de ``module`` qui montent d'une couche, ou vont dans un autre chapitre."""
    layer = LAYER_OF[module]
    found = []
    for target in imports:
        if (module, target) in ALLOWED or LAYER_OF[target] == "outils" and layer == "outils":
            continue
        if ORDER.index(LAYER_OF[target]) > ORDER.index(layer):
            found.append(f"{module} ({layer}) importe {target} ({LAYER_OF[target]})")
        elif module in CHAPTERS and target in CHAPTERS and CHAPTERS[module] != CHAPTERS[target]:
            found.append(f"{module} (chapitre {CHAPTERS[module]}) importe {target} (chapitre {CHAPTERS[target]})")
        elif layer == "base" and LAYER_OF[target] != "base":
            found.append(f"{module} (base) importe {target}")
    return found


def test_every_module_has_one_layer_and_every_chapter_module_a_chapter():
    modules = {p.stem for p in (REPO_ROOT / "helpers").glob("*.py")} - {"__init__"}
    listed = [m for ms in LAYERS.values() for m in ms]
    assert sorted(listed) == sorted(modules), "chaque module de helpers/ dans exactement une couche de LAYERS"
    assert set(CHAPTERS) == set(LAYERS["chapitres"]) | set(LAYERS["comparaisons"])


@pytest.mark.parametrize("module", sorted(LAYER_OF))
def test_modules_import_only_their_layer_and_below(module):
    assert violations(module, module_imports(module)) == []


def test_the_layer_check_can_fail():
    """Une base qui importerait un chapitre, ou un chapitre l'utilitaire d'un autre, est signalée."""
    assert violations("memory", {"qlora": {"in_batches"}}) == ["memory (base) importe qlora (chapitres)"]
    assert violations("compare", {"embeddings": {"SPLIT_LABELS"}}) == [
        "compare (chapitre 06) importe embeddings (chapitre 02-03)"
    ]
    assert set(ALLOWED) <= {(m, t) for m in LAYER_OF for t in module_imports(m)}, "exception devenue inutile"


def _notebooks():
    lessons = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    return lessons + sorted((NOTEBOOKS_DIR / "solutions").glob("*.ipynb"))


def notebook_imports(path) -> dict[str, set[str]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join(python_code("".join(c["source"])) for c in cells if c["cell_type"] == "code")
    return imported_modules(ast.parse(code))


def notebook_violations(number: str, imports) -> list[str]:
    found = []
    for target in imports:
        if target not in CHAPTERS:
            continue
        if number not in CHAPTERS[target] and (number, target) not in NOTEBOOK_ALLOWED:
            found.append(
                f"notebook {number} importe {target} (chapitre {CHAPTERS[target]}) : {sorted(imports[target])}"
            )
    return found


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebooks_take_utilities_from_the_base_not_from_other_chapters(path):
    assert notebook_violations(path.name[:2], notebook_imports(path)) == []


def test_the_notebook_check_can_fail():
    assert notebook_violations("02", {"qlora": {"memory_snapshot"}}) == [
        "notebook 02 importe qlora (chapitre 04-05) : ['memory_snapshot']"
    ]
    used = {(p.name[:2], m) for p in _notebooks() for m in notebook_imports(p)}
    assert set(NOTEBOOK_ALLOWED) <= used, "exception devenue inutile"
