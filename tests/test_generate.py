"""Le générateur est déterministe et produit des vues conformes au cahier des charges."""

import json
import random
from collections import Counter

import pytest

from helpers import analytes, generate
from helpers.analytes import load_analytes
from helpers.paths import DATASET_DIR


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("medanalyzer")
    generate.generate(out)
    return out


def test_regeneration_gives_identical_bytes(regenerated):
    committed = sorted(p.name for p in DATASET_DIR.iterdir())
    assert committed == sorted(p.name for p in regenerated.iterdir())
    for name in committed:
        assert (DATASET_DIR / name).read_bytes() == (regenerated / name).read_bytes(), name


def test_manifest_hashes_match_files():
    import hashlib

    manifest = json.loads((DATASET_DIR / "manifest.json").read_text(encoding="utf-8"))
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((DATASET_DIR / name).read_bytes()).hexdigest() == digest, name


def _jsonl(name):
    return [json.loads(x) for x in (DATASET_DIR / name).read_text(encoding="utf-8").splitlines()]


def test_retrieval_view_sizes_and_styles():
    corpus = _jsonl("corpus.jsonl")
    assert len(corpus) == 46 * 6
    assert Counter(p["aspect"] for p in corpus) == {a: 46 for a in generate.ASPECTS}
    pairs = [
        p for s in ("train", "validation", "test_questions", "test_analytes") for p in _jsonl(f"retrieval_{s}.jsonl")
    ]
    assert len(pairs) >= 2000
    assert set(p["style"] for p in pairs) == set(generate.STYLES)
    test_codes = {p["code"] for p in _jsonl("retrieval_test_analytes.jsonl")}
    assert len(test_codes) / 46 >= 0.15
    fit_codes = {p["code"] for s in ("train", "validation") for p in _jsonl(f"retrieval_{s}.jsonl")}
    assert not test_codes & fit_codes


def test_instruction_labels_agree_with_reference_ranges():
    analytes = load_analytes()
    rows = [r for s in ("train", "validation", "test") for r in _jsonl(f"instructions_{s}.jsonl")]
    assert len(rows) >= 2000
    statuses = Counter()
    for r in rows:
        for lab in r["labels"]:
            assert analytes[lab["code"]].status(lab["valeur"], r["sexe"]) == lab["statut"]
            # le statut attendu figure dans la réponse, sur la ligne de l'analyte
            line = next(
                x
                for x in r["output"].splitlines()
                if x.startswith(f"- {lab['analyte'][:1].upper()}{lab['analyte'][1:]} :")
            )
            assert f"— {lab['statut']} (" in line
            statuses[lab["statut"]] += 1
        assert "ne remplace pas" in r["output"]
    assert min(statuses.values()) > 1000  # les trois statuts sont bien représentés


def test_longitudinal_view():
    import csv

    rows = list(csv.DictReader((DATASET_DIR / "longitudinal.csv").read_text(encoding="utf-8").splitlines()))
    patients = {r["patient_id"] for r in rows}
    assert len(patients) >= 200
    visits = Counter((r["patient_id"], r["code"]) for r in rows)
    assert min(visits.values()) >= 6
    assert len({r["code"] for r in rows}) >= 5
    kinds = Counter(r["anomalie"] for r in rows)
    assert kinds["pic"] > 0 and kinds["rupture"] > 0
    assert all(float(r["valeur"]) > 0 for r in rows)


@pytest.mark.parametrize("code", ["HB", "CRP", "HDL", "TP", "K"])
@pytest.mark.parametrize("sexe", ["homme", "femme"])
def test_sampled_values_have_requested_status(code, sexe):
    a = load_analytes()[code]
    rng = random.Random(0)
    for status in a.possible_statuses(sexe):
        for _ in range(50):
            assert a.status(generate._sample_value(a, sexe, status, rng), sexe) == status


def test_typos_change_the_question():
    rng = random.Random(1)
    q = "Quelles sont les causes d'une élévation de la créatinine ?"
    variants = {generate.add_typos(q, rng) for _ in range(20)}
    assert q not in variants and len(variants) > 5


def test_reference_change_value():
    # HB : CVi 2,7 %, CVa 1,5 % → RCV = 1,96 × √2 × √(2,7² + 1,5²) ≈ 8,56 %
    assert analytes.reference_change_value("HB") == pytest.approx(0.0856, abs=5e-4)


# --------------------------------------------------------------------------- questions naturelles
def test_natural_questions_are_hand_written_halves_without_templated_duplicates():
    natural = {s: _jsonl(f"retrieval_naturel_{s}.jsonl") for s in ("validation", "test")}
    templated = [
        p["question"]
        for s in ("train", "validation", "test_questions", "test_analytes")
        for p in _jsonl(f"retrieval_{s}.jsonl")
    ]
    corpus = {p["passage_id"]: p for p in _jsonl("corpus.jsonl")}
    assert sum(map(len, natural.values())) >= 150
    assert abs(len(natural["validation"]) - len(natural["test"])) <= 1
    questions = [q["question"] for half in natural.values() for q in half]
    assert len(set(questions)) == len(questions)  # aucune question dans les deux moitiés
    for q in (q for half in natural.values() for q in half):
        assert q["passage_id"] == q["passages_pertinents"][0]
        assert all(p in corpus for p in q["passages_pertinents"])
        assert max(generate.jaccard(q["question"], t) for t in templated) < generate.NEAR_DUPLICATE
    families = {p["famille"] for p in corpus.values()}
    for half in natural.values():  # chaque famille et chaque style dans chaque moitié
        assert {q["famille"] for q in half} == families
        assert {q["style"] for q in half} == set(generate.NATURAL_STYLES)


def _natural_csv(tmp_path, rows):
    import csv

    with (tmp_path / generate.NATURAL_FILE).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "passages", "style"])
        writer.writerows(rows)
    return tmp_path


def test_natural_questions_are_refused_with_their_line(tmp_path):
    from helpers.data import DatasetValidationError

    corpus = _jsonl("corpus.jsonl")
    templated = [{"question": "Quelles sont les causes d'une élévation de l'hémoglobine ?"}]
    ok = ["mon sang est trop riche en hémoglobine, pourquoi ?", "HB-haute", "profane"]
    halves = generate.build_natural(corpus, templated, _natural_csv(tmp_path, [ok]))
    assert sum(map(len, halves.values())) == 1
    cases = [
        (["question ?", "HB-inconnu", "profane"], "passage"),
        (["question ?", "HB-haute", "poétique"], "style"),
        ([ok, ok], "même question"),
        (["causes d'une élévation de l'hémoglobine ?", "HB-haute", "profane"], "quasi-doublon"),
    ]
    for rows, problem in cases:
        rows = rows if isinstance(rows[0], list) else [rows]
        with pytest.raises(DatasetValidationError, match=problem) as err:
            generate.build_natural(corpus, templated, _natural_csv(tmp_path, rows))
        assert "ligne" in str(err.value) and generate.NATURAL_FILE in str(err.value)
    assert generate.jaccard("Le Sodium bas ?", "le sodium BAS") == 1.0


def test_descriptions_name_nothing_and_stay_in_training():
    analytes = load_analytes()
    assert generate.describe(analytes["HB"]) == (
        "la protéine des globules rouges qui transporte l'oxygène des poumons vers les tissus"
    )
    assert generate.describe(analytes["NA"]) is None  # « mesure le sodium » : la description le nomme
    for a in analytes.values():
        desc = generate.describe(a)
        if desc is not None:
            assert all(n.lower() not in desc.lower() for n in (a.nom, a.nom_court, a.abreviation, *a.synonymes))
    corpus, splits, test_codes, _ = generate.build_retrieval(analytes)
    before = {k: [dict(r) for r in v] for k, v in splits.items()}
    added = generate.add_description_pairs(splits, analytes, test_codes)
    described = [p for p in splits["train"] if p["style"] == "description"]
    assert added == len(described) >= 100
    assert not {p["code"] for p in described} & set(test_codes)
    assert all(splits[k] == before[k] for k in ("validation", "test_questions", "test_analytes"))
    assert splits["train"][: len(before["train"])] == before["train"]
    assert len({p["passage_id"] for p in described}) == len(described)  # une question par passage
    assert len({p["pair_id"] for p in splits["train"]}) == len(splits["train"])


def test_profile_can_leave_out_the_described_pairs():
    from dataclasses import replace

    from helpers.data import load_retrieval
    from helpers.profiles import get_profile

    profile = get_profile("cpu")
    without = load_retrieval(profile)["train"]  # par défaut : sans (l'étude ne les a pas retenues)
    with_them = load_retrieval(replace(profile, embedding=replace(profile.embedding, described_pairs=True)))["train"]
    assert "description" in set(with_them["style"]) and "description" not in set(without["style"])
    assert len(with_them) - len(without) == sum(s == "description" for s in with_them["style"])


def _gap_to(a, sexe, value, side):
    """Distance d'une valeur à sa borne et demi-cran d'affichage, en part de la bande des valeurs
    normales du générateur."""
    low, high = generate._normal_band(a, sexe)
    bound = a.bounds(sexe)[0 if side == "min" else 1]
    return abs(value - bound) / (high - low), 0.5 * 10**-a.decimales / (high - low)


def test_the_dataset_keeps_a_margin_that_boundary_reports_do_not():
    """La phrase du notebook 08 : aucune valeur normale du jeu d'instructions n'est à moins de 5 %
    (de la bande des valeurs normales) d'une borne, à l'arrondi près ; les valeurs des comptes rendus
    aux bornes, si (ou à un cran d'affichage, quand 5 % en font moins d'un)."""
    table = load_analytes()
    rows = [r for s in ("train", "validation", "test") for r in _jsonl(f"instructions_{s}.jsonl")]
    normal = [(r["sexe"], table[lab["code"]], lab) for r in rows for lab in r["labels"] if lab["statut"] == "normal"]
    for sexe, a, lab in normal:
        for side, bound in zip(("min", "max"), a.bounds(sexe)):
            if bound is not None:
                gap, half_unit = _gap_to(a, sexe, lab["valeur"], side)
                assert gap >= 0.05 - half_unit - 1e-9, lab
    reports = generate.build_boundary_reports(table, 80)
    assert reports == generate.build_boundary_reports(table, 80)  # graine fixe
    assert reports != generate.build_boundary_reports(table, 80, seed=1)
    labels = [(r["sexe"], table[lab["code"]], lab) for r in reports for lab in r["labels"]]
    assert all(r["labels"] for r in reports) and len(labels) >= 3 * len(reports)
    assert set(lab["position"] for _, _, lab in labels) == set(generate.BOUNDARY_POSITIONS)
    for sexe, a, lab in labels:
        assert a.status(lab["valeur"], sexe) == lab["statut"]
        assert (lab["statut"] == "normal") == (lab["position"] != "juste dehors"), lab
        gap, half_unit = _gap_to(a, sexe, lab["valeur"], lab["borne"])
        if lab["position"] == "sur la borne":
            assert gap == 0, lab
        else:
            assert 0 < gap <= max(0.05 + half_unit, 2 * half_unit) + 1e-9, lab
    with pytest.raises(ValueError, match="au moins un"):
        generate.build_boundary_reports(table, 0)


def test_boundary_reports_pass_the_user_file_checks():
    """Chaque compte rendu aux bornes passe la validation d'un fichier « Vos données »."""
    import pandas as pd

    from helpers.assistant import report_rows, rows_from_text

    reports = generate.build_boundary_reports(load_analytes(), 40)
    for r in reports:
        rows = rows_from_text(pd.DataFrame(report_rows(r)).to_csv(index=False), name=r["id"])
        assert [row["statut"] for row in rows] == [lab["statut"] for lab in r["labels"]]


def test_restrict_reports_splits_boundary_values_by_analyte():
    """Exercice 6 du notebook 08 : une moitié des analytes aux bornes pour l'entraînement, l'autre
    pour la mesure ; aucune valeur dans les deux, aucun compte rendu vide, l'original intact."""
    table = load_analytes()
    reports = generate.build_boundary_reports(table, 40)
    codes = sorted(table)
    first, second = set(codes[::2]), set(codes[1::2])
    train, held_out = generate.restrict_reports(reports, first), generate.restrict_reports(reports, second)
    assert train and held_out and all(r["labels"] for r in train + held_out)
    assert {lab["code"] for r in train for lab in r["labels"]} <= first
    assert {lab["code"] for r in held_out for lab in r["labels"]} <= second
    kept = sum(len(r["labels"]) for r in train + held_out)
    assert kept == sum(len(r["labels"]) for r in reports)  # chaque valeur d'un côté ou de l'autre
    assert generate.restrict_reports(reports, []) == [] and reports == generate.build_boundary_reports(table, 40)


def test_passages_agree_with_plural_analytes():
    """« Les triglycérides n'ont pas de limite basse » : le verbe s'accorde avec un analyte au pluriel
    (le corpus écrivait « n'a » pour quatre d'entre eux)."""
    corpus = [json.loads(line) for line in (DATASET_DIR / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = {p["passage_id"]: p["text"] for p in corpus}
    assert texts["TG-basse"].startswith("Les triglycérides n'ont pas de limite basse")
    assert texts["ASAT-basse"].startswith("L'ASAT n'a pas de limite basse")
    plural = {a.code for a in load_analytes().values() if a.nombre == "p"}
    for passage in corpus:
        if passage["code"] in plural:
            assert " n'a pas " not in passage["text"], passage["passage_id"]


def test_passages_do_not_repeat_a_name_as_its_own_abbreviation():
    """« Dosage de la TSH (TSH) » disait deux fois la même chose ; « Dosage de la créatinine (créat) »
    apprend une abréviation réelle et reste."""
    texts = {
        p["passage_id"]: p["text"]
        for p in map(json.loads, (DATASET_DIR / "corpus.jsonl").read_text(encoding="utf-8").splitlines())
    }
    assert texts["TSH-prelevement"].startswith("Dosage de la TSH — conditions de prélèvement.")
    assert texts["FERRITINE-suivi"].startswith("Suivi et conduite à tenir pour la ferritine. ")
    assert texts["CREAT-prelevement"].startswith("Dosage de la créatinine (créat) — ")
