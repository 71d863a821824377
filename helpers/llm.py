"""Plomberie des notebooks 04–05 : prompt Alpaca français, garde Unsloth, lecture des statuts.

* :data:`ALPACA_PROMPT_FR` / :func:`format_prompt` — le gabarit d'instruction du cours ;
* :func:`compact_output` / :func:`with_reference_ranges` — la variante courte de la tâche utilisée
  sur CPU (voir le notebook 04 : le calcul disponible y impose des réponses brèves) ;
* :func:`sft_dataset` — colonnes ``prompt`` / ``completion`` pour ``trl.SFTTrainer`` (la perte ne
  porte que sur la complétion), EOS ajouté ;
* :func:`load_unsloth` — importe Unsloth **uniquement** si un GPU CUDA est présent ;
* :func:`parse_statuses` — lit, dans un texte français généré, le statut (bas / normal / élevé)
  annoncé pour chaque analyte, négations et tournures comprises ; :func:`score_answers` compare
  aux étiquettes.
"""
from __future__ import annotations

import re
import sys
import unicodedata

import pandas as pd

from . import runtime
from .analytes import Analyte, load_analytes

ALPACA_PROMPT_FR = (
    "Vous êtes un médecin professionnel spécialisé dans l'analyse des résultats de laboratoire "
    "médical. Analysez les résultats fournis, indiquez pour chaque valeur si elle est basse, "
    "normale ou élevée, et expliquez-les avec prudence.\n\n"
    "### Instruction:\n{instruction}\n\n"
    "### Input:\n{input}\n\n"
    "### Response:\n"
)
STATUSES = ("bas", "normal", "élevé")


class UnslothUnavailableError(RuntimeError):
    """Unsloth demandé sans GPU CUDA."""


# --------------------------------------------------------------------------- prompts
def format_prompt(instruction: str, input_text: str) -> str:
    """Le prompt complet jusqu'à « ### Response: » (ce que le modèle reçoit)."""
    if not instruction or not instruction.strip():
        raise ValueError("Instruction vide : impossible de construire le prompt.")
    return ALPACA_PROMPT_FR.format(instruction=instruction.strip(), input=(input_text or "").strip())


def _analyte(code: str) -> Analyte:
    analytes = load_analytes()
    if code not in analytes:
        raise ValueError(f"Analyte inconnu dans les étiquettes : « {code} ».")
    return analytes[code]


def compact_output(row: dict) -> str:
    """Réponse courte construite depuis les étiquettes : une ligne par valeur, statut en dernier.

    ``- Hémoglobine : 10,9 g/dL (référence : 12 à 16 g/dL) → bas``. La référence est écrite
    **avant** le statut : le modèle compare la valeur à un intervalle qu'il vient d'écrire.
    """
    lines = []
    for label in row["labels"]:
        a = _analyte(label["code"])
        if label["statut"] not in STATUSES:
            raise ValueError(f"{row.get('id', '?')} : statut inconnu « {label['statut']} ».")
        name = a.nom_court[:1].upper() + a.nom_court[1:]
        lines.append(f"- {name} : {a.fmt(label['valeur'])} {a.unite} "
                     f"(référence : {a.range_text(row['sexe'])}) → {label['statut']}")
    return "\n".join(lines)


def with_reference_ranges(row: dict) -> str:
    """L'``input`` du compte rendu, chaque valeur suivie de son intervalle de référence.

    Les comptes rendus réels impriment l'intervalle à côté de chaque résultat ; la variante CPU
    de la tâche fait de même, pour que le modèle compare au lieu de mémoriser 46 intervalles.
    """
    lines = row["input"].split("\n")
    labels = iter(row["labels"])
    out = []
    for line in lines:
        if line.startswith("- "):
            label = next(labels, None)
            if label is None:
                raise ValueError(f"{row.get('id', '?')} : plus de lignes de résultats que d'étiquettes.")
            a = _analyte(label["code"])
            line = f"{line} (référence : {a.range_text(row['sexe'])})"
        out.append(line)
    if next(labels, None) is not None:
        raise ValueError(f"{row.get('id', '?')} : plus d'étiquettes que de lignes de résultats.")
    return "\n".join(out)


def sft_dataset(split, eos_token: str, style: str = "complet"):
    """``Dataset`` ``prompt`` / ``completion`` pour ``SFTTrainer`` (+ ``labels`` conservées).

    ``style="complet"`` : la réponse rédigée du jeu de données (profil gpu) ; ``"compact"`` :
    intervalles dans l'entrée et réponse courte (profils cpu et smoke).
    """
    from datasets import Dataset

    if not eos_token:
        raise ValueError("Jeton de fin (EOS) manquant : le modèle n'apprendrait pas à s'arrêter.")
    if style not in ("complet", "compact"):
        raise ValueError(f"Style de réponse inconnu « {style} » (attendu : complet ou compact).")
    prompts, completions = [], []
    for row in split:
        input_text = row["input"] if style == "complet" else with_reference_ranges(row)
        prompts.append(format_prompt(row["instruction"], input_text))
        output = row["output"] if style == "complet" else compact_output(row)
        completions.append(output + eos_token)
    return Dataset.from_dict({"prompt": prompts, "completion": completions,
                              "id": list(split["id"]), "labels": list(split["labels"])})


# --------------------------------------------------------------------------- Unsloth
def load_unsloth():
    """Importe et renvoie ``unsloth`` — seulement si un GPU CUDA est visible.

    Unsloth doit être importé **avant** transformers pour appliquer ses optimisations. Sans GPU,
    aucun import n'est tenté (il échouerait ou tirerait des paquets CUDA) : erreur claire.
    """
    if not runtime.cuda_available():
        raise UnslothUnavailableError(
            "Unsloth exige un GPU CUDA, et aucun n'est visible : le profil cpu utilise "
            "bitsandbytes (nf4) + peft à la place. Sur Colab : Exécution > Modifier le type "
            "d'exécution > GPU.")
    if "transformers" in sys.modules and "unsloth" not in sys.modules:
        print("Attention : transformers est déjà importé ; Unsloth devrait l'être avant "
              "(redémarrez le noyau si ses optimisations manquent).", file=sys.stderr)
    import unsloth  # noqa: F401  (import volontairement tardif)

    return unsloth


# --------------------------------------------------------------------------- lecture des statuts
def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in text if not unicodedata.combining(c))


_NORMAL = [r"\bnormale?s?\b", r"\bnormaux\b", r"dans les normes", r"dans l'intervalle",
           r"dans les valeurs (de reference|usuelles)", r"\bpas d'anomalie", r"\bsans anomalie",
           r"limite (superieure|inferieure) de la normale"]
_HIGH = [r"\beleve(e|s|es)?\b", r"\bhaute?s?\b", r"\baugmente(e|s|es)?\b", r"\bsuperieure?s? (a|aux?) ",
         r"\bau-dessus\b", r"\bau dessus\b", r"\bexces\b"]
_LOW = [r"\bbas(ses?)?\b", r"\bfaibles?\b", r"\bdiminue(e|s|es)?\b", r"\babaisse(e|s|es)?\b",
        r"\binferieure?s? (a|aux?) ", r"\ben dessous\b", r"\bau-dessous\b", r"\ben-dessous\b"]
_NEGATION = re.compile(r"(\bpas\b|\bnon\b|\bni\b|\bjamais\b|\bsans\b)(\s+[^\s,;.:]+){0,2}\s*$")


def _status_in(fragment: str) -> str | None:
    """Premier statut non nié d'un fragment de texte (déjà normalisé, parenthèses retirées)."""
    found = []
    for status, patterns in (("normal", _NORMAL), ("élevé", _HIGH), ("bas", _LOW)):
        for pattern in patterns:
            for m in re.finditer(pattern, fragment):
                before = fragment[max(0, m.start() - 25):m.start()]
                if status != "normal" and _NEGATION.search(before):
                    found.append((m.start(), "normal", True))  # « pas élevé » = normal
                elif status == "normal" and re.search(r"\b(pas|non)\s+$", before):
                    continue  # « pas normal » : le statut suit ailleurs
                else:
                    found.append((m.start(), status, False))
    if not found:
        return None
    direct = [f for f in found if not f[2]]
    return min(direct or found)[1]


def _names(a: Analyte) -> list[str]:
    names = {a.nom, a.nom_court, a.abreviation, *a.synonymes}  # pas le code interne (« MG » ≈ mg/L)
    return sorted({_norm(n) for n in names if n}, key=len, reverse=True)


def parse_statuses(text: str, labels: list[dict]) -> dict[str, str | None]:
    """Statut annoncé pour chaque analyte des ``labels`` dans ``text`` (``None`` si introuvable).

    Chaque ligne est attribuée à l'analyte dont un nom (nom, nom court, abréviation, synonyme ;
    sans accents ni casse) apparaît en tête de ligne, sinon dans la ligne. Dans la suite de la
    ligne, les parenthèses (références) sont ignorées et le premier statut non nié l'emporte :
    « légèrement élevée » → élevé, « dans les normes » → normal, « n'est pas élevé » → normal.
    """
    if not isinstance(text, str):
        raise ValueError("Le texte généré doit être une chaîne.")
    codes = [label["code"] for label in labels]
    names = {code: _names(_analyte(code)) for code in codes}
    result: dict[str, str | None] = {code: None for code in codes}
    segments = [_norm(raw) for raw in re.split(r"[\n;]|(?<=\.)\s+(?=\D)", text)]
    # 1er passage : lignes structurées « Analyte : … » ; 2e : mentions dans du texte libre.
    for structured in (True, False):
        for line in segments:
            head, colon, rest = line.partition(":")
            head_owner = _find_owner(head, codes, names) if colon else None
            if structured != (head_owner is not None):
                continue
            line = _strip_parentheses(rest if structured else line)
            owner = head_owner
            while line:
                end = 0
                if owner is None:
                    found = _find_owner(line, codes, names, with_end=True)
                    if found is None:
                        break
                    owner, end = found
                tail = line[end:]
                other = _find_owner(tail, [c for c in codes if c != owner], names, with_end=True, start=True)
                line = tail[other[1]:] if other is not None else ""  # la suite parle d'un autre analyte
                if other is not None:
                    tail = tail[:other[1]]
                if result[owner] is None:
                    result[owner] = _status_in(tail)
                owner = None
    return result


def _strip_parentheses(text: str) -> str:
    """Retire les parenthèses (références, précisions) : elles ne portent pas le statut."""
    return re.sub(r"\([^)]*\)", " ", text)


def _find_owner(scope: str, codes: list[str], names: dict, with_end: bool = False, start: bool = False):
    """Analyte nommé le plus tôt dans ``scope`` (à position égale, le nom le plus long).

    Avec ``with_end``, renvoie aussi la position de fin du nom (ou de début si ``start``).
    """
    hits = []
    for code in codes:
        for name in names[code]:
            m = re.search(rf"(?<![\w/-]){re.escape(name)}(?![\w/-])", scope)  # « mg/L » n'est pas Mg
            if m:
                hits.append((m.start(), -len(name), code, m.start() if start else m.end()))
                break
    if not hits:
        return None
    _, _, code, end = min(hits)
    return (code, end) if with_end else code


def score_answers(answers: list[str], cases, model_label: str) -> pd.DataFrame:
    """Une ligne par valeur : cas, analyte, statut attendu, statut lu, correct.

    ``cases`` est une séquence de lignes du jeu d'instructions (avec ``id`` et ``labels``). Un
    statut introuvable compte comme faux : rien n'est écarté en silence.
    """
    if len(answers) != len(cases):
        raise ValueError(f"{len(answers)} réponses pour {len(cases)} cas : il en faut autant.")
    rows = []
    for answer, case in zip(answers, cases):
        found = parse_statuses(answer, case["labels"])
        for label in case["labels"]:
            pred = found[label["code"]]
            rows.append({"model": model_label, "case_id": case["id"], "code": label["code"],
                         "attendu": label["statut"], "predit": pred or "introuvable",
                         "correct": pred == label["statut"]})
    return pd.DataFrame(rows)


def accuracy_table(scored: pd.DataFrame) -> pd.DataFrame:
    """``model,n_cases,n_values,accuracy`` (colonnes de ``status_accuracy.csv``)."""
    out = scored.groupby("model", sort=False).agg(n_cases=("case_id", "nunique"),
                                                   n_values=("correct", "size"),
                                                   accuracy=("correct", "mean")).reset_index()
    return out[["model", "n_cases", "n_values", "accuracy"]]


def confusion(scored: pd.DataFrame, model_label: str) -> pd.DataFrame:
    """Matrice de confusion attendu × lu (avec la colonne « introuvable »)."""
    sub = scored[scored["model"] == model_label]
    cols = [*STATUSES, "introuvable"]
    return pd.crosstab(sub["attendu"], sub["predit"]).reindex(index=list(STATUSES), columns=cols, fill_value=0)


# --------------------------------------------------------------------------- mémoire
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
        rows.append({"format": fmt, "octets_par_poids_lineaire": round(per, 4),
                     "go": (linear * per + other * rest) / 1e9})
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


def lora_parameters(model_or_cfg, r: int, targets=("q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj")) -> int:
    """Paramètres LoRA ajoutés : r × (entrée + sortie) pour chaque couche ciblée."""
    import torch

    total = 0
    for name, module in model_or_cfg.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in targets:
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
        "nf4 + double quant.": {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)},
    }


def measure_memory(path, formats: dict | None = None, device_map: str = "cpu") -> pd.DataFrame:
    """Charge le modèle dans chaque format et lit ``get_memory_footprint()`` (Mo, mesuré).

    Renvoie aussi la part des poids restés hors des couches linéaires (embeddings, normes) :
    sur un petit modèle, elle explique pourquoi 4 bits ne divise pas la mémoire par 8.
    """
    import gc

    from transformers import AutoModelForCausalLM

    rows = []
    for fmt, kwargs in (formats or memory_formats()).items():
        model = AutoModelForCausalLM.from_pretrained(str(path), device_map=device_map, **kwargs)
        rows.append({"format": fmt, "mo": model.get_memory_footprint() / 1e6})
        del model
        gc.collect()
    table = pd.DataFrame(rows)
    table["rapport_fp32"] = table["mo"] / table.loc[table["format"] == "fp32", "mo"].iloc[0]
    return table.round({"mo": 1, "rapport_fp32": 3})


def generation_tokenizer(tokenizer):
    """Copie du tokenizer réglée pour générer par lots (remplissage **à gauche**).

    Ne pas modifier ``padding_side`` du tokenizer passé au trainer : dans nos essais sur CPU,
    générer la référence avant l'entraînement en réglant ce tokenizer partagé à gauche a suffi à
    empêcher SmolLM2 d'apprendre (perte bloquée vers 5 au lieu de 0,2 en 20 pas). D'où une copie.
    """
    import copy

    gen_tok = copy.deepcopy(tokenizer)
    gen_tok.padding_side = "left"
    if gen_tok.pad_token is None:
        gen_tok.pad_token = gen_tok.eos_token
    return gen_tok
