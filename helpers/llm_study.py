"""Étude des formats de la tâche « analyte » (profil cpu), **sur le split de validation seulement**.

    python -m helpers.llm_study --liste
    python -m helpers.llm_study pas_a_pas_court exercices_30     # quelques variantes
    python -m helpers.llm_study                                   # toutes (long : ~10 min chacune)

Chaque variante part du profil ``cpu`` (même modèle, même LoRA, même optimiseur), change un levier
(format de la réponse, prompt, équilibre des statuts, pas, taux d'apprentissage, exercices de
comparaison avant la tâche), entraîne, puis génère et lit les statuts des valeurs de **validation**
— jamais du test, qui sert à la mesure finale du notebook 05. Chaque variante ajoute (ou remplace)
sa ligne dans ``outputs/cpu/llm/etude_formats.csv`` : exactitude, rappel par statut, part des
lignes de raisonnement justes, durée d'entraînement et de génération, pic de mémoire. Le notebook 04
affiche ce tableau et en tire le réglage du profil.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import pandas as pd

from .paths import output_dir

#: Les variantes : réglages du profil cpu modifiés, et pas d'exercices de comparaison avant la tâche.
VARIANTS: dict[str, dict] = {
    "statut": {"llm": {}, "exercices": 0},
    "pas_a_pas_court": {"llm": {"answer_format": "pas_a_pas", "prompt_style": "court", "balance_statuses": True,
                                "batch_size": 4, "gradient_accumulation_steps": 1, "max_steps": 140,
                                "max_new_tokens": 72}, "exercices": 0},
    "exercices_30": {"llm": {"answer_format": "pas_a_pas", "prompt_style": "court", "balance_statuses": True,
                             "batch_size": 4, "gradient_accumulation_steps": 1, "max_steps": 140,
                             "max_new_tokens": 72}, "exercices": 30},
}
STUDY_COLUMNS = ["variante", "exactitude", "rappel_bas", "rappel_normal", "rappel_eleve", "introuvables",
                 "raisonnement_juste", "statut_suit_raisonnement", "valeurs", "pas", "exercices",
                 "secondes_entrainement", "secondes_generation", "pic_rss_mo"]


def study_path(profile_name: str = "cpu"):
    """``outputs/<profil>/llm/etude_formats.csv``."""
    return output_dir(profile_name, "llm") / "etude_formats.csv"


def _drill_dataset(n_steps: int, batch: int, style: str, eos: str, seed: int):
    from datasets import Dataset

    from .llm import format_prompt
    from .stepwise import drills

    rows = drills(n_steps * batch, seed=seed)
    return Dataset.from_list([{"prompt": format_prompt("Comparez les deux nombres chiffre par chiffre.",
                                                       r["input"], style), "completion": r["output"] + eos}
                              for r in rows])


def reasoning_scores(answers: list[str], cases) -> dict:
    """Part des lignes de raisonnement justes, et part des réponses dont le statut lu suit le
    raisonnement (:func:`helpers.stepwise.check_reasoning`)."""
    from .llm import parse_statuses
    from .stepwise import check_reasoning

    lines = right = follows = readable = 0
    for text, case in zip(answers, cases):
        check = check_reasoning(text)
        lines += check["lignes"]
        right += check["justes"]
        status = parse_statuses(text, case["labels"]).get(case["labels"][0]["code"])
        if check["statut_du_raisonnement"] is not None and status is not None:
            readable += 1
            follows += status == check["statut_du_raisonnement"]
    return {"raisonnement_juste": right / lines if lines else None,
            "statut_suit_raisonnement": follows / readable if readable else None}


def run_variant(name: str, profile=None) -> dict:
    """Entraîne la variante ``name`` et la mesure sur la validation ; renvoie sa ligne."""
    import torch

    from . import training
    from .data import load_instructions
    from .llm import analyte_cases, confusion, format_prompt, generation_tokenizer, score_answers, status_recall
    from .llm import upcast_adapters
    from .profiles import get_profile
    from .qlora import in_batches
    from .runtime import configure_threads, peak_rss_mb, reset_peak_rss

    spec = VARIANTS[name]
    base = profile or get_profile("cpu")
    profile = replace(base, llm=replace(base.llm, **spec["llm"]))
    cfg = profile.llm
    configure_threads()
    reset_peak_rss()
    model, tokenizer, _ = training.load_qlora_model(profile, "bitsandbytes")
    train, val_loss = training.qlora_datasets(profile, tokenizer)
    start = time.perf_counter()
    if spec["exercices"]:
        drills = _drill_dataset(spec["exercices"], 16, cfg.prompt_style, tokenizer.eos_token, profile.seed)
        drill_profile = replace(profile, llm=replace(cfg, batch_size=16, gradient_accumulation_steps=1))
        trainer = training.qlora_trainer(drill_profile, model, tokenizer, drills, val_loss, f"/tmp/etude_{name}_ex",
                                         backend="bitsandbytes", max_steps=spec["exercices"])
        upcast_adapters(trainer.model)
        training.set_seed(profile.seed)
        trainer.train()
    trainer = training.qlora_trainer(profile, model, tokenizer, train, val_loss, f"/tmp/etude_{name}",
                                     backend="bitsandbytes")
    upcast_adapters(trainer.model)
    training.set_seed(profile.seed)
    output = trainer.train()
    train_seconds = time.perf_counter() - start

    cases = analyte_cases(load_instructions(profile)["validation"], cfg.answer_format)
    prompts = [format_prompt(c["instruction"], c["input"], cfg.prompt_style) for c in cases]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # lots de longueurs proches
    gen_tok = generation_tokenizer(tokenizer)
    model.eval()

    def generate(batch):
        encoded = gen_tok(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 pad_token_id=gen_tok.pad_token_id, eos_token_id=gen_tok.eos_token_id)
        return gen_tok.batch_decode(out[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)

    start = time.perf_counter()
    sorted_answers = in_batches(generate, [prompts[i] for i in order], 48, desc=name)
    gen_seconds = time.perf_counter() - start
    answers = [""] * len(prompts)
    for i, text in zip(order, sorted_answers):
        answers[i] = text
    scored = score_answers(answers, cases, name)
    table = confusion(scored, name)
    recall = status_recall(scored, name)
    row = {"variante": name, "exactitude": scored["correct"].mean(), "rappel_bas": recall["bas"],
           "rappel_normal": recall["normal"], "rappel_eleve": recall["élevé"],
           "introuvables": int(table["introuvable"].sum()), "valeurs": len(scored), "pas": output.global_step,
           "exercices": spec["exercices"], "secondes_entrainement": round(train_seconds, 1),
           "secondes_generation": round(gen_seconds, 1), "pic_rss_mo": peak_rss_mb(),
           **(reasoning_scores(answers, cases) if cfg.answer_format == "pas_a_pas"
              else {"raisonnement_juste": None, "statut_suit_raisonnement": None})}
    save_row(row)
    return row


def save_row(row: dict, profile_name: str = "cpu") -> pd.DataFrame:
    """Ajoute (ou remplace) la ligne d'une variante dans ``etude_formats.csv``."""
    path = study_path(profile_name)
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=STUDY_COLUMNS)
    table = pd.concat([table[table["variante"] != row["variante"]], pd.DataFrame([row])], ignore_index=True)
    table[STUDY_COLUMNS].to_csv(path, index=False)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.llm_study", description=__doc__.splitlines()[0])
    parser.add_argument("variantes", nargs="*", help="variantes à exécuter (par défaut : toutes)")
    parser.add_argument("--liste", action="store_true")
    args = parser.parse_args(argv)
    if args.liste:
        for name, spec in VARIANTS.items():
            print(f"{name:<18} {spec}")
        return 0
    unknown = set(args.variantes) - set(VARIANTS)
    if unknown:
        print(f"Variante(s) inconnue(s) : {', '.join(sorted(unknown))}.", file=sys.stderr)
        return 2
    from .runtime import go_offline

    go_offline()
    for name in args.variantes or list(VARIANTS):
        row = run_variant(name)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
