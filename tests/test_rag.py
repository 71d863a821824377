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
    n_abnormal = sum(l["statut"] != "normal" for r in reports for l in r["labels"])
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
    assert rates["questions"] == 10 and rates[f"hit@{len(small)}"] == 1.0
    assert 0 <= rates["hit@1"] <= rates["hit@3"] <= 1
    assert rates["hit@3"] >= 0.5  # le modèle de base retrouve déjà l'analyte la plupart du temps
    with pytest.raises(ValueError, match="Aucune question"):
        rag.hit_rates(model, pd.DataFrame(columns=q.columns), small)


def test_with_context_numbers_the_passages():
    out = rag.with_context("Résultats :\n- Ferritine : 8 µg/L", ["La ferritine reflète les réserves. ", "Autre."])
    assert out.endswith("Contexte (extraits de référence) :\n[1] La ferritine reflète les réserves.\n[2] Autre.")
    assert rag.with_context("x", []) == "x"


def test_require_model_names_the_missing_notebook(tmp_path, monkeypatch):
    from helpers.embeddings import MissingResultsError, model_dir, require_model

    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path))
    with pytest.raises(MissingResultsError, match="notebook 02"):
        require_model("cpu")
    model_dir("cpu").mkdir(parents=True)
    (model_dir("cpu") / "config_sentence_transformers.json").write_text("{}")
    assert require_model("cpu") == model_dir("cpu")


def test_result_queries_hide_the_status_and_contexts_follow_cases(corpus):
    c = {"id": "c1", "labels": [{"code": "FERRITINE", "statut": "bas", "valeur": 8.0},
                                {"code": "HB", "statut": "normal", "valeur": 14.2}]}
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
        model, q, small, corpus_embeddings=rag.encode_corpus(model, small))
