"""Reproductibilité (profil smoke) : deux exécutions complètes des notebooks qui entraînent (02 et
04) donnent les mêmes NDCG@10, la même perte de validation et les mêmes poids d'adaptateur, à 1e-4
près. Le notebook 05 n'a pas besoin d'être relancé : décodage glouton, mêmes poids, mêmes réponses.
Les octets du jeu de données régénéré sont vérifiés par tests/test_generate.py.

``make test`` exécute déjà chaque notebook une fois (nbval, résultats dans ``COURSE_REFERENCE_RUN``) :
ce test n'en fait alors qu'une seconde exécution et la compare à celle-là. Seul, il exécute les deux.
"""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from helpers.course import execute_notebook, list_notebooks

pytestmark = pytest.mark.integration


def execute(outputs, monkeypatch):
    """Exécute 02 et 04 (profil smoke) avec leurs résultats sous ``outputs``."""
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(outputs))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for nb in list_notebooks(["02", "04"]):
        out = outputs / f"{nb.stem}.ipynb"
        res = execute_notebook(nb, out, timeout=600)
        assert res["status"] == "ok", f"{nb.name} : {res['error']} (copie : {out})"


def results(outputs):
    """NDCG@10 du notebook 02, résumé et poids de l'adaptateur du notebook 04."""
    from safetensors.torch import load_file

    root = Path(outputs) / "smoke"
    llm = json.loads((root / "llm" / "training.json").read_text(encoding="utf-8"))
    weights = load_file(root / "llm" / "adapter" / "adapter_model.safetensors")
    return pd.read_csv(root / "embeddings" / "ndcg.csv"), (llm, weights)


def reference_run(tmp_path, monkeypatch):
    """Résultats de l'exécution nbval de ``make test`` s'ils sont complets, sinon une exécution ici."""
    reference = os.environ.get("COURSE_REFERENCE_RUN", "")
    if reference and (Path(reference) / "smoke" / "llm" / "adapter" / "adapter_model.safetensors").is_file():
        return results(reference)
    execute(tmp_path / "run1", monkeypatch)
    return results(tmp_path / "run1")


def test_two_runs_give_the_same_scores(tmp_path, monkeypatch):
    first_ndcg, (first_llm, first_weights) = reference_run(tmp_path, monkeypatch)
    execute(tmp_path / "run2", monkeypatch)
    second_ndcg, (second_llm, second_weights) = results(tmp_path / "run2")
    keys = ["split", "model", "dim"]
    base = first_ndcg[first_ndcg["model"] == "base"].sort_values(keys)["ndcg_at_10"].to_numpy()
    tuned = first_ndcg[first_ndcg["model"] == "finetuned"].sort_values(keys)["ndcg_at_10"].to_numpy()
    assert (abs(base - tuned) > 1e-4).any(), "l'entraînement n'a rien changé : la comparaison ne prouverait rien"
    merged = first_ndcg.merge(second_ndcg, on=keys, suffixes=("_1", "_2"))
    assert len(merged) == len(first_ndcg) == len(second_ndcg) > 0
    assert (merged["ndcg_at_10_1"] - merged["ndcg_at_10_2"]).abs().max() <= 1e-4
    assert (first_ndcg[keys].sort_values(keys).values == second_ndcg[keys].sort_values(keys).values).all()
    assert first_llm["eval_loss_finetuned"] < first_llm["eval_loss_base"], "l'adaptateur n'a rien appris"
    assert abs(first_llm["eval_loss_finetuned"] - second_llm["eval_loss_finetuned"]) <= 1e-4
    assert first_weights.keys() == second_weights.keys() and len(first_weights) > 0
    assert max(float((first_weights[k] - second_weights[k]).abs().max()) for k in first_weights) <= 1e-4
