"""Reproductibilité (profil smoke) : deux exécutions complètes des notebooks qui entraînent donnent
les mêmes NDCG@10 et la même exactitude des statuts, à 1e-4 près. Les octets du jeu de données
régénéré sont vérifiés par tests/test_generate.py."""
import pandas as pd
import pytest

from helpers.course import execute_notebook, list_notebooks


def run_course(outputs, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(outputs))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for nb in list_notebooks(["02", "04", "05"]):
        out = outputs / f"{nb.stem}.ipynb"
        res = execute_notebook(nb, out, timeout=600)
        assert res["statut"] == "ok", f"{nb.name} : {res['erreur']} (copie : {out})"
    root = outputs / "smoke"
    return pd.read_csv(root / "embeddings" / "ndcg.csv"), pd.read_csv(root / "llm" / "status_accuracy.csv")


def test_two_runs_give_the_same_scores(tmp_path, monkeypatch):
    first_ndcg, first_acc = run_course(tmp_path / "run1", monkeypatch)
    second_ndcg, second_acc = run_course(tmp_path / "run2", monkeypatch)
    keys = ["split", "model", "dim"]
    base = first_ndcg[first_ndcg["model"] == "base"].sort_values(keys)["ndcg_at_10"].to_numpy()
    tuned = first_ndcg[first_ndcg["model"] == "finetuned"].sort_values(keys)["ndcg_at_10"].to_numpy()
    assert (abs(base - tuned) > 1e-4).any(), "l'entraînement n'a rien changé : la comparaison ne prouverait rien"
    merged = first_ndcg.merge(second_ndcg, on=keys, suffixes=("_1", "_2"))
    assert len(merged) == len(first_ndcg) == len(second_ndcg) > 0
    assert (merged["ndcg_at_10_1"] - merged["ndcg_at_10_2"]).abs().max() <= 1e-4
    assert (first_ndcg[keys].sort_values(keys).values == second_ndcg[keys].sort_values(keys).values).all()
    acc = first_acc.merge(second_acc, on="model", suffixes=("_1", "_2"))
    assert len(acc) == len(first_acc) > 0
    assert (acc["accuracy_1"] - acc["accuracy_2"]).abs().max() <= 1e-4
    assert (acc["n_values_1"] == acc["n_values_2"]).all()
