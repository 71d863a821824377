"""Comparaison des trois approches (notebook 06) et reprise des sorties manquantes (06, 07)."""

import math

import pandas as pd
import pytest

from helpers import compare


# --------------------------------------------------------------------------- courbe d'apprentissage
def test_curve_subsets_are_nested_and_checked():
    from datasets import Dataset

    split = Dataset.from_dict({"question": [f"q{i}" for i in range(50)], "passage_id": ["p"] * 50})
    small, large = compare.curve_subset(split, 10, seed=1), compare.curve_subset(split, 30, seed=1)
    assert len(small) == 10 and len(large) == 30
    assert set(small["question"]) <= set(large["question"])
    assert set(compare.curve_subset(split, 10, seed=2)["question"]) != set(small["question"])
    with pytest.raises(ValueError, match="n'en a que 50"):
        compare.curve_subset(split, 51, seed=1)
    with pytest.raises(ValueError, match="au moins 1"):
        compare.curve_subset(split, 0, seed=1)


def test_train_embedder_follows_the_profile_recipe(tmp_path):
    """Deux pas sur 16 paires (profil smoke ; le premier, en échauffement, a un taux nul) :
    poids modifiés, vocabulaire gelé, pic mesuré."""
    import torch

    from helpers.data import load_retrieval
    from helpers.embeddings import training_pairs
    from helpers.models import load_sentence_transformer
    from helpers.profiles import get_profile

    profile = get_profile("smoke")
    retrieval = load_retrieval(profile)
    pairs = training_pairs(compare.curve_subset(retrieval["train"], 16, profile.seed), retrieval["corpus"])
    base = load_sentence_transformer(profile.embedding.model_id, profile.embedding.offline_model)
    out = compare.train_embedder(profile, pairs, tmp_path / "run")
    assert out["steps"] == 2 and out["seconds"] > 0 and out["peak_rss_mb"] > 0
    trained = dict(out["model"].named_parameters())
    changed = [n for n, p in base.named_parameters() if not torch.equal(p, trained[n])]
    assert changed and not any("word_embeddings" in n for n in changed)
    with pytest.raises(ValueError, match="anchor"):
        compare.train_embedder(profile, pairs.rename_column("anchor", "question"), tmp_path / "bad")


def test_accuracy_at_1_counts_first_ranks():
    pq = pd.DataFrame({"split": ["t"] * 4 + ["u"], "dim": [64] * 5, "model": ["m"] * 5, "rank": [1, 2, None, 1, 1]})
    assert compare.accuracy_at_1(pq, "t", 64) == 0.5
    assert compare.accuracy_at_1(pq, "u", 64, model="m") == 1.0
    with pytest.raises(ValueError, match="Aucune requête"):
        compare.accuracy_at_1(pq, "t", 128)


def test_learning_curve_plot_has_one_line_per_split_and_dim():
    curve = pd.DataFrame(
        {"pairs": [0, 100, 0, 100], "split": ["a", "a", "b", "b"], "dim": [64] * 4, "ndcg_at_10": [0.4, 0.6, 0.3, 0.5]}
    )
    fig = compare.plot_learning_curve(curve)
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="pairs"):
        compare.plot_learning_curve(curve.drop(columns="pairs"))


# --------------------------------------------------------------------------- latence
def test_time_per_call_skips_warmup_and_orders_percentiles():
    calls = []
    stats = compare.time_per_call(calls.append, range(6), warmup=2)
    assert calls == list(range(6)) and stats["appels"] == 4
    assert 0 <= stats["median_latency_ms"] <= stats["p90_latency_ms"]
    with pytest.raises(ValueError, match="plus de 1"):
        compare.time_per_call(calls.append, [1], warmup=1)


def test_describe_latency_is_a_french_sentence():
    text = compare.describe_latency({"median_latency_ms": 51.57588, "p90_latency_ms": 60.32, "appels": 20})
    assert text == "médiane 51,6 ms, 90ᵉ centile 60,3 ms, sur 20 appels"


# --------------------------------------------------------------------------- oubli
def test_keyword_hits_whole_words_without_accents():
    questions = [("fr", "Combien ?", ("7", "sept")), ("fr", "Couleur ?", ("bleu",)), ("en", "Bees?", ("honey",))]
    hits = compare.keyword_hits(["Il y en a 17.", "BLEU clair", "Honey, of course"], questions, label="m")
    assert list(hits["correct"]) == [False, True, True]
    accented = compare.keyword_hits(["Le ciel est bléu"], [("fr", "?", ("bleu",))])
    assert accented["correct"].item()
    with pytest.raises(ValueError, match="2 réponses pour 3"):
        compare.keyword_hits(["a", "b"], questions)


def test_general_questions_are_parallel_in_both_languages():
    langs = [q[0] for q in compare.GENERAL_QUESTIONS]
    assert langs.count("fr") == langs.count("en") >= 20
    assert all(q[2] for q in compare.GENERAL_QUESTIONS) and len(compare.GENERAL_TEXT_FR) >= 10


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers.models import model_path

    path = model_path("tiny-mistral")
    return AutoModelForCausalLM.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))


def test_text_loss_is_a_token_weighted_mean(tiny_lm):
    """La perte d'un lot complété (padding) = moyenne des pertes de chaque texte, pondérée par jetons."""
    model, tokenizer = tiny_lm
    texts = ["Le train part à huit heures.", "Il pleut, les enfants jouent aux cartes dans la cuisine ce soir."]
    single = [compare.text_loss(model, tokenizer, [t]) for t in texts]
    counts = [len(tokenizer(t)["input_ids"]) - 1 for t in texts]
    expected = sum(loss * n for loss, n in zip(single, counts)) / sum(counts)
    assert compare.text_loss(model, tokenizer, texts, batch_size=2) == pytest.approx(expected, rel=1e-4)
    assert tokenizer.padding_side == tokenizer.padding_side  # restauré (pas d'exception)
    with pytest.raises(ValueError, match="Aucun texte"):
        compare.text_loss(model, tokenizer, [])


def test_text_losses_give_one_loss_per_text(tiny_lm):
    model, tokenizer = tiny_lm
    texts = ["Le train part à huit heures.", "Il pleut, les enfants jouent aux cartes dans la cuisine ce soir."]
    rows = compare.text_losses(model, tokenizer, texts, batch_size=2)
    assert [r["perte"] for r in rows] == pytest.approx(
        [compare.text_loss(model, tokenizer, [t]) for t in texts], rel=1e-4
    )
    assert [r["jetons"] for r in rows] == [len(tokenizer(t)["input_ids"]) - 1 for t in texts]


def test_forgetting_table_needs_every_loss_and_gives_wilson_intervals():
    hits = pd.concat(
        [
            compare.keyword_hits(["Paris", "non"], [("fr", "a", ("paris",)), ("en", "b", ("paris",))], label=name)
            for name in ("base fp32", "C")
        ]
    )
    table = compare.forgetting_table(
        hits, {"base fp32": 3.0, "C": [{"perte": 4.0, "jetons": 1}, {"perte": 5.0, "jetons": 3}]}
    )
    assert table.loc["base fp32", "questions_fr"] == 1.0 and table.loc["C", "questions_en"] == 0.0
    assert table.loc["C", "fluent_french_loss"] == pytest.approx(4.75)  # pondérée par jetons
    assert 0 < table.loc["C", "questions_en_high"] < 1 and table.loc["C", "questions_en_low"] == 0
    assert table.loc["base fp32", "questions_fr_low"] < 1  # 1 sur 1 : l'intervalle reste large
    with pytest.raises(ValueError, match="manquante pour : C"):
        compare.forgetting_table(hits, {"base fp32": 3.0})


def forgetting_case():
    questions = [("en", f"q{i}", ("yes",)) for i in range(10)]
    base = compare.keyword_hits(["yes"] * 8 + ["no"] * 2, questions, label="base")
    tuned = compare.keyword_hits(["no"] * 7 + ["yes"] * 3, questions, label="tuned")
    losses = {
        "base": [{"perte": 3.0 + 0.01 * i, "jetons": 10} for i in range(12)],
        "tuned": [{"perte": 4.0 + 0.02 * i, "jetons": 10} for i in range(12)],
    }
    return pd.concat([base, tuned], ignore_index=True), losses


def test_forgetting_deltas_are_paired_with_intervals():
    hits, losses = forgetting_case()
    deltas = compare.forgetting_deltas(hits, losses, [("tuned", "base")]).set_index("measure")
    en = deltas.loc["questions_en"]
    assert en["baseline_value"] == 0.8 and en["arm_value"] == 0.3 and en["gap"] == pytest.approx(-0.5)
    assert en["low"] < en["gap"] < en["high"] and en["n"] == 10  # 10 questions : intervalle large
    loss = deltas.loc["fluent_french_loss"]
    assert loss["gap"] == pytest.approx(1.055) and 1.0 < loss["low"] < 1.055 < loss["high"] < 1.11
    with pytest.raises(ValueError, match="pas de mesure pour « C »"):
        compare.forgetting_deltas(hits, losses, [("C", "base")])
    with pytest.raises(ValueError, match="texte par texte"):
        compare.forgetting_deltas(hits, {"base": 3.0, "tuned": 4.0}, [("tuned", "base")])


def test_status_interval_and_constant_baseline():
    assert compare.status_accuracy_interval(9, 10)["status_accuracy"] == 0.9
    low, high = (compare.status_accuracy_interval(9, 10)[k] for k in ("status_accuracy_low", "status_accuracy_high"))
    assert 0.55 < low < 0.9 < high < 1
    scored = pd.DataFrame(
        {
            "row": [0, 1, 2, 3, 0, 1, 2, 3],
            "code": ["X"] * 8,
            "model": ["m"] * 4 + ["n"] * 4,
            "expected": ["normal", "normal", "normal", "bas"] * 2,
        }
    )
    constant = compare.constant_baseline(scored)
    assert constant["status"] == "normal" and constant["accuracy"] == 0.75 and constant["n"] == 4


# --------------------------------------------------------------------------- tableau
def rows():
    common = {"total_params": 100.0, "peak_rss_mb": 4000, "provenance": "test"}
    return [
        {
            "arm": "A",
            "approach": "embeddings",
            "trainable_params": 20,
            "examples_seen": 1000,
            "train_seconds": 200,
            "artifact_mb": 470,
            "latency_ms": 20,
            "ndcg_at_10": 0.85,
            "accuracy_at_1": 0.75,
            "ndcg_natural": 0.62,
            "ndcg_natural_base": 0.68,
            **common,
        },
        {
            "arm": "B",
            "approach": "QLoRA",
            "trainable_params": 5,
            "examples_seen": 320,
            "train_seconds": 360,
            "artifact_mb": 13.4,
            "latency_ms": 400,
            "status_accuracy": 0.5,
            "eval_loss": 0.14,
            **common,
        },
        {
            "arm": "C",
            "approach": "complet",
            "trainable_params": 120,
            "examples_seen": 120,
            "train_seconds": 120,
            "artifact_mb": 540,
            "latency_ms": 300,
            "status_accuracy": 0.34,
            "eval_loss": 0.139,
            **common,
        },
    ]


def test_comparison_table_fills_and_checks():
    table = compare.comparison_table(rows())
    assert list(table.columns) == list(compare.COMPARISON_COLUMNS)
    assert math.isnan(table.loc[0, "status_accuracy"]) and math.isnan(table.loc[1, "ndcg_at_10"])
    with pytest.raises(ValueError, match="colonne\\(s\\) inconnue\\(s\\) \\['vitesse'\\]"):
        compare.comparison_table([{**rows()[0], "vitesse": 1}])
    with pytest.raises(ValueError, match="« latency_ms » doit être un nombre"):
        compare.comparison_table([{**rows()[0], "latency_ms": "rapide"}])
    with pytest.raises(ValueError, match="« provenance » est obligatoire"):
        compare.comparison_table([{**rows()[0], "provenance": ""}])
    with pytest.raises(ValueError, match="vide"):
        compare.comparison_table([])


def test_save_comparison_writes_the_csv(outputs):
    path = compare.save_comparison(compare.comparison_table(rows()), "smoke")
    assert path == outputs / "smoke" / "comparison" / "comparison.csv"
    back = pd.read_csv(path)
    assert list(back.columns) == list(compare.COMPARISON_COLUMNS) and list(back["arm"]) == ["A", "B", "C"]
    with pytest.raises(ValueError, match="comparison_table"):
        compare.save_comparison(back.drop(columns="provenance"), "smoke")


def test_cost_plot_has_four_panels():
    fig = compare.plot_costs(compare.comparison_table(rows()))
    assert len(fig.axes) == 4 and all(len(ax.patches) == 3 for ax in fig.axes)


def test_decision_guide_is_computed_from_the_table():
    table = compare.comparison_table(rows())
    hits, losses = forgetting_case()
    deltas = compare.forgetting_deltas(hits, losses, [("tuned", "base")])
    constant = {"status": "normal", "accuracy": 0.45, "low": 0.4, "high": 0.5, "n": 262}
    text = "\n".join(compare.decision_guide(table, deltas, constant))
    assert "A 20, B 5, C 120 (C entraîne 6,0 × plus de poids que A)" in text
    assert "A 0,20 s, B 1,12 s, C 1,00 s" in text  # secondes / exemples vus
    assert "la plus rapide : A" in text and "meilleur : B" in text
    assert "réponse constante « normal » : 45,0\u00a0%" in text
    assert "3,05 → 4,11 (écart +1,05 [" in text and "80,0\u00a0% → 30,0\u00a0% (écart -50 points" in text
    assert "A ne dépasse pas le modèle de base : NDCG@10 0,680 → 0,620" in text
    assert "exemples égaux" not in text and "ne peuvent pas montrer d'oubli" not in text
    floor_questions = [("en", f"q{i}", ("yes",)) for i in range(10)]  # la base ne réussit aucune question
    floor = pd.concat(
        [
            compare.keyword_hits(["no"] * 10, floor_questions, label="base"),
            compare.keyword_hits(["no"] * 9 + ["yes"], floor_questions, label="tuned"),
        ],
        ignore_index=True,
    )
    floored = compare.forgetting_deltas(floor, losses, [("tuned", "base")])
    assert (
        "0,0\u00a0% → 10,0\u00a0% (écart +10 points"
        in (floor_text := "\n".join(compare.decision_guide(table, floored)))
        and "base n'en réussissait aucune : ces questions ne peuvent pas montrer d'oubli pour ce bras" in floor_text
    )
    better_natural = table.copy()
    better_natural.loc[0, "ndcg_natural"] = 0.7
    assert "A dépasse le modèle de base" in "\n".join(compare.decision_guide(better_natural))
    without = table.drop(columns=["ndcg_natural", "ndcg_natural_base"])
    assert "naturelles" not in "\n".join(compare.decision_guide(without))
    changed = table.copy()
    changed.loc[2, "status_accuracy"] = 0.9
    assert "meilleur : C" in "\n".join(compare.decision_guide(changed))
    with pytest.raises(ValueError, match="Bras « C » absent"):
        compare.decision_guide(table[table["arm"] != "C"])


def test_decision_guide_compares_b_prime_and_c_with_their_intervals():
    b_prime = {**rows()[1], "arm": "B'", "examples_seen": 120, **compare.status_accuracy_interval(80, 100)}
    c = {**rows()[2], **compare.status_accuracy_interval(30, 100)}
    table = compare.comparison_table([rows()[0], rows()[1], b_prime, c])
    text = "\n".join(compare.decision_guide(table))
    assert "À exemples égaux (120) : B' 80,0\u00a0% [" in text and "— B' devant" in text
    close = compare.comparison_table(
        [rows()[0], rows()[1], {**b_prime, **compare.status_accuracy_interval(32, 100)}, c]
    )
    assert "pas d'écart démontré" in "\n".join(compare.decision_guide(close))
    constant = {"status": "normal", "accuracy": 0.85, "low": 0.8, "high": 0.9, "n": 100}
    assert "aucun des deux ne dépasse la réponse constante (85,0\u00a0%)" in "\n".join(
        compare.decision_guide(table, constant=constant)
    )


# --------------------------------------------------------------------------- sorties manquantes
def fake_runner(calls, fail=None):
    def run(nb, out_path):
        prefix = nb.name[:2]
        calls.append(prefix)
        if prefix == fail:
            return {
                "notebook": nb.name,
                "status": "échec",
                "error": "boom",
                "executed_copy": str(out_path),
                "seconds": 1,
            }
        from helpers.course import produced_outputs

        for path in produced_outputs("smoke")[prefix]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        return {"notebook": nb.name, "status": "ok", "error": "", "executed_copy": str(out_path), "seconds": 1}

    return run


def test_ensure_outputs_runs_only_what_is_missing(outputs):
    from helpers.course import ensure_outputs, missing_notebooks
    from helpers.profiles import get_profile

    profile = get_profile("smoke")
    assert missing_notebooks("smoke", ["05", "02", "04"]) == ["02", "04", "05"]
    calls = []
    ensure_outputs(profile, ["04", "02"], runner=fake_runner(calls))
    assert calls == ["02", "04"]
    calls.clear()
    ensure_outputs(profile, ["02", "04"], runner=fake_runner(calls))
    assert calls == []  # tout est là : réutilisé


def test_rerunning_04_reruns_05(outputs):
    from helpers.course import ensure_outputs, produced_outputs
    from helpers.profiles import get_profile

    calls = []
    ensure_outputs(get_profile("smoke"), ["02", "04", "05"], runner=fake_runner(calls))
    produced_outputs("smoke")["04"][0].unlink()  # adaptateur supprimé : les statuts du 05 sont périmés
    calls.clear()
    ensure_outputs(get_profile("smoke"), ["02", "04", "05"], runner=fake_runner(calls))
    assert calls == ["04", "05"]
    # les solutions du 06 relisent aussi ses sorties ; relancer le 04 les rend périmées
    calls.clear()
    ensure_outputs(get_profile("smoke"), ["02", "04", "05", "06"], runner=fake_runner(calls))
    assert calls == ["06"]
    produced_outputs("smoke")["04"][0].unlink()
    calls.clear()
    ensure_outputs(get_profile("smoke"), ["02", "04", "05", "06"], runner=fake_runner(calls))
    assert calls == ["04", "05", "06"]


def test_ensure_outputs_failure_names_the_executed_copy(outputs):
    from helpers.course import ensure_outputs, missing_notebooks
    from helpers.profiles import get_profile

    with pytest.raises(RuntimeError, match="Échec du notebook 02_.*boom.*Copie exécutée"):
        ensure_outputs(get_profile("smoke"), ["02"], runner=fake_runner([], fail="02"))
    with pytest.raises(ValueError, match="sans sorties connues : 01"):
        missing_notebooks("smoke", ["01"])


def test_gain_share_measures_the_claim():
    curve = pd.DataFrame(
        {
            "pairs": [0, 100, 300, 1000] * 2,
            "split": ["q"] * 4 + ["a"] * 4,
            "dim": [64] * 8,
            "ndcg_at_10": [0.4, 0.6, 0.8, 0.9, 0.5, 0.5, 0.5, 0.5],
        }
    )
    share = compare.gain_share(curve)
    assert share.loc[("q", 64), 100] == pytest.approx(40.0) and share.loc[("q", 64), 1000] == pytest.approx(100.0)
    assert share.loc[("a", 64)].isna().all()  # aucun gain : pas de part à calculer
    with pytest.raises(ValueError, match="modèle de base"):
        compare.gain_share(curve[curve["pairs"] > 0])


def test_parameter_count_sees_through_4bit_packing():
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from helpers.memory import parameter_count
    from helpers.models import model_path

    path = str(model_path("tiny-mistral"))
    full = AutoModelForCausalLM.from_pretrained(path)
    nf4 = AutoModelForCausalLM.from_pretrained(
        path,
        device_map="cpu",
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
    )
    expected = sum(p.numel() for p in full.parameters())
    assert sum(p.numel() for p in nf4.parameters()) < expected  # numel() compte les octets rangés
    assert parameter_count(nf4) == parameter_count(full) == expected


def test_summaries_of_earlier_notebooks_are_required(outputs):
    from helpers.embeddings import MissingResultsError, load_training_summary
    from helpers.outputs import output_path
    from helpers.qlora import load_status_accuracy

    with pytest.raises(MissingResultsError, match="notebook 02"):
        load_training_summary("smoke")
    with pytest.raises(FileNotFoundError, match="notebook 05"):
        load_status_accuracy("smoke")
    output_path("smoke", "llm/status_accuracy.csv").write_text("model,accuracy\nB,0.5\n")
    with pytest.raises(ValueError, match="colonnes manquantes"):
        load_status_accuracy("smoke")


@pytest.mark.integration
def test_ensure_outputs_really_executes_a_missing_notebook(tmp_path, monkeypatch):
    """Bout en bout dans un vrai noyau : sans sorties, le notebook « 02 » est exécuté et produit ce
    que 06 et 07 relisent ; un second appel le réutilise. Le notebook est une doublure qui écrit
    ces fichiers (l'entraînement du vrai 02 est exécuté par nbval et par le test de
    reproductibilité : inutile de le payer une troisième fois)."""
    import nbformat

    from helpers import course
    from helpers.course import ensure_outputs, produced_outputs
    from helpers.profiles import get_profile

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    code = (
        "from helpers.course import produced_outputs\n"
        "for path in produced_outputs('smoke')['02']:\n"
        "    path.parent.mkdir(parents=True, exist_ok=True)\n"
        "    path.write_text('{}')"
    )
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), notebooks / "02_doublure.ipynb")
    monkeypatch.setattr(course, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path / "out"))
    results = ensure_outputs(get_profile("smoke"), ["02"])
    assert [r["status"] for r in results] == ["ok"]
    assert all(p.exists() for p in produced_outputs("smoke")["02"])
    assert (tmp_path / "out" / "smoke" / "notebooks" / "02_doublure.ipynb").exists()
    assert ensure_outputs(get_profile("smoke"), ["02"]) == []


def test_display_table_formats_for_reading_only():
    table = compare.comparison_table(rows())
    shown = compare.display_table(table)
    assert list(shown.columns) == ["A", "B", "C"]
    assert shown.loc["paramètres entraînés", "C"] == "120" and shown.loc["exemples vus", "A"] == "1\u202f000"
    assert shown.loc["NDCG@10", "A"] == "0,85" and shown.loc["NDCG@10", "B"] == "—"
    assert shown.columns.name == "bras" and "latence (ms)" in shown.index  # étiquettes françaises
    assert table.loc[0, "ndcg_at_10"] == 0.85  # le tableau d'origine garde ses nombres


def test_loss_by_examples_plot_scales_steps_to_examples():
    history = [{"loss": 2.0, "step": 10}, {"loss": 1.0, "step": 20}, {"eval_loss": 0.5, "step": 20}]
    fig = compare.plot_loss_by_examples({"B": (history, 4)}, {"C": (80, 0.3)})
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [40, 80] and list(line.get_ydata()) == [2.0, 1.0]
    with pytest.raises(ValueError, match="aucune perte"):
        compare.plot_loss_by_examples({"C": ([{"eval_loss": 1.0, "step": 1}], 4)})
