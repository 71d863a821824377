"""Plomberie des notebooks 02–03 : dimensions, évaluateur Matryoshka, résultats, coûts."""

import re

import numpy as np
import pandas as pd
import pytest

from helpers import costs, embeddings, outputs
from helpers.data import load_retrieval
from helpers.embeddings import DimensionError, MatryoshkaIREvaluator, MissingResultsError


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def e5():
    from sentence_transformers import SentenceTransformer

    from helpers.models import E5_PROMPTS, model_path

    return SentenceTransformer(str(model_path("multilingual-e5-small")), device="cpu", prompts=dict(E5_PROMPTS))


@pytest.fixture(scope="module")
def small_retrieval():
    """12 questions par split de test et un corpus réduit (passages pertinents + distracteurs)."""
    r = load_retrieval()
    splits = {name: r[name].select(range(0, 12 * 7, 7)) for name in ("test_questions", "test_analytes")}
    needed = set().union(*(set(s["passage_id"]) for s in splits.values()))
    keep = [i for i, pid in enumerate(r["corpus"]["passage_id"]) if pid in needed or i % 9 == 0]
    return splits, r["corpus"].select(keep)


@pytest.fixture(scope="module")
def evaluated(e5, small_retrieval):
    splits, corpus = small_retrieval
    ev = MatryoshkaIREvaluator(splits, corpus, (384, 32), batch_size=16)
    scores, per_query = ev.evaluate(e5, "base")
    return ev, scores, per_query


# --------------------------------------------------------------------------- dimensions
def test_check_dims_sorts_descending():
    assert embeddings.check_dims([64, 384, 128], 384) == (384, 128, 64)


@pytest.mark.parametrize(
    "dims, needle",
    [
        ([512, 64], "dépasse celle du modèle (384)"),
        ([0, 64], "strictement positive"),
        ([-32], "strictement positive"),
        ([64.0], "n'est pas un entier"),
        (["64"], "n'est pas un entier"),
        ([True], "n'est pas un entier"),
        ([], "vide"),
        ([64, 64], "en double"),
    ],
)
def test_check_dims_rejects_with_french_message(dims, needle):
    with pytest.raises(DimensionError, match=re.escape(needle)):
        embeddings.check_dims(dims, 384)


def test_model_dimension(e5):
    assert embeddings.model_dimension(e5) == 384


def test_evaluator_refuses_dimension_larger_than_model(e5, small_retrieval):
    splits, corpus = small_retrieval
    ev = MatryoshkaIREvaluator(splits, corpus, (512, 64))
    with pytest.raises(DimensionError, match="512"):
        ev.evaluate(e5)


# --------------------------------------------------------------------------- évaluateur
def test_evaluator_rejects_empty_inputs(small_retrieval):
    splits, corpus = small_retrieval
    with pytest.raises(ValueError, match="requêtes vide"):
        MatryoshkaIREvaluator({"test_questions": splits["test_questions"].select([])}, corpus, (32,))
    with pytest.raises(ValueError, match="Corpus vide"):
        MatryoshkaIREvaluator(splits, corpus.select([]), (32,))
    with pytest.raises(ValueError, match="Aucun split"):
        MatryoshkaIREvaluator({}, corpus, (32,))
    with pytest.raises(DimensionError, match="vide"):
        MatryoshkaIREvaluator(splits, corpus, ())


def test_evaluator_matches_library_evaluator_with_truncate_dim(e5, small_retrieval, evaluated):
    """Encoder une fois puis tronquer donne exactement les métriques de la bibliothèque."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from helpers.data import ir_inputs

    splits, corpus = small_retrieval
    _, scores, _ = evaluated
    for split_name, split in splits.items():
        for dim in (384, 32):
            queries, docs, relevant = ir_inputs(split, corpus)
            lib = InformationRetrievalEvaluator(
                queries,
                docs,
                relevant,
                truncate_dim=dim,
                name="x",
                query_prompt_name="query",
                corpus_prompt_name="document",
            )
            ref = lib(e5)
            ours = scores[(scores.split == split_name) & (scores.dim == dim)].iloc[0]
            assert ours.ndcg_at_10 == pytest.approx(ref["x_cosine_ndcg@10"], abs=1e-9)
            assert ours.mrr_at_10 == pytest.approx(ref["x_cosine_mrr@10"], abs=1e-9)
            assert ours.recall_at_10 == pytest.approx(ref["x_cosine_recall@10"], abs=1e-9)


def test_per_query_mean_equals_score(evaluated):
    _, scores, per_query = evaluated
    assert list(scores.columns) == embeddings.SCORE_COLUMNS
    assert list(per_query.columns) == embeddings.PER_QUERY_COLUMNS
    means = per_query.groupby(["split", "dim"])["ndcg_at_10"].mean()
    for row in scores.itertuples():
        assert means[(row.split, row.dim)] == pytest.approx(row.ndcg_at_10, abs=1e-12)
    found = per_query.dropna(subset=["rank"])
    assert np.allclose(found["ndcg_at_10"], 1 / np.log2(found["rank"] + 1))
    assert (per_query[per_query["rank"].isna()]["ndcg_at_10"] == 0).all()


def test_truncation_hurts_base_model(evaluated):
    """Le modèle de base, non Matryoshka, perd beaucoup à 32 dimensions."""
    _, scores, _ = evaluated
    for split in ("test_questions", "test_analytes"):
        sub = scores[scores.split == split].set_index("dim")["ndcg_at_10"]
        assert sub[32] < sub[384]


def test_evaluator_as_trainer_evaluator(e5, evaluated):
    ev, scores, _ = evaluated
    metrics = ev(e5)
    assert ev.primary_metric == "test_questions_dim384_ndcg@10"
    assert metrics["test_questions_dim384_ndcg@10"] == pytest.approx(
        scores[(scores.split == "test_questions") & (scores.dim == 384)].ndcg_at_10.item()
    )


def test_without_prompts_gives_other_embeddings(e5, small_retrieval):
    splits, corpus = small_retrieval
    split = {"test_questions": splits["test_questions"]}
    with_p = MatryoshkaIREvaluator(split, corpus, (384,)).encode(e5)[1]["test_questions"]
    without = MatryoshkaIREvaluator(split, corpus, (384,), use_prompts=False).encode(e5)[1]["test_questions"]
    assert float((with_p * without).sum(dim=1).min()) < 0.999


# --------------------------------------------------------------------------- entraînement
def test_training_pairs(small_retrieval):
    splits, corpus = small_retrieval
    pairs = embeddings.training_pairs(splits["test_questions"], corpus)
    assert pairs.column_names == ["anchor", "positive"]
    text = dict(zip(corpus["passage_id"], corpus["text"]))
    assert pairs[0]["positive"] == text[splits["test_questions"][0]["passage_id"]]
    with pytest.raises(ValueError, match="vide"):
        embeddings.training_pairs(splits["test_questions"].select([]), corpus)
    with pytest.raises(ValueError, match="absents du corpus"):
        embeddings.training_pairs(splits["test_questions"], corpus.select([0]))


def test_freeze_word_embeddings():
    from sentence_transformers import SentenceTransformer

    from helpers.models import model_path

    model = SentenceTransformer(str(model_path("multilingual-e5-small")), device="cpu")
    before = embeddings.parameter_counts(model)
    frozen = embeddings.freeze_word_embeddings(model)
    after = embeddings.parameter_counts(model)
    assert frozen == model[0].auto_model.config.vocab_size * 384
    assert after["trainable"] == before["trainable"] - frozen
    assert after["trainable_pct"] < 25
    import torch

    with pytest.raises(ValueError, match="word_embeddings"):
        embeddings.freeze_word_embeddings(torch.nn.Linear(2, 2))


def test_last_checkpoint(tmp_path):
    assert outputs.last_checkpoint(tmp_path / "absent") is None
    assert outputs.last_checkpoint(tmp_path) is None
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-12").mkdir()
    assert outputs.last_checkpoint(tmp_path).endswith("checkpoint-12")
    outputs.remove_checkpoints(tmp_path)
    assert not tmp_path.exists()


def test_set_model_card(e5):
    from helpers.profiles import get_profile

    embeddings.set_model_card(e5, get_profile("cpu"))
    card = e5.model_card_data
    assert card.language == ["fr"] and card.license == "mit" and card.local_files_only
    assert "synthétique" in card.model_name and "matryoshka" in card.tags


# --------------------------------------------------------------------------- résultats
def _fake_scores(gain=0.1):
    rows = []
    for split in ("test_questions", "test_analytes"):
        for dim, base in ((384, 0.70), (128, 0.60), (64, 0.50)):
            rows.append(
                {
                    "split": split,
                    "model": "base",
                    "dim": dim,
                    "ndcg_at_10": base,
                    "mrr_at_10": base,
                    "recall_at_10": base,
                }
            )
            ft = 0.80 - (384 - dim) * 0.00005 if gain else base
            rows.append(
                {
                    "split": split,
                    "model": "finetuned",
                    "dim": dim,
                    "ndcg_at_10": ft,
                    "mrr_at_10": ft,
                    "recall_at_10": ft,
                }
            )
    return pd.DataFrame(rows)


def _fake_per_query(n=120, shift=0.1, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("test_questions", "test_analytes"):
        for dim in (384, 64):
            base = rng.uniform(0, 0.8, n)
            for model, values in (("base", base), ("finetuned", np.clip(base + shift + rng.normal(0, 0.02, n), 0, 1))):
                rows += [
                    {"split": split, "model": model, "dim": dim, "pair_id": f"q{i}", "rank": 1, "ndcg_at_10": v}
                    for i, v in enumerate(values)
                ]
    return pd.DataFrame(rows)


def test_results_table_and_retention():
    scores = _fake_scores()
    table = embeddings.results_table(scores, "test_questions")
    assert list(table.columns[:4]) == ["dim", "base_score", "final_score", "gain"]
    assert list(table["dim"]) == [384, 128, 64]
    assert np.allclose(table["gain"], table["final_score"] - table["base_score"], atol=1e-4)
    with pytest.raises(ValueError, match="Aucun score"):
        embeddings.results_table(scores, "inconnu")
    kept = embeddings.retention(scores)
    assert (kept[kept.dim == 384]["retention_pct"] == 100).all()


def test_save_and_load_results(outputs):
    with pytest.raises(MissingResultsError, match="notebook 02"):
        embeddings.load_results("cpu")
    scores, per_query = _fake_scores(), _fake_per_query()
    path = embeddings.save_results(scores, per_query, "cpu", extra={"steps": 3})
    assert path == outputs / "cpu" / "embeddings" / "ndcg.csv"
    assert path.read_text().splitlines()[0] == "split,model,dim,ndcg_at_10,mrr_at_10,recall_at_10"
    loaded, pq = embeddings.load_results("cpu")
    assert len(loaded) == len(scores) and len(pq) == len(per_query)
    assert (outputs / "cpu" / "embeddings" / "training_summary.json").exists()
    scores[scores.model == "base"].to_csv(path, index=False)
    with pytest.raises(MissingResultsError, match="finetuned"):
        embeddings.load_results("cpu")
    scores.drop(columns=["mrr_at_10"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="mrr_at_10"):
        embeddings.load_results("cpu")
    with pytest.raises(ValueError, match="colonnes manquantes"):
        embeddings.save_results(scores.drop(columns=["dim"]), per_query, "cpu")


def test_bootstrap_detects_real_gain_and_no_gain():
    gains = embeddings.bootstrap_gains(_fake_per_query(shift=0.1), n_resamples=500)
    assert len(gains) == 4
    assert ((gains.ci_low < 0.1) & (0.1 < gains.ci_high)).all()
    assert gains.significant.all()
    null = embeddings.bootstrap_gains(_fake_per_query(shift=0.0), n_resamples=500)
    assert (null.ci_low < 0.005).all() and (null.ci_high > -0.005).all()
    pq = _fake_per_query()
    with pytest.raises(ValueError, match="il manque"):
        embeddings.bootstrap_gains(pq[pq.model == "base"], n_resamples=100)


def test_bootstrap_compares_any_two_models():
    pq = _fake_per_query(shift=0.1).replace({"model": {"base": "sans prompts", "finetuned": "avec prompts"}})
    gains = embeddings.bootstrap_gains(pq, new="avec prompts", old="sans prompts", n_resamples=300)
    assert gains.significant.all() and (gains.gain > 0.05).all()
    reverse = embeddings.bootstrap_gains(pq, new="sans prompts", old="avec prompts", n_resamples=300)
    assert np.allclose(reverse.gain, -gains.gain)
    with pytest.raises(ValueError, match="« base »"):
        embeddings.bootstrap_gains(pq, n_resamples=100)


def test_dimension_gap_reads_retention_above_100():
    # 64 dimensions meilleures que 384 pour le modèle fine-tuné (+0,1 par requête), égales pour la base.
    rows = []
    rng = np.random.default_rng(1)
    full = rng.uniform(0.2, 0.7, 150)
    for model, shift in (("base", 0.0), ("finetuned", 0.1)):
        for dim, values in ((384, full), (64, full + shift + rng.normal(0, 0.01, 150) * (shift > 0))):
            rows += [
                {"split": "s", "model": model, "dim": dim, "pair_id": f"q{i}", "ndcg_at_10": v}
                for i, v in enumerate(values)
            ]
    pq = pd.DataFrame(rows)
    tuned = embeddings.dimension_gap(pq, 64, n_resamples=300).iloc[0]
    assert tuned.full_dim == 384 and tuned.retention_pct > 100 and tuned.significant
    assert tuned.ci_low < 0.1 < tuned.ci_high
    base = embeddings.dimension_gap(pq, 64, model="base", n_resamples=300).iloc[0]
    assert base.gap == 0 and not base.significant
    with pytest.raises(DimensionError, match="32"):
        embeddings.dimension_gap(pq, 32)
    with pytest.raises(ValueError, match="inconnu"):
        embeddings.dimension_gap(pq, 64, model="inconnu")


def test_freeze_lower_layers(e5):
    import copy

    model = copy.deepcopy(e5)
    before = embeddings.parameter_counts(model)["trainable"]
    frozen = embeddings.freeze_lower_layers(model, 6)
    layers = model[0].auto_model.encoder.layer
    assert frozen == sum(p.numel() for layer in layers[:6] for p in layer.parameters())
    assert embeddings.parameter_counts(model)["trainable"] == before - frozen
    assert all(p.requires_grad for p in layers[6].parameters())
    with pytest.raises(ValueError, match="12 couches"):
        embeddings.freeze_lower_layers(model, 13)
    import torch

    with pytest.raises(ValueError, match="encoder.layer"):
        embeddings.freeze_lower_layers(torch.nn.Linear(2, 2), 1)


def test_hard_negatives_come_from_training_passages(e5, small_retrieval):
    splits, corpus = small_retrieval
    pairs = embeddings.training_pairs(splits["test_questions"], corpus)
    mined = embeddings.add_hard_negatives(pairs, e5, 1)
    assert mined.column_names == ["anchor", "positive", "negative_1"]
    assert mined["anchor"] == pairs["anchor"] and mined["positive"] == pairs["positive"]
    assert all(n != p for n, p in zip(mined["negative_1"], mined["positive"]))
    assert set(mined["negative_1"]) <= set(pairs["positive"])  # jamais un passage hors des paires
    with pytest.raises(ValueError, match="n'en reçoivent pas"):
        embeddings.add_hard_negatives(pairs, e5, 1, relative_margin=0.5)


def test_check_targets():
    ok = embeddings.check_targets(_fake_scores())
    assert ok["atteint"].all() and len(ok) == 6
    bad = embeddings.check_targets(_fake_scores(gain=0))
    assert not bad["atteint"].any()


def test_plots_return_figures():
    import matplotlib.pyplot as plt

    fig = embeddings.plot_ndcg_vs_dim(_fake_scores())
    assert len(fig.axes) == 2
    log = [{"step": 5, "loss": 3.0}, {"step": 10, "loss": 2.0}, {"step": 10, "eval_validation_dim384_ndcg@10": 0.7}]
    assert embeddings.plot_training_log(log) is not None
    with pytest.raises(ValueError, match="vide"):
        embeddings.plot_training_log([{"train_loss": 1.0}])
    plt.close("all")


# --------------------------------------------------------------------------- coûts
def test_truncate_normalize_and_replicate():
    x = np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32)
    y = costs.truncate_normalize(x, 8)
    assert y.shape == (10, 8) and np.allclose(np.linalg.norm(y, axis=1), 1)
    with pytest.raises(ValueError, match="supérieure"):
        costs.truncate_normalize(x, 32)
    assert len(costs.replicate(y, 95)) == 100
    with pytest.raises(ValueError, match="vide"):
        costs.replicate(y[:0], 10)


def test_index_sizes_are_measured_close_to_theory():
    x = costs.truncate_normalize(np.random.default_rng(1).normal(size=(200, 64)), 64)
    lat = costs.search_latency(x, x[:5], (64, 32), min_vectors=20_000, n_queries=5)
    assert set(lat.precision) == set(costs.PRECISIONS) and (lat.vectors >= 20_000).all()
    assert np.allclose(lat.bytes_per_vector, lat.theoretical_bytes, rtol=0.01)
    assert (lat.latency_ms > 0).all()
    sizes = costs.index_sizes(lat)
    assert sizes.loc[64, "float32 (Mo)"] == pytest.approx(256, rel=0.01)
    assert sizes.loc[32, "binaire (Mo)"] == pytest.approx(4, rel=0.01)
    with pytest.raises(ValueError, match="Précision inconnue"):
        costs.build_index(x, "float16")


def test_quantized_float32_matches_evaluator(e5, evaluated):
    ev, scores, _ = evaluated
    corpus_emb, query_embs = ev.encode(e5)
    quant = costs.quantized_scores(ev, corpus_emb, query_embs)
    assert set(quant.precision) == {"float32", "int8", "binaire", "binaire + rescoring"}
    merged = quant[quant.precision == "float32"].merge(scores, on=["split", "dim"])
    assert np.allclose(merged.ndcg_at_10_x, merged.ndcg_at_10_y, atol=1e-6)
    int8 = quant[quant.precision == "int8"].merge(scores, on=["split", "dim"])
    assert (abs(int8.ndcg_at_10_x - int8.ndcg_at_10_y) < 0.1).all()


def test_rescoring_at_scale_counts_distractors_as_misses(e5, evaluated):
    ev, scores, _ = evaluated
    corpus_emb, query_embs = ev.encode(e5)
    none = costs.rescoring_at_scale(ev, corpus_emb, query_embs, 384, min_vectors=0, multipliers=(4,))
    # sans distracteur, c'est exactement la recherche de quantized_scores (float32 = l'évaluateur)
    f32 = none[none.precision == "float32"].merge(scores[scores.dim == 384], on="split")
    assert np.allclose(f32.ndcg_at_10_x, f32.ndcg_at_10_y, atol=1e-6)
    big = costs.rescoring_at_scale(ev, corpus_emb, query_embs, 384, min_vectors=5_000, multipliers=(1, 40))
    assert (big.vectors == 5_000).all() and set(big.candidates) == {10, 400}
    assert np.allclose(big.index_share_pct, 100 * big.candidates / 5_000)
    both = big.merge(none, on=["split", "precision", "candidates"], suffixes=("_gros", "_seul"))
    assert (both.ndcg_at_10_gros <= both.ndcg_at_10_seul + 1e-9).all()  # un distracteur ne fait que gêner
    with pytest.raises(ValueError, match="non évalué"):
        costs.rescoring_at_scale(ev, corpus_emb, query_embs, 64, min_vectors=0)


def test_distractors_are_unit_vectors_near_the_corpus():
    rng = np.random.default_rng(0)
    corpus = costs.truncate_normalize(rng.normal(size=(50, 16)) + 3.0, 16)  # un cône étroit, comme e5
    d = costs.distractors(corpus, 200, seed=1)
    assert d.shape == (200, 16) and np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    assert (d @ corpus.mean(axis=0)).mean() > 0.5  # dans la région du corpus, pas au hasard
    assert np.array_equal(d, costs.distractors(corpus, 200, seed=1))
    with pytest.raises(ValueError, match="négatif"):
        costs.distractors(corpus, -1)


def test_recommendations_follow_the_rules():
    quant = pd.DataFrame(
        [
            {"split": s, "dim": d, "precision": p, "ndcg_at_10": v}
            for s in ("validation", "test_questions", "test_analytes")
            for d, p, v in (
                (384, "float32", 0.90),
                (64, "float32", 0.89),
                (64, "int8", 0.885),
                (32, "int8", 0.83),
                (384, "binaire", 0.50),
            )
        ]
    )
    latency = pd.DataFrame(
        [
            {"dim": d, "precision": p, "bytes_per_vector": costs.THEORETICAL_BYTES[p](d), "latency_ms": 1.0}
            for d in (384, 64, 32)
            for p in costs.PRECISIONS
        ]
    )
    advice = costs.recommendations(quant, latency)
    picks = list(zip(advice["dimension"], advice["precision"]))
    assert picks == [(384, "float32"), (64, "int8"), (32, "int8")]
    assert advice.loc[1, "mb_per_million"] == 64.0
    with pytest.raises(ValueError, match="validation"):
        costs.recommendations(quant[quant.split != "validation"], latency)


def test_training_resumes_from_last_checkpoint(tmp_path, small_retrieval):
    """Le flux du notebook 02 : un entraînement interrompu reprend au dernier checkpoint."""
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import TrainerCallback

    from helpers.models import E5_PROMPTS, model_path

    splits, corpus = small_retrieval
    pairs = embeddings.training_pairs(splits["test_questions"], corpus).select(range(8))
    steps_run = []

    class CountSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_run.append(state.global_step)

    def run(max_steps):
        model = SentenceTransformer(str(model_path("multilingual-e5-small")), device="cpu", prompts=dict(E5_PROMPTS))
        model.max_seq_length = 32
        embeddings.freeze_word_embeddings(model)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path),
            max_steps=max_steps,
            per_device_train_batch_size=4,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="steps",
            save_steps=1,
            save_total_limit=1,
            report_to="none",
            disable_tqdm=True,
            prompts={"anchor": E5_PROMPTS["query"], "positive": E5_PROMPTS["document"]},
        )
        loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), matryoshka_dims=[384, 32])
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=pairs, loss=loss, callbacks=[CountSteps()]
        )
        return trainer.train(resume_from_checkpoint=outputs.last_checkpoint(tmp_path))

    assert run(1).global_step == 1  # « interrompu » après un pas
    assert outputs.last_checkpoint(tmp_path).endswith("checkpoint-1")
    resumed = run(2)
    assert resumed.global_step == 2
    assert steps_run == [1, 2]  # le 2e entraînement n'a fait que le pas manquant
    assert outputs.last_checkpoint(tmp_path).endswith("checkpoint-2")


def test_natural_questions_count_every_relevant_passage(e5):
    """Questions naturelles à deux passages justes : la moyenne des NDCG par requête égale le score de
    la bibliothèque, et trouver le second passage compte aussi."""
    r = load_retrieval()
    natural = r["naturel_test"]
    two = [i for i, p in enumerate(natural["passages_pertinents"]) if len(p) == 2][:4]
    split = natural.select(two + [i for i in range(12) if i not in two][:8])
    needed = set().union(*map(set, split["passages_pertinents"]))
    corpus = r["corpus"].select([i for i, pid in enumerate(r["corpus"]["passage_id"]) if pid in needed or i % 9 == 0])
    ev = MatryoshkaIREvaluator({"naturel_test": split}, corpus, (384, 64))
    scores, per_query = ev.evaluate(e5, "base")
    for row in scores.itertuples():
        sub = per_query[(per_query.split == row.split) & (per_query.dim == row.dim)]
        assert sub["ndcg_at_10"].mean() == pytest.approx(row.ndcg_at_10, abs=1e-12)
    assert ev.splits["naturel_test"][1][split[0]["pair_id"]] == set(split[0]["passages_pertinents"])
    assert per_query["ndcg_at_10"].between(0, 1).all()
