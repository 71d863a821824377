"""Bilan chiffré (helpers.report) : relit les sorties, compare aux objectifs, n'invente rien."""

import json

import pandas as pd
from test_embeddings import _fake_per_query, _fake_scores

from helpers import report
from helpers.embeddings import save_results


def _write_run_summary(root, runs: dict, profile: str = "cpu") -> None:
    """``run_summary.json`` comme l'écrit make course : {préfixe: (secondes, pic Mo)}, tous « ok »."""
    notebooks = [
        {"notebook": f"{k}_x.ipynb", "status": "ok", "seconds": sec, "kernel_peak_rss_mb": peak}
        for k, (sec, peak) in runs.items()
    ]
    summary = {"date": "2026-11-23T10:00:00", "notebooks": notebooks}
    (root / profile / "run_summary.json").write_text(json.dumps(summary), encoding="utf-8")


def test_report_without_results(outputs):
    lines = report.embedding_report("cpu")
    assert "pas de résultats" in lines[1] and "notebook 02" in lines[1]


def test_report_reads_scores_and_budget(outputs):
    save_results(_fake_scores(), _fake_per_query(), "cpu")
    text = "\n".join(report.embedding_report("cpu"))
    assert "[atteint] test_questions : fine-tuné > base à chaque dimension" in text
    assert "pas d'exécution complète" in text
    _write_run_summary(outputs, {"02": (300.0, 4000), "03": (200.0, 7000)})
    text = "\n".join(report.embedding_report("cpu"))
    assert "[NON atteint] durée 02 + 03 : 500 s" in text
    assert "[NON atteint] pic mémoire (noyau) : 7000 Mo" in text


def test_llm_report_reads_training_accuracy_and_budget(outputs):
    import pandas as pd

    from helpers.outputs import output_path
    from helpers.qlora import save_training_summary

    assert "pas de résultats" in report.llm_report("cpu")[1]
    save_training_summary(
        {"eval_loss_base": 4.0, "eval_loss_finetuned": 0.2, "steps": 40, "train_seconds": 380.0},
        "cpu",
    )
    text = "\n".join(report.llm_report("cpu"))
    assert "[atteint] perte de validation : base 4,0000 → fine-tuné 0,2000" in text
    assert "status_accuracy.csv absent" in text
    pd.DataFrame(
        {"model": ["base", "finetuned"], "n_cases": [60, 60], "n_values": [250, 250], "accuracy": [0.0, 0.55]}
    ).to_csv(output_path("cpu", "llm/status_accuracy.csv"), index=False)
    _write_run_summary(outputs, {"04": (500.0, 2000), "05": (150.0, 1500)})
    text = "\n".join(report.llm_report("cpu"))
    assert "finetuned : 55,0\u00a0% (250 valeurs, 60 comptes rendus)" in text
    assert "[NON atteint] exactitude du fine-tuné ≥ 90\u00a0%" in text
    assert "[atteint] durée 04 + 05 : 650 s (objectif ≤ 720 s" in text
    assert "[atteint] pic mémoire (noyau) : 2000 Mo" in text
    assert "status_values.csv absent" in text
    # 100 valeurs : 50 normales ; le fine-tuné en a 96 justes, dont toutes les basses et élevées sauf 4.
    expected = ["bas"] * 25 + ["normal"] * 50 + ["élevé"] * 25
    predicted = list(expected)
    for i in (0, 1, 2, 3):  # quatre « bas » lus normaux : rappel bas 84 %
        predicted[i] = "normal"
    pd.DataFrame(
        {
            "model": "finetuned",
            "row": range(100),
            "code": "NA",
            "expected": expected,
            "predicted": predicted,
            "correct": [e == p for e, p in zip(expected, predicted)],
            "case_id": range(100),
        }
    ).to_csv(output_path("cpu", "llm/status_values.csv"), index=False)
    text = "\n".join(report.llm_report("cpu"))
    assert "[atteint] gain sur la réponse constante : +46,0\u00a0%" in text
    assert "[atteint] rappel par statut : bas 84\u00a0%, normal 100\u00a0%, élevé 100\u00a0%" in text


def test_comparison_report_reads_table_rag_and_budget(outputs):
    import pandas as pd
    from test_compare import rows

    from helpers import compare
    from helpers.outputs import output_path

    text = "\n".join(report.comparison_report("cpu"))
    assert "comparison.csv absent" in text and "rag_taux_de_succes.csv absent" in text
    compare.save_comparison(compare.comparison_table(rows()), "cpu")
    pd.DataFrame(
        {
            "query_kind": ["ligne", "ligne"],
            "model": ["base", "fine-tuné"],
            "hit_at_1": [0.6, 0.95],
            "hit_at_3": [0.8, 1.0],
            "questions": [10, 10],
        }
    ).to_csv(output_path("cpu", "case_study/rag_taux_de_succes.csv"), index=False)
    _write_run_summary(outputs, {"06": (700.0, 5000), "07": (250.0, 3000)})
    text = "\n".join(report.comparison_report("cpu"))
    assert "latence non mesurée" not in text
    assert "A embeddings : 20 paramètres entraînés, 200 s, 470,0 Mo, 20 ms/question ; NDCG@10 0,850" in text
    assert (
        "C complet : 120 paramètres entraînés" in text
        and "statuts justes 34,0\u00a0%, perte de validation 0,139" in text
    )
    assert "requête « ligne » : base 0,600, fine-tuné 0,950" in text
    pd.DataFrame(
        {
            "query_kind": ["ligne"] * 4,
            "model": ["base", "fine-tuné"] * 2,
            "analytes": ["tous", "tous", "jamais vus", "jamais vus"],
            "hit_at_1": [0.6, 0.95, 0.5, 0.9],
            "hit_at_1_low": [0.5, 0.9, 0.2, 0.6],
            "hit_at_1_high": [0.7, 0.99, 0.8, 0.98],
            "hit_at_3": [0.8, 1.0, 0.7, 1.0],
            "questions": [40, 40, 10, 10],
        }
    ).to_csv(output_path("cpu", "case_study/rag_taux_de_succes.csv"), index=False)
    text = "\n".join(report.comparison_report("cpu"))
    assert "requête « ligne » : base 0,600 [0,50 ; 0,70], fine-tuné 0,950 [0,90 ; 0,99]" in text
    assert "requête « ligne », analytes jamais vus (10 questions) : base 0,500 [0,20 ; 0,80]" in text
    assert "[NON atteint] durée 06 + 07 : 950 s (objectif ≤ 900 s" in text
    assert "[atteint] pic mémoire (noyau) : 5000 Mo" in text


def test_comparison_report_shows_intervals_and_unmeasured_latency(outputs):
    from test_compare import rows

    from helpers import compare

    b_prime = {**rows()[1], "arm": "B'", "latency_ms": None, **compare.status_accuracy_interval(0, 96)}
    compare.save_comparison(compare.comparison_table([*rows(), b_prime]), "cpu")
    text = "\n".join(report.comparison_report("cpu"))
    assert (
        "B' QLoRA : 5 paramètres entraînés, 360 s, 13,4 Mo, latence non mesurée ; statuts justes 0,0\u00a0% [" in text
    )


def test_assistant_report_reads_the_notebook_08_measures(outputs):
    from helpers.outputs import save_json, save_table

    assert "notebook 08 non exécuté" in report.assistant_report("cpu")[1]
    measures = {"p50_s": 5.25, "p95_s": 7.77, "answers_per_minute": 10.9, "peak_rss_mb": 2093, "reports": 30}
    measures |= {"device": "cpu", "agreement": 0.94, "agreement_ci": [0.886, 0.969], "shown_as_is": 0.73}
    measures |= {"constant_status": "normal", "constant_agreement": 0.534, "constant_agreement_ci": [0.449, 0.616]}
    save_json(measures, "cpu", "assistant/mesures.json")
    served = [  # la ligne du modèle fusionné est celle comparée au 4 bits, quelle que soit sa place
        ["fusionné", 0.96, 0.91, 0.98, 0.977, 5.6],
        ["4 bits + adaptateur", 0.94, 0.886, 0.969, float("nan"), 5.2],
    ]
    save_table(
        pd.DataFrame(served, columns=["model", "agreement", "ci_low", "ci_high", "same_status", "p50_s"]),
        "cpu",
        "assistant/modele_fusionne.csv",
    )
    save_table(
        pd.DataFrame({"setting": ["256 dimensions, binaire + rescoring"], "file_bytes": [8865]}),
        "cpu",
        "assistant/couts_index.csv",
    )
    edges = [
        ["aux bornes (toutes)", 0.81, 0.7, 0.88, 120, "normal", 0.64],
        ["test (générateur)", 0.94, 0.9, 0.97, 129, "normal", 0.53],
    ]
    columns = ["position", "agreement", "ci_low", "ci_high", "values", "constant_status", "constant_agreement"]
    save_table(pd.DataFrame(edges, columns=columns), "cpu", "assistant/bornes.csv")
    text = "\n".join(report.assistant_report("cpu")).replace("\u00a0", " ")  # espaces insécables
    assert "médiane 5,25 s, p95 7,77 s ; 10,9 réponses par minute" in text
    assert "pic du processus 2 093 Mo (30 comptes rendus de test, cpu)" in text.replace("\u202f", " ")
    assert "94,0 % [88,6 % ; 96,9 %] ; réponse constante « normal » : 53,4 %" in text
    assert (
        "modèle fusionné (exporté) : statuts conformes 96,0 % [91,0 % ; 98,0 %], statuts identiques au 4 bits 97,7 %"
        in text
    )
    assert "binaire + rescoring 8\u202f865 octets" in text
    assert (
        "près des bornes (hors du générateur) : statuts conformes 81,0 % [70,0 % ; 88,0 %] sur 120 valeurs, "
        "contre 94,0 % sur le test ; réponse constante « normal » 64,0 %" in text
    )
