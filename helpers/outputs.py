"""Les sorties du cours : un seul registre de tout ce qu'écrivent les notebooks, la commande
``make course`` et les scripts, sous ``outputs/<profil>/``.

Chaque sortie a une **clé**, son chemin relatif au dossier du profil (``"comparison/oubli.csv"``,
``"llm/adapter"``), le notebook qui la produit, une description en français et, pour celles que
d'autres relisent, la mention ``relue``. Les notebooks, :mod:`helpers.report`, :mod:`helpers.docs`
et :mod:`helpers.course` écrivent et relisent par ces clés (:func:`save_table`, :func:`load_table`,
:func:`require_output`…) : un nom de fichier n'est écrit qu'ici. Une clé peut contenir un champ,
``"data/patient_{patient}.png"`` : on passe alors le nom complet (``f"data/patient_{p}.png"``).

Couche de base : ce module ne connaît aucun chapitre, seulement les noms de fichiers.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .paths import outputs_root


@dataclass(frozen=True)
class Output:
    """Une sortie du registre. ``marker`` : pour un dossier, le fichier dont la présence dit qu'il
    a été écrit en entier ; ``reread`` : relue par un autre notebook, le bilan ou la documentation."""

    key: str
    notebook: str
    description: str
    reread: bool = False
    marker: str | None = None

    @property
    def topic(self) -> str:
        return self.key.split("/", 1)[0] if "/" in self.key else ""

    @property
    def is_dir(self) -> bool:
        return Path(self.key).suffix == ""


def _outputs(*rows: tuple) -> dict[str, Output]:
    return {row[0]: Output(*row) for row in rows}


#: Le registre : clé → :class:`Output`.
OUTPUTS: dict[str, Output] = _outputs(
    ("run_summary.json", "make course", "Durée, pic mémoire et statut de chaque notebook exécuté", True),
    ("notebooks/{notebook}.ipynb", "make course", "Copie exécutée d'un notebook (rendue par la documentation)", True),
    ("scripts/{script}", "scripts", "Sorties des scripts train_embeddings.py / train_qlora.py"),
    # 01 — exploration
    ("data/tailles.csv", "01", "Taille de chaque vue du jeu de données"),
    ("data/analytes_par_famille.csv", "01", "Nombre d'analytes par famille"),
    ("data/styles_par_split.csv", "01", "Styles de questions par split"),
    ("data/integrite_splits.json", "01", "Contrôle des fuites entre splits"),
    ("data/intervalles_reference.png", "01", "Intervalles de référence des analytes"),
    ("data/patient_{patient}.png", "01", "Série d'un patient de la vue longitudinale"),
    # 02 — embeddings Matryoshka
    ("embeddings/ndcg.csv", "02", "NDCG@10, MRR@10 et rappel@10 par dimension", True),
    ("embeddings/per_query.csv", "02", "Scores par requête (intervalles bootstrap du notebook 03)", True),
    ("embeddings/training_summary.json", "02", "Résumé d'entraînement des embeddings", True),
    ("embeddings/model", "02", "Modèle d'embeddings fine-tuné", True, "config_sentence_transformers.json"),
    ("embeddings/checkpoints", "02", "Checkpoints d'un entraînement interrompu (supprimés à la fin)"),
    # 03 — dimensions et coûts
    ("embeddings/ndcg_par_dimension.png", "03", "NDCG@10 selon la dimension"),
    ("embeddings/compromis_octets_ndcg.png", "03", "Compromis octets / NDCG@10"),
    ("embeddings/tableau_{split}.csv", "03", "Tableau du cours pour un split de test"),
    ("embeddings/bootstrap_gains.csv", "03", "Gains du fine-tuning et intervalles bootstrap", True),
    ("embeddings/ecart_dimensions.csv", "03", "Rétention à 64 dimensions contre pleine dimension", True),
    ("embeddings/latence.csv", "03", "Taille d'index et latence de recherche"),
    ("embeddings/quantification.csv", "03", "Qualité des embeddings quantifiés"),
    ("embeddings/rescoring_echelle.csv", "03", "Binaire et rescoring dans un index grossi de distracteurs", True),
    ("embeddings/recommandations.csv", "03", "Recommandations tirées des mesures"),
    # 04 — QLoRA
    ("llm/training.json", "04", "Résumé d'entraînement du QLoRA", True),
    ("llm/adapter", "04", "Adaptateur LoRA", True, "adapter_config.json"),
    ("llm/merged", "04", "Modèle fusionné (base + LoRA)", False, "config.json"),
    ("llm/checkpoints", "04", "Checkpoints du QLoRA (reprise)"),
    ("llm/pertes_entrainement.png", "04", "Pertes d'entraînement du QLoRA"),
    # 05 — inférence
    ("llm/status_accuracy.csv", "05", "Exactitude des statuts sur les cas de test", True),
    ("llm/status_values.csv", "05", "Statut lu pour chaque valeur de test"),
    ("llm/answers.jsonl", "05", "Réponses des modèles aux cas de test", True),
    ("llm/inference.json", "05", "Résumé de l'inférence"),
    ("llm/confusion_statuts.png", "05", "Matrices de confusion des statuts"),
    ("llm/etude/{variant}.jsonl", "études", "Réponses d'une variante de l'étude des formats (helpers.llm_study)"),
    # 06 — comparaison
    ("comparison/comparison.csv", "06", "Les trois approches côte à côte", True),
    ("comparison/courbe_apprentissage.csv", "06", "NDCG@10 selon le nombre de paires", True),
    ("comparison/courbe_apprentissage.png", "06", "Courbe d'apprentissage des embeddings"),
    ("comparison/courbe", "06", "Modèles de la courbe d'apprentissage (temporaires)"),
    ("comparison/oubli.csv", "06", "Oubli : questions générales et perte sur du français courant", True),
    ("comparison/oubli_reponses.csv", "06", "Réponses aux questions générales"),
    ("comparison/oubli_ecarts.csv", "06", "Écarts d'oubli appariés et intervalles", True),
    ("comparison/memoire_par_bras.csv", "06", "Mémoire de chaque bras, mesurée seule", True),
    ("comparison/pertes_par_exemple.png", "06", "Pertes de B et C selon les exemples vus", True),
    ("comparison/couts_des_trois_bras.png", "06", "Coûts mesurés des trois approches", True),
    ("comparison/modele_complet", "06", "Modèle du bras C (fine-tuning complet)", True, "config.json"),
    ("comparison/checkpoints_c", "06", "Dossier de travail du bras C"),
    ("comparison/bras_b_prime", "06", "Bras B' (QLoRA à exemples égaux), en processus à part"),
    ("comparison/memoire", "06", "Mesure de mémoire du bras B en processus à part"),
    # 07 — étude de cas
    ("case_study/serie_exemple.png", "07", "Série d'un patient et ses changements"),
    ("case_study/pentes.png", "07", "Tendances par analyte"),
    ("case_study/erreurs_prevision.csv", "07", "Erreurs de prévision de la prochaine visite", True),
    ("case_study/erreurs_prevision.png", "07", "Erreurs de prévision"),
    ("case_study/detection_changements.csv", "07", "Changements significatifs : précision et rappel", True),
    ("case_study/rag_taux_de_succes.csv", "07", "Recherche des passages : taux de succès", True),
    ("case_study/statuts_avec_sans_contexte.csv", "07", "Statuts avec et sans contexte", True),
    ("case_study/resume_prudent.json", "07", "Résumé prudent pour un patient et ses contrôles"),
    # 08 — assistant
    ("assistant/index", "08", "Index faiss des passages au réglage choisi au notebook 03", True, "index.json"),
    ("assistant/index_comparaison", "08", "Index du même corpus aux réglages comparés (taille, chargement)"),
    ("assistant/couts_index.csv", "08", "Taille et chargement de l'index : réglage choisi contre pleine dimension"),
    ("assistant/latences.csv", "08", "Latence et contrôles de l'assistant, compte rendu par compte rendu", True),
    ("assistant/latences.png", "08", "Latence de chaque compte rendu selon son nombre de valeurs, médiane et p95"),
    ("assistant/mesures.json", "08", "L'assistant mesuré : latence p50/p95, réponses par minute, mémoire", True),
    ("assistant/exemple.json", "08", "Une réponse complète de l'assistant (tableau, texte, contrôles)"),
    ("assistant/modele_fusionne.csv", "08", "L'assistant servi par le modèle fusionné contre 4 bits + adaptateur"),
    ("assistant/bornes.csv", "08", "L'assistant sur des valeurs près des bornes, que le générateur n'écrit pas", True),
    ("llm/merged/README.md", "08", "Carte du modèle de langage fusionné (données, entraînement, mesures, limites)"),
    ("llm/adapter/README.md", "08", "Carte de l'adaptateur LoRA (profil gpu : pas de modèle fusionné par défaut)"),
    ("embeddings/model/README.md", "08", "Carte du modèle d'embeddings fine-tuné"),
)


def _pattern(key: str) -> re.Pattern:
    return re.compile("".join(r"[^/]+" if p.startswith("{") else re.escape(p) for p in re.split(r"(\{\w+\})", key)))


_PATTERNS = [(_pattern(k), out) for k, out in OUTPUTS.items()]


def lookup(key: str) -> Output:
    """La sortie du registre pour ``key`` (clé exacte, ou nom complet d'une clé à champ).

    >>> lookup("data/patient_P0001.png").key
    'data/patient_{patient}.png'
    """
    if key in OUTPUTS:
        return OUTPUTS[key]
    for pattern, out in _PATTERNS:
        if pattern.fullmatch(key):
            return out
    raise KeyError(
        f"Sortie « {key} » absente du registre helpers.outputs.OUTPUTS : déclarez-la (clé, notebook, "
        "description) avant de l'écrire ou de la relire."
    )


def profile_root(profile_name: str) -> Path:
    """``outputs/<profil>/``."""
    return outputs_root() / profile_name


def output_path(profile_name: str, key: str) -> Path:
    """Chemin de la sortie ``key`` du profil ; crée son dossier parent (pas la sortie elle-même :
    un dossier de sortie n'existe qu'une fois écrit). Erreur si ``key`` n'est pas au registre.

    >>> output_path("cpu", "comparison/oubli.csv").parts[-3:]
    ('cpu', 'comparison', 'oubli.csv')
    """
    lookup(key)
    path = profile_root(profile_name) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def written_path(profile_name: str, key: str) -> Path:
    """Le fichier qui prouve que la sortie existe : elle-même, ou le marqueur d'un dossier."""
    out = lookup(key)
    path = profile_root(profile_name) / key
    return path / out.marker if out.marker else path


def require_output(profile_name: str, key: str, error: type[Exception] = FileNotFoundError) -> Path:
    """Chemin de la sortie ``key`` si elle a été écrite ; sinon ``error`` en français, qui nomme
    la sortie et le notebook qui la produit."""
    out = lookup(key)
    if not written_path(profile_name, key).exists():
        raise error(
            f"{out.description} introuvable : {profile_root(profile_name) / key} (profil « {profile_name} ») : "
            f"exécutez d'abord le notebook {out.notebook} avec le même profil (make course les exécute dans l'ordre)."
        )
    return profile_root(profile_name) / key


def _check_suffix(key: str, suffixes: tuple[str, ...]) -> None:
    if not key.endswith(suffixes):
        raise ValueError(f"Sortie « {key} » : extension {' ou '.join(suffixes)} attendue.")


def save_figure(fig, profile_name: str, key: str) -> Path:
    """Enregistre ``fig`` en PNG sous la clé ``key`` (``"llm/confusion_statuts.png"``)."""
    _check_suffix(key, (".png",))
    path = output_path(profile_name, key)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def save_table(df, profile_name: str, key: str, **to_csv) -> Path:
    """Enregistre un tableau pandas en CSV (sans index) sous la clé ``key``."""
    _check_suffix(key, (".csv",))
    path = output_path(profile_name, key)
    df.to_csv(path, index=False, **to_csv)
    return path


def save_json(data: dict, profile_name: str, key: str) -> Path:
    """Enregistre un dictionnaire en JSON (UTF-8, indenté) sous la clé ``key``."""
    _check_suffix(key, (".json",))
    path = output_path(profile_name, key)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return path


def load_table(profile_name: str, key: str, error: type[Exception] = FileNotFoundError):
    """Relit le CSV ``key`` (erreur française s'il manque, :func:`require_output`)."""
    import pandas as pd

    _check_suffix(key, (".csv",))
    return pd.read_csv(require_output(profile_name, key, error))


def load_json(profile_name: str, key: str, error: type[Exception] = FileNotFoundError) -> dict:
    """Relit le JSON ``key`` (erreur française s'il manque, :func:`require_output`)."""
    _check_suffix(key, (".json",))
    return json.loads(require_output(profile_name, key, error).read_text(encoding="utf-8"))


def reread_outputs(profile_name: str) -> dict[str, list[Path]]:
    """Par notebook, les fichiers de ses sorties que d'autres relisent (marqueur pour un dossier),
    sans les clés à champ : ce que :func:`helpers.course.ensure_outputs` vérifie."""
    found: dict[str, list[Path]] = {}
    for key, out in OUTPUTS.items():
        if out.reread and out.notebook.isdigit() and "{" not in key:
            found.setdefault(out.notebook, []).append(written_path(profile_name, key))
    return found


def last_checkpoint(checkpoint_dir: Path | str) -> str | None:
    """Dernier checkpoint d'un entraînement interrompu (``None`` s'il n'y en a pas)."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return None
    return get_last_checkpoint(str(checkpoint_dir))


def remove_checkpoints(checkpoint_dir: Path | str) -> None:
    """Supprime les checkpoints une fois le modèle final sauvegardé.

    Ainsi, un checkpoint présent signifie toujours « entraînement interrompu, à reprendre ».
    """
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
