import pytest

from helpers.analytes import ReferenceDataError, fmt_number, load_analytes, range_text


@pytest.fixture(scope="module")
def A():
    return load_analytes()


def test_46_analytes_with_sources(A):
    assert len(A) == 46
    assert all(a.source.startswith("http") for a in A.values())


def test_status_bounds_are_normal(A):
    hb = A["HB"]
    assert hb.status(12.0, "femme") == "normal" and hb.status(16.0, "femme") == "normal"
    assert hb.status(11.9, "femme") == "bas" and hb.status(16.1, "femme") == "élevé"
    assert hb.status(12.5, "homme") == "bas"  # bornes différentes selon le sexe


def test_one_sided_ranges(A):
    assert A["CRP"].possible_statuses("homme") == ("normal", "élevé")
    assert A["HDL"].possible_statuses("femme") == ("bas", "normal")
    assert A["CRP"].status(0.1, "femme") == "normal"
    assert A["TP"].status(120, "homme") == "normal"  # revue : pas de borne haute


def test_bad_inputs(A):
    with pytest.raises(ValueError, match="Sexe inconnu"):
        A["HB"].bounds("enfant")
    with pytest.raises(ValueError, match="non numérique"):
        A["HB"].status(float("nan"), "homme")


def test_french_grammar(A):
    assert A["HB"].du == "de l'hémoglobine" and A["PLQ"].du == "des plaquettes"
    assert A["CRP"].mon == "ma CRP" and A["HB"].mon == "mon hémoglobine" and A["PLQ"].mon == "mes plaquettes"
    assert A["PLQ"].accord("élevé") == "élevées" and A["NA"].accord("bas") == "bas"
    assert A["TG"].accord("bon") == "bons" and A["TCMH"].accord("bon") == "bonne"
    assert A["GB"].accord("normal") == "normaux" and A["PLQ"].est == "sont"


def test_french_numbers():
    assert fmt_number(10.94, 1) == "10,9" and fmt_number(3, 2) == "3,00"
    assert range_text(None, 5, "mg/L") == "≤ 5 mg/L" and range_text(0.4, None, "g/L") == "≥ 0,4 g/L"
    assert range_text(12, 16, "g/dL") == "12 à 16 g/dL"


def _copy_reference(tmp_path):
    from helpers.paths import REFERENCE_DIR

    for name in ("analytes_fr.csv", "analytes_details_fr.csv"):
        (tmp_path / name).write_bytes((REFERENCE_DIR / name).read_bytes())
    return tmp_path


def test_reference_errors_name_file_line_column(tmp_path):
    d = _copy_reference(tmp_path)
    path = d / "analytes_fr.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace(",13,17,", ",treize,17,")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_analytes.cache_clear()
    with pytest.raises(ReferenceDataError, match=r"ligne 2, colonne « min_homme » : nombre attendu"):
        load_analytes(d)
    load_analytes.cache_clear()


def test_reference_missing_detail_row(tmp_path):
    d = _copy_reference(tmp_path)
    path = d / "analytes_details_fr.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(line for line in lines if not line.startswith("CRP,")) + "\n", encoding="utf-8")
    load_analytes.cache_clear()
    with pytest.raises(ReferenceDataError, match="aucune ligne pour l'analyte « CRP »"):
        load_analytes(d)
    load_analytes.cache_clear()


def test_title_and_result_line():
    from helpers.analytes import load_analytes

    a = load_analytes()["FERRITINE"]
    assert a.titre == "Ferritine" and a.result_line(8.0).startswith("Ferritine : 8")
    assert a.result_line(8.0).endswith(f" {a.unite}")
