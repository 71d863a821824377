"""Mémoire : le calcul (octets par poids, LoRA, optimiseur, estimation GPU de Mistral-7B) et la
mesure (pic de mémoire résidente, pics GPU, sondes remises à zéro, taille sur disque).

Couche de base : ce module ne connaît aucun chapitre. Le calcul vit ici une seule fois (une seule
constante nf4, :data:`NF4_DOUBLE_QUANT_BYTES`) ; les notebooks 02, 04, 05 et 06 et les scripts
l'importent.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

#: Octets par poids des couches linéaires, selon le format de stockage.
#: nf4 : 4 bits + une échelle fp32 par bloc de 64 poids ; avec double quantification, l'échelle
#: est elle-même quantifiée en 8 bits (+ une échelle fp32 par groupe de 256 blocs).
BYTES_PER_WEIGHT = {
    "fp32": 4.0,
    "bf16": 2.0,
    "int8": 1.0 + 4 / 4096,  # LLM.int8 : une échelle fp32 par ligne (~4 096 poids pour 7B)
    "nf4": 0.5 + 4 / 64,
    "nf4 + double quant.": 0.5 + 1 / 64 + 4 / (64 * 256),
}
#: Octets par poids en nf4 avec double quantification (≈ 4,127 bits) : le format du QLoRA du cours.
NF4_DOUBLE_QUANT_BYTES = BYTES_PER_WEIGHT["nf4 + double quant."]


def parameter_groups(model) -> dict:
    """Paramètres des couches linéaires quantifiables et des autres (embeddings, normes, tête)."""
    import torch

    linear = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            linear += module.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return {"lineaires": linear, "autres": total - linear, "total": total}


def theoretical_memory(linear: int, other: int, other_bytes: float = 2.0) -> pd.DataFrame:
    """Mémoire des poids (Go) par format : couches linéaires au format indiqué, le reste
    (embeddings, normes, tête) en ``other_bytes`` octets (bf16 par défaut ; 4 pour fp32)."""
    rows = []
    for fmt, per in BYTES_PER_WEIGHT.items():
        rest = 4.0 if fmt == "fp32" else other_bytes
        rows.append(
            {"format": fmt, "octets_par_poids_lineaire": round(per, 4), "go": (linear * per + other * rest) / 1e9}
        )
    return pd.DataFrame(rows)


#: Mistral-7B v0.3 : 32 couches, d = 4 096, MLP 14 336, 8 têtes KV de 128, vocabulaire 32 768.
MISTRAL_7B = {"couches": 32, "d": 4096, "mlp": 14336, "kv": 8 * 128, "vocab": 32768}


def mistral_7b_parameters(cfg: dict = MISTRAL_7B) -> dict:
    """Nombre de paramètres de Mistral-7B calculé depuis son architecture (pas de téléchargement)."""
    d, L = cfg["d"], cfg["couches"]
    attention = d * d * 2 + d * cfg["kv"] * 2  # q, o + k, v
    mlp = 3 * d * cfg["mlp"]  # gate, up, down
    linear = L * (attention + mlp)
    other = 2 * cfg["vocab"] * d + (2 * L + 1) * d  # embeddings + tête + normes
    return {"lineaires": linear, "autres": other, "total": linear + other}


def mistral_7b_lora_parameters(r: int, cfg: dict = MISTRAL_7B) -> int:
    """Paramètres LoRA ajoutés à Mistral-7B (7 projections ciblées, rang ``r``), par le calcul."""
    d, m, kv = cfg["d"], cfg["mlp"], cfg["kv"]
    per_layer = (d + d) * 2 + (d + kv) * 2 + (d + m) * 3  # q, o ; k, v ; gate, up, down
    return r * per_layer * cfg["couches"]


def qlora_gpu_memory_gb(r: int, batch_size: int, seq_len: int, cfg: dict = MISTRAL_7B) -> dict:
    """Mémoire GPU **estimée** (Go) d'un entraînement QLoRA de Mistral-7B, poste par poste.

    Estimation grossière, par le calcul, à comparer à la mémoire du GPU *avant* de charger quoi
    que ce soit :

    * poids : couches linéaires en nf4 avec double quantification (4,127 bits par poids), le reste
      (embeddings, tête, normes) en 16 bits ;
    * LoRA : poids 16 bits + gradients 16 bits + Adam 8 bits (2 octets) + copie fp32 (4 octets) ;
    * activations avec gradient checkpointing : l'entrée de chaque couche (16 bits), plus une
      couche recalculée entière (≈ 34 octets par position et par dimension, sans le terme en
      seq² que FlashAttention évite) ;
    * logits : lot × longueur × vocabulaire, en 16 bits, en fp32 et leur gradient (10 octets) ;
    * contexte CUDA et fragmentation : 1 Go forfaitaire.

    ``seq_len`` = ``max_seq_length`` : un majorant, les exemples réels sont souvent plus courts.
    """
    n = mistral_7b_parameters(cfg)
    tokens = batch_size * seq_len
    parts = {
        "poids_4bits": n["lineaires"] * NF4_DOUBLE_QUANT_BYTES + n["autres"] * 2,
        "lora_et_optimiseur": mistral_7b_lora_parameters(r, cfg) * 10,
        "activations": tokens * cfg["d"] * (2 * cfg["couches"] + 34),
        "logits": tokens * cfg["vocab"] * 10,
        "contexte_cuda": 1e9,
    }
    out = {k: round(v / 1e9, 2) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()) / 1e9, 2)
    return out


def lora_parameters(
    model_or_cfg,
    r: int,
    targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    first_layer: int | None = None,
) -> int:
    """Paramètres LoRA ajoutés : r × (entrée + sortie) pour chaque couche ciblée ; avec
    ``first_layer``, seulement dans les blocs d'indice ≥ ``first_layer`` (``….layers.<i>.…``)."""
    import torch

    def block(name):
        parts = name.split(".")
        return next(
            (int(parts[i + 1]) for i, p in enumerate(parts[:-1]) if p == "layers" and parts[i + 1].isdigit()), None
        )

    total = 0
    for name, module in model_or_cfg.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in targets:
            if first_layer is not None and (block(name) is None or block(name) < first_layer):
                continue
            total += r * (module.in_features + module.out_features)
    return total


def memory_formats() -> dict:
    """Arguments ``from_pretrained`` de chaque format comparé par :func:`measure_memory`."""
    import torch
    from transformers import BitsAndBytesConfig

    return {
        "fp32": {"dtype": torch.float32},
        "bf16": {"dtype": torch.bfloat16},
        "int8": {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)},
        "nf4": {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")},
        "nf4 + double quant.": {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
            )
        },
    }


def measure_memory(path, formats: dict | None = None, device_map: str = "cpu") -> pd.DataFrame:
    """Charge le modèle dans chaque format et lit ``get_memory_footprint()`` (Mo, mesuré), avec
    le rapport à fp32. (:func:`parameter_groups` dit quelle part des poids reste hors des couches
    linéaires quantifiées, et donc pourquoi 4 bits ne divise pas la mémoire par 8.)"""
    import gc

    from transformers import AutoModelForCausalLM

    rows = []
    for fmt, kwargs in (formats or memory_formats()).items():
        model = AutoModelForCausalLM.from_pretrained(str(path), device_map=device_map, **kwargs)
        rows.append({"format": fmt, "mb": model.get_memory_footprint() / 1e6})
        del model
        gc.collect()
    table = pd.DataFrame(rows)
    table["fp32_ratio"] = table["mb"] / table.loc[table["format"] == "fp32", "mb"].iloc[0]
    return table.round({"mb": 1, "fp32_ratio": 3})


def dir_size_mb(path: Path | str) -> float:
    """Taille totale des fichiers d'un dossier (Mo, 1 Mo = 10⁶ octets)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Dossier introuvable : {path}")
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def training_memory(total: int, trainable: int, linear: int) -> pd.DataFrame:
    """Mémoire d'entraînement **hors activations** (Go), calculée octet par octet.

    * ``total`` : paramètres du modèle ; ``linear`` : ceux des couches linéaires quantifiables ;
    * ``trainable`` : paramètres entraînés par LoRA (adaptateurs).

    Fine-tuning complet en précision mixte : poids bf16 (2 o) + gradients bf16 (2 o) + copie
    fp32 des poids (4 o) + deux moments d'Adam (2 × 4 o) = 16 o par paramètre ; avec un AdamW
    8 bits, les deux moments tiennent en 2 o. En LoRA, seuls les adaptateurs (gardés en fp32) ont
    gradients et états d'optimiseur ; le modèle de base est figé, en bf16 ou en nf4.
    """
    if min(total, trainable, linear) < 0 or linear > total:
        raise ValueError("Paramètres incohérents : il faut 0 ≤ linear ≤ total et trainable ≥ 0.")
    other = total - linear
    nf4 = NF4_DOUBLE_QUANT_BYTES
    lora_adam32 = trainable * (4 + 4 + 8)  # poids fp32 + gradient fp32 + 2 moments fp32
    lora_adam8 = trainable * (4 + 4 + 2)
    rows = [
        ("fine-tuning complet", "bf16 + AdamW fp32", total * 16),
        ("fine-tuning complet", "bf16 + AdamW 8 bits", total * (2 + 2 + 4 + 2)),
        ("LoRA", "base bf16 figée + AdamW fp32", total * 2 + lora_adam32),
        ("QLoRA", "base nf4 figée + AdamW fp32", linear * nf4 + other * 2 + lora_adam32),
        ("QLoRA", "base nf4 figée + AdamW 8 bits", linear * nf4 + other * 2 + lora_adam8),
    ]
    table = pd.DataFrame(rows, columns=["méthode", "détail", "octets"])
    table["go"] = (table.pop("octets") / 1e9).round(2)
    return table


def memory_snapshot(model=None) -> dict:
    """Mémoire à cet instant : pic RSS du processus, pic GPU réservé (si CUDA), empreinte du modèle."""
    snap = {"peak_rss_mb": peak_rss_mb()}
    try:
        import torch

        if torch.cuda.is_available():
            snap["peak_gpu_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 1e6)
    except ImportError:
        pass
    if model is not None:
        snap["model_footprint_mb"] = round(model.get_memory_footprint() / 1e6, 1)
    return snap


#: Les relevés de mémoire que :func:`describe_memory` sait nommer (Mo).
MEMORY_LABELS = {
    "peak_rss_mb": "pic du processus",
    "peak_gpu_reserved_mb": "pic GPU réservé",
    "peak_gpu_allocated_mb": "pic GPU alloué",
    "model_footprint_mb": "empreinte du modèle",
}


def describe_memory(snapshot: dict) -> str:
    """Un relevé de :func:`memory_snapshot` ou de :func:`gpu_peaks` en une phrase française (« pic du
    processus 1 375 Mo ; empreinte du modèle 166,5 Mo »), dans l'ordre du relevé ; les clés inconnues
    sont refusées."""
    from .text import french_value

    unknown = sorted(set(snapshot) - set(MEMORY_LABELS))
    if unknown:
        raise ValueError(
            f"Relevé de mémoire : clé(s) inconnue(s) {', '.join(unknown)} (attendues : {', '.join(MEMORY_LABELS)})."
        )
    return " ; ".join(f"{MEMORY_LABELS[k]} {french_value(v)} Mo" for k, v in snapshot.items())


def parameter_count(model) -> int:
    """Nombre **réel** de paramètres, y compris ceux des couches quantifiées en 4 bits.

    bitsandbytes range deux poids 4 bits par octet (``Params4bit`` aplati) : ``numel()`` compte
    alors moitié moins de paramètres ; la forme d'origine est dans ``quant_state.shape``.
    """
    total = 0
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        total += math.prod(state.shape) if state is not None else p.numel()
    return total


def base_model_size_mb(source: str) -> float | None:
    """Taille sur disque du modèle de base : dossier local, sinon son dépôt dans le cache du hub.

    ``None`` si le modèle n'est pas trouvé localement (rien n'est deviné).
    """
    path = Path(source)
    if path.exists():
        return dir_size_mb(path)
    try:
        from huggingface_hub import scan_cache_dir

        repos = [r for r in scan_cache_dir().repos if r.repo_id.startswith(source)]
    except Exception:  # cache absent ou illisible
        return None
    return sum(r.size_on_disk for r in repos) / 1e6 if repos else None


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


def current_rss_mb() -> float | None:
    """Mémoire résidente actuelle du processus (Mo, ``VmRSS`` sous Linux) ; ``None`` ailleurs."""
    kb = proc_status_kb("VmRSS")
    return None if kb is None else kb / 1024


def gpu_peaks() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {
        "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved() / 1e6),
        "peak_gpu_allocated_mb": round(torch.cuda.max_memory_allocated() / 1e6),
    }


class MemoryProbe:
    """La mémoire d'une étape mesurée **dans le noyau**, pic remis à zéro au départ.

    À la création : mémoire libérée rendue au système, pic (``VmHWM``) ramené à la mémoire actuelle
    (:func:`helpers.memory.reset_peak_rss`) et **vérification** de la remise à zéro (le pic relu
    juste après ne dépasse pas la mémoire actuelle de plus de 1 %) ; :meth:`mark` note la mémoire à
    un moment nommé (« modèle chargé ») ; :meth:`stop` renvoie un enregistrement que lit
    :func:`helpers.isolated.memory_table` : la part **propre au bras** est le pic moins la mémoire du départ.
    """

    def __init__(self):
        reset = reset_peak_rss()
        self.start_mb = current_rss_mb()
        peak = peak_rss_mb()
        self.verified = bool(reset and self.start_mb and peak <= 1.01 * self.start_mb + 1)
        self.marks: dict[str, float | None] = {}

    def mark(self, name: str) -> None:
        """Note la mémoire résidente actuelle sous ``name`` (Mo)."""
        self.marks[name] = current_rss_mb()

    def stop(self, steps: int | None = None) -> dict:
        """L'enregistrement de la mesure (mêmes clés que :func:`helpers.isolated.run_arm` quand elles existent)."""
        record = {
            "method": "noyau, pic remis à zéro" + (" (vérifié)" if self.verified else " (NON vérifié)"),
            "steps": steps,
            "start_rss_mb": self.start_mb,
            "loaded_model_rss_mb": self.marks.get("modele_charge"),
            "peak_rss_mb": peak_rss_mb(),
        }
        record.update(gpu_peaks())
        return record
