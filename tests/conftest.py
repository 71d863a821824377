"""Configuration commune des tests : pas de réseau, backend graphique sans écran, 1 à 2 threads."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest


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
