"""Documentation : table des matières complète, notebooks rendus sans exécution, résultats, liens."""

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers import docs
from helpers.paths import NOTEBOOKS_DIR

DOCS = Path(docs.DOCS_DIR)


def toctree_entries() -> list[str]:
    entries = []
    for block in re.findall(r"\.\. toctree::\n((?:[ \t]+.*\n|\n)+)", (DOCS / "index.rst").read_text(encoding="utf-8")):
        entries += [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith(":")]
    return entries


def test_every_notebook_is_in_the_table_of_contents():
    entries = toctree_entries()
    missing = [
        nb.stem for nb in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")) if f"notebooks/{nb.stem}" not in entries
    ]
    assert not missing, f"Notebooks absents de la table des matières (docs/index.rst) : {missing}"


def test_every_toctree_page_exists_and_pages_are_french():
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert 'language = "fr"' in conf and 'nb_execution_mode = "off"' in conf
    for entry in toctree_entries():
        if entry.startswith("notebooks/"):
            assert (NOTEBOOKS_DIR / f"{entry.split('/', 1)[1]}.ipynb").exists(), entry
        else:
            assert (DOCS / f"{entry}.rst").exists(), f"page de la table des matières absente : {entry}.rst"
    for page in (
        "installation",
        "guide_qlora",
        "embeddings_matryoshka",
        "mistral_unsloth",
        "comparaison_cas_etude",
        "jeu_de_donnees",
        "resultats",
        "gpu",
        "multi_gpu",
        "depannage",
        "glossaire",
        "api",
        "enseignants",
    ):
        assert page in toctree_entries(), page
    assert "<span style" not in "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.rst"))


def test_api_page_documents_every_helper_module():
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    modules = sorted(
        p.stem for p in (NOTEBOOKS_DIR.parent / "helpers").glob("*.py") if p.stem not in ("__init__", "e5_convert")
    )
    assert [m for m in modules if f".. automodule:: helpers.{m}" not in text] == []


def _notebook(path: Path, source: str, output: str | None = None) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    if output:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
    nb.cells = [nbformat.v4.new_markdown_cell("# Titre"), cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_prepare_notebooks_prefers_a_matching_executed_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(docs, "NOTEBOOKS_DIR", tmp_path / "notebooks")
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path / "outputs"))
    _notebook(tmp_path / "notebooks" / "01_a.ipynb", "print(1)")
    _notebook(tmp_path / "notebooks" / "02_b.ipynb", "print(2)")
    _notebook(tmp_path / "outputs" / "cpu" / "notebooks" / "01_a.ipynb", "print(1)", output="1\n")
    _notebook(tmp_path / "outputs" / "cpu" / "notebooks" / "02_b.ipynb", "print('ancien')", output="ancien\n")
    records = docs.prepare_notebooks(tmp_path / "rendu")
    assert [(r["notebook"], r["profile"]) for r in records] == [("01_a", "cpu"), ("02_b", None)]
    rendered = nbformat.read(tmp_path / "rendu" / "01_a.ipynb", as_version=4)
    assert "Version exécutée" in rendered.cells[1].source and rendered.cells[2].outputs[0]["text"] == "1\n"
    stale = nbformat.read(tmp_path / "rendu" / "02_b.ipynb", as_version=4)
    assert "Version sans sorties" in stale.cells[1].source and stale.cells[2].source == "print(2)"


def test_rst_table_rounds_and_rejects_empty():
    text = docs.rst_table(
        pd.DataFrame(
            {
                "arm": ["A", "B"],
                "ndcg": [0.123456, 0.5],
                "vide": [float("nan")] * 2,
                "params": [21639552.0, float("nan")],
            }
        ),
        "T",
    )
    assert ".. list-table:: T" in text and "     - 0,123" in text and "     - 0,500" in text  # virgule décimale
    assert "     - 21\u202f639\u202f552\n" in text and text.count("   * - ") == 3  # milliers séparés
    counts = docs.rst_table(pd.DataFrame({"arm": ["A", "B"], "n": [12345, 7], "ok": [True, False]}))
    assert "     - 12\u202f345\n" in counts and "     - 7\n" in counts and "     - True\n" in counts
    with pytest.raises(ValueError, match="Tableau vide"):
        docs.rst_table(pd.DataFrame(), "T")


def test_results_page_reads_outputs_with_profile_and_date(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path / "outputs"))
    page = docs.write_results_page(tmp_path / "gen" / "resultats.rst")
    assert "Aucun résultat" in page.read_text(encoding="utf-8")
    llm = tmp_path / "outputs" / "cpu" / "llm"
    llm.mkdir(parents=True)
    pd.DataFrame({"model": ["finetuned"], "n_cases": [60], "n_values": [262], "accuracy": [0.5]}).to_csv(
        llm / "status_accuracy.csv", index=False
    )
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    fig.savefig(llm / "pertes_entrainement.png")
    text = docs.write_results_page(tmp_path / "gen" / "resultats.rst").read_text(encoding="utf-8")
    assert "Résultats du profil **cpu**" in text and "     - 0,500" in text
    assert "   * - modèle" in text and "     - exactitude" in text and "   * - fine-tuné" in text  # étiquettes
    assert "n_values" not in text  # les clés du fichier ne s'affichent pas
    assert re.search(r"outputs/cpu/llm/status_accuracy.csv``, écrit le \d{4}-\d\d-\d\d", text)
    assert ".. figure:: /_generated/figures/llm_pertes_entrainement.png" in text
    assert (tmp_path / "gen" / "figures" / "llm_pertes_entrainement.png").exists()


def test_check_links_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "index.html").write_text(
        '<a href="a.html#ok">1</a><a href="a.html#non">2</a>'
        '<a href="absent.html">3</a><a href="https://exemple.org">4</a>'
        '<img src="img/x.png">',
        encoding="utf-8",
    )
    (tmp_path / "a.html").write_text('<h1 id="ok">A</h1><a href="#ok">haut</a>', encoding="utf-8")
    problems = docs.check_links(tmp_path)
    assert problems == [
        "index.html → a.html#non (ancre absente)",
        "index.html → absent.html (fichier absent)",
        "index.html → img/x.png (fichier absent)",
    ]
    with pytest.raises(FileNotFoundError, match="construisez"):
        docs.check_links(tmp_path / "vide")


def test_outputs_page_lists_the_registry(tmp_path):
    from helpers.outputs import OUTPUTS

    text = docs.write_outputs_page(tmp_path / "sorties.rst").read_text(encoding="utf-8")
    assert text.count("   * - ") == len(OUTPUTS) + 1  # en-tête + une ligne par sortie
    assert "``llm/adapter/``" in text or "llm/adapter/" in text
    assert "comparison/oubli.csv" in text


def test_every_make_target_the_docs_name_exists():
    """Chaque ``make <cible>`` cité par le README, l'aide du Makefile ou la documentation existe
    (trois cibles documentées avaient disparu lors d'une réécriture du Makefile)."""
    from helpers.paths import REPO_ROOT

    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    texts = [makefile, (REPO_ROOT / "README.rst").read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in (REPO_ROOT / "docs").glob("*.rst")]
    named = {m for text in texts for m in re.findall(r"\bmake ([a-z][\w-]+)", text)}
    assert named and named - targets == set(), sorted(named - targets)


def test_gpu_check_page_reads_every_recorded_run(tmp_path):
    """Chaque exécution de ``docs/mesures/gpu_check_*.json`` a sa section, avec son environnement lu
    sous les clés que ``helpers.gpu_check`` écrit (la capacité de calcul s'affichait « None »)."""
    from helpers.docs import MEASURES_DIR, write_gpu_check_page

    records = sorted(MEASURES_DIR.glob("gpu_check_*.json"))
    page = write_gpu_check_page(tmp_path / "gpu_check.rst").read_text(encoding="utf-8")
    for path in records:
        assert f"docs/mesures/{path.name}" in page
    assert "capacité de calcul 9.0" in page and "None" not in page
