"""Fonctions d'appui du cours « Fine-tuning pour l'analyse de bilans biologiques ».

Les notebooks restent des leçons : le code à apprendre y est visible, la plomberie
(chemins, profils, modèles hors ligne, validation des données, graphiques) vit ici.

Un seul paquet plat, rangé en couches (:data:`LAYERS`) ; chaque module n'importe que sa couche et
celles du dessous (contrôlé par ``tests/test_layers.py``) :

* **base** — ne connaît aucun chapitre : chemins, registre des sorties (:mod:`helpers.outputs`),
  texte et nombres français, mémoire (calcul et mesure), exécution (threads, GPU, moteur du
  QLoRA, avertissements), statistiques, mesures versionnées ;
* **domaine** — le jeu de données, ses analytes et leurs intervalles, vos fichiers, les modèles
  hors ligne, les profils, la lecture des statuts ;
* **chapitres** — ce qui est propre à une leçon (notebook 01, 02–03, 04–05, 07) ; un chapitre
  n'importe pas d'utilitaire d'un autre chapitre ;
* **recettes** — :mod:`helpers.training`, les entraînements des notebooks 02 et 04 réutilisés par
  les scripts, le notebook 06 et les études (leur parité avec les notebooks est testée) ;
* **comparaisons** — le notebook 06 (:mod:`helpers.compare`, :mod:`helpers.isolated`) et les
  études de réglage des notebooks 02 et 04, qui entraînent par les recettes ;
* **application** — l'assistant du notebook 08 (:mod:`helpers.assistant`), qui assemble les
  modèles et les réglages de tous les chapitres (il n'est donc lui-même d'aucun chapitre) ;
* **outils** — ``make course``, le bilan, la documentation, les scripts, Colab, le contrôle GPU,
  la résolution des versions épinglées par système (:mod:`helpers.platforms`).
"""

from __future__ import annotations

import platform

__version__ = "0.1.0"

#: Les couches du paquet, de la base aux outils (voir la docstring du paquet).
LAYERS = {
    "base": ("paths", "outputs", "text", "memory", "runtime", "stats", "measures"),
    "domaine": ("analytes", "data", "user_data", "generate", "datacard", "models", "e5_convert", "profiles", "status"),
    "chapitres": ("explore", "embeddings", "costs", "llm", "stepwise", "qlora", "rag", "longitudinal"),
    "recettes": ("training",),
    "comparaisons": ("compare", "isolated", "embedding_study", "llm_study"),
    "application": ("assistant",),
    "outils": ("course", "report", "docs", "durations", "cli", "colab", "gpu_check", "assistant_app", "platforms"),
}

#: Le chapitre (notebooks) de chaque module des couches « chapitres » et « comparaisons ».
CHAPTERS = {
    "explore": "01",
    "embeddings": "02-03",
    "embedding_study": "02-03",
    "costs": "02-03",
    "llm": "04-05",
    "stepwise": "04-05",
    "qlora": "04-05",
    "llm_study": "04-05",
    "compare": "06",
    "isolated": "06",
    "rag": "07",
    "longitudinal": "07",
}

MEDICAL_DISCLAIMER = (
    "Avertissement : contenu pédagogique généré à partir d'un jeu de données synthétique. "
    "Ce n'est pas un avis médical ; seul un professionnel de santé peut interpréter des "
    "résultats d'analyses dans leur contexte."
)


def setup_course(notebook: str = "", *, quiet: bool = False):
    """Prépare une session du cours et renvoie le profil actif.

    Choisit le profil (``gpu``/``cpu``/``smoke``), fixe le nombre de threads, fait taire les
    avertissements connus et sans conséquence (:func:`helpers.runtime.quiet_known_warnings`), passe les
    bibliothèques Hugging Face hors ligne si besoin, fixe la graine, et affiche le profil
    et la raison de ce choix. À appeler dans la première cellule de chaque notebook.
    """
    from . import runtime
    from .profiles import detect_profile

    profile = detect_profile()
    threads = runtime.configure_threads()
    runtime.quiet_known_warnings()  # seulement des messages connus et sans conséquence (liste dans runtime)
    runtime.french_number_display()  # tableaux affichés avec une virgule décimale
    import random

    import numpy as np

    random.seed(profile.seed)
    np.random.seed(profile.seed)
    try:
        import torch

        torch.manual_seed(profile.seed)
        device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
        torch_version = torch.__version__
    except ImportError:
        device, torch_version = "cpu", "absent"
    if not quiet:
        title = f" — {notebook}" if notebook else ""
        print(f"Cours MedAnalyzer-FR{title}")
        print(f"Profil actif : {profile.name} — {profile.description}")
        print(f"Pourquoi : {profile.reason}")
        kernel = runtime.cpu_4bit_kernel() if device == "cpu" else None
        print(
            f"Matériel : {device} ; {threads} thread(s) de calcul ; Python "
            f"{platform.python_version()} ; torch {torch_version}"
            + (f" ; {runtime.CPU_4BIT_KERNELS[kernel]}" if kernel else "")
        )
        print("(COURSE_PROFILE=gpu|cpu|smoke impose un profil.)")
        _print_durations(notebook)
    return profile


def _print_durations(notebook: str) -> None:
    """Durée de la leçon mesurée par ``make course`` sur chaque profil (:mod:`helpers.durations`)."""
    from . import durations

    prefix = durations.notebook_prefix(notebook)
    if prefix is None:
        return
    try:
        lines = durations.duration_lines(prefix)
    except ValueError as error:  # fichier de mesures abîmé : le dire, sans bloquer la leçon
        print(f"Durées mesurées illisibles : {error}")
        return
    print("Durée de ce notebook mesurée par make course — " + " ; ".join(lines))
