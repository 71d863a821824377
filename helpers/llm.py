"""Plomberie des notebooks 04–05 : prompt Alpaca français, tâche courte du profil cpu, génération.

* :data:`ALPACA_PROMPT_FR` / :func:`format_prompt` — le gabarit d'instruction du cours ;
* :func:`analyte_cases` / :func:`balance_statuses` — la tâche courte du profil cpu (une valeur
  par prompt ; voir le notebook 04 : le calcul disponible y impose des réponses brèves) ;
* :func:`check_lengths` — aucun exemple tronqué (la réponse et son EOS resteraient incomplets) ;
* :func:`chat_prompt` / :func:`base_prompt` — le modèle de base interrogé dans son propre gabarit ;
* :func:`generation_tokenizer` / :func:`quiet_max_length` — générer par lots, sans avertissement.

Le choix du moteur (Unsloth ou bitsandbytes + peft) est :func:`helpers.runtime.select_backend` ; la
lecture des statuts dans les réponses, :mod:`helpers.status` ; la mémoire, :mod:`helpers.memory`.
"""

from __future__ import annotations

import random

import pandas as pd

from .analytes import STATUSES, get_analyte  # STATUSES : une seule définition
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
            a = get_analyte(label["code"])
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


# --------------------------------------------------------------------------- génération


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
