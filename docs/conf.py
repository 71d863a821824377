"""Configuration Sphinx de la documentation du cours (en français)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers.docs import prepare  # noqa: E402

# Notebooks à rendre (copies exécutées par make course si elles existent) et page des résultats.
prepare()

project = "Fine-tuning pour l'analyse de bilans biologiques"
author = "Les auteurs du cours MedAnalyzer-FR"
copyright = "2026, " + author
language = "fr"

extensions = [
    "myst_nb",  # notebooks et Markdown (MyST)
    "sphinx.ext.autodoc",
    "sphinx_copybutton",
]
exclude_patterns = ["_build", "_generated/*.rst", "**.ipynb_checkpoints"]
# Les notebooks ne sont jamais exécutés par la documentation : on rend leurs sorties telles quelles.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # titres de niveau sauté dans les cellules des notebooks

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports = ["unsloth"]

html_theme = "sphinx_book_theme"
html_title = "Fine-tuning médical — le cours"
html_static_path = []
html_theme_options = {
    "repository_url": "https://github.com/medanalyzer-fr/cours-finetuning-medical",
    "repository_branch": "main",
    # Les notebooks sont rendus depuis docs/notebooks/, copie de notebooks/ : avec un chemin
    # vide, le bouton Colab pointe vers notebooks/<nom>.ipynb, le vrai fichier du dépôt.
    "path_to_docs": "",
    "use_repository_button": True,
    "use_edit_page_button": False,
    "use_source_button": False,
    "use_download_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com", "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
}
