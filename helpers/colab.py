"""Installation du cours dans Google Colab (cellule « 0. Installation » de chaque notebook).

La cellule clone le dépôt puis appelle :func:`prepare_colab`, qui :

1. **vérifie qu'un GPU est actif** (``nvidia-smi``) *avant* toute installation : sur un
   environnement d'exécution CPU, message clair et arrêt (:class:`ColabRuntimeError`) — rien
   n'est installé, en particulier pas Unsloth et ses paquets CUDA ;
2. **garde le torch de Colab** : les versions installées de torch, torchvision, torchaudio et
   triton sont passées à pip comme contraintes (``-c``). pip ne peut donc ni les remplacer ni les
   rétrograder ; une incompatibilité devient une erreur lisible au lieu d'un torch cassé ;
3. installe ``requirements-gpu.txt`` (pile d'entraînement épinglée ; pandas, NumPy, matplotlib et
   SciPy restent ceux de Colab), puis les paquets sans dépendances et le dépôt lui-même, et
   chronomètre l'installation ; une seconde exécution (même session, après un redémarrage) ne
   réinstalle rien si les fichiers de versions n'ont pas changé. Si pip refuse l'installation
   parce que l'Unsloth épinglé n'accepte pas le torch de l'image (une image Colab plus récente que
   lui), le reste est installé **sans Unsloth** et la raison est gardée
   (:func:`helpers.runtime.skipped_unsloth_reason`) : le cours fait alors le même QLoRA avec bitsandbytes + peft ;
4. dit s'il faut **redémarrer la session** : seulement si un paquet déjà importé par le noyau a
   changé de version ;
5. si l'étudiant l'accepte (``use_drive=True`` et autorisation donnée dans la fenêtre de Google),
   monte Google Drive et y place les résultats (``COURSE_OUTPUTS_DIR``) : un notebook ouvert dans
   une nouvelle session retrouve le modèle du 02 et l'adaptateur du 04.

Ce module n'importe ni torch ni transformers (Unsloth doit être importé avant transformers).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .paths import REPO_ROOT
from .runtime import UNSLOTH_SKIPPED, skipped_unsloth_reason

#: Paquets de l'image Colab que pip ne doit jamais remplacer (construits pour sa version de CUDA).
KEEP_PREINSTALLED = ("torch", "torchvision", "torchaudio", "triton")
DRIVE_MOUNT = Path("/content/drive")
DRIVE_OUTPUTS = DRIVE_MOUNT / "MyDrive" / "cours-medanalyzer" / "outputs"
STAMP = ".colab-install-stamp"
#: Paquets retirés de ``requirements-gpu.txt`` quand pip refuse Unsloth avec le torch de l'image.
UNSLOTH_PACKAGES = ("unsloth", "unsloth_zoo", "unsloth-zoo")

Runner = Callable[[list[str]], "subprocess.CompletedProcess"]


class ColabRuntimeError(RuntimeError):
    """Environnement Colab inadapté (pas de GPU) ou installation impossible."""


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def gpu_name(run: Runner = _run) -> str | None:
    """Nom du GPU vu par ``nvidia-smi``, ou ``None`` s'il n'y en a pas (ou pas de pilote)."""
    try:
        res = run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"])
    except (FileNotFoundError, OSError):
        return None
    line = (res.stdout or "").strip().splitlines()
    return line[0].strip() if res.returncode == 0 and line else None


def require_gpu(run: Runner = _run) -> str:
    """Le nom du GPU ; sinon :class:`ColabRuntimeError` avec la marche à suivre, en français."""
    name = gpu_name(run)
    if name is None:
        raise ColabRuntimeError(
            "Aucun GPU dans cet environnement d'exécution Colab : rien n'a été installé.\n"
            "Menu Exécution > Modifier le type d'exécution > « T4 GPU » (gratuit), Enregistrer, puis "
            "Exécution > Tout exécuter.\n"
            "Sans GPU, suivez le cours sur votre ordinateur (profil cpu, hors ligne) : make course."
        )
    return name


def installed_versions(names=KEEP_PREINSTALLED) -> dict[str, str]:
    """Versions installées des paquets ``names`` (ceux qui manquent sont omis)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def constraints_text(versions: dict[str, str]) -> str:
    """Contenu du fichier de contraintes pip qui fige ces versions (``torch==2.9.0+cu126``…)."""
    lines = ["# Paquets de l'image Colab, construits pour sa version de CUDA : jamais remplacés."]
    lines += [f"{name}=={version}" for name, version in sorted(versions.items())]
    return "\n".join(lines) + "\n"


def _top_level_distributions() -> dict[str, list[str]]:
    try:
        return metadata.packages_distributions()
    except Exception:  # noqa: BLE001 — métadonnées exotiques : on renonce à la détection
        return {}


def imported_versions(modules=None) -> dict[str, str]:
    """``{distribution: version}`` des paquets **déjà importés** par ce noyau."""
    modules = sys.modules if modules is None else modules
    tops = {name.split(".")[0] for name in list(modules)}
    dists = _top_level_distributions()
    out = {}
    for top in tops:
        for dist in dists.get(top, []):
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return out


def restart_needed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Paquets importés avant l'installation dont la version a changé : ``["numpy 2.0.2 → 2.3.5"]``.

    Python garde en mémoire l'ancienne version d'un module déjà importé ; seule une nouvelle
    session charge la nouvelle.
    """
    return [
        f"{name} {old} → {after[name]}" for name, old in sorted(before.items()) if name in after and after[name] != old
    ]


def _requirements_digest(repo: Path, versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in ("requirements-gpu.txt", "requirements-nodeps.txt", "pyproject.toml"):
        path = repo / name
        h.update(path.read_bytes() if path.exists() else b"")
    h.update(constraints_text(versions).encode())
    return h.hexdigest()[:16]


def pip_commands(repo: Path, constraints: Path, requirements: Path | None = None) -> list[list[str]]:
    """Les trois commandes pip de l'installation, dans l'ordre (``requirements`` : un autre fichier
    que ``requirements-gpu.txt``, celui du repli sans Unsloth)."""
    pip = [sys.executable, "-m", "pip", "install"]
    return [
        # sans -q : avec lui, pip tait la cause d'un conflit de versions (« The conflict is caused by »)
        pip + ["-r", str(requirements or repo / "requirements-gpu.txt"), "-c", str(constraints)],
        pip + ["-q", "--no-deps", "-r", str(repo / "requirements-nodeps.txt")],
        pip + ["-q", "--no-deps", "-e", str(repo)],
    ]


def unsloth_conflict(pip_output: str, requirements: str = "") -> str | None:
    """Ce que pip dit d'Unsloth quand il refuse une version imposée, ou ``None`` si l'échec a une
    autre cause : la ligne ``unsloth 2026.10.9 depends on torch<2.15.0 and >=2.4.0`` ; à défaut
    (pip lancé avec ``-q`` la tait), la ligne ``Cannot install -r … (line N)`` quand la ligne N de
    ``requirements`` (le texte du fichier) est une ligne Unsloth.

    pip ne résout qu'après avoir tout lu et n'installe rien quand la résolution échoue : on peut
    recommencer sans Unsloth sans rien défaire.
    """
    if "ResolutionImpossible" not in pip_output and "conflicting dependencies" not in pip_output:
        return None
    for line in pip_output.splitlines():
        words = line.strip().split()
        if len(words) >= 3 and words[0].lower() in UNSLOTH_PACKAGES and words[2] == "depends":
            return line.strip()
    lines = requirements.splitlines()
    for line in pip_output.splitlines():
        if "Cannot install" in line:
            named = [int(n) for n in re.findall(r"\(line (\d+)\)", line) if 0 < int(n) <= len(lines)]
            if any(_requirement_name(lines[n - 1]) in UNSLOTH_PACKAGES for n in named):
                return line.replace("ERROR: ", "").strip()
    return None


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()


def without_unsloth(requirements: str) -> str:
    """Le texte de ``requirements-gpu.txt`` sans ses lignes Unsloth (le reste à l'identique)."""
    lines = requirements.splitlines(keepends=True)
    return "".join(line for line in lines if _requirement_name(line) not in UNSLOTH_PACKAGES)


def install(repo: Path = REPO_ROOT, run: Runner = _run, *, force: bool = False) -> dict:
    """Installe le profil gpu sans toucher au torch de Colab ; renvoie un résumé.

    ``{"seconds", "already_installed", "constraints", "restart", "unsloth_skipped"}``. Si pip refuse
    Unsloth avec le torch de l'image (:func:`unsloth_conflict`), le reste est installé sans lui et
    ``unsloth_skipped`` dit pourquoi (``None`` sinon) ; toute autre commande pip en échec lève
    :class:`ColabRuntimeError` avec la fin de sa sortie.
    """
    repo = Path(repo)
    keep = installed_versions()
    constraints = repo / ".colab-constraints.txt"
    constraints.write_text(constraints_text(keep), encoding="utf-8")
    stamp = repo / STAMP
    skipped_file = repo / UNSLOTH_SKIPPED
    digest = _requirements_digest(repo, keep)
    if not force and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == digest:
        return {
            "seconds": 0.0,
            "already_installed": True,
            "constraints": keep,
            "restart": [],
            "unsloth_skipped": skipped_unsloth_reason(repo),
        }
    skipped_file.unlink(missing_ok=True)
    requirements = (repo / "requirements-gpu.txt").read_text(encoding="utf-8")
    image = ", ".join(f"{k} {v}" for k, v in keep.items())  # « torch 2.9.0+cu126, … »
    before = imported_versions()
    start = time.perf_counter()
    commands, skipped = pip_commands(repo, constraints), None
    while commands:
        cmd = commands.pop(0)
        res = run(cmd)
        output = (res.stdout or "") + (res.stderr or "")
        conflict = unsloth_conflict(output, requirements) if res.returncode != 0 and skipped is None else None
        if conflict:  # rien n'a été installé : on recommence sans Unsloth
            fallback = repo / ".colab-requirements-sans-unsloth.txt"
            fallback.write_text(without_unsloth(requirements), encoding="utf-8")
            skipped = f"pip refuse l'Unsloth épinglé avec le torch de cette image Colab ({image}) : « {conflict} »"
            commands = pip_commands(repo, constraints, fallback)
            continue
        if res.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise ColabRuntimeError(
                f"L'installation a échoué ({' '.join(cmd[3:])}).\n{tail}\n"
                "Si pip parle de torch : une version épinglée n'accepte pas le torch de cette "
                f"image Colab ({image}) — voir la page Dépannage de la documentation."
            )
    seconds = time.perf_counter() - start
    if skipped:
        skipped_file.write_text(skipped + "\n", encoding="utf-8")
    stamp.write_text(digest + "\n", encoding="utf-8")
    after = {name: metadata.version(name) for name in before if _has(name)}
    return {
        "seconds": seconds,
        "already_installed": False,
        "constraints": keep,
        "restart": restart_needed(before, after),
        "unsloth_skipped": skipped,
    }


def _has(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def mount_drive(mount: Callable[[str], None] | None = None, root: Path = DRIVE_MOUNT) -> Path | None:
    """Monte Google Drive en ``root`` et y dirige les résultats (``COURSE_OUTPUTS_DIR``) ; ``None``
    si l'étudiant refuse l'autorisation ou si le montage échoue (le cours écrit alors dans
    ``/content/cours/outputs``, effacé à la fin de la session)."""
    if mount is None:
        from google.colab import drive  # type: ignore[import-not-found]

        mount = drive.mount
    try:
        mount(str(root))
    except Exception as err:  # noqa: BLE001 — refus de l'autorisation, délai dépassé…
        print(
            f"Google Drive non monté ({type(err).__name__} : {err}). Les résultats resteront dans "
            "cette session et seront perdus à sa fin."
        )
        return None
    outputs = root / DRIVE_OUTPUTS.relative_to(DRIVE_MOUNT)
    outputs.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_OUTPUTS_DIR"] = str(outputs)
    return outputs


def prepare_colab(
    use_drive: bool = True,
    *,
    repo: Path = REPO_ROOT,
    run: Runner = _run,
    mount: Callable[[str], None] | None = None,
    drive_root: Path = DRIVE_MOUNT,
) -> dict:
    """Tout ce que fait la cellule d'installation sur Colab (voir le haut du module)."""
    gpu = require_gpu(run)
    print(f"GPU : {gpu}")
    print(
        "Installation de requirements-gpu.txt (avec Unsloth si ce torch le permet), torch de Colab conservé… "
        "(2 à 5 minutes la première fois)",
        flush=True,
    )
    summary = install(repo, run)
    kept = ", ".join(f"{k} {v}" for k, v in summary["constraints"].items()) or "aucun"
    if summary["already_installed"]:
        print(f"Déjà installé dans cette session (conservés : {kept}).")
    else:
        minutes = f"{summary['seconds'] / 60:.1f}".replace(".", ",")
        print(f"Installé en {minutes} min ; conservés : {kept}.")
    if summary["unsloth_skipped"]:
        print(
            f"Unsloth non installé — {summary['unsloth_skipped']}.\n"
            "Le cours continue avec bitsandbytes + peft : le même QLoRA (nf4 + LoRA), plus lent et plus "
            "gourmand en mémoire (page « Dépannage » : comment retrouver Unsloth)."
        )
    summary["drive"] = mount_drive(mount, drive_root) if use_drive else None
    if summary["drive"]:
        print(f"Résultats sur Google Drive : {summary['drive']} (retrouvés dans une nouvelle session).")
    elif not use_drive:
        print(
            "Google Drive non utilisé : les résultats (modèle du 02, adaptateur du 04) seront perdus à "
            "la fin de la session. USE_DRIVE = True pour les garder."
        )
    if summary["restart"]:
        raise ColabRuntimeError(
            "Redémarrage nécessaire : des paquets déjà chargés ont changé de version ("
            + ", ".join(summary["restart"])
            + ").\nMenu Exécution > Redémarrer la session, puis "
            "relancez le notebook depuis le début : l'installation ne sera pas refaite."
        )
    print("Aucun redémarrage nécessaire.")
    return summary
