"""La mémoire d'un bras du notebook 06 mesurée **seule** : dans un processus à part, ou dans le noyau.

Le pic de mémoire d'un noyau Jupyter compte tout ce que ce noyau a chargé depuis son démarrage :
données, bibliothèques, modèles des sections précédentes (la mémoire qu'un modèle supprimé laisse à
l'allocateur n'est pas toujours rendue au système). Pour comparer la mémoire des bras A, B et C, le
bras B (QLoRA) est entraîné dans un processus Python neuf qui ne charge que lui, A et C dans le noyau
au pic remis à zéro :

* :func:`run_arm` — dans le processus enfant : importe les bibliothèques, note la mémoire résidente
  (« bibliothèques »), charge le modèle du bras (« modèle chargé »), entraîne ``steps`` pas avec la
  recette du cours et relève le pic (``VmHWM`` sous Linux ; pic GPU réservé et alloué si CUDA),
  le pic après le premier pas compris (les états de l'optimiseur naissent au premier pas) ;
* :func:`measure_arm` — dans le noyau : lance ``python -m helpers.isolated`` et relit son résultat
  (erreur française avec la fin du journal de l'enfant s'il échoue) ;
* :class:`helpers.memory.MemoryProbe` — la même mesure dans le noyau, pic remis à zéro et remise à zéro vérifiée
  (moins chère : pas de second chargement) ;
* :func:`memory_table` — les mesures des bras côte à côte ;
* :func:`matched_steps` — le nombre de pas qui fait voir à un bras autant d'exemples qu'à un autre.

Le bras B peut aussi enregistrer son adaptateur (``save=True``) : le notebook 06 l'évalue ensuite,
c'est le bras B « à exemples égaux » avec le bras C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from .memory import current_rss_mb, gpu_peaks

#: Les bras que ce module sait entraîner à part : B (QLoRA), le seul dont le notebook 06 mesure la
#: mémoire dans un processus neuf (A et C le sont dans le noyau, :class:`helpers.memory.MemoryProbe`).
ARMS = ("B",)


def matched_steps(examples: int, per_step: int) -> int:
    """Pas d'optimisation qui font voir au moins ``examples`` exemples à ``per_step`` exemples par
    pas (lot × accumulation). Erreur française si l'un des deux n'est pas positif."""
    if examples <= 0 or per_step <= 0:
        raise ValueError(f"Exemples ({examples}) et exemples par pas ({per_step}) doivent être positifs.")
    return math.ceil(examples / per_step)


def _peak_callback(record: dict):
    """Rappel qui note le pic de mémoire après chaque pas d'optimisation (et à part, après le premier)."""
    from transformers import TrainerCallback

    from .memory import peak_rss_mb

    class PeakPerStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            record.setdefault("peak_rss_per_step_mb", []).append(peak_rss_mb())
            if state.global_step == 1:
                record["first_step_peak_rss_mb"] = peak_rss_mb()
                record.update({f"{k}_premier_pas": v for k, v in gpu_peaks().items()})
            return control

    return PeakPerStep()


def _arm_b(profile, steps: int, output_dir: Path):
    from .runtime import select_backend
    from .training import load_qlora_model, qlora_datasets, qlora_trainer

    backend = select_backend(profile.llm)[0].backend
    loaded = {"backend": backend}

    def build():
        model, tokenizer, _ = load_qlora_model(profile, backend)
        train, validation = qlora_datasets(profile, tokenizer)
        loaded["examples_per_step"] = profile.llm.batch_size * profile.llm.gradient_accumulation_steps
        loaded["tokenizer"] = tokenizer
        return qlora_trainer(profile, model, tokenizer, train, validation, output_dir, max_steps=steps)

    return build, loaded


def run_arm(profile, arm: str, steps: int, output_dir: Path | str, save: bool = False) -> dict:
    """Entraîne le bras ``arm`` (``B``) ``steps`` pas dans **ce** processus et renvoie
    ses mesures : ``libraries_rss_mb`` (après les imports), ``loaded_model_rss_mb`` (trainer
    prêt : modèle et données chargés), ``peak_rss_mb`` (pic du processus), ``first_step_peak_rss_mb``,
    pics GPU si CUDA, ``seconds``, ``steps``, ``examples_seen``. ``save`` : enregistre l'adaptateur dans
    ``output_dir/modele`` et mesure sa ``eval_loss``. À appeler dans un processus neuf
    (:func:`measure_arm`)."""
    from .memory import peak_rss_mb, reset_peak_rss
    from .training import set_seed

    if arm not in ARMS:
        raise ValueError(f"Bras inconnu « {arm} » : {', '.join(ARMS)}.")
    if steps <= 0:
        raise ValueError(f"Nombre de pas à mesurer : entier positif attendu, reçu {steps}.")
    output_dir = Path(output_dir)
    # D'abord le bras : celui de B choisit son moteur, et Unsloth (GPU) doit être importé avant
    # transformers. Ensuite les bibliothèques, qui comptent dans « bibliothèques ».
    build, loaded = _arm_b(profile, steps, output_dir / "checkpoints")
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    reset_peak_rss()
    record = {"arm": arm, "profile": profile.name, "libraries_rss_mb": current_rss_mb()}
    trainer = build()
    record["loaded_model_rss_mb"] = current_rss_mb()
    trainer.add_callback(_peak_callback(record))
    set_seed(profile.seed)  # même ordre d'exemples que l'entraînement du cours
    start = time.perf_counter()
    output = trainer.train()
    record["seconds"] = time.perf_counter() - start
    record["steps"] = output.global_step
    record["examples_seen"] = output.global_step * loaded["examples_per_step"]
    record["peak_rss_mb"] = peak_rss_mb()
    record.update(gpu_peaks())
    record["backend"] = loaded.get("backend")
    if save:  # l'adaptateur et sa perte de validation (mêmes exemples que le notebook 04)
        record["eval_loss"] = trainer.evaluate()["eval_loss"]
        path = output_dir / "modele"
        trainer.model.save_pretrained(str(path))
        loaded["tokenizer"].save_pretrained(str(path))
        record["model"] = str(path)
    return record


def measure_arm(
    profile, arm: str, steps: int, output_dir: Path | str, *, save: bool = False, timeout: float | None = None
) -> dict:
    """Lance :func:`run_arm` dans un processus Python neuf (même profil, mêmes threads) et renvoie
    ses mesures. Le journal de l'enfant n'est montré que s'il échoue (erreur française avec sa fin)."""
    if arm not in ARMS:
        raise ValueError(f"Bras inconnu « {arm} » : {', '.join(ARMS)}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    result = output_dir / f"mesure_{arm}.json"
    result.unlink(missing_ok=True)
    env = {**os.environ, "COURSE_PROFILE": profile.name}
    command = [
        sys.executable,
        "-m",
        "helpers.isolated",
        "--bras",
        arm,
        "--pas",
        str(steps),
        "--sortie",
        str(output_dir),
    ] + (["--enregistrer"] if save else [])
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"Bras {arm} en processus à part : pas fini en {timeout:.0f} s.") from exc
    if done.returncode != 0 or not result.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(
            f"Bras {arm} en processus à part : échec (code {done.returncode}). Fin de son journal :\n{tail}"
        )
    return json.loads(result.read_text(encoding="utf-8"))


def memory_table(runs: dict[str, dict]):
    """Une ligne par bras : comment il a été mesuré (processus à part, :func:`measure_arm`, ou noyau
    au pic remis à zéro, :class:`helpers.memory.MemoryProbe`), pas mesurés, mémoire au départ (bibliothèques seules
    dans un processus neuf, ce que le noyau tenait déjà sinon), ce qu'a ajouté le chargement du modèle
    et des données (``load_mb``), pic final et part **propre au bras** (pic moins départ) ;
    pics GPU si CUDA."""
    import pandas as pd

    rows = []
    for arm, run in runs.items():
        start = run.get("start_rss_mb", run.get("libraries_rss_mb"))
        loaded = run.get("loaded_model_rss_mb")
        row = {
            "arm": arm,
            "measure": run.get("method", "processus à part"),
            "steps": run.get("steps"),
            "start_mb": start,
            "load_mb": None if loaded is None or start is None else loaded - start,
            "peak_mb": run["peak_rss_mb"],
        }
        row["own_mb"] = None if start is None else row["peak_mb"] - start
        for key in ("peak_gpu_allocated_mb", "peak_gpu_reserved_mb"):
            if key in run:
                row[key] = run[key]
        rows.append(row)
    table = pd.DataFrame(rows).set_index("arm")
    numeric = [c for c in table.columns if c.endswith("_mb")]
    table[numeric] = table[numeric].astype(float).round(0)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Entraîne un bras du notebook 06 seul et mesure sa mémoire.")
    parser.add_argument("--bras", required=True, choices=ARMS)
    parser.add_argument("--pas", required=True, type=int)
    parser.add_argument("--sortie", required=True, type=Path)
    parser.add_argument("--enregistrer", action="store_true")
    args = parser.parse_args(argv)
    from . import runtime
    from .profiles import detect_profile

    runtime.configure_threads()
    runtime.quiet_known_warnings()
    profile = detect_profile()
    record = run_arm(profile, args.bras, args.pas, args.sortie, save=args.enregistrer)
    args.sortie.mkdir(parents=True, exist_ok=True)
    (args.sortie / f"mesure_{args.bras}.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
