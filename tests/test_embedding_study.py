"""Étude de généralisation des embeddings : table versionnée, règle de choix, profil cpu, leviers."""

from dataclasses import replace

import pandas as pd
import pytest

from helpers import embedding_study as study


def _rows(name, natural_gaps, templated_gap=0.1, seconds=100.0):
    rows = []
    for split, gaps in (("naturel_validation", natural_gaps), ("validation", [templated_gap] * len(natural_gaps))):
        for dim, gap in zip((384, 64), gaps):
            rows.append(
                {
                    "variant": name,
                    "description": f"variante {name}",
                    "split": split,
                    "dim": dim,
                    "ndcg_base": 0.5,
                    "ndcg_finetuned": 0.5 + gap,
                    "gap": gap,
                    "pairs": 100,
                    "steps": 10,
                    "train_seconds": seconds,
                    "peak_rss_mb": 1,
                    "threads": 2,
                    "commit": "x",
                    "date": "2026-11-26",
                }
            )
    return pd.DataFrame(rows)


def test_save_rows_replaces_a_variant(tmp_path):
    path = tmp_path / "etude.csv"
    study.save_rows(_rows("a", [0.1, 0.2]), path)
    study.save_rows(_rows("b", [0.0, 0.1]), path)
    table = study.save_rows(_rows("a", [0.3, 0.3]), path)
    assert list(pd.read_csv(path).columns) == study.STUDY_COLUMNS
    assert len(table) == 8
    assert table.query("variant == 'a' and split == 'naturel_validation'")["gap"].tolist() == [0.3, 0.3]


def test_best_variant_never_below_base_on_natural_questions():
    table = pd.concat(
        [
            _rows("haut_mais_perd", [-0.01, 0.5]),
            _rows("sur", [0.0, 0.1]),
            _rows("meilleur_sur", [0.02, 0.2]),
            _rows("trop_long", [0.3, 0.6], seconds=1e4),
        ]
    )
    assert study.best_variant(table) == "meilleur_sur"
    assert study.best_variant(table, budget_s=1e5) == "trop_long"
    # aucune ne tient la base partout : la moins mauvaise au pire écart
    worse = pd.concat([_rows("a", [-0.05, 0.5]), _rows("b", [-0.01, 0.1])])
    assert study.best_variant(worse) == "b"
    with pytest.raises(ValueError, match="Aucune variante"):
        study.best_variant(table, budget_s=1)
    summary = study.summary(table).set_index("variant")
    assert summary.loc["sur", "min_natural_gap"] == 0.0
    assert summary.loc["sur", "mean_templated_gain"] == pytest.approx(0.1)


def test_main_lists_and_refuses_unknown_variants(capsys):
    assert study.main(["--liste"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in study.VARIANTS)
    assert study.main(["inconnue"]) == 2
    assert all(spec["description"] for spec in study.VARIANTS.values())
    # chaque variante fixe tous les leviers étudiés
    assert all(set(spec["embedding"]) == set(study._BEFORE) for spec in study.VARIANTS.values())


def test_cpu_profile_applies_the_chosen_variant():
    from helpers.profiles import get_profile

    cfg = get_profile("cpu").embedding
    chosen = study.VARIANTS[study.CHOSEN_VARIANT]["embedding"]
    assert {k: getattr(cfg, k) for k in chosen} == chosen
    table = pd.read_csv(study.study_path())
    assert set(table["variant"]) <= set(study.VARIANTS)
    assert study.best_variant(table) == study.CHOSEN_VARIANT


def test_trainer_applies_the_levers(tmp_path):
    """Négatifs difficiles, perte mise en cache et couches gelées arrivent bien dans le trainer."""
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from helpers import training
    from helpers.data import load_retrieval
    from helpers.embeddings import training_pairs
    from helpers.profiles import get_profile

    profile = get_profile("smoke")
    profile = replace(
        profile, embedding=replace(profile.embedding, hard_negatives=1, loss_mini_batch=4, frozen_layers=3)
    )
    data = load_retrieval(profile)
    trainer = training.embedding_trainer(profile, training_pairs(data["train"], data["corpus"]), tmp_path)
    assert trainer.train_dataset.column_names == ["anchor", "positive", "negative_1"]
    assert isinstance(trainer.loss.loss, CachedMultipleNegativesRankingLoss)  # dans MatryoshkaLoss
    layers = trainer.model[0].auto_model.encoder.layer
    assert not any(p.requires_grad for p in layers[2].parameters())
    assert all(p.requires_grad for p in layers[3].parameters())


def test_matryoshka_weights_reach_the_loss_and_are_checked(tmp_path):
    from helpers import training
    from helpers.data import load_retrieval
    from helpers.embeddings import training_pairs
    from helpers.profiles import get_profile

    profile = get_profile("smoke")  # dimensions 384, 128, 32
    data = load_retrieval(profile)
    pairs = training_pairs(data["train"], data["corpus"])
    weighted = replace(profile, embedding=replace(profile.embedding, matryoshka_weights=(2, 1, 1)))
    trainer = training.embedding_trainer(weighted, pairs, tmp_path)
    assert list(trainer.loss.matryoshka_weights) == [2, 1, 1]
    wrong = replace(profile, embedding=replace(profile.embedding, matryoshka_weights=(4, 1, 1, 1, 1)))
    with pytest.raises(ValueError, match="5 poids pour 3 dimensions"):
        training.embedding_trainer(wrong, pairs, tmp_path)
