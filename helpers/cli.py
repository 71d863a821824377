"""Les deux entraînements en ligne de commande (``scripts/train_embeddings.py``,
``scripts/train_qlora.py``), sur les mêmes fonctions que les notebooks.

Un seul processus ::

    python scripts/train_embeddings.py --profil smoke

Plusieurs processus (plusieurs GPU, ou plusieurs processus CPU avec gloo) ::

    torchrun --nproc_per_node 2 scripts/train_embeddings.py --profil cpu
    accelerate launch --num_processes 2 scripts/train_qlora.py

Chaque script écrit dans ``--sortie`` (par défaut ``outputs/<profil>/scripts/<entraînement>``) :
``checkpoints/`` pendant l'entraînement (repris avec ``--reprendre``), puis le modèle ou
l'adaptateur et ``resume_entrainement.json``. Seul le processus de rang 0 écrit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import MEDICAL_DISCLAIMER

EXIT_INTERRUPTED = 3


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profil",
        choices=("gpu", "cpu", "smoke"),
        help="profil imposé (par défaut : choix automatique, ou COURSE_PROFILE)",
    )
    parser.add_argument("--sortie", type=Path, help="dossier de sortie")
    parser.add_argument("--donnees", type=Path, help="votre fichier .csv ou .jsonl (voir la page « Vos données »)")
    parser.add_argument(
        "--reprendre", action="store_true", help="reprendre depuis le dernier checkpoint du dossier de sortie"
    )
    parser.add_argument("--pas-max", type=int, default=None, help="nombre maximal de pas d'optimisation")
    parser.add_argument(
        "--sauver-tous",
        type=int,
        default=None,
        metavar="N",
        help="un checkpoint tous les N pas (par défaut : environ 4 par entraînement)",
    )
    parser.add_argument(
        "--interrompre-apres",
        type=int,
        default=None,
        metavar="N",
        help="simuler une coupure juste après le checkpoint du pas N (démonstration)",
    )
    parser.add_argument("--journal", action="store_true", help="afficher la perte à chaque pas")


def _setup(args, what: str):
    """Profil, threads et dossier de sortie ; renvoie ``(profile, output_dir)``."""
    import os

    from . import runtime, training
    from .outputs import output_path
    from .profiles import detect_profile

    if args.profil:
        os.environ["COURSE_PROFILE"] = args.profil
    profile = detect_profile()
    threads = runtime.configure_threads(training.threads_per_process())
    output = args.sortie or output_path(profile.name, f"scripts/{what}")
    w = runtime.world()
    if runtime.is_main_process():
        print(f"Profil {profile.name} : {profile.reason}")
        print(f"{w['world_size']} processus, {threads} thread(s) chacun ; sortie : {output}")
    return profile, Path(output)


def _save_steps(args, total_steps: int) -> int:
    return args.sauver_tous or max(1, total_steps // 4)


def _write_summary(output: Path, summary: dict) -> Path:
    path = output / "resume_entrainement.json"
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path


def _interrupted(err: Exception) -> int:
    print(f"{err}\nRelancez la même commande avec --reprendre pour continuer.", file=sys.stderr)
    return EXIT_INTERRUPTED


# --------------------------------------------------------------------------- embeddings
def embeddings_main(argv: list[str] | None = None) -> int:
    """Fine-tuning Matryoshka du modèle d'embeddings (recette du notebook 02)."""
    parser = argparse.ArgumentParser(prog="train_embeddings.py", description=embeddings_main.__doc__)
    _common(parser)
    parser.add_argument(
        "--negatifs-globaux",
        action="store_true",
        help="multi-processus : les passages des autres processus servent aussi de négatifs",
    )
    args = parser.parse_args(argv)
    profile, output = _setup(args, "embeddings")

    from . import runtime, training
    from .data import load_retrieval
    from .embeddings import MatryoshkaIREvaluator, training_pairs
    from .outputs import remove_checkpoints
    from .user_data import load_user_pairs

    retrieval = load_user_pairs(args.donnees, seed=profile.seed) if args.donnees else load_retrieval(profile)
    pairs = training_pairs(retrieval["train"], retrieval["corpus"])
    w = runtime.world()
    global_batch = profile.embedding.batch_size * w["world_size"]
    steps = args.pas_max or max(1, -(-len(pairs) // global_batch))
    callbacks = [training.interrupt_after(args.interrompre_apres)] if args.interrompre_apres else []
    trainer = training.embedding_trainer(
        profile,
        pairs,
        output / "checkpoints",
        max_steps=args.pas_max or -1,
        save_steps=_save_steps(args, steps),
        log=args.journal,
        callbacks=callbacks,
        gather_across_devices=args.negatifs_globaux,
    )
    evaluator = MatryoshkaIREvaluator(
        {"validation": retrieval["validation"]},
        retrieval["corpus"],
        profile.embedding.matryoshka_dims,
        batch_size=profile.embedding.eval_batch_size,
    )
    start_digest = training.weights_digest(trainer.model)
    base_scores = evaluator(trainer.model) if runtime.is_main_process() and not args.reprendre else None
    try:
        result = training.train_embeddings(
            profile, pairs, output / "checkpoints", resume=args.reprendre, trainer=trainer
        )
    except training.TrainingInterrupted as err:
        return _interrupted(err)
    digests = training.gather_digests(trainer.model)
    if not runtime.is_main_process():
        return 0
    scores = evaluator(trainer.model)
    model_path = output / "modele"
    trainer.model.save_pretrained(str(model_path))
    remove_checkpoints(output / "checkpoints")
    summary = {
        "training": "embeddings (Matryoshka)",
        "profile": profile.name,
        "processus": w["world_size"],
        "per_process_batch": profile.embedding.batch_size,
        "global_batch": global_batch,
        "train_pairs": len(pairs),
        "steps": result["steps"],
        "seconds": round(result["seconds"], 1),
        "peak_rss_mb_rank0": result["peak_rss_mb"],
        "resumed_from": result["resumed_from"],
        "donnees": str(args.donnees or "MedAnalyzer-FR"),
        "empreinte_poids_depart": start_digest,
        "empreintes_poids_par_processus": digests,
        "negatifs_globaux": args.negatifs_globaux,
        "validation_base": base_scores,
        "validation_finetune": scores,
        "model": str(model_path),
    }
    print(
        f"{result['steps']} pas en {result['seconds']:.0f} s sur {w['world_size']} processus ; "
        f"NDCG@10 de validation ({evaluator.dims[0]} dims) : {scores[evaluator.primary_metric]:.3f}"
    )
    print("Résumé :", _write_summary(output, summary))
    return 0


# --------------------------------------------------------------------------- QLoRA
def qlora_main(argv: list[str] | None = None) -> int:
    """Fine-tuning QLoRA du modèle de langage (recette du notebook 04)."""
    parser = argparse.ArgumentParser(prog="train_qlora.py", description=qlora_main.__doc__)
    _common(parser)
    parser.add_argument(
        "--moteur",
        choices=("auto", "unsloth", "bitsandbytes"),
        default="auto",
        help="auto : Unsloth sur un seul GPU s'il s'importe, sinon bitsandbytes + peft",
    )
    args = parser.parse_args(argv)
    profile, output = _setup(args, "qlora")

    from . import runtime, training
    from .runtime import select_backend
    from .user_data import load_user_instructions

    cfg, _ = select_backend(profile.llm, args.moteur)  # avant transformers (Unsloth)
    backend = cfg.backend
    why = "Unsloth (GPU)." if backend == "unsloth" else f"bitsandbytes + peft (moteur demandé : {args.moteur})."
    instructions, task = None, None
    if args.donnees:
        instructions, kind = load_user_instructions(args.donnees, seed=profile.seed)
        task = "analyte" if kind == "resultats" else "rapport"
    w = runtime.world()
    steps = args.pas_max or (profile.llm.max_steps if profile.llm.max_steps > 0 else 100)
    callbacks = [training.interrupt_after(args.interrompre_apres)] if args.interrompre_apres else []
    try:
        result = training.train_qlora(
            profile,
            output / "checkpoints",
            backend=backend,
            instructions=instructions,
            task=task,
            resume=args.reprendre,
            max_steps=args.pas_max,
            save_steps=_save_steps(args, steps),
            callbacks=callbacks,
            log=args.journal,
        )
    except training.TrainingInterrupted as err:
        return _interrupted(err)
    digests = training.gather_digests(result["model"])
    if not runtime.is_main_process():
        return 0
    from .outputs import remove_checkpoints

    adapter = output / "adaptateur"
    result["model"].save_pretrained(str(adapter))
    result["tokenizer"].save_pretrained(str(adapter))
    remove_checkpoints(output / "checkpoints")
    summary = {
        "training": "QLoRA",
        "profile": profile.name,
        "backend": backend,
        "backend_reason": why,
        "processus": w["world_size"],
        "model_source": result["source"],
        "tache": task or profile.llm.task,
        "train_examples": result["train_examples"],
        "steps": result["steps"],
        "seconds": round(result["seconds"], 1),
        "resumed_from": result["resumed_from"],
        "donnees": str(args.donnees or "MedAnalyzer-FR"),
        "empreintes_poids_par_processus": digests,
        "eval_loss_base": result["eval_loss_base"],
        "eval_loss_finetuned": result["eval_loss_finetuned"],
        "adaptateur": str(adapter),
        "avertissement": MEDICAL_DISCLAIMER,
    }
    base = result["eval_loss_base"]
    print(
        f"{result['steps']} pas en {result['seconds']:.0f} s ({backend}) ; perte de validation "
        + (f"{base:.4f} → " if base is not None else "")
        + f"{result['eval_loss_finetuned']:.4f}"
    )
    print("Résumé :", _write_summary(output, summary))
    return 0
