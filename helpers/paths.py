"""Chemins du cours : dépôt, données, cache des modèles hors ligne, racine des sorties, chemins affichés
sans la machine (:func:`shown`). Les sorties elles-mêmes sont déclarées dans :mod:`helpers.outputs`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
DATASET_DIR = DATA_DIR / "medanalyzer_fr"
REFERENCE_DIR = DATA_DIR / "reference"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def cache_dir(create: bool = True) -> Path:
    """Dossier (non versionné) où les modèles hors ligne sont construits au premier usage.

    ``COURSE_CACHE_DIR`` le remplace ; par défaut ``<dépôt>/.cache``. ``create=False`` : le chemin
    seul, sans créer le dossier.
    """
    path = Path(os.environ.get("COURSE_CACHE_DIR", REPO_ROOT / ".cache"))
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def outputs_root() -> Path:
    """Racine des résultats (``COURSE_OUTPUTS_DIR`` ou ``<dépôt>/outputs``)."""
    return Path(os.environ.get("COURSE_OUTPUTS_DIR", REPO_ROOT / "outputs"))


def shown(value):
    """Un chemin tel qu'on l'affiche dans un notebook : relatif à la racine des résultats
    (« outputs/cpu/llm/adapter ») ou au dépôt, jamais le chemin de la machine (``/home/…``).
    Accepte aussi une liste, un tuple ou un dictionnaire de chemins (même forme en retour).

    >>> shown(REPO_ROOT / "data" / "reference")
    'data/reference'
    """
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(shown(v) for v in value)
    if not isinstance(value, (str, Path)):
        return value
    path = Path(value)
    for base, label in ((outputs_root(), "outputs"), (REPO_ROOT, None)):
        try:
            rel = path.resolve().relative_to(Path(base).resolve())
        except ValueError:
            continue
        return str(Path(label) / rel) if label else str(rel)
    return path.name


def machine_folders() -> list[str]:
    """Les dossiers de cette machine qu'une sortie de notebook ne doit jamais montrer : le dépôt, la
    racine des résultats, le cache des modèles, le dossier personnel et le dossier temporaire (sous
    leur nom écrit et leur nom résolu), les plus longs d'abord. La racine ``/`` n'en est pas un."""
    folders = [REPO_ROOT, outputs_root(), cache_dir(create=False)]
    folders += [Path.home(), Path(tempfile.gettempdir())]
    names = {str(p) for folder in folders for p in (folder, folder.resolve())}
    return sorted((n for n in names if len(Path(n).parts) > 1), key=len, reverse=True)
