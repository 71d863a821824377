"""Reproductibilité (profil smoke) : deux exécutions complètes des notebooks qui entraînent (02 et
04) donnent les mêmes NDCG@10, la même perte de validation et les mêmes poids d'adaptateur, à 1e-4
près. Le notebook 05 n'a pas besoin d'être relancé : décodage glouton, mêmes poids, mêmes réponses.
Les octets du jeu de données régénéré sont vérifiés par tests/test_generate.py."""
import json

import pandas as pd
import pytest

from helpers.course import execute_notebook, list_notebooks

pytestmark = pytest.mark.integration


def run_course(outputs, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(outputs))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for nb in list_notebooks(["02", "04"]):
        out = outputs / f"{nb.stem}.ipynb"
        res = execute_notebook(nb, out, timeout=600)
        assert res["statut"] == "ok", f"{nb.name} : {res['erreur']} (copie : {out})"
    root = outputs / "smoke"
    from safetensors.torch import load_file

    llm = json.loads((root / "llm" / "training.json").read_text(encoding="utf-8"))
    return pd.read_csv(root / "embeddings" / "ndcg.csv"), (llm, load_file(root / "llm" / "adapter" / "adapter_model.safetensors"))


def test_two_runs_give_the_same_scores(tmp_path, monkeypatch):
    first_ndcg, (first_llm, first_weights) = run_course(tmp_path / "run1", monkeypatch)
    second_ndcg, (second_llm, second_weights) = run_course(tmp_path / "run2", monkeypatch)
    keys = ["split", "model", "dim"]
    base = first_ndcg[first_ndcg["model"] == "base"].sort_values(keys)["ndcg_at_10"].to_numpy()
    tuned = first_ndcg[first_ndcg["model"] == "finetuned"].sort_values(keys)["ndcg_at_10"].to_numpy()
    assert (abs(base - tuned) > 1e-4).any(), "l'entraînement n'a rien changé : la comparaison ne prouverait rien"
    merged = first_ndcg.merge(second_ndcg, on=keys, suffixes=("_1", "_2"))
    assert len(merged) == len(first_ndcg) == len(second_ndcg) > 0
    assert (merged["ndcg_at_10_1"] - merged["ndcg_at_10_2"]).abs().max() <= 1e-4
    assert (first_ndcg[keys].sort_values(keys).values == second_ndcg[keys].sort_values(keys).values).all()
    assert first_llm["perte_validation_finetune"] < first_llm["perte_validation_base"], "l'adaptateur n'a rien appris"
    assert abs(first_llm["perte_validation_finetune"] - second_llm["perte_validation_finetune"]) <= 1e-4
    assert first_weights.keys() == second_weights.keys() and len(first_weights) > 0
    assert max(float((first_weights[k] - second_weights[k]).abs().max()) for k in first_weights) <= 1e-4
