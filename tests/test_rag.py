"""Recherche de passages pour les valeurs anormales (notebook 07)."""

import pandas as pd
import pytest

from helpers import rag
from helpers.data import load_instructions, load_retrieval


@pytest.fixture(scope="module")
def corpus():
    return list(load_retrieval()["corpus"])


def case(*labels):
    return {"id": "c1", "labels": [{"code": c, "statut": s} for c, s in labels]}


def test_one_grammatical_question_per_abnormal_value(corpus):
    q = rag.abnormal_queries([case(("FERRITINE", "bas"), ("HB", "normal"), ("CPK", "élevé"))], corpus)
    assert list(q["query"]) == ["Que signifie une ferritine basse ?", "Que signifient des CPK élevées ?"]
    assert list(q["relevant"]) == ["FERRITINE-basse", "CPK-haute"]
    assert rag.abnormal_queries([case(("HB", "normal"))], corpus).empty


def test_report_line_style(corpus):
    c = {"id": "c1", "labels": [{"code": "FERRITINE", "statut": "bas", "valeur": 8.0}]}
    q = rag.abnormal_queries([c], corpus, style="ligne")
    assert q["query"].item().startswith("Ferritine : 8") and q["query"].item().endswith("µg/L — bas")
    with pytest.raises(ValueError, match="Style de requête inconnu"):
        rag.abnormal_queries([c], corpus, style="libre")


def test_every_abnormal_test_value_has_its_passage(corpus):
    reports = load_instructions()["test"]
    q = rag.abnormal_queries(reports, corpus)
    n_abnormal = sum(label["statut"] != "normal" for r in reports for label in r["labels"])
    assert len(q) == n_abnormal and set(q["relevant"]) <= {p["passage_id"] for p in corpus}


def test_bad_inputs_are_named(corpus):
    with pytest.raises(ValueError, match="statut inconnu « haut »"):
        rag.abnormal_queries([case(("HB", "haut"))], corpus)
    without = [p for p in corpus if p["passage_id"] != "HB-basse"]
    with pytest.raises(ValueError, match="« HB-basse » absent du corpus"):
        rag.abnormal_queries([case(("HB", "bas"))], without)


def test_hit_rates_with_the_offline_e5(corpus):
    from helpers.models import load_sentence_transformer

    model = load_sentence_transformer("multilingual-e5-small", "multilingual-e5-small")
    codes = ("FERRITINE", "HB", "TSH", "CPK", "GLY")
    small = [p for p in corpus if p["code"] in codes]
    q = rag.abnormal_queries([case(*[(c, s) for c in codes for s in ("bas", "élevé")])], small)
    rates = rag.hit_rates(model, q, small, ks=(1, 3, len(small)))
    assert rates["questions"] == 10 and rates[f"hit_at_{len(small)}"] == 1.0
    assert 0 <= rates["hit_at_1"] <= rates["hit_at_3"] <= 1
    assert rates["hit_at_3"] >= 0.5  # le modèle de base retrouve déjà l'analyte la plupart du temps
    with pytest.raises(ValueError, match="Aucune question"):
        rag.hit_rates(model, pd.DataFrame(columns=q.columns), small)


def test_with_context_numbers_the_passages():
    out = rag.with_context("Résultats :\n- Ferritine : 8 µg/L", ["La ferritine reflète les réserves. ", "Autre."])
    assert out.endswith("Contexte (extraits de référence) :\n[1] La ferritine reflète les réserves.\n[2] Autre.")
    assert rag.with_context("x", []) == "x"


def test_require_model_names_the_missing_notebook(outputs):
    from helpers.embeddings import MissingResultsError, model_dir, require_model

    with pytest.raises(MissingResultsError, match="notebook 02"):
        require_model("cpu")
    model_dir("cpu").mkdir(parents=True)
    (model_dir("cpu") / "config_sentence_transformers.json").write_text("{}")
    assert require_model("cpu") == model_dir("cpu")


def test_result_queries_hide_the_status_and_contexts_follow_cases(corpus):
    c = {
        "id": "c1",
        "labels": [
            {"code": "FERRITINE", "statut": "bas", "valeur": 8.0},
            {"code": "HB", "statut": "normal", "valeur": 14.2},
        ],
    }
    queries = rag.result_queries(c)
    assert queries[0].startswith("Ferritine : 8") and "bas" not in queries[0]

    class Keyword:
        """Faux modèle : un vecteur par analyte, selon le premier mot."""

        def _vec(self, texts):
            import torch

            keys = ["ferritine", "hémoglobine"]
            return torch.tensor([[float(k in t.lower()) for k in keys] + [0.1] for t in texts])

        def encode_query(self, texts, **_):
            return self._vec(texts)

        def encode_document(self, texts, **_):
            return self._vec(texts)

    small = [p for p in corpus if p["passage_id"] in ("FERRITINE-basse", "HB-role")]
    contexts = rag.retrieve_contexts(Keyword(), [c], small, k=1)
    assert len(contexts) == 1 and len(contexts[0]) == 2
    assert "erritine" in contexts[0][0] and "moglobine" in contexts[0][1]
    with pytest.raises(ValueError, match="Aucune valeur"):
        rag.retrieve_contexts(Keyword(), [{"id": "x", "labels": []}], small)


def test_precomputed_corpus_embeddings_give_the_same_hits(corpus):
    from helpers.models import load_sentence_transformer

    model = load_sentence_transformer("multilingual-e5-small", "multilingual-e5-small")
    small = [p for p in corpus if p["code"] in ("FERRITINE", "HB", "TSH")]
    q = rag.abnormal_queries([case(("FERRITINE", "bas"), ("HB", "élevé"), ("TSH", "bas"))], small)
    assert rag.hit_rates(model, q, small) == rag.hit_rates(
        model, q, small, corpus_embeddings=rag.encode_corpus(model, small)
    )


def summary_case():
    labels = [
        {"code": "FERRITINE", "statut": "bas", "valeur": 8.0},
        {"code": "HB", "statut": "normal", "valeur": 14.1},
        {"code": "CPK", "statut": "élevé", "valeur": 900.0},
    ]
    cases = [{"id": f"r1-{i}", "case_id": "r1", "labels": [label]} for i, label in enumerate(labels)]
    cases.append({"id": "r2-1", "case_id": "r2", "labels": [labels[0]]})
    answers = ["Ferritine : bas", "Hémoglobine : normal", "bla bla", "Ferritine : normal"]
    contexts = [["Une ferritine basse évoque une carence en fer. Deuxième phrase."], ["x"], ["Les CPK hautes."], ["y"]]
    return cases, answers, contexts


def test_summary_items_read_the_model_answers():
    cases, answers, contexts = summary_case()
    items = rag.summary_items(cases, answers, contexts, "r1")
    assert [(i["code"], i["lab_status"], i["model_status"]) for i in items] == [
        ("FERRITINE", "bas", "bas"),
        ("HB", "normal", "normal"),
        ("CPK", "élevé", None),
    ]
    assert items[0]["passage"].startswith("Une ferritine basse")
    with pytest.raises(ValueError, match="introuvable"):
        rag.summary_items(cases, answers, contexts, "r9")
    with pytest.raises(ValueError, match="autant"):
        rag.summary_items(cases, answers[:2], contexts, "r1")


def test_prudent_summary_uses_model_statuses_and_refers_to_a_doctor():
    cases, answers, contexts = summary_case()
    text = rag.prudent_summary(rag.summary_items(cases, answers, contexts, "r1"), "r1")
    assert "1 valeur(s) sur 3" in text and "Ferritine : 8 µg/L — lue comme basse" in text
    assert "« Une ferritine basse évoque une carence en fer. »" in text and "Deuxième phrase" not in text
    assert "lue(s) comme normale(s) : Hémoglobine." in text
    assert "Statut non lisible dans la réponse du modèle pour : CPK." in text
    assert rag.prudence_issues(text) == []
    assert "Attention" not in text  # les statuts lisibles sont ceux du laboratoire
    wrong = rag.summary_items(cases, ["Ferritine : normal", "Hémoglobine : élevé", "?", "?"], contexts, "r1")
    warned = rag.prudent_summary(wrong, "r1")
    assert (
        "pour 2 valeur(s), le statut lu par le modèle diffère de celui du laboratoire, dont le compte rendu "
        "fait foi : Ferritine (laboratoire : bas ; modèle : normal); Hémoglobine (laboratoire : normal ; "
        "modèle : élevé)."
    ) in warned
    with pytest.raises(ValueError, match="Aucune valeur"):
        rag.prudent_summary([], "r1")
    unread = rag.prudent_summary(
        [{**i, "model_status": None} for i in rag.summary_items(cases, answers, contexts, "r1")], "r1"
    )
    assert "hors de l'intervalle" not in unread  # rien de lisible : rien n'est affirmé
    assert "Statut non lisible dans la réponse du modèle pour : Ferritine, Hémoglobine, CPK." in unread


def test_prudence_issues_catch_obvious_drifts():
    assert rag.prudence_issues("Vous avez une anémie. Prenez du fer.") == [
        "affirme un diagnostic (« vous avez… »)",
        "donne une consigne de traitement",
        "ne renvoie pas vers un médecin ou un professionnel de santé",
    ]
    assert rag.prudence_issues("Valeur basse, c'est certainement rien ; parlez-en à votre médecin.") == [
        "prend un ton affirmatif"
    ]
    assert rag.prudence_issues("Inutile de consulter un médecin.") == ["déconseille de consulter"]


def test_status_issues_rank_a_reassuring_error_first():
    items = [
        {"title": "Ferritine", "lab_status": "bas", "model_status": "normal"},
        {"title": "Sodium", "lab_status": "bas", "model_status": "élevé"},
        {"title": "Hémoglobine", "lab_status": "normal", "model_status": "élevé"},
        {"title": "CPK", "lab_status": "élevé", "model_status": None},
        {"title": "TSH", "lab_status": "élevé", "model_status": "élevé"},
    ]
    assert rag.status_issues(items) == [
        "valeur anormale présentée comme normale : Ferritine (laboratoire : bas ; modèle : normal)",
        "sens inversé (basse dite élevée ou l'inverse) : Sodium (laboratoire : bas ; modèle : élevé)",
        "valeur normale présentée comme anormale : Hémoglobine (laboratoire : normal ; modèle : élevé)",
        "statut illisible dans la réponse du modèle : CPK (laboratoire : élevé ; modèle : ?)",
    ]
    assert rag.status_issues(items[-1:]) == []
    # le cas du rapport : un résumé au ton prudent, mais qui rassure à tort, doit être signalé
    cases, _, contexts = summary_case()
    wrong = rag.summary_items(
        cases, ["Ferritine : normal", "Hémoglobine : normal", "CPK : normal", "?"], contexts, "r1"
    )
    text = rag.prudent_summary(wrong, "r1")
    assert rag.prudence_issues(text) == [] and rag.status_issues(wrong) == [
        "valeur anormale présentée comme normale : Ferritine (laboratoire : bas ; modèle : normal), "
        "CPK (laboratoire : élevé ; modèle : normal)"
    ]


def test_explanation_passages_search_abnormal_values_with_the_lab_status(corpus):
    from helpers.models import load_sentence_transformer

    model = load_sentence_transformer("multilingual-e5-small", "multilingual-e5-small")
    small = [p for p in corpus if p["code"] in ("NA", "MG")]
    items = [
        {"value": "Sodium : 134 mmol/L", "lab_status": "bas", "passage": "bornes"},
        {"value": "Magnésium : 0,85 mmol/L", "lab_status": "normal", "passage": "bornes"},
    ]
    found = rag.explanation_passages(model, items, small)
    aspect = {p["text"]: p["aspect"] for p in small}
    assert aspect[found[0]["passage"]] == "basse" and found[1]["passage"] == "bornes"
    assert items[0]["passage"] == "bornes"  # l'entrée n'est pas modifiée


def test_hit_rates_by_group_with_intervals(corpus):
    from helpers.models import load_sentence_transformer

    model = load_sentence_transformer("multilingual-e5-small", "multilingual-e5-small")
    codes = ("FERRITINE", "HB", "TSH", "CPK", "GLY")
    small = [p for p in corpus if p["code"] in codes]
    q = rag.abnormal_queries([case(*[(c, s) for c in codes for s in ("bas", "élevé")])], small)
    q["analyte"] = ["vu" if code in ("HB", "TSH") else "jamais vu" for code in q["code"]]
    table = rag.hit_rates_by(model, q, small, by="analyte", corpus_embeddings=rag.encode_corpus(model, small))
    assert list(table["analyte"]) == ["tous", "jamais vu", "vu"] and list(table["questions"]) == [10, 6, 4]
    overall = rag.hit_rates(model, q, small)
    assert table.loc[0, "hit_at_1"] == overall["hit_at_1"] and table.loc[0, "hit_at_3"] == overall["hit_at_3"]
    assert (table["hit_at_1_low"] <= table["hit_at_1"]).all() and (table["hit_at_1"] <= table["hit_at_1_high"]).all()
    assert abs(table.loc[0, "hit_at_1"] * 10 - round(table.loc[0, "hit_at_1"] * 10)) < 1e-9
    with pytest.raises(ValueError, match="Colonne « groupe » absente"):
        rag.hit_rates_by(model, q, small, by="groupe")


def test_proportion_interval_stays_informative_at_100_percent():
    from helpers.stats import proportion_interval

    p, low, high = proportion_interval(10, 10)
    assert p == 1.0 and high == 1.0 and 0.65 < low < 0.8
    assert proportion_interval(0, 0)[0] != proportion_interval(0, 0)[0]  # NaN
    with pytest.raises(ValueError, match="Proportion impossible"):
        proportion_interval(5, 3)
