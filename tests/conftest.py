"""Configuration commune des tests : pas de réseau, backend graphique sans écran, 1 à 2 threads."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest


@pytest.fixture(scope="session")
def smoke():
    """Le profil smoke (celui de la CI), hors ligne, threads réglés comme dans les notebooks."""
    from helpers import runtime
    from helpers.profiles import get_profile

    runtime.configure_threads()
    runtime.go_offline()
    return get_profile("smoke")


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """Un dossier de résultats vide (``COURSE_OUTPUTS_DIR``) pour ce test."""
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def clean_env(monkeypatch):
    """Environnement sans choix de profil imposé ni mode hors ligne forcé."""
    for var in ("COURSE_PROFILE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    from helpers import runtime

    runtime._probe.cache_clear()
    constants = __import__("huggingface_hub.constants", fromlist=["x"])
    offline = constants.HF_HUB_OFFLINE
    yield monkeypatch
    constants.HF_HUB_OFFLINE = offline
    runtime._probe.cache_clear()
