"""Exécute tout le cours (``make course``) : chaque notebook, dans l'ordre, sur le meilleur profil.

    python -m helpers.course                 # profil choisi automatiquement
    python -m helpers.course --only 01 02    # seulement certains notebooks
    COURSE_PROFILE=smoke python -m helpers.course

Les notebooks exécutés (avec leurs sorties) sont écrits dans ``outputs/<profil>/notebooks/`` —
les notebooks du dépôt restent sans sorties. Un résumé (durée, pic mémoire, statut de chaque
notebook) est écrit dans ``outputs/<profil>/run_summary.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

from .outputs import output_path, profile_root, reread_outputs, written_path
from .paths import NOTEBOOKS_DIR, machine_folders, shown


def list_notebooks(only: list[str] | None = None) -> list[Path]:
    """Notebooks numérotés du cours, dans l'ordre ; ``only`` filtre par préfixe (« 01 », « 02 »…)."""
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in only)]
        if not notebooks:
            raise ValueError(f"Aucun notebook ne commence par {', '.join(only)} dans {NOTEBOOKS_DIR}.")
    return notebooks


#: Types MIME textuels d'une sortie de cellule, où un chemin de la machine se lirait.
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def output_problems(outputs) -> list[str]:
    """Ce qu'une cellule exécutée montre et qu'un élève ne devrait pas voir : du texte sur la sortie
    d'erreur (un avertissement de bibliothèque, que le cours doit éviter ou expliquer en le
    remplaçant par un message à lui) et un chemin de cette machine (:func:`helpers.paths.shown`
    affiche ``outputs/cpu/…`` à la place). ``outputs`` : les sorties d'une cellule (nbformat).
    Renvoie un message français par problème, liste vide si la cellule est propre."""
    folders = re.compile("|".join(re.escape(f) + r"(?![\w-]|\.\w)" for f in machine_folders()))
    problems = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text = _text(out.get("text"))
            if out.get("name") == "stderr" and text.strip():
                first = text.strip().splitlines()[0]
                problems.append(f"texte sur la sortie d'erreur : « {first[:160]} »")
                continue  # un avertissement nomme souvent son fichier : un seul problème, pas deux
        elif kind in ("display_data", "execute_result"):
            text = "\n".join(_text(out.get("data", {}).get(mime)) for mime in TEXT_MIMES)
        else:
            continue
        found = folders.search(text)
        if found:
            around = " ".join(text[max(0, found.start() - 40) : found.end() + 40].split())
            problems.append(f"chemin de la machine affiché : « {found.group(0)} » (dans « {around} »)")
    return problems


def notebook_problems(nb) -> list[str]:
    """:func:`output_problems` de chaque cellule de code d'un notebook exécuté, préfixés du numéro
    de la cellule (« cellule 19 : … », à partir de 0 comme dans nbval)."""
    return [
        f"cellule {i} : {problem}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for problem in output_problems(cell.get("outputs", []))
    ]


class PeakMemory:
    """Suit le pic de mémoire résidente (VmHWM, Linux) d'un processus pendant son exécution."""

    def __init__(self, get_pid, interval: float = 0.5):
        self.get_pid, self.interval, self.peak_kb = get_pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> None:
        from .memory import vm_hwm_kb

        pid = self.get_pid()
        kb = vm_hwm_kb(pid) if pid else None
        if kb is not None:
            self.peak_kb = max(self.peak_kb, kb)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._read()
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> int:
        return round(self.peak_kb / 1024)


def execute_notebook(path: Path, out_path: Path, timeout: int = 3600, progress: bool = False) -> dict:
    """Exécute un notebook dans un noyau de l'environnement courant et écrit la copie exécutée.

    ``progress`` : barre de progression (tqdm) des cellules de code exécutées.
    """
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    try:  # noyau de l'environnement courant (celui de make) ; sinon le noyau python3 (Colab)
        from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

        km = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_spec_manager=NbvalKernelspecManager())
    except ImportError:
        km = KernelManager(kernel_name="python3")
    # Le noyau n'écoute que sur 127.0.0.1 : son avertissement « TCP sans chiffrement », imprimé à chaque
    # notebook, n'apprend rien à l'élève ; ses erreurs, elles, restent affichées.
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(c.cell_type == "code" for c in nb.cells), desc=path.stem, unit="cellule")
        client.on_cell_executed = lambda **kwargs: bar.update(1)
    start = time.perf_counter()
    status, error = "ok", ""
    with PeakMemory(lambda: getattr(km.provisioner, "pid", None) if km.has_kernel else None) as memory:
        try:
            client.execute()
        except CellExecutionError as err:
            status, error = "échec", str(err).splitlines()[-1] if str(err) else type(err).__name__
        except (RuntimeError, TimeoutError) as err:  # noyau qui ne démarre pas, délai dépassé
            status, error = "échec", f"{type(err).__name__}: {err}"
        finally:
            nbformat.write(nb, out_path)
            if bar is not None:
                bar.close()
    if km.has_kernel:  # nbclient n'arrête pas un noyau qu'il n'a pas créé lui-même
        km.shutdown_kernel(now=False)
    return {
        "notebook": path.name,
        "status": status,
        "seconds": round(time.perf_counter() - start, 1),
        "kernel_peak_rss_mb": memory.peak_mb,
        "error": error,
        "executed_copy": str(out_path),
        "shown_problems": notebook_problems(nb),
    }


def write_run_summary(profile, results: list[dict], now: str | None = None) -> Path:
    """Écrit ``outputs/<profil>/run_summary.json`` en **fusionnant** avec l'exécution précédente.

    Une exécution partielle (``--only 06 07``) remplace les entrées de ses notebooks et garde
    celles des autres ; chaque entrée porte la date de sa propre exécution.
    """
    now = now or dt.datetime.now().isoformat(timespec="seconds")
    path = output_path(profile.name, "run_summary.json")
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    ran = {r["notebook"] for r in results}
    kept = [{"date": previous.get("date"), **r} for r in previous.get("notebooks", []) if r["notebook"] not in ran]
    notebooks = sorted(kept + [{**r, "date": now} for r in results], key=lambda r: r["notebook"])
    summary = {"profile": profile.name, "reason": profile.reason, "date": now, "notebooks": notebooks}
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def produced_outputs(profile_name: str) -> dict[str, list[Path]]:
    """Ce que les notebooks suivants relisent de chaque notebook (le registre
    :data:`helpers.outputs.OUTPUTS`, sorties marquées ``reread``)."""
    return reread_outputs(profile_name)


#: Un notebook relancé rend périmées les sorties de ceux qui en dépendent.
DEPENDENTS = {"02": ("06",), "04": ("05", "06"), "05": ("06",)}


def missing_notebooks(profile_name: str, needed: list[str]) -> list[str]:
    """Notebooks de ``needed`` à (re)lancer, dans l'ordre : sorties absentes, ou dépendance relancée."""
    produced = produced_outputs(profile_name)
    unknown = [n for n in needed if n not in produced]
    if unknown:
        raise ValueError(
            f"Notebook(s) sans sorties connues : {', '.join(unknown)} (possibles : {', '.join(produced)})."
        )
    to_run: set[str] = set()
    for nb in sorted(needed):
        if nb in to_run or any(not p.exists() for p in produced[nb]):
            to_run.add(nb)
            to_run.update(d for d in DEPENDENTS.get(nb, ()) if d in needed)
    return sorted(to_run)


class MissingOutputsError(RuntimeError):
    """Les sorties d'un notebook long (QLoRA de Mistral-7B) manquent et leur production n'a pas été
    demandée explicitement."""


#: Notebooks qu'``ensure_outputs`` n'exécute jamais sans demande explicite, par profil : sur GPU,
#: le 04 entraîne Mistral-7B (des dizaines de minutes sur un T4).
LONG_NOTEBOOKS = {"gpu": ("04",)}

#: Référence mesurée pour annoncer une durée quand ce profil n'a jamais exécuté le notebook ici :
#: (secondes, provenance). Le QLoRA à taille réelle (modèle de la taille de Mistral-7B à poids
#: aléatoires, 4 bits, lot 2 × 4) a été chronométré par les auteurs avec un banc d'essai hors du
#: dépôt (12 pas, 29,5 s) : ce n'est pas une mesure de ``helpers.gpu_check``.
REFERENCE_SECONDS = {
    ("gpu", "04"): (
        2.5 * 240,
        "≈ 2,5 s par pas × 240 pas, mesuré sur NVIDIA H200 le 2026-11-26 ; un T4 est plusieurs fois plus lent",
    )
}


def expected_duration(profile_name: str, prefix: str) -> str:
    """Durée attendue d'un notebook, en français, avec sa provenance : la dernière exécution de ce
    profil (``run_summary.json``) si elle existe, sinon la référence mesurée, sinon « inconnue »."""
    path = written_path(profile_name, "run_summary.json")
    if path.exists():
        try:
            runs = json.loads(path.read_text(encoding="utf-8")).get("notebooks", [])
        except (OSError, ValueError):
            runs = []
        for run in runs:
            if run.get("notebook", "").startswith(prefix) and run.get("status") == "ok":
                return f"≈ {_minutes(run['seconds'])} (dernière exécution ici, le {run.get('date', '?')})"
    if (profile_name, prefix) in REFERENCE_SECONDS:
        seconds, source = REFERENCE_SECONDS[(profile_name, prefix)]
        return f"≈ {_minutes(seconds)} d'entraînement ({source})"
    return "durée inconnue (jamais exécuté avec ce profil ici)"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def ensure_outputs(profile, needed: list[str], runner=None, *, allow_long: bool = False) -> list[dict]:
    """Réutilise les modèles et résultats des notebooks ``needed`` s'ils existent pour ce profil ;
    sinon exécute ces notebooks (dans l'ordre, même profil) pour les produire, avec une barre de
    progression et la durée attendue.

    Un notebook ouvert seul (par exemple le 07 sur Colab) n'exige donc pas d'avoir exécuté les
    précédents à la main. Exception : un notebook long (:data:`LONG_NOTEBOOKS`, le QLoRA de
    Mistral-7B sur GPU) n'est exécuté que si ``allow_long=True`` ; sinon
    :class:`MissingOutputsError` explique les options (Drive, notebook 04, ``allow_long``).
    Renvoie le résumé de chaque exécution ; un échec lève une erreur française qui nomme la copie
    exécutée (avec la trace).
    """
    runner = runner or (lambda nb, out: execute_notebook(nb, out, progress=True))
    to_run = missing_notebooks(profile.name, needed)
    if not to_run:
        print(f"Sorties des notebooks {', '.join(sorted(needed))} présentes (profil « {profile.name} ») : réutilisées.")
        return []
    long = [nb for nb in to_run if nb in LONG_NOTEBOOKS.get(profile.name, ())]
    if long and not allow_long:
        raise MissingOutputsError(
            f"Sorties du notebook {', '.join(long)} introuvables dans {shown(profile_root(profile.name))} "
            f"(profil « {profile.name} »). Le produire ici réentraînerait Mistral-7B : "
            f"{expected_duration(profile.name, long[0])}. Trois possibilités :\n"
            "  1. si vous l'avez déjà exécuté avec vos résultats sur Google Drive, relancez la cellule "
            "d'installation en acceptant Drive (COURSE_OUTPUTS_DIR) ;\n"
            f"  2. ouvrez et exécutez le notebook {long[0]} (puis revenez ici) ;\n"
            "  3. ou passez allow_long=True à ensure_outputs pour l'exécuter ici, en connaissance de cause."
        )
    os.environ["COURSE_PROFILE"] = profile.name  # le noyau lancé tourne sur le même profil
    print(f"Sorties absentes (profil « {profile.name} ») : exécution des notebooks {', '.join(to_run)}.")
    for prefix in to_run:
        print(f"  {prefix} : {expected_duration(profile.name, prefix)}")
    results = []
    for prefix in to_run:
        nb = list_notebooks([prefix])[0]
        print(f"▶ {nb.name} (profil « {profile.name} »)…", flush=True)
        res = runner(nb, output_path(profile.name, f"notebooks/{nb.name}"))
        results.append(res)
        if res["status"] != "ok":
            raise RuntimeError(
                f"Échec du notebook {nb.name} : {res['error']}. "
                f"Copie exécutée (avec la trace) : {shown(res['executed_copy'])}"
            )
        print(f"  terminé en {res['seconds']} s.")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="préfixes des notebooks à exécuter (ex. 01 02)")
    parser.add_argument("--timeout", type=int, default=3600, help="délai maximal par cellule (s)")
    args = parser.parse_args(argv)

    from . import setup_course
    from .models import model_path, models_for_profile

    profile = setup_course("exécution complète du cours")
    # Les noyaux lancés héritent du profil choisi ici : tous les notebooks tournent sur le même.
    os.environ["COURSE_PROFILE"] = profile.name
    # Backend « inline » dans les noyaux : les figures sont enregistrées dans les copies exécutées
    # (rendues par la documentation) ; il dessine avec Agg, sans écran.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if profile.name != "gpu":
        for name in models_for_profile(profile.name):
            print(f"Modèle hors ligne prêt : {name} → {model_path(name)}")
    results = []
    for nb in list_notebooks(args.only):
        print(f"\n▶ {nb.name} …", flush=True)
        res = execute_notebook(nb, output_path(profile.name, f"notebooks/{nb.name}"), timeout=args.timeout)
        results.append(res)
        print(f"  {res['status']} en {res['seconds']} s (pic mémoire du noyau : {res['kernel_peak_rss_mb']} Mo)")
        for problem in res["shown_problems"]:  # make test fait échouer la cellule (conftest.py)
            print(f"  À corriger dans la copie exécutée, {problem}", file=sys.stderr)
        if res["status"] != "ok":
            print(
                f"  Erreur : {res['error']}\n  Copie exécutée (avec la trace) : {shown(res['executed_copy'])}",
                file=sys.stderr,
            )
            break
    summary_path = write_run_summary(profile, results)
    print(f"\nRésumé : {shown(summary_path)}")
    from .durations import durations_path, record_durations
    from .runtime import configure_threads, cpu_4bit_kernel, cuda_available, git_commit

    record_durations(
        profile.name,
        results,
        threads=configure_threads(),
        commit=git_commit(),
        date=dt.date.today().isoformat(),
        cpu_4bit=None if cuda_available() else cpu_4bit_kernel(),
    )
    print(f"Durées (versionnées) : {shown(durations_path())}")
    if any(r["notebook"].startswith(("02", "03")) for r in results):
        from .report import embedding_report

        print("\n" + "\n".join(embedding_report(profile.name)))
    if any(r["notebook"].startswith(("04", "05")) for r in results):
        from .report import llm_report

        print("\n" + "\n".join(llm_report(profile.name)))
    if any(r["notebook"].startswith(("06", "07")) for r in results):
        from .report import comparison_report

        print("\n" + "\n".join(comparison_report(profile.name)))
    if any(r["notebook"].startswith("08") for r in results):
        from .report import assistant_report

        print("\n" + "\n".join(assistant_report(profile.name)))
    print(f"Résultats : {shown(profile_root(profile.name))}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
