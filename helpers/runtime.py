"""Réglages d'exécution : nombre de threads, accès au hub Hugging Face, GPU."""

from __future__ import annotations

import functools
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


def available_cores() -> int:
    """Nombre de cœurs réellement utilisables par ce processus (cgroups / affinité compris)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def configure_threads(n: int | None = None) -> int:
    """Fixe le nombre de threads de calcul (torch, OpenMP, MKL) et le renvoie.

    Par défaut : ``OMP_NUM_THREADS`` s'il est défini, sinon le nombre de cœurs disponibles.
    Sur 2 cœurs, demander plus de threads que de cœurs (sur-souscription) rend
    l'entraînement 3 à 10 fois plus lent : on ne dépasse jamais le nombre de cœurs.
    """
    cores = available_cores()
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        n = int(env) if env.isdigit() and int(env) > 0 else cores
    n = max(1, min(int(n), cores))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return n


def cuda_available() -> bool:
    """Vrai si torch voit un GPU CUDA utilisable."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def bf16_supported() -> bool:
    """Vrai si le GPU CUDA visible calcule **vraiment** en bf16 (Ampere et plus récents).

    ``torch.cuda.is_bf16_supported()`` répond oui sur un T4 (Turing, capacité 7.5) : par défaut,
    il compte l'**émulation** (créer un tenseur bf16 réussit), alors que le T4 n'a aucune unité de
    calcul bf16. Unsloth charge alors le modèle en fp16 et refuse un entraînement en bf16. On
    exige donc une capacité de calcul ≥ 8.0, sans émulation.
    """
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    if getattr(torch.version, "hip", None):  # ROCm : bf16 natif sur les GPU AMD pris en charge
        return bool(torch.cuda.is_bf16_supported())
    major, _minor = torch.cuda.get_device_capability(0)
    if major < 8:
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch ancien, sans ce paramètre : la capacité suffit
        return True


def gpu_memory_gb() -> float | None:
    """Mémoire totale du premier GPU CUDA (Go), ou ``None`` sans GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 1e9
    except ImportError:
        pass
    return None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


@functools.lru_cache(maxsize=None)
def _probe(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_reachable(timeout: float = 2.0) -> bool:
    """Vrai si le hub Hugging Face répond, en au plus ``timeout`` secondes.

    ``HF_HUB_OFFLINE=1`` force la réponse « non » sans aucun accès réseau. Le résultat est mis
    en cache pour la durée du processus.
    """
    if _env_true("HF_HUB_OFFLINE"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return _probe(parsed.hostname or "huggingface.co", port, timeout)


def go_offline() -> None:
    """Passe les bibliothèques Hugging Face en mode hors ligne.

    Sans cela, un chargement depuis le hub sans réseau n'échoue qu'après ~80 s de tentatives ;
    avec, il échoue en quelques secondes. Fonctionne avant comme après l'import de
    transformers/datasets.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # huggingface_hub lit HF_HUB_OFFLINE une seule fois, à son import : s'il est déjà importé,
    # on met aussi à jour sa constante, sinon la variable d'environnement serait sans effet.
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None and hasattr(datasets_config, "HF_HUB_OFFLINE"):
        datasets_config.HF_HUB_OFFLINE = True


def proc_status_kb(field: str, pid: int | str = "self") -> int | None:
    """Un champ mémoire de ``/proc/<pid>/status`` (Linux) en Ko — ``VmHWM`` (pic de mémoire
    résidente), ``VmRSS`` (mémoire résidente actuelle)… — ou ``None`` s'il est illisible (hors
    Linux, processus terminé)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def vm_hwm_kb(pid: int | str = "self") -> int | None:
    """VmHWM (pic de mémoire résidente, Linux) du processus ``pid`` en Ko, ou ``None``."""
    return proc_status_kb("VmHWM", pid)
    return None


def peak_rss_mb() -> int:
    """Pic de mémoire résidente de ce processus (Mo), depuis son démarrage ou le dernier
    :func:`reset_peak_rss`.

    Linux : ``VmHWM`` de ``/proc/self/status`` ; ailleurs : ``ru_maxrss`` (depuis le démarrage).
    """
    kb = vm_hwm_kb()
    if kb is not None:
        return int(kb / 1024)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Ko sous Linux, octets sous macOS
    return int(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024)


def release_memory() -> None:
    """Ramasse les objets Python libérés et rend au système la mémoire libre du tas (glibc).

    Après ``del model``, la mémoire reste souvent réservée par l'allocateur : la mesure suivante
    du pic la compterait encore. ``malloc_trim`` la rend au système (Linux ; sans effet ailleurs).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Ramène le pic de mémoire résidente à la mémoire actuelle (Linux ≥ 4.0, ``clear_refs``).

    Sert à mesurer le pic d'**une** étape (un entraînement) dans un noyau qui a déjà fait
    autre chose. Remet aussi à zéro le pic GPU si CUDA est présent. Renvoie ``False`` si le
    système ne le permet pas : le pic mesuré ensuite court alors depuis le démarrage. La mémoire
    libérée est d'abord rendue au système (:func:`release_memory`).
    """
    release_memory()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return vm_hwm_kb() is not None


#: Messages des bibliothèques épinglées, **sans conséquence** pour le cours, que setup_course fait
#: taire (tous les autres restent visibles) : (catégorie, début du message, module émetteur — une
#: expression régulière, ``""`` pour tous —, pourquoi).
KNOWN_HARMLESS_WARNINGS = (
    (
        FutureWarning,
        "`is_gradient_checkpointing` is deprecated",
        "",
        "peft 0.21 lit encore l'ancien nom d'un attribut que transformers 5.23 renomme ; rien ne change "
        "avant transformers 6",
    ),
    (
        FutureWarning,
        "`gradient_checkpointing_enable` is deprecated",
        "",
        "peft 0.21 (prepare_model_for_kbit_training avec use_gradient_checkpointing=True, exercice 3 du "
        "notebook 04) appelle encore l'ancien nom de la méthode que transformers 5 renomme "
        "activation_checkpointing_enable ; l'effet est le même",
    ),
    (
        Warning,
        "IProgress not found",
        "",
        "sans ipywidgets (présent sur Colab et dans requirements.txt, pas toujours ailleurs), tqdm "
        "affiche ses barres de progression en texte au lieu de widgets : rien ne manque",
    ),
    (
        SyntaxWarning,
        "invalid escape sequence",
        r".*[\\/]torchao[\\/]",
        "torchao (dépendance facultative d'Unsloth) contient des chaînes à séquences d'échappement "
        "invalides, que Python signale en compilant le paquet (SyntaxWarning depuis Python 3.12) ; cela "
        "ne change rien à son exécution",
    ),
    (
        DeprecationWarning,
        "invalid escape sequence",
        r".*[\\/]torchao[\\/]",
        "le même signalement que la ligne précédente, sous Python 3.11",
    ),
)
#: Journaux de bibliothèques ramenés au niveau ERROR : (nom du journal, pourquoi).
KNOWN_HARMLESS_LOGGERS = (
    (
        "bitsandbytes.backends.cpu.ops",
        "sur un CPU AVX512-BF16, bitsandbytes cherche sur le hub un noyau 4 bits optionnel (paquet "
        "« kernels ») ; hors ligne ou sans ce paquet, il garde son noyau intégré",
    ),
)
#: Lignes de journal précises retirées d'un journal qui reste actif : (nom du journal, début du
#: message, pourquoi).
KNOWN_HARMLESS_LOG_MESSAGES = (
    (
        "transformers.trainer_utils",
        "The tokenizer has new PAD/BOS/EOS tokens",
        "au début d'un entraînement, transformers recopie dans la configuration du modèle les jetons "
        "spéciaux du tokenizer quand elle ne les a pas (cas du e5-small converti hors ligne) : les "
        "identifiants retenus sont ceux du tokenizer, ceux que le cours utilise partout",
    ),
    (
        "transformers.models.llama.modeling_llama",
        "Unsloth: Restored added_tokens_decoder metadata in",
        "à chaque checkpoint, Unsloth réécrit la table des jetons ajoutés du tokenizer et l'annonce avec "
        "le chemin absolu du dossier (journal emprunté à transformers) ; le checkpoint est correct",
    ),
)


class _DropMessages:
    """Filtre de journal qui retire les lignes commençant par l'un des débuts donnés."""

    def __init__(self, starts):
        self.starts = tuple(starts)

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith(self.starts)


def quiet_known_warnings() -> None:
    """Fait taire les avertissements de :data:`KNOWN_HARMLESS_WARNINGS`, les journaux de
    :data:`KNOWN_HARMLESS_LOGGERS` et les lignes de :data:`KNOWN_HARMLESS_LOG_MESSAGES`, et eux
    seuls : un notebook exécuté n'affiche alors que des avertissements qui demandent l'attention de
    l'étudiant. Appeler deux fois ne duplique rien."""
    import logging
    import re
    import warnings

    for category, start, module, _why in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(start), category=category, module=module)
    for name, _why in KNOWN_HARMLESS_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name, start, _why in KNOWN_HARMLESS_LOG_MESSAGES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and start in f.starts for f in logger.filters):
            logger.addFilter(_DropMessages([start]))


def git_commit() -> str:
    """Le commit court du dépôt (« inconnu » hors d'un dépôt git ou sans git) : la provenance que
    portent les mesures versionnées (études, durées, contrôle GPU)."""
    import subprocess

    from .paths import REPO_ROOT

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "inconnu"
    except (OSError, subprocess.SubprocessError):
        return "inconnu"


def french_number_display() -> None:
    """Les tableaux pandas affichés dans les notebooks écrivent leurs nombres à virgule avec une
    virgule décimale (:func:`helpers.text.french_float`). Les fichiers écrits (CSV, JSON) gardent le
    point : ils sont relus par du code."""
    import pandas as pd

    from .text import french_float

    pd.set_option("display.float_format", french_float)
