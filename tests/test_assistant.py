"""L'assistant du notebook 08 : réglage d'index du notebook 03, index faiss, réponses contrôlées."""

import json

import pandas as pd
import pytest

from helpers import MEDICAL_DISCLAIMER, assistant
from helpers.data import DatasetValidationError, load_retrieval
from helpers.user_data import results_to_reports

HEADER = "patient_id,sexe,age,analyte,valeur,unite"
CODES = ("FERRITINE", "HB", "NA", "TSH")


@pytest.fixture(scope="module")
def corpus():
    return [p for p in load_retrieval()["corpus"] if p["code"] in CODES]


@pytest.fixture(scope="module")
def embedder():
    from helpers.models import load_sentence_transformer

    return load_sentence_transformer("multilingual-e5-small", "multilingual-e5-small")


def test_chosen_retrieval_reads_the_notebook_03_recommendation(outputs):
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        assistant.chosen_retrieval("cpu")
    folder = outputs / "cpu" / "embeddings"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "usage": ["performance maximale", "compromis (≥ 98% du max)", "ressources limitées (≥ 90% du max)"],
            "dimension": [384, 256, 64],
            "precision": ["float32", "binaire + rescoring", "int8"],
        }
    ).to_csv(folder / "recommandations.csv", index=False)
    choice = assistant.chosen_retrieval("cpu")
    assert (choice.dim, choice.precision, choice.rescore) == (256, "binaire", True)
    assert choice.label == "256 dimensions, binaire + rescoring"
    assert assistant.chosen_retrieval("cpu", "ressources").precision == "int8"
    with pytest.raises(ValueError, match="Usage « rapide » absent"):
        assistant.chosen_retrieval("cpu", "rapide")


@pytest.mark.parametrize(
    "choice",
    [
        assistant.RetrievalChoice("plein", 384, "float32"),
        assistant.RetrievalChoice("compromis", 256, "binaire", rescore=True),
        assistant.RetrievalChoice("petit", 128, "int8"),
    ],
    ids=lambda c: c.label,
)
def test_index_round_trip_finds_the_explaining_passage(choice, embedder, corpus, tmp_path):
    index = assistant.PassageIndex.build(embedder, corpus, choice)
    loaded = assistant.PassageIndex.load(index.save(tmp_path / "index"), corpus)
    assert loaded.choice == choice and loaded.size_bytes() == index.size_bytes() > 0
    queries = ["Ferritine : 8 µg/L — bas", "TSH : 6,1 mUI/L — élevé"]
    hits = loaded.search(embedder, queries, k=3)
    assert hits == index.search(embedder, queries, k=3) and all(len(h) == 3 for h in hits)
    found = [[corpus[h["corpus_id"]]["passage_id"] for h in hs] for hs in hits]
    if choice.precision != "binaire":  # le binaire n'est fiable qu'avec le modèle fine-tuné (notebook 03)
        assert "FERRITINE-basse" in found[0] and "TSH-haute" in found[1], found
    with pytest.raises(ValueError, match="autre corpus"):
        assistant.PassageIndex.load(tmp_path / "index", corpus[:-1])
    with pytest.raises(FileNotFoundError, match="Pas d'index"):
        assistant.PassageIndex.load(tmp_path / "absent")


def _assistant(smoke, embedder, corpus, answer):
    index = assistant.PassageIndex.build(embedder, corpus, assistant.RetrievalChoice("plein", 384, "float32"))
    return assistant.Assistant(smoke, embedder, index, corpus, answer)


ROWS = "\n".join([HEADER, "P1,femme,40,Ferritine,8,µg/L", "P1,femme,40,Hémoglobine,13,g/dL", "P2,homme,60,TSH,2,mUI/L"])


def test_assistant_shows_an_answer_that_agrees_with_the_rule(smoke, embedder, corpus):
    helper = _assistant(smoke, embedder, corpus, None)
    gold = {}
    for report in results_to_reports(assistant.rows_from_text(ROWS)):
        cases, _, prompts = helper.prompts(report)
        gold |= {p: c["output"] for p, c in zip(prompts, cases)}  # le modèle parfait : la réponse attendue
    helper.generate = lambda prompts: [gold[p] for p in prompts]
    replies = helper.answer_rows(assistant.rows_from_text(ROWS))
    first = replies[0]
    assert [r.report_id for r in replies] == ["P1", "P2"] and first.shown_as_is
    assert list(first.table["rule_status"]) == ["bas", "normal"] and first.table["agrees"].all()
    assert first.table.loc[0, "source"] == "FERRITINE-basse"  # le passage qui explique la valeur basse
    assert first.text.startswith(first.model_text) and first.text.endswith(MEDICAL_DISCLAIMER)
    assert all(r.text.endswith(MEDICAL_DISCLAIMER) for r in replies) and first.seconds > 0
    saved = json.loads(json.dumps(first.to_json()))  # assistant/exemple.json
    assert saved["shown_as_is"] and saved["table"][0]["source"] == "FERRITINE-basse" and saved["text"] == first.text


def test_assistant_never_shows_an_answer_that_contradicts_the_rule(smoke, embedder, corpus):
    helper = _assistant(smoke, embedder, corpus, lambda prompts: ["Ferritine : normal"] * len(prompts))
    reply = helper.answer_rows(assistant.rows_from_text(ROWS))[0]
    assert reply.flagged and not reply.shown_as_is
    assert "valeur anormale présentée comme normale" in reply.flagged[0]
    assert reply.text.startswith("⚠️ Réponse du modèle de langage retenue (non montrée)")
    assert "lue comme" not in reply.text  # le texte du modèle n'apparaît pas
    assert "Ferritine : 8 µg/L — bas" in reply.text and reply.text.endswith(MEDICAL_DISCLAIMER)
    assert reply.table.loc[0, "rule_status"] == "bas" and not reply.table.loc[0, "agrees"]
    with pytest.raises(ValueError, match="autant"):
        _assistant(smoke, embedder, corpus, lambda prompts: []).answer_rows(assistant.rows_from_text(ROWS))


def test_the_gpu_report_task_puts_passages_in_one_prompt_and_checks_the_written_report(embedder, corpus):
    """Le chemin gpu (tâche « rapport », Mistral-7B) sans GPU : un prompt par compte rendu, avec les
    passages retrouvés, au gabarit alpaca ; le texte rédigé est montré s'il concorde avec la règle."""
    from helpers.profiles import get_profile

    gpu = get_profile("gpu")
    assert gpu.llm.task == "rapport"
    seen = []

    def mistral(prompts):
        seen.extend(prompts)
        return [
            "Interprétation des résultats (femme, 40 ans) :\n- Ferritine : 8 µg/L — bas. Réserves en fer basses.\n"
            "- Hémoglobine : 13 g/dL — normal.\nCes résultats se discutent avec votre médecin."
        ]

    helper = _assistant(gpu, embedder, corpus, mistral)
    assert helper.use_context
    reply = helper.answer_rows(assistant.rows_from_text("\n".join(ROWS.splitlines()[:3])))[0]
    assert len(seen) == 1 and seen[0].endswith("### Response:\n") and "Contexte (extraits de référence)" in seen[0]
    assert reply.shown_as_is and reply.text.startswith(reply.model_text) and "Réserves en fer" in reply.text
    assert list(reply.table["model_status"]) == ["bas", "normal"] and reply.text.endswith(MEDICAL_DISCLAIMER)
    # chaque valeur a son passage, pas celui de la première valeur du compte rendu
    assert list(reply.table["source"].str.split("-").str[0]) == ["FERRITINE", "HB"]
    helper.generate = lambda prompts: ["- Ferritine : 8 µg/L — normal.\n- Hémoglobine : 13 g/dL — normal."]
    wrong = helper.answer_rows(assistant.rows_from_text("\n".join(ROWS.splitlines()[:3])))[0]
    assert not wrong.shown_as_is and "Réserves" not in wrong.text and "présentée comme normale" in wrong.text


def test_pasted_and_typed_results_get_french_errors_without_paths():
    with pytest.raises(DatasetValidationError) as err:
        assistant.rows_from_text(f"{HEADER}\nP1,femme,40,Licorne,3,g/L")
    assert str(err.value).startswith("texte collé.csv, ligne 2, colonne « analyte » : analyte inconnu « Licorne »")
    assert "/" not in str(err.value).split(" : ")[0]
    with pytest.raises(ValueError, match="Rien à analyser"):
        assistant.rows_from_text("  ")
    form = pd.DataFrame(
        [["P1", "femme", "40", "Sodium", "134", "mmol/L"], ["", "", "", "", "", ""]], columns=assistant.RESULT_COLUMNS
    )
    assert [r["statut"] for r in assistant.rows_from_table(form)] == ["bas"]  # la ligne vide est ignorée
    with pytest.raises(DatasetValidationError, match="formulaire.csv, ligne 2, colonne « age »"):
        assistant.rows_from_table(form.assign(age="quarante").iloc[:1])
    with pytest.raises(ValueError, match="vide"):
        assistant.rows_from_table(form.iloc[1:])
    with pytest.raises(ValueError, match="Colonnes manquantes.*unite"):
        assistant.rows_from_table(form.drop(columns="unite"))


def test_report_rows_go_through_the_user_path():
    report = {
        "id": "inst-1",
        "sexe": "femme",
        "age": 50,
        "labels": [{"code": "NA", "analyte": "sodium", "valeur": 134.0, "unite": "mmol/L", "statut": "bas"}],
    }
    text = pd.DataFrame(assistant.report_rows(report)).to_csv(index=False)
    assert [r["statut"] for r in assistant.rows_from_text(text)] == ["bas"]


def test_latency_summary_and_index_costs(embedder, corpus, tmp_path):
    summary = assistant.latency_summary([1.0, 2.0, 3.0, 10.0])
    assert summary["p50_s"] == 2.5 and 3.0 < summary["p95_s"] <= 10.0 and summary["answers_per_minute"] == 15.0
    with pytest.raises(ValueError, match="Aucune latence"):
        assistant.latency_summary([])
    full = assistant.RetrievalChoice("plein", 384, "float32")
    small = assistant.RetrievalChoice("compromis", 256, "binaire", rescore=True)
    costs = assistant.index_costs(embedder, corpus, [full, small], tmp_path, loads=2)
    assert list(costs["dim"]) == [384, 256]
    assert costs.loc[1, "file_bytes"] < costs.loc[0, "file_bytes"] / 10  # 32 octets par vecteur contre 1 536
    assert (costs["load_ms"] > 0).all()


def test_the_latency_plot_shows_both_kinds_of_answers_and_the_percentiles():
    latencies = pd.DataFrame(
        {"values": [3, 5, 8, 4], "seconds": [1.0, 2.0, 3.5, 10.0], "shown_as_is": [True, True, False, True]}
    )
    fig = assistant.plot_latencies(latencies)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["réponse du modèle montrée", "réponse retenue"]
    assert labels[2] == "médiane : 2,75 s" and labels[3].startswith("p95 : ") and "," in labels[3]
    assert [len(c.get_offsets()) for c in ax.collections] == [3, 1]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 10.0  # le point le plus lent n'est pas coupé
    assert all(float(t).is_integer() for t in ax.get_xticks())
    with pytest.raises(ValueError, match="colonnes manquantes"):
        assistant.plot_latencies(latencies.drop(columns="shown_as_is"))


def test_an_index_built_with_another_model_is_refused(embedder, corpus, tmp_path):
    model = tmp_path / "modele"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"poids v1")
    signature = assistant.folder_signature(model)
    (model / "README.md").write_text("carte", encoding="utf-8")  # la carte ne compte pas
    assert assistant.folder_signature(model) == signature
    choice = assistant.RetrievalChoice("plein", 384, "float32")
    folder = assistant.PassageIndex.build(embedder, corpus, choice, signature=signature).save(tmp_path / "index")
    assert assistant.PassageIndex.load(folder, corpus, signature).signature == signature
    (model / "model.safetensors").write_bytes(b"poids v2, reentraine")
    with pytest.raises(ValueError, match="autre modèle d'embeddings"):
        assistant.PassageIndex.load(folder, corpus, assistant.folder_signature(model))


def test_an_index_built_on_rewritten_passages_is_refused(embedder, corpus, tmp_path):
    """Mêmes identifiants, un texte réécrit (le générateur corrigé, par exemple) : l'index garde les
    vecteurs de l'ancien texte, il est refusé."""
    choice = assistant.RetrievalChoice("plein", 384, "float32")
    folder = assistant.PassageIndex.build(embedder, corpus, choice).save(tmp_path / "index")
    assert assistant.PassageIndex.load(folder, corpus).corpus_digest == assistant.corpus_digest(corpus)
    rewritten = [dict(p) for p in corpus]
    rewritten[0]["text"] += " (corrigé)"
    with pytest.raises(ValueError, match="autres textes des mêmes passages"):
        assistant.PassageIndex.load(folder, rewritten)
    with pytest.raises(ValueError, match="autre corpus"):
        assistant.PassageIndex.load(folder, corpus[1:])


def test_explanation_hits_count_the_right_passage_first():
    class FakeIndex:  # la recherche répond « FERRITINE-basse » à toutes les requêtes
        passage_ids = ["TSH-haute", "FERRITINE-basse"]

        def search(self, embedder, queries, k):
            self.queries = queries
            return [[{"corpus_id": 1, "score": 1.0}] for _ in queries]

    reports = [
        {
            "id": "r1",
            "labels": [
                {"code": "FERRITINE", "valeur": 8.0, "statut": "bas"},
                {"code": "TSH", "valeur": 6.1, "statut": "élevé"},
                {"code": "HB", "valeur": 14.0, "statut": "normal"},  # normale : pas cherchée
            ],
        }
    ]
    index = FakeIndex()
    hits = assistant.explanation_hits(index, None, reports)
    assert index.queries == ["Ferritine : 8 µg/L — bas", "TSH : 6,10 mUI/L — élevé"]
    assert hits["values"] == 2 and hits["explanation_found"] == 0.5 and hits["ci_low"] < 0.5 < hits["ci_high"]
    with pytest.raises(ValueError, match="Aucune valeur anormale"):
        assistant.explanation_hits(index, None, [{"id": "r2", "labels": reports[0]["labels"][2:]}])


def test_model_cards_are_written_from_the_outputs(smoke, outputs):
    from helpers.outputs import save_json, save_table

    with pytest.raises(FileNotFoundError, match="notebook 04"):
        assistant.llm_card(smoke)
    save_json(
        {
            "train_examples": 100,
            "eval_examples": 10,
            "steps": 5,
            "train_seconds": 12.3,
            "trainable_params": 4884480,
            "eval_loss_base": 3.4541,
            "eval_loss_finetuned": 0.5,
        },
        "smoke",
        "llm/training.json",
    )
    save_table(
        pd.DataFrame({"model": ["finetuned", "base"], "n_cases": [5, 5], "n_values": [20, 20], "accuracy": [0.9, 0.1]}),
        "smoke",
        "llm/status_accuracy.csv",
    )
    card = assistant.llm_card(smoke)
    assert card.startswith("---\nlanguage:\n- fr\n") and MEDICAL_DISCLAIMER in card
    assert "perte de validation 3,454 → 0,5" in card and "4\u202f884\u202f480 paramètres" in card
    assert "| fine-tuné | 90,0\u00a0% | [69,9\u00a0% ; 97,2\u00a0%] | 20 |" in card
    assert "surestiment" in card  # la limite des données en gabarits est dite
    assert "poids 4 bits déquantifiés" in card and "mesuré dans l'assistant" not in card  # pas encore mesuré
    assert "proches d'une borne de référence n'ont pas été mesurées" in card
    assert "l'adaptateur seul" in assistant.llm_card(smoke, "llm/adapter")
    rows = [("4 bits + adaptateur", 0.94, float("nan")), ("fusionné", 0.72, 0.677)]
    save_table(
        pd.DataFrame(rows, columns=["model", "agreement", "same_status"]).assign(ci_low=0.6, ci_high=0.97),
        "smoke",
        "assistant/modele_fusionne.csv",
    )
    edges = [("aux bornes (toutes)", 0.81, 0.7, 0.88, 120), ("test (générateur)", 0.94, 0.9, 0.97, 129)]
    save_table(
        pd.DataFrame(edges, columns=["position", "agreement", "ci_low", "ci_high", "values"]),
        "smoke",
        "assistant/bornes.csv",
    )
    card = assistant.llm_card(smoke)
    assert "mesuré dans l'assistant (test, notebook 08)" in card
    assert (
        "81,0 % des statuts concordent avec la règle [70,0 % ; 88,0 %], contre 94,0 % sur le test (120 et 129 valeurs)"
        in card.replace("\u00a0", " ")
    )
    assert "| fusionné | 72,0 % | [60,0 % ; 97,0 %] | 67,7 % |" in card and "| — |" in card
    assert "mesuré dans l'assistant" not in assistant.llm_card(smoke, "llm/adapter")
    with pytest.raises(ValueError, match="llm/merged ou llm/adapter"):
        assistant.llm_card(smoke, "llm/autre")


def test_push_to_hub_sends_nothing_without_a_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("CI", "true")
    assert assistant.push_to_hub(tmp_path, "moi/modele") is False
    assert "intégration continue, pas de jeton HF_TOKEN" in capsys.readouterr().out


def test_serving_summary_compares_two_ways_of_serving_the_model():
    class Weights:  # get_memory_footprint de transformers, en octets
        def __init__(self, n):
            self.n = n

        def get_memory_footprint(self):
            return self.n

    latencies = pd.DataFrame({"seconds": [1.0, 3.0]})
    four_bit = pd.DataFrame({"model_status": ["bas", "normal", "élevé", "normal"], "agrees": [True, True, True, False]})
    merged = four_bit.assign(model_status=["bas", "normal", "normal", "normal"], agrees=[True, True, False, False])
    first = assistant.serving_summary("4 bits", Weights(2_500_000), latencies, four_bit)
    second = assistant.serving_summary("fusionné", Weights(10_000_000), latencies, merged, reference=four_bit)
    assert first["weights_mb"] == 2.5 and first["agreement"] == 0.75 and first["ci_low"] < 0.75 < first["ci_high"]
    assert first["p50_s"] == 2.0 and first["answers_per_minute"] == 30.0 and pd.isna(first["same_status"])
    assert second["same_status"] == 0.75 and second["agreement"] == 0.5
    with pytest.raises(ValueError, match="mêmes comptes rendus"):
        assistant.serving_summary("fusionné", Weights(1), latencies, merged.iloc[:3], reference=four_bit)


def test_a_missing_merged_model_names_the_setting(smoke, outputs):
    from helpers.qlora import load_merged_llm

    with pytest.raises(FileNotFoundError, match="COURSE_SAVE_MERGED=1"):
        load_merged_llm(smoke)


def test_measure_reports_goes_through_the_user_path(smoke, embedder, corpus):
    reports = [
        {
            "id": f"inst-{i}",
            "sexe": "femme",
            "age": 40,
            "labels": [
                {"code": "FERRITINE", "analyte": "ferritine", "valeur": 8.0, "unite": "µg/L", "statut": "bas"},
                {"code": "HB", "analyte": "hémoglobine", "valeur": 13.0, "unite": "g/dL", "statut": "normal"},
            ],
        }
        for i in (1, 2)
    ]
    helper = _assistant(smoke, embedder, corpus, lambda prompts: ["Ferritine : normal"] * len(prompts))
    latencies, values = assistant.measure_reports(helper, reports, "essai")
    assert list(latencies["report"]) == ["inst-1", "inst-2"] and list(latencies["values"]) == [2, 2]
    assert not latencies["shown_as_is"].any() and (latencies["seconds"] > 0).all()
    assert list(values.columns) == ["report", *assistant.REPLY_COLUMNS] and len(values) == 4
    assert list(values["report"]) == ["inst-1", "inst-1", "inst-2", "inst-2"]
    assert list(values["rule_status"]) == ["bas", "normal"] * 2


def test_boundary_agreement_reads_each_position_next_to_its_constant_answer(smoke, embedder, corpus):
    """Un modèle qui dit « normal » partout : parfait juste dedans et sur la borne (comme la réponse
    constante), nul juste dehors ; la ligne du test vient des valeurs qu'on lui donne."""
    from helpers.analytes import load_analytes
    from helpers.generate import build_boundary_reports

    reports = build_boundary_reports(load_analytes(), 6)
    helper = _assistant(smoke, embedder, corpus, lambda prompts: ["normal"] * len(prompts))  # une valeur par prompt
    _, values = assistant.measure_reports(helper, reports, "bornes")
    test_values = pd.DataFrame({"rule_status": ["normal", "bas", "normal"], "agrees": [True, False, True]})
    table = assistant.boundary_agreement(reports, values, test_values).set_index("position")
    assert list(table.index) == [
        "juste dedans",
        "sur la borne",
        "juste dehors",
        "aux bornes (toutes)",
        "test (générateur)",
    ]
    assert table.loc["juste dedans", "agreement"] == table.loc["sur la borne", "agreement"] == 1.0
    assert table.loc["juste dedans", "constant_agreement"] == 1.0
    assert table.loc["juste dehors", "agreement"] == 0.0 and table.loc["juste dehors", "constant_status"] != "normal"
    assert table.loc["aux bornes (toutes)", "values"] == sum(len(r["labels"]) for r in reports)
    assert table.loc["test (générateur)", "agreement"] == pytest.approx(2 / 3)
    assert (table["ci_low"] <= table["agreement"]).all() and (table["agreement"] <= table["ci_high"]).all()
    with pytest.raises(ValueError, match="sans position"):
        assistant.boundary_agreement(reports[:2], values, test_values)


def test_describe_product_memory_adds_gpu_peaks_only_when_measured_on_gpu():
    from helpers.assistant import describe_product_memory

    cpu = describe_product_memory({"peak_rss_mb": 2212}).replace("\u00a0", " ").replace("\u202f", " ")
    assert cpu == "pic du processus 2 212 Mo"
    measured = {"p50_s": 1.9, "peak_rss_mb": 2212, "peak_gpu_reserved_mb": 4512, "peak_gpu_allocated_mb": 4340}
    gpu = describe_product_memory(measured).replace("\u00a0", " ").replace("\u202f", " ")
    assert gpu == "pic du processus 2 212 Mo ; pic GPU réservé 4 512 Mo ; pic GPU alloué 4 340 Mo"
