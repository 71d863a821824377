"""Chargement validé : chaque donnée invalide donne une erreur française (fichier, ligne, colonne)."""

import json
import shutil

import pytest

from helpers.data import (
    STATUS_ASPECT,
    DatasetValidationError,
    check_split_integrity,
    ir_inputs,
    load_instructions,
    load_longitudinal,
    load_retrieval,
    map_hub_columns,
    read_jsonl,
    split_integrity,
)
from helpers.paths import DATASET_DIR
from helpers.profiles import get_profile


@pytest.fixture
def data_copy(tmp_path):
    d = tmp_path / "data"
    shutil.copytree(DATASET_DIR, d)
    return d


def _edit_line(path, n, fn):
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[n - 1] = fn(lines[n - 1])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _edit_record(path, n, fn):
    def change(line):
        rec = json.loads(line)
        fn(rec)
        return json.dumps(rec, ensure_ascii=False)

    _edit_line(path, n, change)


def test_loads_as_datasets_objects():
    from datasets import Dataset, DatasetDict

    r = load_retrieval()
    assert isinstance(r, DatasetDict) and set(r) == {
        "corpus",
        "train",
        "validation",
        "test_questions",
        "test_analytes",
        "naturel_validation",
        "naturel_test",
    }
    assert isinstance(load_longitudinal(), Dataset)
    assert set(load_instructions()) == {"train", "validation", "test"}


def test_profile_subsamples_deterministically():
    smoke = get_profile("smoke")
    a, b = load_retrieval(smoke), load_retrieval(smoke)
    assert len(a["train"]) == smoke.embedding.train_pairs
    assert len(a["test_questions"]) == smoke.embedding.eval_queries
    assert len(a["naturel_test"]) == smoke.embedding.eval_queries
    corpus = set(a["corpus"]["passage_id"])
    assert 276 > len(corpus) >= smoke.embedding.corpus_passages  # réduit pour la CI seulement
    for split in (s for s in a if s != "corpus"):
        for row in a[split]:
            assert set(row.get("passages_pertinents") or [row["passage_id"]]) <= corpus, split
    for case in (c for split in load_instructions(smoke).values() for c in split):  # notebook 07
        explained = {f"{x['code']}-{STATUS_ASPECT[x['statut']]}" for x in case["labels"] if x["statut"] != "normal"}
        assert explained <= corpus
    assert len(load_retrieval(get_profile("cpu"))["corpus"]) == 276  # les leçons : corpus complet
    assert a["corpus"]["passage_id"] == b["corpus"]["passage_id"]
    assert a["train"]["pair_id"] == b["train"]["pair_id"]
    assert len(load_instructions(smoke)["train"]) == smoke.llm.train_examples
    assert len(set(load_longitudinal(smoke)["patient_id"])) == smoke.data.longitudinal_patients


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda r: r.pop("question"), r"ligne 3, colonne « question » : colonne manquante"),
        (lambda r: r.update(question="   "), r"ligne 3, colonne « question » : texte vide"),
        (lambda r: r.update(question=42), r"ligne 3, colonne « question » : type str attendu"),
        (lambda r: r.update(question="NaN"), r"ligne 3, colonne « question » : valeur « NaN »"),
        (lambda r: r.update(question=None), r"ligne 3, colonne « question » : valeur absente"),
        (
            lambda r: r.update(question="Que mesure la crÃ©atinine ?"),
            r"ligne 3, colonne « question » : texte mal encodé",
        ),
        (lambda r: r.update(questoin="x"), r"ligne 3, colonne « questoin » : colonne inattendue"),
        (lambda r: r.update(passage_id="XX-role"), r"ligne 3, colonne « passage_id » : passage « XX-role » absent"),
    ],
)
def test_retrieval_bad_rows(data_copy, mutate, pattern):
    _edit_record(data_copy / "retrieval_validation.jsonl", 3, mutate)
    with pytest.raises(DatasetValidationError, match=pattern) as err:
        load_retrieval(data_dir=data_copy)
    assert "retrieval_validation.jsonl" in str(err.value)


def test_duplicate_question(data_copy):
    path = data_copy / "retrieval_train.jsonl"
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    _edit_record(path, 5, lambda r: r.update(question=first["question"].upper()))
    with pytest.raises(DatasetValidationError, match=r"ligne 5, colonne « question » : doublon de la ligne 1"):
        read_jsonl(path, "retrieval")


def test_bad_encoding(data_copy):
    path = data_copy / "corpus.jsonl"
    text = path.read_text(encoding="utf-8").splitlines()
    path.write_bytes(("\n".join(text[:3]) + "\n").encode("utf-8") + text[3].encode("latin-1") + b"\n")
    with pytest.raises(DatasetValidationError, match=r"corpus.jsonl, ligne 4 : encodage invalide"):
        read_jsonl(path, "corpus")


def test_invalid_json(data_copy):
    path = data_copy / "corpus.jsonl"
    _edit_line(path, 2, lambda line: line[:-1])
    with pytest.raises(DatasetValidationError, match=r"ligne 2 : JSON invalide"):
        read_jsonl(path, "corpus")


def test_nan_number_in_labels(data_copy):
    path = data_copy / "instructions_test.jsonl"
    _edit_line(path, 7, lambda line: line.replace('"valeur": ', '"valeur": NaN, "x": ', 1))
    with pytest.raises(DatasetValidationError, match=r"ligne 7, colonne « labels\[0\]\.valeur » : valeur NaN"):
        load_instructions(data_dir=data_copy)


def test_wrong_type_and_bad_status(data_copy):
    path = data_copy / "instructions_test.jsonl"
    _edit_record(path, 2, lambda r: r.update(age="quarante"))
    with pytest.raises(DatasetValidationError, match=r"ligne 2, colonne « age » : entier attendu"):
        read_jsonl(path, "instructions")
    _edit_record(path, 2, lambda r: (r.update(age=40), r["labels"][0].update(statut="haut")))
    with pytest.raises(DatasetValidationError, match=r"colonne « labels\[0\]\.statut » : statut « haut » inconnu"):
        read_jsonl(path, "instructions")


def test_empty_file(data_copy):
    (data_copy / "instructions_validation.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DatasetValidationError, match="fichier vide"):
        load_instructions(data_dir=data_copy)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetValidationError, match="fichier introuvable"):
        load_retrieval(data_dir=tmp_path)


def test_longitudinal_bad_cells(data_copy):
    path = data_copy / "longitudinal.csv"
    _edit_line(path, 2, lambda line: line.replace("P0001,homme,45,1,", "P0001,homme,quarante-cinq,1,", 1))
    with pytest.raises(DatasetValidationError, match=r"ligne 2, colonne « age_inclusion » : entier attendu"):
        load_longitudinal(data_dir=data_copy)
    _edit_line(path, 3, lambda line: line + ",en trop")
    _edit_line(path, 2, lambda line: line.replace("quarante-cinq", "45"))
    with pytest.raises(DatasetValidationError, match=r"ligne 3 : 14 cellules pour 13 colonnes"):
        load_longitudinal(data_dir=data_copy)


def test_longitudinal_nan_and_duplicate(data_copy):
    path = data_copy / "longitudinal.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = lines[1].split(",")
    cells[6] = "nan"
    path.write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetValidationError, match=r"ligne 2, colonne « valeur » : valeur NaN"):
        load_longitudinal(data_dir=data_copy)
    path.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetValidationError, match=r"doublon \(patient, visite, analyte\) de la ligne 2"):
        load_longitudinal(data_dir=data_copy)


def test_split_integrity_detects_leaks():
    from datasets import Dataset, DatasetDict

    r = load_retrieval()
    assert not any(check_split_integrity(r).values())
    leaked = r["test_questions"][0]
    bad = DatasetDict({**r, "train": Dataset.from_list(list(r["train"]) + [leaked])})
    report = split_integrity(bad)
    assert report["test_questions_questions_in_train"] == 1
    with pytest.raises(
        DatasetValidationError,
        match=r"retrieval_\*\.jsonl : Fuite entre splits \(test_questions_questions_in_train = 1",
    ):
        check_split_integrity(bad)


def test_ir_inputs_and_empty_sets():
    r = load_retrieval(get_profile("smoke"))
    queries, corpus, relevant = ir_inputs(r["test_questions"], r["corpus"])
    assert len(queries) == len(relevant) == 16 and len(corpus) == len(r["corpus"])
    assert all(next(iter(docs)) in corpus for docs in relevant.values())
    with pytest.raises(ValueError, match="requêtes vide"):
        ir_inputs(r["test_questions"].select([]), r["corpus"])
    with pytest.raises(ValueError, match="Corpus vide"):
        ir_inputs(r["test_questions"], r["corpus"].select([]))


def test_hub_columns_mapping():
    from datasets import Dataset

    ds = Dataset.from_dict({"question": ["Q"], "context": ["C"], "answer": ["A"], "extra": [1]})
    mapped = map_hub_columns(ds)
    assert mapped.column_names == ["instruction", "input", "output"] and mapped[0]["output"] == "A"
    no_input = map_hub_columns(Dataset.from_dict({"instruction": ["I"], "output": ["O"]}))
    assert no_input[0]["input"] == ""
    with pytest.raises(DatasetValidationError, match="colonne « output » : colonne introuvable"):
        map_hub_columns(Dataset.from_dict({"instruction": ["I"], "texte": ["T"]}), source="org/jeu")


def test_hub_dataset_fails_fast_offline(clean_env):
    from helpers import data, runtime

    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(ConnectionError, match="Hub Hugging Face injoignable"):
        data.load_hub_instructions("org/jeu-inexistant")


# --------------------------------------------------------------------------- jeu du hub (profil gpu)
def _hub_loader(rows):
    from datasets import Dataset

    return lambda dataset_id, split="train": Dataset.from_list(rows)


def test_gpu_profile_uses_the_seed_hub_dataset_by_default(clean_env):
    from helpers.profiles import HUB_DATASET, get_profile

    assert get_profile("gpu").data.hub_dataset == HUB_DATASET == "Nassira/MedAnalyzr"
    clean_env.setenv("COURSE_HUB_DATASET", "aucun")
    assert get_profile("gpu").data.hub_dataset is None
    assert get_profile("cpu").data.hub_dataset is None


def test_hub_examples_are_mapped_validated_and_added_to_training():
    from dataclasses import replace

    from helpers.data import load_instructions, with_hub_examples
    from helpers.profiles import get_profile

    profile = get_profile("smoke")
    profile = replace(profile, data=replace(profile.data, hub_dataset="Nassira/MedAnalyzr", hub_max_examples=2))
    train = load_instructions(profile)["train"]
    rows = [
        {"Instruction": f"Analysez le bilan {i}.", "Input": "Sodium : 140 mmol/L", "Response": "Normal."}
        for i in range(3)
    ]
    merged, message = with_hub_examples(train, profile, loader=_hub_loader(rows))
    assert len(merged) == len(train) + 2 and merged.column_names == ["instruction", "input", "output"]
    assert "Nassira/MedAnalyzr" in message and "2 exemples du hub" in message


@pytest.mark.parametrize(
    "rows,reason",
    [
        ([{"question": "Q ?", "text": "R."}], "colonne « output »"),
        ([{"instruction": "Analysez.", "input": "", "output": "   "}], "ligne 1"),
        ([{"instruction": "Analysez.", "input": "", "output": "RÃ©sultat normal"}], "ligne 1"),
    ],
)
def test_a_hub_dataset_that_differs_falls_back_with_a_french_message(rows, reason):
    from dataclasses import replace

    from helpers.data import load_instructions, with_hub_examples
    from helpers.profiles import get_profile

    profile = get_profile("smoke")
    profile = replace(profile, data=replace(profile.data, hub_dataset="Nassira/MedAnalyzr"))
    train = load_instructions(profile)["train"]
    same, message = with_hub_examples(train, profile, loader=_hub_loader(rows))
    assert same is train
    assert "non utilisé" in message and reason in message and "MedAnalyzer-FR seul" in message


def test_unreachable_hub_drops_the_hub_dataset_from_the_gpu_profile(clean_env):
    from helpers import runtime
    from helpers.profiles import detect_profile

    clean_env.setenv("COURSE_PROFILE", "gpu")
    clean_env.setattr(runtime, "cuda_available", lambda: True)
    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: False)
    profile = detect_profile()
    assert profile.data.hub_dataset is None and "MedAnalyzer-FR seul" in profile.reason


def test_natural_splits_are_loaded_with_all_their_relevant_passages():
    from helpers.data import NATURAL_SPLITS, ir_inputs, load_retrieval

    retrieval = load_retrieval()
    assert all(name in retrieval for name in NATURAL_SPLITS)
    test = retrieval["naturel_test"]
    queries, docs, relevant = ir_inputs(test, retrieval["corpus"])
    assert len(queries) == len(test) and any(len(r) == 2 for r in relevant.values())
    assert all(set(row["passages_pertinents"]) == relevant[row["pair_id"]] for row in test)
    # les splits générés gardent un seul passage pertinent
    _, _, single = ir_inputs(retrieval["test_questions"], retrieval["corpus"])
    assert all(len(r) == 1 for r in single.values())
