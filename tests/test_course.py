"""L'exécuteur du cours (make course) : statut, copie exécutée, pic mémoire, filtres."""

import os

import nbformat
import pytest

from helpers import course


def _notebook(tmp_path, source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    path = tmp_path / "00_essai.ipynb"
    nbformat.write(nb, path)
    return path


def test_execute_notebook_ok(tmp_path, capfd):
    path = _notebook(tmp_path, "data = bytearray(50_000_000)\nprint('bonjour')")
    res = course.execute_notebook(path, tmp_path / "out.ipynb", timeout=120)
    assert res["status"] == "ok" and res["error"] == ""
    assert "without encryption" not in capfd.readouterr().err  # rien du noyau dans le terminal
    assert res["kernel_peak_rss_mb"] >= 50  # le tableau de 50 Mo est bien compté
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "bonjour" in out.cells[0].outputs[0]["text"]


def test_execute_notebook_reports_failure(tmp_path):
    path = _notebook(tmp_path, "raise ValueError('valeur inattendue')")
    res = course.execute_notebook(path, tmp_path / "out.ipynb", timeout=120)
    assert res["status"] == "échec" and "ValueError" in res["error"]
    assert (tmp_path / "out.ipynb").exists()  # la copie garde la trace de l'erreur


def test_list_notebooks_filters():
    assert [nb.name[:2] for nb in course.list_notebooks(["01"])] == ["01"]
    with pytest.raises(ValueError, match="Aucun notebook"):
        course.list_notebooks(["99"])


def test_peak_memory_of_current_process():
    with course.PeakMemory(os.getpid, interval=0.05) as mem:
        pass
    assert mem.peak_mb > 10


def test_run_summary_merges_partial_runs(outputs):
    import json

    from helpers.course import write_run_summary
    from helpers.profiles import get_profile

    profile = get_profile("smoke")

    def run(name, seconds):
        return {"notebook": name, "status": "ok", "seconds": seconds, "kernel_peak_rss_mb": 100}

    write_run_summary(profile, [run("01_a.ipynb", 1), run("02_b.ipynb", 2)], now="2026-01-01T00:00:00")
    path = write_run_summary(profile, [run("02_b.ipynb", 5)], now="2026-01-02T00:00:00")
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert [(r["notebook"], r["seconds"], r["date"]) for r in summary["notebooks"]] == [
        ("01_a.ipynb", 1, "2026-01-01T00:00:00"),
        ("02_b.ipynb", 5, "2026-01-02T00:00:00"),
    ]
    assert summary["date"] == "2026-01-02T00:00:00"
