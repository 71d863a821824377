"""Vos données : fichiers de l'utilisateur (paires, instructions, résultats d'analyses) lus,
validés et mis au format des notebooks, avec des erreurs françaises qui nomment fichier, ligne et
colonne (:mod:`helpers.user_data`)."""

import json

import pytest

from helpers import user_data
from helpers.data import DatasetValidationError, ir_inputs

# --------------------------------------------------------------------------- vos propres données

RESULTS_HEADER = "patient_id,sexe,age,analyte,valeur,unite"


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_your_results_become_reports_with_computed_statuses(tmp_path):
    from helpers.llm import analyte_cases

    path = _write(
        tmp_path,
        "bilan.csv",
        [
            RESULTS_HEADER,
            'P1,femme,40,Hémoglobine,"11,2",g/dL',
            "P1,femme,40,ferritine,8,µg/L",
            "P2,homme,60,TSH,5.2,mUI/L",
            "P2,homme,60,hb,15,G/DL",
        ],
    )
    rows = user_data.read_user_file(path, "resultats")
    assert rows[0]["code"] == rows[3]["code"] == "HB" and rows[2]["code"] == "TSH"
    assert [r["statut"] for r in rows] == ["bas", "bas", "élevé", "normal"]
    assert rows[3]["unite"] == "g/dL"  # l'unité est écrite comme dans le cours
    reports = user_data.results_to_reports(rows)
    assert [r["id"] for r in reports] == ["P1", "P2"] and len(reports[0]["labels"]) == 2
    assert reports[0]["input"] == (
        "Patient : femme, 40 ans (résultats personnels).\nRésultats :\n- Hémoglobine : 11,2 g/dL\n- Ferritine : 8 µg/L"
    )  # écrit comme les entrées du jeu d'instructions (tâche « rapport » du profil gpu)
    from datasets import Dataset

    cases = analyte_cases(Dataset.from_list(reports))
    assert cases[2]["output"] == "TSH : élevé" and "référence" in cases[2]["input"]


@pytest.mark.parametrize(
    "line,column,pattern",
    [
        (
            "P1,femme,40,Hémoglobine,112,g/L",
            "unite",
            "unité inconnue « g/L » pour l'hémoglobine : le cours attend g/dL",
        ),
        ("P1,femme,40,Vitamine Z,3,mg/L", "analyte", "analyte inconnu « Vitamine Z »"),
        ("P1,F,40,Hémoglobine,12,g/dL", "sexe", "homme ou femme attendu"),
        ("P1,femme,400,Hémoglobine,12,g/dL", "age", "âge impossible"),
        ("P1,femme,40,Hémoglobine,120,g/dL", "valeur", "n'est pas plausible"),
        ("P1,femme,40,Hémoglobine,douze,g/dL", "valeur", "nombre attendu, trouvé « douze »"),
        ("P1,femme,40,Hémoglobine,,g/dL", "valeur", "cellule vide"),
        ("P1,femme,40,,12,g/dL", "analyte", "texte vide"),
    ],
)
def test_bad_result_rows_name_file_row_and_column(tmp_path, line, column, pattern):
    path = _write(tmp_path, "bilan.csv", [RESULTS_HEADER, "P0,homme,50,TSH,2,mUI/L", line])
    with pytest.raises(DatasetValidationError) as err:
        user_data.read_user_file(path, "resultats")
    assert err.value.path == str(path) and err.value.line == 3 and err.value.column == column
    assert pattern in str(err.value) and str(err.value).startswith(
        f"bilan.csv, ligne 3, colonne « {column} »"
    )  # sans le chemin de la machine


def test_result_duplicates_and_inconsistent_patients(tmp_path):
    dup = _write(tmp_path, "a.csv", [RESULTS_HEADER, "P1,femme,40,TSH,2,mUI/L", "P1,femme,40,tsh,3,mUI/L"])
    with pytest.raises(DatasetValidationError, match="ligne 3, colonne « analyte » : doublon .* de la ligne 2"):
        user_data.read_user_file(dup, "resultats")
    other = _write(tmp_path, "b.csv", [RESULTS_HEADER, "P1,femme,40,TSH,2,mUI/L", "P1,homme,40,Hémoglobine,14,g/dL"])
    with pytest.raises(DatasetValidationError, match="ligne 3, colonne « sexe » : le patient « P1 »"):
        user_data.read_user_file(other, "resultats")


def test_your_pairs_file_jsonl(tmp_path):
    rows = [{"question": f"Question {i} ?", "passage": f"Passage {i % 3}."} for i in range(10)]
    path = _write(tmp_path, "paires.jsonl", [json.dumps(r, ensure_ascii=False) for r in rows])
    ds = user_data.load_user_pairs(path, validation_share=0.2, seed=1)
    assert len(ds["corpus"]) == 3 and len(ds["train"]) == 8 and len(ds["validation"]) == 2
    assert set(ds["train"]["pair_id"]).isdisjoint(ds["validation"]["pair_id"])
    queries, docs, relevant = ir_inputs(ds["validation"], ds["corpus"])  # prêt pour l'évaluateur
    assert all(next(iter(v)) in docs for v in relevant.values())


@pytest.mark.parametrize(
    "content,line,column,pattern",
    [
        ('{"question": "Q ?", "passage": "P."}\n{"question": "Q2 ?"', 2, None, "JSON invalide"),
        ('{"question": "Q ?", "texte": "P."}\n', 1, "passage", "colonne manquante"),
        ('{"question": "Q ?", "passage": "P.", "source": "x"}\n', 1, "source", "colonne inattendue"),
        ('{"question": "  ", "passage": "P."}\n', 1, "question", "texte vide"),
        (
            '{"question": "Q ?", "passage": "' + "x" * 4001 + '"}\n',
            1,
            "passage",
            "texte trop long (4001 caractères, maximum 4000)",
        ),
        ('{"question": 3, "passage": "P."}\n', 1, "question", "type str attendu"),
    ],
)
def test_bad_pairs_files(tmp_path, content, line, column, pattern):
    path = tmp_path / "paires.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetValidationError) as err:
        user_data.read_user_file(path, "paires")
    assert (err.value.line, err.value.column) == (line, column) and pattern in str(err.value)


def test_your_instructions_csv_and_format_detection(tmp_path):
    path = _write(
        tmp_path,
        "instr.csv",
        [
            "instruction,input,output",
            'Interprétez.,"Hb : 11 g/dL",Hb basse.',
            "Résumez.,,Rien à signaler.",
            "Expliquez.,CRP : 3 mg/L,CRP normale.",
        ],
    )
    ds, kind = user_data.load_user_instructions(path, validation_share=0.34)
    assert kind == "instructions_utilisateur"
    assert len(ds["train"]) + len(ds["validation"]) == 3 and len(ds["validation"]) == 1
    assert "" in list(ds["train"]["input"]) + list(ds["validation"]["input"])  # input peut être vide
    long_output = _write(tmp_path, "long.csv", ["instruction,input,output", "I.,," + "y" * 8001])
    with pytest.raises(DatasetValidationError, match="ligne 2, colonne « output » : texte trop long"):
        user_data.load_user_instructions(long_output)


def test_unrecognised_user_files(tmp_path):
    odd = _write(tmp_path, "x.csv", ["nom,valeur", "a,1"])
    with pytest.raises(DatasetValidationError, match="aucun format reconnu"):
        user_data.load_user_instructions(odd)
    xlsx = _write(tmp_path, "x.xlsx", ["a"])
    with pytest.raises(DatasetValidationError, match="extension « .xlsx » non prise en charge"):
        user_data.read_user_file(xlsx, "paires")
    one = _write(tmp_path, "one.csv", ["question,passage", "Q ?,P."])
    with pytest.raises(DatasetValidationError, match="1 exemple.*au moins 2"):
        user_data.load_user_pairs(one)
    with pytest.raises(ValueError, match="Format inconnu"):
        user_data.read_user_file(one, "tableur")
    empty = _write(tmp_path, "vide.jsonl", [""])
    with pytest.raises(DatasetValidationError, match="fichier vide"):
        user_data.read_user_file(empty, "paires")
