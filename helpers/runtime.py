"""Exécution : nombre de threads, accès au hub Hugging Face, GPU et précision, choix du moteur du
QLoRA (:func:`select_backend`, Unsloth ou bitsandbytes + peft), replis signalés par
:class:`CourseFallbackWarning`, avertissements connus et sans conséquence, appels par lots avec barre
de progression (:func:`in_batches`).

Couche de base : ce module ne connaît aucun chapitre."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
from pathlib import Path
from typing import Callable, Sequence
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


#: Ce que dit :func:`cpu_4bit_kernel`, en clair (en-tête des notebooks, page des durées).
CPU_4BIT_KERNELS = {
    "fusionné": "4 bits sur CPU : noyau fusionné de bitsandbytes (AVX512-BF16)",
    "déquantifié": "4 bits sur CPU : poids déquantifiés à chaque couche (pas d'AVX512-BF16)",
}
#: La même chose, courte : à côté d'une durée mesurée (:func:`helpers.durations.where_4bit`).
CPU_4BIT_SHORT = {
    "fusionné": "4 bits par noyau fusionné AVX512-BF16",
    "déquantifié": "4 bits déquantifié, sans AVX512-BF16",
}


def cpu_4bit_kernel(cpuinfo: Path | str = "/proc/cpuinfo") -> str | None:
    """Comment bitsandbytes calcule une couche 4 bits sur **ce** processeur : ``"fusionné"`` s'il a
    les instructions AVX512-BF16 (bitsandbytes multiplie alors directement par les poids 4 bits, en
    bf16), ``"déquantifié"`` sinon (les poids de chaque couche sont décompressés en fp32 avant le
    produit : mesuré sur 2 cœurs, la génération en 4 bits devient plus lente qu'en fp32).
    ``None`` si le système ne le dit pas (pas de ``/proc/cpuinfo`` : macOS, Windows). Les durées
    des notebooks 04 à 08 sur ``cpu`` en dépendent (:mod:`helpers.durations`)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.lower().startswith(("flags", "features")) for f in line.split()}
    return "fusionné" if "avx512_bf16" in flags else "déquantifié"


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

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None and hasattr(datasets_config, "HF_HUB_OFFLINE"):
        datasets_config.HF_HUB_OFFLINE = True


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
        "transformers.trainer_utils",
        "mtime may not be reliable on this filesystem",
        "pour ne garder que les derniers checkpoints, le Trainer les range par date de modification ; "
        "écrits à moins d'une seconde d'intervalle (profil smoke : des pas de quelques millisecondes), "
        "il les range par numéro de pas, ce qui est le bon ordre : le disque n'y est pour rien",
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


class CourseFallbackWarning(UserWarning):
    """Un repli automatique du cours : modèle hors ligne au lieu du hub, bitsandbytes au lieu
    d'Unsloth, fp16 au lieu de bf16, GPU trop petit… Le cours continue, autrement : l'étudiant
    doit le savoir. Affiché sans chemin de fichier (:func:`warn_fallback`)."""


def warn_fallback(message: str) -> None:
    """Émet ``message`` comme :class:`CourseFallbackWarning` (module ``warnings`` : filtrable,
    capturé par pytest) ; affiché « Attention (repli) : … », sans le chemin du code qui l'émet."""
    import warnings

    warnings.warn(message, CourseFallbackWarning, stacklevel=3)


def _format_warning(message, category, filename, lineno, line=None):
    if issubclass(category, CourseFallbackWarning):
        return f"Attention (repli) : {message}\n"
    return _DEFAULT_FORMAT(message, category, filename, lineno, line)


def _install_warning_format() -> None:
    import warnings

    global _DEFAULT_FORMAT
    if warnings.formatwarning is not _format_warning:
        _DEFAULT_FORMAT = warnings.formatwarning
        warnings.formatwarning = _format_warning


_DEFAULT_FORMAT = None


def quiet_known_warnings() -> None:
    """Fait taire les avertissements de :data:`KNOWN_HARMLESS_WARNINGS`, les journaux de
    :data:`KNOWN_HARMLESS_LOGGERS` et les lignes de :data:`KNOWN_HARMLESS_LOG_MESSAGES`, et eux
    seuls : un notebook exécuté n'affiche alors que des avertissements qui demandent l'attention de
    l'étudiant. Les replis du cours (:class:`CourseFallbackWarning`) s'affichent chaque fois, sans
    chemin de fichier. Appeler deux fois ne duplique rien."""
    import logging
    import re
    import warnings

    _install_warning_format()
    warnings.simplefilter("always", CourseFallbackWarning)

    for category, start, module, _why in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(start), category=category, module=module)
    for name, _why in KNOWN_HARMLESS_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name, start, _why in KNOWN_HARMLESS_LOG_MESSAGES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and start in f.starts for f in logger.filters):
            logger.addFilter(_DropMessages([start]))


@contextlib.contextmanager
def library_messages(logger_name: str = "transformers"):
    """Recueille les messages (niveau WARNING et au-delà) du journal ``logger_name`` et de ses
    enfants pendant le bloc, au lieu de les laisser s'imprimer sur la sortie d'erreur. Pour une
    leçon qui provoque **exprès** un avertissement de bibliothèque : elle le cite et l'explique au
    lieu de laisser un message brut en anglais. Donne la liste des messages, remplie au fil du bloc.

    >>> import logging
    >>> with library_messages("transformers") as said:
    ...     logging.getLogger("transformers.generation.utils").warning("right-padding was detected")
    >>> said
    ['right-padding was detected']
    """
    import logging

    said: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    logger = logging.getLogger(logger_name)
    handlers, propagate = list(logger.handlers), logger.propagate
    for handler in handlers:
        logger.removeHandler(handler)
    collect = _Collect(logging.WARNING)
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield said
    finally:
        logger.removeHandler(collect)
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = propagate


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


#: Note laissée à la racine du dépôt par la cellule d'installation de Colab
#: (:func:`helpers.colab.install`) quand pip a refusé l'Unsloth épinglé : pourquoi il manque.
UNSLOTH_SKIPPED = ".colab-sans-unsloth.txt"


def skipped_unsloth_reason(repo: Path | None = None) -> str | None:
    """Pourquoi la cellule d'installation de Colab n'a pas installé Unsloth, ou ``None`` (note
    :data:`UNSLOTH_SKIPPED` du dépôt ``repo``, par défaut celui du cours)."""
    from .paths import REPO_ROOT

    path = Path(repo or REPO_ROOT) / UNSLOTH_SKIPPED
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


class UnslothUnavailableError(RuntimeError):
    """Unsloth demandé sans GPU CUDA."""


def load_unsloth():
    """Importe et renvoie ``unsloth`` — seulement si un GPU CUDA est visible.

    Unsloth doit être importé **avant** transformers pour appliquer ses optimisations. Sans GPU,
    aucun import n'est tenté (il échouerait ou tirerait des paquets CUDA) : erreur claire. Un
    Unsloth absent ou qui échoue à l'import (versions de torch, triton ou CUDA incompatibles)
    lève aussi :class:`UnslothUnavailableError`, avec l'erreur d'origine.
    """
    if not cuda_available():
        raise UnslothUnavailableError(
            "Unsloth exige un GPU CUDA, et aucun n'est visible : le profil cpu utilise "
            "bitsandbytes (nf4) + peft à la place. Sur Colab : Exécution > Modifier le type "
            "d'exécution > GPU."
        )
    if "transformers" in sys.modules and "unsloth" not in sys.modules:
        warn_fallback(
            "transformers est déjà importé ; Unsloth devrait l'être avant "
            "(redémarrez le noyau si ses optimisations manquent)."
        )
    try:
        import unsloth  # noqa: F401  (import volontairement tardif)
    except ImportError as err:
        skipped = skipped_unsloth_reason()
        if skipped:  # la cellule d'installation l'a écarté, et dit pourquoi
            raise UnslothUnavailableError(f"Unsloth n'est pas installé : {skipped}.") from err
        raise UnslothUnavailableError(
            f"Unsloth n'est pas installé ({err}). Sur Colab : %pip install -r requirements-gpu.txt, "
            "puis redémarrez la session."
        ) from err
    except Exception as err:  # noqa: BLE001 — Unsloth échoue à l'import de bien des façons
        raise UnslothUnavailableError(
            f"Unsloth est installé mais échoue à l'import ({type(err).__name__} : {err}). Cause "
            "habituelle : versions de torch / triton / CUDA incompatibles (voir la page Dépannage)."
        ) from err
    return unsloth


#: Moteurs du QLoRA qu'on peut demander (``--moteur`` des scripts).
BACKENDS = ("auto", "unsloth", "bitsandbytes")


def select_backend(cfg, requested: str = "auto"):
    """Le seul choix du moteur du QLoRA (notebooks 04 à 07, scripts, notebook 06 en processus à
    part) pour les réglages ``cfg`` (``profile.llm``) : ``(cfg, unsloth ou None)``, ``cfg.backend``
    valant ``"unsloth"`` ou ``"bitsandbytes"``. À appeler **avant** d'importer transformers.

    * ``requested="auto"`` : le moteur du profil. Profil gpu : Unsloth si possible ; s'il manque ou
      échoue à l'import, un :class:`CourseFallbackWarning` l'explique et ``cfg`` revient avec
      ``backend="bitsandbytes"`` — même QLoRA (nf4 + LoRA) avec bitsandbytes et peft, plus lent
      et plus gourmand mais complet. En multi-processus (torchrun), bitsandbytes + peft, dont la
      prise en charge de DDP est documentée (celle d'Unsloth libre dépend de sa version).
    * ``"unsloth"`` : pas de repli, l'erreur (:class:`UnslothUnavailableError`) remonte.
    * ``"bitsandbytes"`` : bitsandbytes + peft, Unsloth n'est pas importé.
    """
    from dataclasses import replace

    if requested not in BACKENDS:
        raise ValueError(f"Moteur inconnu « {requested} » : {', '.join(BACKENDS)}.")
    if requested == "auto" and cfg.backend == "unsloth" and world_size() > 1:
        print(
            "Moteur : bitsandbytes (nf4) + peft sous DDP (plusieurs processus ; l'Unsloth libre vise un "
            "seul GPU : --moteur unsloth pour essayer quand même)."
        )
        return replace(cfg, backend="bitsandbytes"), None
    if requested == "bitsandbytes" or (requested == "auto" and cfg.backend != "unsloth"):
        print(f"Moteur : bitsandbytes (nf4) + peft sur « {cfg.model_id} » ; Unsloth n'est pas importé.")
        return replace(cfg, backend="bitsandbytes"), None
    try:
        module = load_unsloth()
    except UnslothUnavailableError as err:
        if requested == "unsloth":
            raise
        warn_fallback(f"{err}\nRepli : bitsandbytes (nf4) + peft, sans Unsloth.")
        return replace(cfg, backend="bitsandbytes"), None
    print("Moteur : Unsloth (GPU).")
    return replace(cfg, backend="unsloth"), module


def world() -> dict:
    """Rang, rang local et nombre de processus (variables posées par torchrun / accelerate ; un seul
    processus de rang 0 sans elles)."""
    env = os.environ
    return {
        "rank": int(env.get("RANK", 0)),
        "local_rank": int(env.get("LOCAL_RANK", 0)),
        "world_size": int(env.get("WORLD_SIZE", 1)),
        "local_world_size": int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))),
    }


def world_size() -> int:
    """Nombre de processus lancés par torchrun (``WORLD_SIZE``, 1 sans torchrun)."""
    return world()["world_size"]


def is_main_process() -> bool:
    """Vrai pour le processus de rang 0 (celui qui écrit les résultats)."""
    return world()["rank"] == 0


def torch_dtype(precision: str):
    """Le type torch d'une précision du profil : ``bf16`` → ``torch.bfloat16``, ``fp16`` →
    ``torch.float16``, ``fp32`` → ``torch.float32``.

    Sert au calcul de bitsandbytes (``bnb_4bit_compute_dtype``) **et** au ``dtype`` passé à
    Unsloth : avec ``dtype=None``, Unsloth choisit seul (bf16 si le GPU le gère) et refuse ensuite
    un entraînement dans l'autre précision (« Model is in bfloat16 precision but you want to use
    float16 precision »).
    """
    import torch

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if precision not in dtypes:
        raise ValueError(f"Précision inconnue « {precision} » : {', '.join(dtypes)}.")
    return dtypes[precision]


def in_batches(
    fn: Callable[[list[str]], list[str]],
    prompts: Sequence[str],
    batch_size: int,
    desc: str = "génération",
    by_length: bool = False,
) -> list[str]:
    """Applique ``fn`` (une liste de prompts → une liste de réponses) par lots, avec barre de progression.

    ``by_length`` : les lots regroupent des prompts de longueurs voisines (moins de remplissage à
    calculer) ; les réponses reviennent dans l'ordre des ``prompts``.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"Taille de lot invalide : {batch_size} (il faut au moins 1).")
    prompts = list(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if by_length else list(range(len(prompts)))
    out: list[str] = [""] * len(prompts)
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="lot"):
        chunk = order[start : start + batch_size]
        answers = list(fn([prompts[i] for i in chunk]))
        if len(answers) != len(chunk):
            raise ValueError(f"{len(answers)} réponses pour un lot de {len(chunk)} prompts.")
        for i, answer in zip(chunk, answers):
            out[i] = answer
    return out
