"""Bilan chiffré (helpers.report) : relit les sorties, compare aux objectifs, n'invente rien."""
import json

from helpers import report
from helpers.embeddings import save_results
from test_embeddings import _fake_per_query, _fake_scores


def test_report_without_results(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path))
    lines = report.embedding_report("cpu")
    assert "pas de résultats" in lines[1] and "notebook 02" in lines[1]


def test_report_reads_scores_and_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path))
    save_results(_fake_scores(), _fake_per_query(), "cpu")
    text = "\n".join(report.embedding_report("cpu"))
    assert "[atteint] test_questions : fine-tuné > base à chaque dimension" in text
    assert "pas d'exécution complète" in text
    summary = {"date": "2026-11-23T10:00:00", "notebooks": [
        {"notebook": "02_x.ipynb", "statut": "ok", "secondes": 300.0, "pic_rss_noyau_mo": 4000},
        {"notebook": "03_x.ipynb", "statut": "ok", "secondes": 200.0, "pic_rss_noyau_mo": 7000}]}
    (tmp_path / "cpu" / "run_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    text = "\n".join(report.embedding_report("cpu"))
    assert "[NON atteint] durée 02 + 03 : 500 s" in text
    assert "[NON atteint] pic mémoire (noyau) : 7000 Mo" in text
