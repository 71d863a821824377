"""Durées mesurées par make course : enregistrement, relecture, affichage, page de documentation."""

import pandas as pd
import pytest

from helpers import durations


def results(*items):
    return [
        {"notebook": f"{nb}_x.ipynb", "status": st, "seconds": s, "kernel_peak_rss_mb": 1000} for nb, st, s in items
    ]


def test_record_replaces_only_the_notebooks_run_on_that_profile(tmp_path):
    path = tmp_path / "durees.csv"
    durations.record_durations(
        "cpu", results(("01", "ok", 11.6), ("02", "ok", 293.5)), threads=2, commit="aaa", date="2026-11-26", path=path
    )
    durations.record_durations(
        "smoke", results(("02", "ok", 20.0)), threads=2, commit="bbb", date="2026-11-27", path=path
    )
    table = durations.record_durations(
        "cpu", results(("02", "ok", 250.0), ("03", "échec", 5.0)), threads=2, commit="ccc", date="2026-11-27", path=path
    )
    assert list(zip(table["profile"], table["notebook"], table["seconds"])) == [
        ("cpu", "01", 11.6),
        ("cpu", "02", 250.0),
        ("smoke", "02", 20.0),
    ]  # l'échec n'est pas une durée
    assert durations.load_durations(path).equals(table)
    pd.DataFrame({"profile": ["cpu"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="colonnes manquantes"):
        durations.load_durations(path)


def test_lines_and_formatting(tmp_path):
    path = tmp_path / "durees.csv"
    durations.record_durations("cpu", results(("04", "ok", 293.4)), threads=2, commit="a", date="2026-11-27", path=path)
    assert durations.duration_lines("04", path) == [
        "gpu : pas encore mesurée",
        "cpu : 4 min 53 s, pic 1\u202f000 Mo (make course du 2026-11-27, 2 thread(s))",
        "smoke : pas encore mesurée",
    ]
    assert [durations.format_seconds(s) for s in (44.6, 60, 3725)] == ["45 s", "1 min 00 s", "1 h 02 min"]
    assert durations.notebook_prefix("04 — QLoRA") == "04"
    assert durations.notebook_prefix("04 — solutions") is None and durations.notebook_prefix("essai") is None


def test_setup_course_prints_the_measured_durations(tmp_path, monkeypatch, capsys):
    from helpers import setup_course

    path = tmp_path / "durees.csv"
    durations.record_durations("cpu", results(("03", "ok", 40.9)), threads=2, commit="a", date="2026-11-27", path=path)
    monkeypatch.setattr(durations, "durations_path", lambda: path)
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    setup_course("03 — comparaison")
    out = capsys.readouterr().out
    assert "Durée de ce notebook" in out and "cpu : 41 s" in out
    setup_course("03 — solutions")
    assert "Durée de ce notebook" not in capsys.readouterr().out


def test_durations_page_lists_every_notebook(tmp_path):
    from helpers.docs import write_durations_page

    path = tmp_path / "durees.csv"
    durations.record_durations(
        "cpu", results(("01", "ok", 11.6)), threads=2, commit="abc", date="2026-11-27", path=path
    )
    page = write_durations_page(tmp_path / "durees.rst", path).read_text(encoding="utf-8")
    assert "``01_exploration_donnees``" in page and "12 s, 1\u202f000 Mo (2026-11-27, commit abc, 2 thread(s))" in page
    assert "``07_cas_etude_analyses_sang``" in page and page.count("pas encore mesurée") >= 2 * 7
    assert "   * - 02 + 03\n     - 8 min 00 s\n     - pas encore mesuré\n     - —" in page


def test_durations_page_compares_each_pair_with_its_budget(tmp_path):
    """L'objectif de durée du bilan (8 min pour 02 + 03…) face à la somme des deux mesures, seulement
    si elles viennent de la même exécution (même commit)."""
    from helpers.docs import budget_lines

    table = pd.DataFrame(
        [
            ["cpu", "02", 440.0, 4979, 2, "2026-11-27", "a", "déquantifié"],
            ["cpu", "03", 82.0, 3134, 2, "2026-11-27", "a", "déquantifié"],
            ["cpu", "04", 500.0, 3290, 2, "2026-11-27", "b", "déquantifié"],
            ["cpu", "05", 200.0, 3060, 2, "2026-11-27", "b", "déquantifié"],
            ["cpu", "06", 700.0, 4719, 2, "2026-11-27", "c", "déquantifié"],
            ["cpu", "07", 280.0, 4128, 2, "2026-11-27", "d", "déquantifié"],
        ],
        columns=durations.COLUMNS,
    )
    text = "\n".join(budget_lines(table))
    assert "   * - 02 + 03\n     - 8 min 00 s\n     - 8 min 42 s (522 s, commit a)\n     - non" in text
    assert "   * - 04 + 05\n     - 12 min 00 s\n     - 11 min 40 s (700 s, commit b)\n     - oui" in text
    assert "   * - 06 + 07\n     - 15 min 00 s\n     - mesures de commits différents : non additionnées" in text


def test_the_4bit_kernel_of_the_machine_is_recorded_beside_its_durations(tmp_path):
    """Les notebooks 04 à 08 durent deux à trois fois plus sur un CPU sans AVX512-BF16 : la ligne
    le dit ; un fichier d'avant cette colonne se relit, la colonne vide."""
    path = tmp_path / "durees.csv"
    old = pd.DataFrame([["cpu", "08", 340.5, 2503, 2, "2026-11-27", "ceb3996"]], columns=durations.COLUMNS[:-1])
    old.to_csv(path, index=False)
    assert durations.load_durations(path)["cpu_4bit"].isna().all()
    assert (
        durations.duration_lines("08", path)[1]
        == "cpu : 5 min 40 s, pic 2\u202f503 Mo (make course du 2026-11-27, 2 thread(s))"
    )
    table = durations.record_durations(
        "cpu",
        results(("08", "ok", 1001.0)),
        threads=2,
        commit="b",
        date="2026-11-27",
        cpu_4bit="déquantifié",
        path=path,
    )
    assert list(table["cpu_4bit"]) == ["déquantifié"]
    assert durations.duration_lines("08", path)[1].endswith("2 thread(s), 4 bits déquantifié, sans AVX512-BF16)")
    durations.record_durations(
        "cpu", results(("08", "ok", 400.0)), threads=2, commit="c", date="2026-11-28", cpu_4bit="fusionné", path=path
    )
    assert "4 bits par noyau fusionné AVX512-BF16" in durations.duration_lines("08", path)[1]


def test_the_readme_states_the_measured_total_of_the_cpu_notebooks():
    """La durée annoncée par le README est la somme des durées cpu enregistrées (à une minute près)."""
    import re

    from helpers.paths import REPO_ROOT

    readme = " ".join((REPO_ROOT / "README.rst").read_text(encoding="utf-8").split())
    stated = re.search(r"(\d+) minutes pour les huit notebooks", readme)
    assert stated, "le README n'annonce plus la durée des notebooks sur cpu"
    cpu = durations.load_durations()
    cpu = cpu[cpu["profile"] == "cpu"]
    assert sorted(cpu["notebook"]) == [f"{n:02d}" for n in range(1, 9)]
    total = cpu["seconds"].sum() / 60
    assert abs(int(stated.group(1)) - total) <= 1, f"README : {stated.group(1)} min, mesuré : {total:.0f}"
