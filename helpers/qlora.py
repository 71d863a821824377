"""Plomberie des notebooks 04–05 autour de l'entraînement QLoRA et de l'évaluation des réponses.

Le code à apprendre (configuration de quantification, LoRA, arguments du trainer, prompt, appel à
``generate``) reste dans les notebooks ; ici : chemins de sortie, tailles sur disque, estimations
de mémoire d'entraînement, graphiques, génération par lots avec barre de progression, exemples,
sauvegarde des résultats et vérification des objectifs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from .outputs import load_json, output_path, require_output, save_json, save_table
from .runtime import in_batches

STATUS_ACCURACY_COLUMNS = ["model", "n_cases", "n_values", "accuracy"]


# --------------------------------------------------------------------------- chemins
def adapter_dir(profile_name: str) -> Path:
    """Dossier de l'adaptateur LoRA : ``outputs/<profil>/llm/adapter/``."""
    return output_path(profile_name, "llm/adapter")


def merged_dir(profile_name: str) -> Path:
    """Dossier du modèle fusionné (base + LoRA) : ``outputs/<profil>/llm/merged/``."""
    return output_path(profile_name, "llm/merged")


def checkpoints_dir(profile_name: str) -> Path:
    """Dossier des checkpoints du QLoRA (reprise) : ``outputs/<profil>/llm/checkpoints/``."""
    return output_path(profile_name, "llm/checkpoints")


def require_adapter(profile_name: str) -> Path:
    """Chemin de l'adaptateur entraîné par le notebook 04, ou erreur claire s'il manque."""
    return require_output(profile_name, "llm/adapter")


# --------------------------------------------------------------------------- mémoire d'entraînement


# --------------------------------------------------------------------------- graphiques
def plot_losses(log_history: list[dict], base_eval_loss: float | None = None, final_eval_loss: float | None = None):
    """Perte d'entraînement au fil des pas, validations intermédiaires s'il y en a, et les pertes de
    validation du modèle de base (ligne) et du modèle final (point au dernier pas)."""
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if not train:
        raise ValueError("Historique d'entraînement vide : rien à tracer (logging_steps trop grand ?).")
    if final_eval_loss is not None:  # l'évaluation finale est déjà le losange : pas de doublon
        evals = [(step, loss) for step, loss in evals if step != train[-1][0]]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(*zip(*train), marker=".", color="tab:red", label="entraînement")
    if evals:
        ax.plot(*zip(*evals), "o-", color="tab:blue", label="validation")
    if final_eval_loss is not None:
        ax.plot([train[-1][0]], [final_eval_loss], "D", color="tab:blue", ms=8, label="validation, modèle fine-tuné")
    if base_eval_loss is not None:
        ax.axhline(base_eval_loss, ls="--", color="grey", label="validation, modèle de base")
    ax.set_xlabel("pas d'optimisation")
    ax.set_ylabel("perte (entropie croisée sur la réponse)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion(tables: dict[str, pd.DataFrame]):
    """Matrices de confusion côte à côte (une par modèle), effectifs écrits dans les cases."""
    import matplotlib.pyplot as plt

    from .text import DISPLAY_LABELS

    if not tables:
        raise ValueError("Aucune matrice de confusion à tracer.")
    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 3.6), squeeze=False)
    for ax, (label, table) in zip(axes[0], tables.items()):
        ax.imshow(table.values, cmap="Blues")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=30)
        ax.set_yticks(range(table.shape[0]), table.index)
        ax.set_xlabel("statut lu dans la réponse")
        ax.set_ylabel("statut attendu")
        ax.set_title(DISPLAY_LABELS.get(label, label))  # « fine-tuné », « base (few-shot) »
        high = table.values.max() / 2 if table.values.size else 0
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                v = int(table.iat[i, j])
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > high else "black")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- génération


def generate_with_prefix_cache(
    model, tokenizer, prompts: Sequence[str], batch_size: int, desc: str = "génération", **settings
) -> list[str]:
    """Génère (``model.generate(**settings)``) pour des prompts qui **commencent tous pareil** — le
    few-shot : la consigne et les exemples résolus, puis le cas — en calculant ce début commun
    **une seule fois**.

    Le début commun est lu sur les jetons (le plus long préfixe partagé par tous les prompts) ; son
    cache clé / valeur est calculé une fois, puis recopié pour chaque prompt du lot. Chaque prompt
    devient ``début commun + remplissage + sa fin`` : le remplissage, masqué, se place entre les
    deux (les positions se déduisent du masque), pour que le début garde les positions de son cache.
    C'est l'idée du *prefix caching* des serveurs d'inférence. Greedy, le résultat est celui d'une
    génération ordinaire, aux arrondis près (testé) ; les réponses reviennent dans l'ordre des prompts.
    """
    import copy

    import torch

    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    ids_of = dict(zip(prompts, encoded))
    shared = 0  # longueur du début commun (au moins un jeton propre à chaque prompt)
    shortest = min((len(ids) for ids in encoded), default=0)
    while shared < shortest - 1 and all(ids[shared] == encoded[0][shared] for ids in encoded):
        shared += 1
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prefix = encoded[0][:shared] if encoded else []
    with torch.no_grad():
        prefix_cache = (
            model(input_ids=torch.tensor([prefix], device=device), use_cache=True).past_key_values if shared else None
        )

    def generate(batch: list[str]) -> list[str]:
        tails = [ids_of[p][shared:] for p in batch]  # déjà encodés pour trouver le début commun
        width = max(len(t) for t in tails)
        ids = torch.tensor([prefix + [pad] * (width - len(t)) + t for t in tails], device=device)
        mask = torch.tensor([[1] * shared + [0] * (width - len(t)) + [1] * len(t) for t in tails], device=device)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(batch))
        with torch.no_grad():
            output = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, **settings)
        return tokenizer.batch_decode(output[:, ids.shape[1] :], skip_special_tokens=True)

    return in_batches(generate, prompts, batch_size, desc=desc, by_length=True)


def examples(
    scored: pd.DataFrame, answers: dict[str, list[str]], cases, model_label: str, correct: bool, n: int = 3
) -> pd.DataFrame:
    """Quelques cas où ``model_label`` a juste (``correct=True``) ou faux, avec les réponses de chaque modèle."""
    sub = scored[(scored["model"] == model_label) & (scored["correct"] == correct)]
    ids = list(dict.fromkeys(sub["row"]))[:n]
    rows = []
    for i in ids:
        row = {"entrée": cases[i]["input"], "expected": ", ".join(label["statut"] for label in cases[i]["labels"])}
        for label, texts in answers.items():
            row[label] = texts[i]
        rows.append(row)
    return pd.DataFrame(rows)


def format_examples(table: pd.DataFrame, disclaimer: str) -> str:
    """Texte lisible d'exemples (sortie de :func:`examples`), l'avertissement après **chaque** réponse."""
    blocks = []
    for i, row in enumerate(table.to_dict("records"), 1):
        lines = [f"── Exemple {i} ──", f"Entrée : {row['entrée']}", f"Statut(s) attendu(s) : {row['expected']}"]
        for key, value in row.items():
            if key not in ("entrée", "expected"):
                lines.append(f"Réponse « {key} » : {value.strip() or '(vide)'}")
                lines.append(f"  ↳ {disclaimer}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "(aucun exemple dans cette catégorie)"


def save_inference_summary(summary: dict, profile_name: str) -> Path:
    """``outputs/<profil>/llm/inference.json`` : temps de génération, réglages (relu par le notebook 06)."""
    return save_json(summary, profile_name, "llm/inference.json")


# --------------------------------------------------------------------------- résultats
def save_training_summary(summary: dict, profile_name: str) -> Path:
    """``outputs/<profil>/llm/training.json`` : pertes, temps, mémoire, paramètres (relu par 05 et 06)."""
    return save_json(summary, profile_name, "llm/training.json")


def load_training_summary(profile_name: str) -> dict:
    """Relit le résumé écrit par le notebook 04 (erreur claire s'il manque)."""
    return load_json(profile_name, "llm/training.json")


def load_status_accuracy(profile_name: str) -> pd.DataFrame:
    """Relit ``status_accuracy.csv`` du notebook 05 (colonnes vérifiées)."""
    path = require_output(profile_name, "llm/status_accuracy.csv")
    table = pd.read_csv(path)
    missing = [c for c in STATUS_ACCURACY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path} : colonnes manquantes {missing} ; réexécutez le notebook 05.")
    return table


def load_answers(profile_name: str, cases, label: str = "finetuned") -> list[str]:
    """Relit les réponses ``label`` du notebook 05 (``answers.jsonl``), dans l'ordre de ``cases``.

    Vérifie qu'elles répondent bien à ces cas (même identifiant, même entrée) : sinon, erreur
    française qui demande de réexécuter le notebook 05 (profil ou données changés depuis).
    """
    path = require_output(profile_name, "llm/answers.jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = list(cases)
    if len(records) != len(cases):
        raise ValueError(
            f"{path} : {len(records)} réponses pour {len(cases)} cas ; réexécutez le notebook 05 "
            f"(profil « {profile_name} »)."
        )
    for i, (record, case) in enumerate(zip(records, cases), 1):
        if record.get("id") != case["id"] or record.get("prompt_input") != case["input"]:
            raise ValueError(
                f"{path}, ligne {i} : la réponse ne correspond pas au cas « {case['id']} » ; réexécutez le notebook 05."
            )
        if label not in record:
            raise ValueError(
                f"{path}, ligne {i} : pas de réponse « {label} » (présentes : "
                f"{', '.join(k for k in record if k not in ('id', 'prompt_input'))})."
            )
    return [r[label] for r in records]


def save_status_results(
    accuracy: pd.DataFrame, scored: pd.DataFrame, answers: dict[str, list[str]], cases, profile_name: str
) -> dict[str, Path]:
    """Écrit ``status_accuracy.csv`` (colonnes imposées), le détail par valeur et les réponses."""
    missing = [c for c in STATUS_ACCURACY_COLUMNS if c not in accuracy.columns]
    if missing:
        raise ValueError(f"Colonnes manquantes dans le tableau d'exactitude : {', '.join(missing)}.")
    paths = {
        "accuracy": save_table(accuracy[STATUS_ACCURACY_COLUMNS], profile_name, "llm/status_accuracy.csv"),
        "values": save_table(scored, profile_name, "llm/status_values.csv"),
        "answers": output_path(profile_name, "llm/answers.jsonl"),
    }
    with paths["answers"].open("w", encoding="utf-8") as f:
        for i, case in enumerate(cases):
            record = {
                "id": case["id"],
                "prompt_input": case["input"],
                **{label: texts[i] for label, texts in answers.items()},
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths


def check_targets(rows: list[tuple[str, str, bool]]) -> pd.DataFrame:
    """Tableau « critère / mesure / atteint » à partir de triplets (aucun assert : on affiche) ;
    mesures écrites à la française (« 93,9 % »)."""
    from .text import french_decimals

    return pd.DataFrame(
        [(what, french_decimals(str(measure)), ok) for what, measure, ok in rows],
        columns=["critère", "mesure", "atteint"],
    )


# --------------------------------------------------------------------------- diagnostic
def comparison_pairs(n: int = 100, seed: int = 0) -> list[tuple[str, str, bool]]:
    """``n`` paires de nombres écrits à la française (« 3,81 », « 4 ») et la vérité « a > b ».

    ``b`` est tiré à ±30 % de ``a`` : des nombres proches, comme une valeur et sa borne.
    Exactement la moitié des paires ont ``a > b``.
    """
    import random

    rng = random.Random(seed)
    pairs = []
    while len(pairs) < n:
        a = round(rng.uniform(0.1, 100), rng.choice([0, 1, 2]))
        b = round(a * rng.uniform(0.7, 1.3), rng.choice([0, 1, 2]))
        if a == b or (a > b) != (len(pairs) % 2 == 0):
            continue
        fr = lambda x: f"{x:g}".replace(".", ",")  # noqa: E731
        pairs.append((fr(a), fr(b), a > b))
    return pairs


def comparison_probe(
    model, tokenizer, n: int = 100, seed: int = 0, batch_size: int = 16, style: str = "alpaca"
) -> float:
    """Exactitude du modèle à dire si a > b (« oui » / « non »), lue sur les logits du 1er jeton.

    ``style`` : le gabarit de prompt de l'entraînement (:func:`helpers.llm.format_prompt`, celui du
    profil). Une exactitude proche de 50 % signifie que le modèle ne sait pas comparer deux nombres
    en un jeton : il ne peut alors pas comparer une valeur à sa borne d'un seul coup.
    """
    import torch

    from .llm import format_prompt, generation_tokenizer

    tok = generation_tokenizer(tokenizer)
    oui = tok("oui", add_special_tokens=False)["input_ids"][0]
    non = tok("non", add_special_tokens=False)["input_ids"][0]
    if oui == non:
        raise ValueError("« oui » et « non » commencent par le même jeton : sonde inutilisable.")
    pairs = comparison_pairs(n, seed)
    prompts = [
        format_prompt(f"Le nombre {a} est-il strictement supérieur à {b} ? Répondez par oui ou par non.", "", style)
        for a, b, _ in pairs
    ]
    correct = 0
    device = next(model.parameters()).device
    for start in range(0, n, batch_size):
        enc = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            try:  # le dernier jeton seulement (transformers) ; un forward qui ne le connaît pas : tout
                logits = model(**enc, logits_to_keep=1).logits[:, -1, :]
            except TypeError:
                logits = model(**enc).logits[:, -1, :]
        says_yes = (logits[:, oui] > logits[:, non]).tolist()
        correct += sum(y == truth for y, (_, _, truth) in zip(says_yes, pairs[start : start + batch_size]))
    return correct / n


# --------------------------------------------------------------------------- mesures


def answer_profile(scored: pd.DataFrame) -> pd.DataFrame:
    """Par modèle : réponses lisibles, statut le plus donné et sa part, exactitude, et l'exactitude
    d'une réponse constante (toujours le statut le plus fréquent des étiquettes)."""
    rows = []
    for model, sub in scored.groupby("model", sort=False):
        readable = sub[sub["predicted"] != "introuvable"]
        top = readable["predicted"].value_counts()
        majority = sub["expected"].value_counts()
        rows.append(
            {
                "model": model,
                "readable_status": len(readable) / len(sub),
                "most_given_status": top.index[0] if len(top) else "—",
                "most_given_share": top.iloc[0] / len(sub) if len(top) else 0.0,
                "accuracy": sub["correct"].mean(),
                "constant_answer_accuracy": majority.iloc[0] / len(sub),
            }
        )
    return pd.DataFrame(rows).round(3)


# --------------------------------------------------------------------------- piège bitsandbytes CPU
def disable_cpu_weight_packing(model) -> int:
    """Empêche bitsandbytes de « réempaqueter » les poids 4 bits pour l'inférence CPU ; annule
    l'empaquetage déjà fait. Renvoie le nombre de couches ``Linear4bit`` concernées.

    bitsandbytes 0.50 (CPU avec AVX512-BF16) convertit les poids d'une couche 4 bits dans un format
    propre à l'inférence au premier passage en mode évaluation sans gradient
    (``trainer.evaluate()``, ``generate``) et ne revient jamais en arrière. Un entraînement lancé
    ensuite rétropropage à travers ce format avec des gradients faux : mesuré sur SmolLM2, la perte
    reste vers 4 au lieu de tomber sous 0,3 en 12 pas. Sans effet sur GPU ni sans AVX512-BF16.
    """
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # pas de bitsandbytes : rien à faire
        return 0
    count = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        module.support_avx512bf16_for_cpu = False
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
            module.quant_state = weight.quant_state
        count += 1
    return count


def load_finetuned_llm(profile, adapter_path: Path | str | None = None):
    """Recharge le modèle de base en 4 bits et l'adaptateur du notebook 04 (même code que le 05),
    ou celui de ``adapter_path`` (le bras B' du notebook 06).

    GPU : Unsloth (``FastLanguageModel`` depuis le dossier de l'adaptateur, mode inférence) ;
    CPU : bitsandbytes nf4 + peft. Renvoie ``(model, tokenizer)``, modèle en mode évaluation.
    """
    import torch

    from .llm import quiet_max_length
    from .models import resolve_model
    from .runtime import select_backend, torch_dtype

    if adapter_path is None:
        adapter_path = require_adapter(profile.name)
    elif not (Path(adapter_path) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"Pas d'adaptateur LoRA dans {adapter_path} (adapter_config.json absent).")
    cfg, _ = select_backend(profile.llm)  # repli sur bitsandbytes + peft si Unsloth manque
    dtype = torch_dtype(cfg.precision)
    if cfg.backend == "unsloth":
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(adapter_path), max_seq_length=cfg.max_seq_length, dtype=dtype, load_in_4bit=True
        )
        FastLanguageModel.for_inference(model)
    else:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        source, _ = resolve_model(cfg.model_id, cfg.offline_model, what="modèle de langage")
        bnb = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        base = AutoModelForCausalLM.from_pretrained(
            source, quantization_config=bnb, dtype=dtype, device_map={"": 0} if torch.cuda.is_available() else "cpu"
        )
        model = PeftModel.from_pretrained(base, str(adapter_path))
        tokenizer = AutoTokenizer.from_pretrained(str(adapter_path))
    model.eval()
    quiet_max_length(model)
    return model, tokenizer


def dequantized_base(source: str, quantization_config, device_map="cpu"):
    """Le modèle de base tel que l'adaptateur l'a vu à l'entraînement : chargé en 4 bits avec
    ``quantization_config`` (celle du notebook 04), puis **déquantifié** en float32
    (``PreTrainedModel.dequantize`` de transformers). Ses poids sont les valeurs nf4 arrondies, pas
    les poids d'origine : c'est dans ceux-là qu'on fusionne l'adaptateur (notebook 04, section 10)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    model = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=quantization_config, dtype=torch.float32, device_map=device_map
    )
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # « The modules are dequantized in torch.float32 » : ce qu'on demande
    try:
        return model.dequantize()
    finally:
        hf_logging.set_verbosity(previous)


def load_merged_llm(profile):
    """Recharge le modèle **fusionné** du notebook 04 (base + LoRA, safetensors), celui qu'on
    exporte : transformers seul, sans peft ni quantification, en float32 sur CPU et dans la
    précision du profil sur GPU. Renvoie ``(model, tokenizer)``, modèle en mode évaluation.

    Erreur française si le notebook 04 ne l'a pas écrit (profil gpu par défaut : ``save_merged``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .llm import quiet_max_length
    from .runtime import torch_dtype

    folder = merged_dir(profile.name)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"Pas de modèle fusionné pour le profil {profile.name} : le notebook 04 ne l'écrit qu'avec "
            "save_merged=True (COURSE_SAVE_MERGED=1 sur gpu)."
        )
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(
        str(folder),
        dtype=torch_dtype(profile.llm.precision) if cuda else torch.float32,
        device_map={"": 0} if cuda else "cpu",
    )
    model.eval()
    quiet_max_length(model)
    return model, AutoTokenizer.from_pretrained(str(folder))
