"""Sur quels systèmes, avec quel Python et quel torch, les versions épinglées du cours
s'installent-elles ? Une **mesure versionnée**, faite sans rien installer.

Le cours n'est exécuté que sous Linux x86_64 (cette machine, l'intégration continue) et sur GPU
(contrôle :mod:`helpers.gpu_check`). Un étudiant arrive pourtant avec un Mac, un PC sous Windows,
un Python plus récent, ou un Colab dont le torch a changé. Pour chacun de ces cas, ce module demande
à `uv <https://docs.astral.sh/uv/>`_ de **résoudre** le fichier de versions concerné pour la
plateforme visée (``uv pip compile --python-platform``, roues seulement pour le profil cpu) : la
résolution dit si chaque paquet épinglé existe pour ce système et si les versions s'accordent. Elle
ne dit pas que le cours y **tourne** : seules les plateformes exécutées le montrent, et la page
d'installation sépare les deux.

    python -m helpers.platforms        # réseau vers PyPI requis ; écrit docs/mesures/plateformes.csv

La documentation en tire le tableau de la page « Installation » (:func:`platforms_page`) ; un test
vérifie que le fichier a été mesuré sur les versions épinglées d'aujourd'hui.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .paths import REPO_ROOT

#: Version d'uv qui résout (installée dans l'environnement du cours si elle manque).
UV_VERSION = "0.13.9"
#: Fichiers dont dépend la mesure : leur empreinte est gardée avec elle.
REQUIREMENT_FILES = ("requirements.txt", "requirements-nodeps.txt", "requirements-gpu.txt")
COLUMNS = [
    "target",
    "requirements",
    "python",
    "platform",
    "torch_constraint",
    "resolved",
    "reason",
    "versions",
    "packages",
    "date",
    "uv",
    "requirements_sha",
]


@dataclass(frozen=True)
class Target:
    """Un cas à résoudre : ``name`` (français, affiché), le fichier de versions, le Python et la
    plateforme d'uv (``--python-platform``), un torch imposé (l'image Colab) ; ``macos`` : version
    minimale de macOS visée ; ``without_unsloth`` : le fichier sans ses lignes Unsloth (le repli
    de :func:`helpers.colab.install`)."""

    name: str
    requirements: str
    python: str
    platform: str
    torch: str | None = None
    macos: str | None = None
    only_binary: bool = True
    without_unsloth: bool = False


def _cpu(name: str, platform: str, python: str = "3.11", macos: str | None = None) -> Target:
    return Target(name, "requirements.txt", python, platform, macos=macos)


def _colab(torch: str | None, without_unsloth: bool = False) -> Target:
    label = f"Colab (Linux x86_64), torch {torch or 'libre'}" + (" — repli sans Unsloth" if without_unsloth else "")
    return Target(
        label,
        "requirements-gpu.txt",
        "3.12",
        "x86_64-manylinux_2_28",
        torch=torch,
        only_binary=False,  # sur Colab, pip accepte aussi les sources
        without_unsloth=without_unsloth,
    )


#: Les cas mesurés : profil cpu (portables) puis profil gpu (Colab, Python 3.12, selon son torch).
TARGETS: tuple[Target, ...] = (
    _cpu("Linux x86_64", "x86_64-manylinux_2_28"),
    *(_cpu("Linux x86_64", "x86_64-manylinux_2_28", python) for python in ("3.10", "3.12", "3.13", "3.14")),
    _cpu("Linux ARM64", "aarch64-manylinux_2_28"),
    _cpu("macOS 14 ou plus, puce Apple", "aarch64-apple-darwin", macos="14.0"),
    _cpu("macOS 13, puce Apple", "aarch64-apple-darwin", macos="13.0"),
    _cpu("macOS, processeur Intel", "x86_64-apple-darwin", macos="15.0"),
    _cpu("Windows x86_64", "x86_64-pc-windows-msvc"),
    _colab(None),
    *(_colab(torch) for torch in ("2.9.1", "2.10.0", "2.11.0", "2.12.1", "2.13.0", "2.14.1", "2.15.0")),
    _colab("2.15.0", without_unsloth=True),
)
#: Paquets dont la version résolue est notée (s'ils sont résolus).
KEY_PACKAGES = ("torch", "triton", "xformers", "bitsandbytes")


class PlatformCheckError(RuntimeError):
    """uv introuvable ou injoignable : la mesure n'est pas faite (rien n'est écrit)."""


def platforms_path() -> Path:
    """``docs/mesures/plateformes.csv`` (versionné)."""
    from .measures import MEASURES_DIR

    return MEASURES_DIR / "plateformes.csv"


def requirements_sha(repo: Path = REPO_ROOT) -> str:
    """Empreinte courte des fichiers de versions (:data:`REQUIREMENT_FILES`)."""
    digest = hashlib.sha256()
    for name in REQUIREMENT_FILES:
        digest.update(name.encode() + b"\0" + (Path(repo) / name).read_bytes())
    return digest.hexdigest()[:12]


def uv_command(target: Target, requirements: Path, output: Path, constraints: Path | None = None) -> list[str]:
    """La commande ``uv pip compile`` de ``target`` (sans l'exécutable), qui écrit ``output``."""
    cmd = ["pip", "compile", str(requirements), "-o", str(output), "--quiet", "--no-header"]
    cmd += ["--python-version", target.python, "--python-platform", target.platform]
    if target.only_binary:
        cmd += ["--only-binary", ":all:"]
    if constraints is not None:
        cmd += ["-c", str(constraints)]
    return cmd


def explain_failure(message: str) -> str:
    """La cause d'un échec de résolution d'uv, en une phrase française (``message`` : sa sortie
    d'erreur). :class:`PlatformCheckError` si l'échec vient du réseau et non des versions."""
    text = " ".join(message.split())
    if re.search(r"Failed to fetch|error sending request|dns error|Could not connect", text):
        raise PlatformCheckError(f"uv n'a pas pu joindre l'index des paquets : {text[:300]}")
    patterns = (
        (r"Because (\S+) has no wheels with a matching platform tag \(e\.g\., `([^`]+)`\)",
         "{0} : aucune roue pour cette plateforme ({1})"),
        (r"Because (\S+) has no usable wheels", "{0} : aucune roue pour cette plateforme (sources seulement)"),
        (r"(\S+) depends on Python(>=?[\d.]+)", "{0} exige Python {1}"),
        (r"(\S+) depends on (torch\S*(?:,\S+)?)", "{0} exige {1}"),
    )  # fmt: skip
    for pattern, sentence in patterns:
        match = re.search(pattern, text)
        if match:
            return sentence.format(*(group.rstrip(".,") for group in match.groups()))
    cause = re.search(r"(?:cause|error): (.+?)(?: hint:|$)", text)
    return (cause.group(1) if cause else text)[:200]


def resolved_versions(lock: str) -> dict[str, str]:
    """``{paquet: version}`` d'un fichier écrit par ``uv pip compile``."""
    found = {}
    for line in lock.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def find_uv(install: bool = True) -> list[str]:
    """La commande qui lance uv : ``uv`` du PATH, sinon le module ``uv`` de ce Python, installé à la
    version :data:`UV_VERSION` si ``install``."""
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, text=True)
    if probe.returncode != 0 and install:
        print(f"Installation d'uv {UV_VERSION} dans cet environnement (outil de résolution)…", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"], check=False)
        probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise PlatformCheckError(
            f"uv introuvable : installez-le (pip install uv=={UV_VERSION}) puis relancez python -m helpers.platforms."
        )
    return [sys.executable, "-m", "uv"]


def check_target(target: Target, uv: list[str], repo: Path = REPO_ROOT) -> dict:
    """Résout ``target`` avec uv ; une ligne du tableau (sans date ni empreinte)."""
    from .colab import without_unsloth

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        requirements = Path(repo) / target.requirements
        if target.without_unsloth:
            text = without_unsloth(requirements.read_text("utf-8"))
            requirements = tmp / "sans-unsloth.txt"
            requirements.write_text(text, "utf-8")
        constraints = None
        if target.torch:
            constraints = tmp / "contraintes.txt"
            constraints.write_text(f"torch=={target.torch}\n", encoding="utf-8")
        output = tmp / "resolu.txt"
        env = dict(os.environ)
        if target.macos:
            env["MACOSX_DEPLOYMENT_TARGET"] = target.macos
        res = subprocess.run(
            uv + uv_command(target, requirements, output, constraints), capture_output=True, text=True, env=env
        )
        versions = resolved_versions(output.read_text(encoding="utf-8")) if res.returncode == 0 else {}
    row = {
        "target": target.name,
        "requirements": target.requirements + (" sans Unsloth" if target.without_unsloth else ""),
        "python": target.python,
        "platform": target.platform + (f" (macOS {target.macos})" if target.macos else ""),
        "torch_constraint": target.torch or "",
        "resolved": "oui" if res.returncode == 0 else "non",
        "reason": "" if res.returncode == 0 else explain_failure(res.stderr or res.stdout),
        "versions": " ".join(f"{name} {versions[name]}" for name in KEY_PACKAGES if name in versions),
        "packages": len(versions),
    }
    return row


def measure(targets=TARGETS, repo: Path = REPO_ROOT, uv: list[str] | None = None) -> pd.DataFrame:
    """Résout chaque cas de ``targets`` ; le tableau complet (colonnes :data:`COLUMNS`)."""
    uv = uv or find_uv()
    version = subprocess.run(uv + ["--version"], capture_output=True, text=True).stdout.split()
    rows = []
    for target in targets:
        row = check_target(target, uv, repo)
        print(f"{row['resolved']:>3}  {target.name} · Python {target.python} · {row['reason'] or row['versions']}")
        rows.append(row)
    table = pd.DataFrame(rows)
    table["date"] = dt.date.today().isoformat()
    table["uv"] = version[1] if len(version) > 1 else ""
    table["requirements_sha"] = requirements_sha(repo)
    return table[COLUMNS]


def load_platforms(path: Path | None = None) -> pd.DataFrame:
    """Le tableau mesuré (vide, avec ses colonnes, s'il n'existe pas)."""
    path = path or platforms_path()
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def platforms_page(table: pd.DataFrame, current_sha: str | None = None) -> str:
    """Le texte reStructuredText du tableau (inclus par la page « Installation »)."""
    from .docs import rst_table
    from .text import french_typography_rst

    if table.empty:
        return ".. note::\n\n   Aucune mesure des plateformes : lancez ``python -m helpers.platforms``.\n"
    current_sha = current_sha or requirements_sha()
    stale = set(table["requirements_sha"]) != {current_sha}
    gpu = table["requirements"].str.contains("gpu")
    why = table["reason"].where(table["reason"] != "", table["versions"])  # la cause d'un échec, sinon les versions
    shown = pd.DataFrame(
        {
            "Système": table["target"],
            "Python": table["python"],
            "torch imposé": table["torch_constraint"].replace("", "—"),
            "Résolu ?": table["resolved"],
            "Pourquoi, ou versions retenues": why.replace("", "—"),
        }
    )
    lines = []
    for title, part in (
        ("Profil cpu (requirements.txt, roues seulement)", shown[~gpu]),
        ("Profil gpu sur Colab (requirements-gpu.txt, Python 3.12)", shown[gpu]),
    ):
        if not part.empty:
            lines.append(rst_table(part, title))
    dates = ", ".join(sorted(set(table["date"])))
    lines.append(
        f"Résolu le {dates} avec uv {', '.join(sorted(set(table['uv'])))} (``python -m helpers.platforms``) ; "
        + (
            "**les fichiers de versions ont changé depuis : relancez la mesure.**"
            if stale
            else "fichiers de versions identiques à ceux du dépôt."
        )
    )
    return french_typography_rst("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.platforms",
        description="Résout les versions épinglées du cours pour chaque système visé (réseau vers PyPI requis).",
    )
    parser.add_argument("--sortie", type=Path, default=None, help="fichier CSV (défaut : docs/mesures/plateformes.csv)")
    args = parser.parse_args(argv)
    try:
        table = measure()
    except PlatformCheckError as err:
        print(f"Mesure impossible : {err}", file=sys.stderr)
        return 1
    path = args.sortie or platforms_path()
    table.to_csv(path, index=False)
    print(f"{(table['resolved'] == 'oui').sum()} cas résolus sur {len(table)} → {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
