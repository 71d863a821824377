"""Étude des formats de la tâche « analyte » (profil cpu), **sur le split de validation seulement**.

    python -m helpers.llm_study --liste
    python -m helpers.llm_study pas_a_pas_court exercices_30     # quelques variantes
    python -m helpers.llm_study                                   # toutes (long : ~10 min chacune)

Chaque variante part du profil ``cpu`` (même modèle, même LoRA, même optimiseur), change un levier
(format de la réponse, prompt, équilibre des statuts, pas, taux d'apprentissage, exercices de
comparaison avant la tâche), entraîne, puis génère et lit les statuts des valeurs de **validation**
— jamais du test, qui sert à la mesure finale du notebook 05. Chaque variante ajoute (ou remplace)
sa ligne dans ``docs/mesures/etude_formats_cpu.csv`` (versionné, avec commit, date et threads) :
exactitude, rappel par statut, part des lignes de raisonnement justes, durées d'entraînement et de
génération, pic de mémoire. Le notebook 04 affiche ce tableau et en tire le réglage du profil.
Pour mesurer des durées comparables, lancez les variantes une à une, machine au repos.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import pandas as pd

from .measures import replace_variant_rows, study_main
from .runtime import git_commit
from .stepwise import STEPWISE_INSTRUCTION, reasoning_scores

#: Chaque variante fixe **tous** les leviers étudiés : le profil cpu a changé après l'étude (il est
#: devenu la variante retenue), et une variante qui en hériterait ne mesurerait plus ce qu'elle dit.
_NEUTRAL = {
    "answer_format": "statut",
    "prompt_style": "alpaca",
    "balance_statuses": False,
    "batch_size": 4,
    "gradient_accumulation_steps": 2,
    "max_steps": 40,
    "max_new_tokens": 16,
    "train_examples": 200,
    "drill_examples": 0,
    "drill_pairs": 4,
    "table_drills": 0,
    "instruction": None,
    "group_by_length": False,
    "lora_layers_from": None,
    "padding_free": False,
}
_STEPWISE = {
    **_NEUTRAL,
    "prompt_style": "court",
    "balance_statuses": True,
    "gradient_accumulation_steps": 1,
    "max_steps": 140,
    "max_new_tokens": 72,
}
#: Les variantes « tables » : 175 pas, 60 exercices de comparaison (4 paires) et 80 de la table des
#: signes mêlés à la tâche, consigne courte ; « complet » : les deux bornes toujours comparées.
_TABLES = {
    **_STEPWISE,
    "max_steps": 175,
    "drill_examples": 60,
    "drill_pairs": 4,
    "table_drills": 80,
    "instruction": STEPWISE_INSTRUCTION,
}
_COMPLETE = {**_TABLES, "answer_format": "pas_a_pas"}
#: Les variantes : réglages du profil cpu modifiés, exercices de comparaison passés **avant** la tâche
#: (un premier entraînement, lots de 16), et une phrase qui dit ce qui change.
VARIANTS: dict[str, dict] = {
    "statut": {
        "llm": dict(_NEUTRAL),
        "drills": 0,
        "description": "réponse « Nom : statut », prompt Alpaca, 40 pas de 8 (le cours avant l'étude)",
    },
    "pas_a_pas_court": {
        "llm": {**_STEPWISE, "answer_format": "pas_a_pas"},
        "drills": 0,
        "description": "nombres alignés, comparaison chiffre par chiffre avec les deux bornes, "
        "prompt court, statuts équilibrés, 140 pas de 4",
    },
    "exercices_30": {
        "llm": {**_STEPWISE, "answer_format": "pas_a_pas"},
        "drills": 30,
        "description": "le même, après 30 pas (lots de 16) d'exercices de comparaison seuls",
    },
    "arret": {
        "llm": {**_STEPWISE, "answer_format": "pas_a_pas_arret"},
        "drills": 0,
        "description": "pas à pas arrêté dès que le statut est décidé (le statut suit son signe)",
    },
    "arret_exercices": {
        "llm": {
            **_STEPWISE,
            "answer_format": "pas_a_pas_arret",
            "max_steps": 170,
            "drill_examples": 120,
            "drill_pairs": 4,
        },
        "drills": 0,
        "description": "le même, 120 exercices de 4 comparaisons mêlés à la tâche, 170 pas de 4",
    },
    "arret_exercices_court": {
        "llm": {
            **_STEPWISE,
            "answer_format": "pas_a_pas_arret",
            "max_steps": 170,
            "drill_examples": 120,
            "drill_pairs": 4,
            "group_by_length": True,
            "instruction": STEPWISE_INSTRUCTION,
        },
        "drills": 0,
        "description": "le même, consigne courte (11 jetons au lieu de 30) et lots de "
        "longueurs voisines (moins de remplissage)",
    },
    "arret_tables": {
        "llm": {**_TABLES, "answer_format": "pas_a_pas_arret", "group_by_length": True},
        "drills": 0,
        "description": "le même, avec 60 exercices de comparaison et 80 exercices de la table "
        "des signes (20 paires de chiffres chacun), 175 pas de 4",
    },
    "tables": {
        "llm": {**_TABLES, "answer_format": "pas_a_pas_arret"},
        "drills": 0,
        "description": "« arret_tables » en lots tirés au hasard (sans regroupement par longueur)",
    },
    "complet_tables": {
        "llm": dict(_COMPLETE),
        "drills": 0,
        "description": "« tables », mais les deux bornes toujours comparées (sans arrêt anticipé)",
    },
    "complet_tables_400": {
        "llm": {**_COMPLETE, "train_examples": 400},
        "drills": 0,
        "description": "« complet_tables », cas tirés de 400 comptes rendus au lieu de 200 "
        "(plus variés, même nombre de pas)",
    },
    "couches_hautes": {
        "llm": {**_COMPLETE, "lora_layers_from": 15, "padding_free": True},
        "drills": 0,
        "description": "« complet_tables », LoRA sur les 15 couches hautes seulement (la "
        "rétropropagation s'arrête à la couche 15) et lots sans remplissage",
    },
    "complet_tables_140": {
        "llm": {**_COMPLETE, "max_steps": 140, "padding_free": True},
        "drills": 0,
        "description": "« complet_tables » en 140 pas au lieu de 175 (budget de temps), lots sans remplissage",
    },
    "complet_tables_rapide": {
        "llm": {**_COMPLETE, "padding_free": True},
        "drills": 0,
        "description": "« complet_tables » (175 pas) en lots sans remplissage, tête de sortie "
        "calculée sur la réponse seulement : même calcul, moins de temps",
    },
    "complet_tables_minimal": {
        "llm": {**_COMPLETE, "padding_free": True, "prompt_style": "minimal"},
        "drills": 0,
        "description": "« complet_tables_rapide », prompt sans balises « ### » (consigne, "
        "entrée, réponse à la ligne : 14 jetons de moins par exemple)",
    },
}
#: La variante retenue pour le profil cpu : la meilleure exactitude de validation parmi celles dont
#: l'entraînement tient dans :data:`TRAINING_BUDGET_S` (notebook 04, section 7).
CHOSEN_VARIANT = "complet_tables_minimal"
#: Secondes d'entraînement (2 cœurs) que laisse le budget de 12 minutes des notebooks 04 + 05 :
#: environ 4 minutes vont au reste (perte de validation, générations et références du notebook 05,
#: mesurées par `make bench-llm`).
TRAINING_BUDGET_S = 460


def best_within_budget(table: pd.DataFrame, budget_s: float = TRAINING_BUDGET_S) -> str:
    """La variante de meilleure exactitude parmi celles entraînées en au plus ``budget_s`` secondes."""
    fitting = table[table["train_seconds"] <= budget_s]
    if fitting.empty:
        raise ValueError(f"Aucune variante de l'étude ne s'entraîne en {budget_s:.0f} s ou moins.")
    return str(fitting.loc[fitting["accuracy"].idxmax(), "variant"])


STUDY_COLUMNS = [
    "variant",
    "description",
    "accuracy",
    "recall_low",
    "recall_normal",
    "recall_high",
    "unparsed",
    "reasoning_correct",
    "status_follows_reasoning",
    "values",
    "steps",
    "drills",
    "train_seconds",
    "generation_seconds",
    "peak_rss_mb",
    "threads",
    "commit",
    "date",
]


def study_path():
    """``docs/mesures/etude_formats_cpu.csv`` : l'étude est une **mesure versionnée** (comme le
    contrôle GPU), affichée par le notebook 04 avec sa provenance (commit, date, threads)."""
    from .measures import MEASURES_DIR

    return MEASURES_DIR / "etude_formats_cpu.csv"


def study_table():
    """Le tableau de l'étude pour le notebook 04 (exactitudes en %, colonnes lisibles), ou ``None``."""
    path = study_path()
    if not path.exists():
        return None
    table = pd.read_csv(path)
    return table[
        [
            "variant",
            "description",
            "accuracy",
            "recall_low",
            "recall_normal",
            "recall_high",
            "reasoning_correct",
            "steps",
            "train_seconds",
            "peak_rss_mb",
            "threads",
            "commit",
            "date",
        ]
    ]


def _drill_dataset(n_steps: int, batch: int, cfg, eos: str, seed: int):
    """Les exercices passés **avant** la tâche : ``n_steps × batch`` comparaisons d'une paire."""
    from .training import drill_dataset

    return drill_dataset(replace(cfg, drill_examples=n_steps * batch, drill_pairs=1, table_drills=0), eos, seed)


def run_variant(name: str, profile=None) -> dict:
    """Entraîne la variante ``name`` et la mesure sur la validation ; renvoie sa ligne."""
    import torch

    from . import training
    from .data import load_instructions
    from .llm import analyte_cases, format_prompt, generation_tokenizer, upcast_adapters
    from .memory import peak_rss_mb, reset_peak_rss
    from .profiles import get_profile
    from .runtime import configure_threads, in_batches
    from .status import confusion, score_answers, status_recall

    spec = VARIANTS[name]
    base = profile or get_profile("cpu")
    profile = replace(base, llm=replace(base.llm, **spec["llm"]))
    cfg = profile.llm
    threads = configure_threads()
    reset_peak_rss()
    model, tokenizer, _ = training.load_qlora_model(profile, "bitsandbytes")
    train, val_loss = training.qlora_datasets(profile, tokenizer)
    start = time.perf_counter()
    if spec["drills"]:
        drills = _drill_dataset(spec["drills"], 16, cfg, tokenizer.eos_token, profile.seed)
        drill_profile = replace(profile, llm=replace(cfg, batch_size=16, gradient_accumulation_steps=1))
        trainer = training.qlora_trainer(
            drill_profile,
            model,
            tokenizer,
            drills,
            val_loss,
            f"/tmp/etude_{name}_ex",
            max_steps=spec["drills"],
        )
        upcast_adapters(trainer.model)
        training.set_seed(profile.seed)
        trainer.train()
    trainer = training.qlora_trainer(profile, model, tokenizer, train, val_loss, f"/tmp/etude_{name}")
    upcast_adapters(trainer.model)
    training.set_seed(profile.seed)
    output = trainer.train()
    train_seconds = time.perf_counter() - start

    cases = analyte_cases(load_instructions(profile)["validation"], cfg.answer_format, cfg.instruction)
    prompts = [format_prompt(c["instruction"], c["input"], cfg.prompt_style) for c in cases]
    gen_tok = generation_tokenizer(tokenizer)
    model.eval()

    def generate(batch):
        encoded = gen_tok(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **encoded,
                max_new_tokens=cfg.max_new_tokens,
                do_sample=False,
                pad_token_id=gen_tok.pad_token_id,
                eos_token_id=gen_tok.eos_token_id,
            )
        return gen_tok.batch_decode(out[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)

    start = time.perf_counter()
    answers = in_batches(generate, prompts, 48, desc=name, by_length=True)
    gen_seconds = time.perf_counter() - start
    scored = score_answers(answers, cases, name)
    table = confusion(scored, name)
    recall = status_recall(scored, name)
    row = {
        "variant": name,
        "description": spec["description"],
        "accuracy": scored["correct"].mean(),
        "recall_low": recall["bas"],
        "recall_normal": recall["normal"],
        "recall_high": recall["élevé"],
        "unparsed": int(table["introuvable"].sum()),
        "values": len(scored),
        "steps": output.global_step,
        "drills": spec["drills"],
        "train_seconds": round(train_seconds, 1),
        "generation_seconds": round(gen_seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
        "threads": threads,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        **(
            reasoning_scores(answers, cases)
            if cfg.answer_format.startswith("pas_a_pas")
            else {"reasoning_correct": None, "status_follows_reasoning": None}
        ),
    }
    save_row(row)
    save_answers(name, cases, answers)
    return row


def answers_path(name: str):
    """``outputs/cpu/llm/etude/<variante>.jsonl`` : les réponses de validation d'une variante."""
    from .outputs import output_path

    return output_path("cpu", f"llm/etude/{name}.jsonl")


def save_answers(name: str, cases, answers: list[str]):
    """Garde les réponses de validation d'une variante (pour relire ses erreurs)."""
    import json

    path = answers_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for case, text in zip(cases, answers):
            f.write(
                json.dumps(
                    {"id": case["id"], "input": case["input"], "output": case["output"], "answer": text},
                    ensure_ascii=False,
                )
                + "\n"
            )
    return path


def save_row(row: dict, path=None) -> pd.DataFrame:
    """Ajoute (ou remplace) la ligne d'une variante dans l'étude (:func:`study_path`)."""
    return replace_variant_rows(pd.DataFrame([row]), path or study_path(), STUDY_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    def run(name: str) -> None:
        row = run_variant(name)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    return study_main(
        argv, prog="python -m helpers.llm_study", description=__doc__.splitlines()[0], variants=VARIANTS, run=run
    )


if __name__ == "__main__":
    sys.exit(main())
