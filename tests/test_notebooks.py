"""Les notebooks du dépôt : sans sorties, et chacun est une leçon complète qui démarre pareil."""

import json

import pytest
from notebook_code import python_code

from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SOLUTIONS = sorted((NOTEBOOKS_DIR / "solutions").glob("*.ipynb"))


#: Longueur maximale d'une cellule de code (les configurations formatées par ruff, un argument par ligne).
MAX_CELL_LINES = 30


def test_there_are_notebooks():
    assert any(nb.name.startswith("01_") for nb in NOTEBOOKS)


@pytest.mark.parametrize("nb", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_committed_without_outputs(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{nb.name}, cellule {i} : sorties enregistrées"
            assert cell.get("execution_count") is None, f"{nb.name}, cellule {i} : execution_count enregistré"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_structure(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells)
    first_md = "".join(cells[0]["source"])
    assert (
        f"colab.research.google.com/github/medanalyzer-fr/cours-finetuning-medical/blob/main/notebooks/{nb.name}"
        in first_md
    )
    assert "Objectifs" in first_md
    code = [("".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    assert "google.colab" in code[0]  # cellule d'installation Colab
    assert "setup_course(" in code[1]  # la première cellule utile affiche le profil et sa raison
    assert "Exercices" in text
    # 30 lignes : ruff format écrit un argument par ligne dans les configurations (SFTConfig…)
    assert max(len(c.splitlines()) for c in code) <= MAX_CELL_LINES, "cellule de code trop longue pour une leçon"


def test_colab_install_files_exist():
    for name in ("requirements-gpu.txt", "requirements-nodeps.txt", "requirements.txt"):
        assert (REPO_ROOT / name).exists()
    gpu = (REPO_ROOT / "requirements-gpu.txt").read_text(encoding="utf-8")
    assert "unsloth==" in gpu and "trl==1.15.0" not in gpu
    cpu = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert not any(line.lower().startswith("unsloth") for line in cpu.splitlines())
    assert "torch==2.13.0" in cpu and "trl==1.15.0" not in cpu


#: Modules que la cellule de ``setup_course`` peut importer avant l'appel : ils n'importent aucune
#: bibliothèque lourde (test ci-dessous), si bien que les messages connus et sans conséquence émis
#: à l'import de bitsandbytes ou de transformers sont déjà filtrés quand ils arrivent.
LIGHT_MODULES = {"helpers", "helpers.runtime"}


@pytest.mark.parametrize("nb", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_setup_course_comes_before_heavy_imports(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    source = next(
        "".join(c["source"]) for c in cells if c["cell_type"] == "code" and "setup_course(" in "".join(c["source"])
    )
    before = source[: source.index("setup_course(")]
    modules = {line.split()[1] for line in before.splitlines() if line.startswith(("from ", "import "))}
    assert modules <= LIGHT_MODULES, f"{nb.name} : {sorted(modules - LIGHT_MODULES)} importé(s) avant setup_course"


def test_light_modules_import_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys; import "
        + ", ".join(sorted(LIGHT_MODULES))
        + "; print(sorted(m for m in ('torch', 'transformers', 'bitsandbytes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "[]"


def _exercise_numbers(nb) -> list[int]:
    """Numéros des exercices de la section « Exercices » d'une leçon (liste numérotée « 1. … »)."""
    import re

    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    text = next(
        "".join(c["source"]) for c in cells if c["cell_type"] == "markdown" and "## Exercices" in "".join(c["source"])
    )
    section = text.split("## Exercices", 1)[1].split("\n---", 1)[0]
    return [int(n) for n in re.findall(r"^(\d+)\. ", section, flags=re.M)]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_has_its_solution(nb):
    solution = NOTEBOOKS_DIR / "solutions" / f"{nb.stem}_solutions.ipynb"
    assert solution.exists(), f"{nb.name} : pas de notebook de solutions ({solution.name})"
    numbers = _exercise_numbers(nb)
    assert numbers == list(range(1, len(numbers) + 1)) and numbers, f"{nb.name} : exercices mal numérotés {numbers}"
    cells = json.loads(solution.read_text(encoding="utf-8"))["cells"]
    headings = [
        line
        for c in cells
        if c["cell_type"] == "markdown"
        for line in "".join(c["source"]).splitlines()
        if line.startswith("## Exercice ")
    ]
    assert [int(h.split()[2]) for h in headings] == numbers, f"{solution.name} : {headings}"


@pytest.mark.parametrize("nb", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_start_like_the_lessons(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert "google.colab" in code[0] and "setup_course(" in code[1]
    assert f"`{nb.stem.removesuffix('_solutions')}.ipynb`" in "".join(cells[0]["source"])  # renvoie à sa leçon
    assert "Avertissement" in "".join(cells[0]["source"])
    assert max(len(c.splitlines()) for c in code) <= MAX_CELL_LINES, "cellule de code trop longue"


def test_names_ruff_cannot_resolve_in_notebooks_are_deleted_models():
    """pyproject.toml laisse passer F821 dans les notebooks : un modèle supprimé (``del``) pour
    libérer la mémoire rend « indéfini » le nom qu'une fonction plus haut utilisait. Ce test vérifie
    que c'est la seule raison : chaque nom signalé est supprimé par ``del`` dans ce notebook."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    ruff = Path(sys.executable).with_name("ruff")
    out = subprocess.run(
        [str(ruff), "check", "--isolated", "--select", "F821", "--output-format", "json", "notebooks"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    unexplained = []
    for finding in json.loads(out.stdout):
        name = re.search(r"`(\w+)`", finding["message"]).group(1)
        cells = json.loads(Path(finding["filename"]).read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if not re.search(rf"^\s*del\b[^\n]*\b{name}\b", code, re.M):
            unexplained.append(f"{Path(finding['filename']).name} : {name}")
    assert unexplained == [], unexplained


#: Fonctions de helpers.outputs qui renvoient un chemin : en dernière expression d'une cellule, Jupyter
#: afficherait ce chemin de la machine (« PosixPath('/home/…/outputs/cpu/…') ») dans le notebook exécuté.
PATH_RETURNING = {"save_figure", "save_table", "save_json", "output_path", "written_path"}


@pytest.mark.parametrize("nb", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_no_cell_ends_by_showing_a_machine_path(nb):
    import ast

    for i, cell in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
        source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        code = python_code(source)
        body = ast.parse(code).body if code.strip() else []
        last = body[-1] if body else None
        if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
            name = getattr(last.value.func, "id", getattr(last.value.func, "attr", ""))
            shown = name in PATH_RETURNING and not source.rstrip().endswith(";")
            assert not shown, f"{nb.name}, cellule {i} : {name}(…) affiche un chemin de la machine ; finir par « ; »"
