"""Plomberie des notebooks 04–05 : prompt Alpaca français, garde Unsloth, lecture des statuts.

* :data:`ALPACA_PROMPT_FR` / :func:`format_prompt` — le gabarit d'instruction du cours ;
* :func:`analyte_cases` / :func:`balance_statuses` — la tâche courte du profil cpu (une valeur
  par prompt ; voir le notebook 04 : le calcul disponible y impose des réponses brèves) ;
* :func:`check_lengths` — aucun exemple tronqué (la réponse et son EOS resteraient incomplets) ;
* :func:`load_unsloth` / :func:`select_backend` — Unsloth **uniquement** sur GPU, repli expliqué sur
  bitsandbytes + peft s'il manque ou échoue à l'import ;
* :func:`parse_statuses` — lit, dans un texte français généré, le statut (bas / normal / élevé)
  annoncé pour chaque analyte, négations et tournures comprises ; :func:`score_answers` compare
  aux étiquettes.
"""

from __future__ import annotations

import random
import re
import sys
import unicodedata

import pandas as pd

from . import runtime
from .analytes import STATUSES, Analyte, load_analytes  # STATUSES : une seule définition
from .stepwise import STEPWISE_INSTRUCTION  # noqa: F401  (réexportée : consigne courte du profil cpu)

#: Le préambule donne un rôle d'**assistant pédagogique**, pas de médecin : celui des documents de
#: conception (« Vous êtes un médecin professionnel… ») invitait le modèle à parler avec l'autorité
#: d'un médecin (diagnostic, conduite à tenir), ce que les avertissements du cours excluent.
ALPACA_PROMPT_FR = (
    "Vous êtes l'assistant pédagogique d'un cours sur les analyses de laboratoire ; vous n'êtes "
    "pas médecin. Pour chaque valeur fournie, indiquez si elle est basse, normale ou élevée par "
    "rapport à son intervalle de référence et expliquez ce que cela signifie en général, sans "
    "diagnostic ni traitement ; rappelez que seul un professionnel de santé interprète ces "
    "résultats.\n\n"
    "### Instruction:\n{instruction}\n\n"
    "### Input:\n{input}\n\n"
    "### Response:\n"
)
#: Gabarit court (profil cpu, tâche « analyte ») : sans la phrase de rôle, le prompt passe d'environ
#: 158 jetons (dont 130 de texte fixe) à une cinquantaine ; entraînement et génération sur CPU sont
#: dominés par ce préfixe.
SHORT_PROMPT_FR = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
#: Sans les balises « ### » : la consigne, l'entrée, puis la réponse à la ligne (14 jetons de moins
#: par exemple avec SmolLM2, soit environ 12 % du calcul de la tâche « analyte »)
MINIMAL_PROMPT_FR = "{instruction}\n{input}\n"
PROMPT_STYLES = {"alpaca": ALPACA_PROMPT_FR, "court": SHORT_PROMPT_FR, "minimal": MINIMAL_PROMPT_FR}
ANSWER_FORMATS = ("statut", "pas_a_pas", "pas_a_pas_arret")


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


def upcast_adapters(model) -> int:
    """Remet en fp32 les poids entraînables (adaptateurs LoRA) ; renvoie leur nombre de tenseurs.

    En ``fp16`` (T4, V100), l'entraînement en précision mixte passe par un *GradScaler* qui exige
    des poids maîtres en fp32. Or ``SFTTrainer`` (TRL 1.x) met les adaptateurs d'un modèle quantifié
    en bf16 : le premier pas échoue alors avec ``"_amp_foreach_non_finite_check_and_unscale_cuda"
    not implemented for 'BFloat16'``. À appeler après la création du trainer, en fp16 seulement.
    """
    import torch

    count = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            count += 1
    return count


class UnslothUnavailableError(RuntimeError):
    """Unsloth demandé sans GPU CUDA."""


# --------------------------------------------------------------------------- prompts
def format_prompt(instruction: str, input_text: str, style: str = "alpaca") -> str:
    """Le prompt complet jusqu'à « ### Response: » (ce que le modèle reçoit) ; ``style`` :
    ``alpaca`` (gabarit des documents d'origine), ``court`` (:data:`SHORT_PROMPT_FR`) ou ``minimal``
    (:data:`MINIMAL_PROMPT_FR`)."""
    if not instruction or not instruction.strip():
        raise ValueError("Instruction vide : impossible de construire le prompt.")
    if style not in PROMPT_STYLES:
        raise ValueError(f"Style de prompt inconnu « {style} » : {', '.join(PROMPT_STYLES)}.")
    return PROMPT_STYLES[style].format(instruction=instruction.strip(), input=(input_text or "").strip())


def _analyte(code: str) -> Analyte:
    analytes = load_analytes()
    if code not in analytes:
        raise ValueError(f"Analyte inconnu dans les étiquettes : « {code} ».")
    return analytes[code]


ANALYTE_INSTRUCTION = "Indiquez si ce résultat est bas, normal ou élevé par rapport à son intervalle de référence."


#: Un gabarit de conversation **simplifié**, écrit pour le cours, au format des modèles
#: Mistral-Instruct (v0.3) : ``<s>[INST] … [/INST]réponse</s>``, la consigne système placée devant
#: le dernier message de l'utilisateur. Le gabarit officiel (tokenizer de
#: ``mistralai/Mistral-7B-Instruct-v0.3``) gère en plus les outils et vérifie l'alternance des
#: rôles. À passer à ``tokenizer.apply_chat_template(..., chat_template=MISTRAL_INST_TEMPLATE)``
#: pour comparer les formats (notebook 05, section 6).
MISTRAL_INST_TEMPLATE = (
    "{%- set system = messages[0]['content'] if messages[0]['role'] == 'system' else '' -%}"
    "<s>"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{%- if m['role'] == 'user' -%}"
    "[INST] {{ (system ~ '\n\n' if system and loop.last else '') ~ m['content'] }} [/INST]"
    "{%- else -%}"
    "{{ m['content'] }}</s>"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def chat_prompt(tokenizer, instruction: str, input_text: str, examples=()) -> str:
    """Le cas dans le **gabarit de conversation du modèle** (``apply_chat_template``), pour une
    comparaison loyale avec un modèle Instruct : c'est ainsi qu'il a appris à répondre.

    La consigne est dite **une fois**, en message système ; chaque cas est un tour utilisateur (la
    valeur seule). ``examples`` : des cas résolus (``input``, ``output``) placés avant, en tours
    utilisateur / assistant (*few-shot*) — répéter la consigne à chaque exemple allongerait le
    prompt sans rien apprendre de plus au modèle. Si le gabarit refuse le rôle système, la consigne
    ouvre le premier tour utilisateur. Erreur française si le tokenizer n'a pas de gabarit.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "Ce tokenizer n'a pas de gabarit de conversation (chat_template) : le modèle n'est "
            "pas un modèle Instruct ; utilisez format_prompt."
        )
    turns = []
    for ex in examples:
        turns += [{"role": "user", "content": ex["input"].strip()}, {"role": "assistant", "content": ex["output"]}]
    turns.append({"role": "user", "content": (input_text or "").strip()})
    try:
        return tokenizer.apply_chat_template(
            [{"role": "system", "content": instruction.strip()}] + turns, tokenize=False, add_generation_prompt=True
        )
    except Exception:  # gabarit sans rôle système (jinja2 TemplateError)
        turns[0] = {"role": "user", "content": f"{instruction.strip()}\n\n{turns[0]['content']}".strip()}
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def base_prompt(
    tokenizer, instruction: str, input_text: str, examples=(), style: str = "court", chat: bool | None = None
) -> str:
    """Le prompt **loyal** du modèle de base : son gabarit de conversation s'il en a un
    (:func:`chat_prompt`, modèle Instruct), sinon (modèle de base pur, comme Mistral-7B v0.3, ou le
    modèle miniature du profil smoke) les ``examples`` résolus puis le cas, écrits l'un après
    l'autre au format :func:`format_prompt` — la suite de texte qu'un modèle pré-entraîné continue.
    ``chat=False`` impose cette seconde forme même à un modèle Instruct (pour mesurer ce que coûte
    un format étranger, notebook 05, section 7)."""
    if chat is None:
        chat = bool(getattr(tokenizer, "chat_template", None))
    if chat:
        return chat_prompt(tokenizer, instruction, input_text, examples)
    shots = "".join(format_prompt(ex["instruction"], ex["input"], style) + ex["output"] + "\n\n" for ex in examples)
    return shots + format_prompt(instruction, input_text, style)


def few_shot_examples(cases, seed: int = 0) -> list[dict]:
    """Un cas résolu par statut (bas, normal, élevé), tirés au hasard de ``cases`` (entraînement)."""
    rng = random.Random(seed)
    out = []
    for status in STATUSES:
        pool = [c for c in cases if c["labels"][0]["statut"] == status]
        if not pool:
            raise ValueError(f"Aucun exemple « {status} » pour le few-shot.")
        out.append(rng.choice(pool))
    rng.shuffle(out)
    return out


def analyte_cases(split, answer_format: str = "statut", instruction: str | None = None):
    """Découpe chaque compte rendu en cas d'**un seul analyte** (tâche courte du profil cpu).

    Même schéma que le jeu d'instructions (``id``, ``instruction``, ``input``, ``output``,
    ``labels``…). ``answer_format`` :

    * ``statut`` : ``input`` = la valeur suivie de son intervalle de référence, ``output`` =
      « Nom : statut » ;
    * ``pas_a_pas`` : valeur et bornes **alignées** dans ``input``, et ``output`` = la comparaison
      chiffre par chiffre avec chaque borne, puis « Nom : statut » (:mod:`helpers.stepwise`) ;
    * ``pas_a_pas_arret`` : le même, arrêté dès que le statut est décidé (une valeur sous la borne
      basse n'est pas comparée à la borne haute).

    ``instruction`` remplace la consigne d'origine (:data:`ANALYTE_INSTRUCTION`) : une consigne
    courte (:data:`STEPWISE_INSTRUCTION`) retire une vingtaine de jetons à chaque prompt.

    ``case_id`` garde l'identifiant du compte rendu d'origine. Sur 2 cœurs, une réponse de
    quelques dizaines de jetons au lieu de 300 rend l'entraînement et l'évaluation possibles.
    """
    from datasets import Dataset

    from .stepwise import stepwise_case

    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"Format de réponse inconnu « {answer_format} » : {', '.join(ANSWER_FORMATS)}.")
    rows = []
    for row in split:
        for i, label in enumerate(row["labels"]):
            a = _analyte(label["code"])
            if label["statut"] not in STATUSES:
                raise ValueError(f"{row.get('id', '?')} : statut inconnu « {label['statut']} ».")
            if answer_format.startswith("pas_a_pas"):
                case = stepwise_case(a, label["valeur"], row["sexe"], stop_early=answer_format == "pas_a_pas_arret")
                if case.status != label["statut"]:
                    raise ValueError(
                        f"{row.get('id', '?')} : statut « {label['statut']} » contraire aux bornes ({case.input})."
                    )
                text_in, text_out = case.input, case.output
            else:
                text_in = f"{a.result_line(label['valeur'])} (référence : {a.range_text(row['sexe'])})"
                text_out = f"{a.titre} : {label['statut']}"
            rows.append(
                {
                    "id": f"{row['id']}-{i + 1}",
                    "case_id": row["id"],
                    "instruction": instruction or ANALYTE_INSTRUCTION,
                    "input": text_in,
                    "output": text_out,
                    "sexe": row["sexe"],
                    "age": row["age"],
                    "panel": row["panel"],
                    "labels": [dict(label)],
                }
            )
    if not rows:
        raise ValueError("Aucun résultat à découper : le split est vide.")
    return Dataset.from_list(rows)


def balance_statuses(cases, seed: int = 0):
    """Sous-échantillonne ``cases`` (cas d'un analyte) pour avoir autant de bas, normal et élevé.

    Sans cela, « normal » (plus de la moitié des valeurs) est la réponse la plus rentable pour un
    petit modèle peu entraîné : il la donne partout (mesuré sur CPU, voir le notebook 04).
    """
    by_status: dict[str, list[int]] = {s: [] for s in STATUSES}
    for i, labels in enumerate(cases["labels"]):
        if len(labels) != 1:
            raise ValueError(
                f"Cas {cases[i]['id']} : {len(labels)} valeurs ; l'équilibrage attend des "
                "cas d'un seul analyte (analyte_cases)."
            )
        by_status[labels[0]["statut"]].append(i)
    n = min(len(v) for v in by_status.values())
    if n == 0:
        empty = [s for s, v in by_status.items() if not v]
        raise ValueError(f"Impossible d'équilibrer : aucun exemple « {', '.join(empty)} ».")
    keep = sorted(i for v in by_status.values() for i in v[:n])
    return cases.select(keep).shuffle(seed=seed)


def check_lengths(dataset, tokenizer, max_length: int) -> pd.Series:
    """Longueur en jetons de ``prompt + completion`` ; erreur si un exemple dépasse ``max_length``.

    Un exemple tronqué perdrait la fin de sa réponse **et son EOS** : le modèle n'apprendrait pas
    à s'arrêter. Mieux vaut le dire que tronquer en silence.
    """
    lengths = pd.Series(
        [
            len(tokenizer(p + c, add_special_tokens=False)["input_ids"])
            for p, c in zip(dataset["prompt"], dataset["completion"])
        ],
        name="jetons",
    )
    too_long = int((lengths > max_length).sum())
    if too_long:
        raise ValueError(
            f"{too_long} exemple(s) dépassent max_length={max_length} jetons (le plus "
            f"long : {lengths.max()}) : augmentez max_seq_length dans le profil."
        )
    return lengths


# --------------------------------------------------------------------------- Unsloth
def load_unsloth():
    """Importe et renvoie ``unsloth`` — seulement si un GPU CUDA est visible.

    Unsloth doit être importé **avant** transformers pour appliquer ses optimisations. Sans GPU,
    aucun import n'est tenté (il échouerait ou tirerait des paquets CUDA) : erreur claire. Un
    Unsloth absent ou qui échoue à l'import (versions de torch, triton ou CUDA incompatibles)
    lève aussi :class:`UnslothUnavailableError`, avec l'erreur d'origine.
    """
    if not runtime.cuda_available():
        raise UnslothUnavailableError(
            "Unsloth exige un GPU CUDA, et aucun n'est visible : le profil cpu utilise "
            "bitsandbytes (nf4) + peft à la place. Sur Colab : Exécution > Modifier le type "
            "d'exécution > GPU."
        )
    if "transformers" in sys.modules and "unsloth" not in sys.modules:
        print(
            "Attention : transformers est déjà importé ; Unsloth devrait l'être avant "
            "(redémarrez le noyau si ses optimisations manquent).",
            file=sys.stderr,
        )
    try:
        import unsloth  # noqa: F401  (import volontairement tardif)
    except ImportError as err:
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


def select_backend(cfg, force: bool = False):
    """Moteur du QLoRA pour les réglages ``cfg`` (``profile.llm``) : ``(cfg, unsloth ou None)``.

    Profil gpu : Unsloth si possible ; s'il manque ou échoue à l'import, le message en français
    est affiché et ``cfg`` est renvoyé avec ``backend="bitsandbytes"`` — même QLoRA (nf4 +
    LoRA), avec bitsandbytes et peft, plus lent et plus gourmand mais complet. ``force=True`` :
    pas de repli, l'erreur remonte.
    """
    from dataclasses import replace

    if cfg.backend != "unsloth" and not force:
        print(f"Moteur : bitsandbytes (nf4) + peft sur « {cfg.model_id} » ; Unsloth n'est pas importé.")
        return cfg, None
    try:
        module = load_unsloth()
    except UnslothUnavailableError as err:
        if force:
            raise
        print(f"{err}\nRepli : bitsandbytes (nf4) + peft, sans Unsloth.", file=sys.stderr)
        return replace(cfg, backend="bitsandbytes"), None
    print("Moteur : Unsloth (GPU).")
    return replace(cfg, backend="unsloth"), module


# --------------------------------------------------------------------------- lecture des statuts
def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in text if not unicodedata.combining(c))


_NORMAL = [
    r"\bnormale?s?\b",
    r"\bnormaux\b",
    r"dans les normes",
    r"dans l'intervalle",
    r"dans les valeurs (de reference|usuelles)",
    r"\bpas d'anomalie",
    r"\bsans anomalie",
    r"limite (superieure|inferieure) de la normale",
]
_HIGH = [
    r"\beleve(e|s|es)?\b",
    r"\bhaute?s?\b",
    r"\baugmente(e|s|es)?\b",
    r"\bsuperieure?s? (a|aux?) ",
    r"\bau-dessus\b",
    r"\bau dessus\b",
    r"\bexces\b",
]
_LOW = [
    r"\bbas(ses?)?\b",
    r"\bfaibles?\b",
    r"\bdiminue(e|s|es)?\b",
    r"\babaisse(e|s|es)?\b",
    r"\binferieure?s? (a|aux?) ",
    r"\ben dessous\b",
    r"\bau-dessous\b",
    r"\ben-dessous\b",
]
_NEGATION = re.compile(r"(\bpas\b|\bnon\b|\bni\b|\bjamais\b|\bsans\b)(\s+[^\s,;.:]+){0,2}\s*$")


def _status_in(fragment: str) -> str | None:
    """Premier statut non nié d'un fragment de texte (déjà normalisé, parenthèses retirées)."""
    found = _found_statuses(fragment)
    if not found:
        return None
    direct = [f for f in found if not f[2]]
    return min(direct or found)[1]


def _found_statuses(fragment: str) -> list[tuple[int, str, bool]]:
    """Statuts trouvés dans un fragment : ``(position, statut, déduit d'une négation)``."""
    found = []
    for status, patterns in (("normal", _NORMAL), ("élevé", _HIGH), ("bas", _LOW)):
        for pattern in patterns:
            for m in re.finditer(pattern, fragment):
                before = fragment[max(0, m.start() - 25) : m.start()]
                if status != "normal" and _NEGATION.search(before):
                    found.append((m.start(), "normal", True))  # « pas élevé » = normal
                elif status == "normal" and re.search(r"\b(pas|non)\s+$", before):
                    continue  # « pas normal » : le statut suit ailleurs
                else:
                    found.append((m.start(), status, False))
    return found


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
                line = tail[other[1] :] if other is not None else ""  # la suite parle d'un autre analyte
                if other is not None:
                    tail = tail[: other[1]]
                if result[owner] is None:
                    result[owner] = _status_in(tail)
                owner = None
    if len(codes) == 1 and result[codes[0]] is None:
        # Une seule valeur : une réponse qui ne nomme pas l'analyte (« Le résultat est bas. ») ne peut
        # parler que d'elle ; on la lit si elle ne donne qu'un statut (lecture loyale du modèle de
        # base). « bas, normal ou élevé » (la consigne répétée) ne tranche pas : introuvable.
        text = _strip_parentheses(" ".join(segments))
        if len({status for _, status, _ in _found_statuses(text)}) == 1:
            result[codes[0]] = _status_in(text)
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

    ``cases`` est une séquence de lignes du jeu d'instructions (avec ``id`` et ``labels``) ou de
    cas d'un analyte (:func:`analyte_cases`, regroupés par ``case_id`` = compte rendu d'origine).
    ``row`` est la position du cas dans ``cases``. Un statut introuvable compte comme faux : rien
    n'est écarté en silence.
    """
    if len(answers) != len(cases):
        raise ValueError(f"{len(answers)} réponses pour {len(cases)} cas : il en faut autant.")
    rows = []
    for i, (answer, case) in enumerate(zip(answers, cases)):
        found = parse_statuses(answer, case["labels"])
        for label in case["labels"]:
            pred = found[label["code"]]
            rows.append(
                {
                    "model": model_label,
                    "row": i,
                    "case_id": case.get("case_id") or case["id"],
                    "code": label["code"],
                    "attendu": label["statut"],
                    "predit": pred or "introuvable",
                    "correct": pred == label["statut"],
                }
            )
    return pd.DataFrame(rows)


def accuracy_table(scored: pd.DataFrame) -> pd.DataFrame:
    """``model,n_cases,n_values,accuracy`` (colonnes de ``status_accuracy.csv``)."""
    out = (
        scored.groupby("model", sort=False)
        .agg(n_cases=("case_id", "nunique"), n_values=("correct", "size"), accuracy=("correct", "mean"))
        .reset_index()
    )
    return out[["model", "n_cases", "n_values", "accuracy"]]


def accuracy_gain(scored: pd.DataFrame, model: str, reference: str, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Gain d'exactitude de ``model`` sur ``reference`` (même valeurs de test, appariées) et son
    intervalle de confiance à 95 % (bootstrap BCa sur les valeurs, :func:`helpers.stats.mean_interval`).

    ``reference`` peut aussi être ``"constante"`` : la réponse constante la plus fréquente du test.
    """
    from .stats import mean_interval

    mine = scored[scored["model"] == model].set_index(["row", "code"])["correct"].astype(float)
    if mine.empty:
        raise ValueError(f"Aucune réponse notée pour « {model} ».")
    if reference == "constante":
        expected = scored[scored["model"] == model].set_index(["row", "code"])["attendu"]
        other = (expected == expected.mode().iloc[0]).astype(float)
    else:
        other = scored[scored["model"] == reference].set_index(["row", "code"])["correct"].astype(float)
        if not mine.index.equals(other.index):
            raise ValueError(f"« {model} » et « {reference} » n'ont pas été notés sur les mêmes valeurs.")
    gain, low, high = mean_interval((mine - other).to_numpy(), n_resamples=n_resamples, seed=seed)
    return {"modele": model, "reference": reference, "valeurs": len(mine), "gain": gain, "ic_bas": low, "ic_haut": high}


def status_recall(scored: pd.DataFrame, model_label: str) -> pd.Series:
    """Rappel par statut attendu : part des valeurs « bas » (« normal », « élevé ») lues comme telles."""
    table = confusion(scored, model_label)
    return pd.Series(
        {s: table.loc[s, s] / table.loc[s].sum() if table.loc[s].sum() else float("nan") for s in STATUSES},
        name=model_label,
    )


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
        "poids_4bits": n["lineaires"] * 4.127 / 8 + n["autres"] * 2,
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
        rows.append({"format": fmt, "mo": model.get_memory_footprint() / 1e6})
        del model
        gc.collect()
    table = pd.DataFrame(rows)
    table["rapport_fp32"] = table["mo"] / table.loc[table["format"] == "fp32", "mo"].iloc[0]
    return table.round({"mo": 1, "rapport_fp32": 3})


def quiet_max_length(model) -> int:
    """Efface le ``max_length`` fixé dans la configuration de génération du modèle (et des modèles
    qu'il enveloppe) ; renvoie le nombre de configurations modifiées.

    Unsloth y inscrit la longueur maximale du modèle. Comme le cours passe ``max_new_tokens`` à
    chaque appel de ``generate``, transformers avertissait alors, **à chaque lot**, que « Both
    `max_new_tokens` and `max_length` seem to have been set ». ``max_new_tokens`` l'emporte de
    toute façon : on retire la valeur redondante, le comportement ne change pas.
    """
    count = 0
    for module in model.modules():
        config = getattr(module, "generation_config", None)
        if config is not None and getattr(config, "max_length", None) is not None:
            config.max_length = None
            count += 1
    return count


def generation_tokenizer(tokenizer):
    """Copie du tokenizer réglée pour générer par lots (remplissage **à gauche**).

    Le tokenizer passé au trainer garde son remplissage à droite (celui de l'entraînement) : on
    ne modifie jamais un objet partagé pour générer, on en fait une copie.
    """
    import copy

    gen_tok = copy.deepcopy(tokenizer)
    gen_tok.padding_side = "left"
    if gen_tok.pad_token is None:
        gen_tok.pad_token = gen_tok.eos_token
    return gen_tok
