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


def test_output_problems_sees_warnings_and_machine_paths(outputs, monkeypatch):
    from helpers.paths import REPO_ROOT

    stream = nbformat.v4.new_output
    clean = [
        stream("stream", name="stdout", text="Écrit : outputs/cpu/assistant/latences.png\n"),
        stream("display_data", data={"text/plain": "<Figure>", "image/png": "iVBOR"}),
        stream("stream", name="stderr", text="  \n"),  # rien de lisible : pas un problème
    ]
    assert course.output_problems(clean) == []
    warned = [stream("stream", name="stderr", text="/x/site-packages/peft/tuners.py:12: UserWarning: oups\n  warn()")]
    assert course.output_problems(warned) == [
        "texte sur la sortie d'erreur : « /x/site-packages/peft/tuners.py:12: UserWarning: oups »"
    ]
    shown_path = [stream("execute_result", data={"text/plain": f"PosixPath('{outputs}/cpu/a.png')"}, execution_count=1)]
    assert course.output_problems(shown_path) == [
        f"chemin de la machine affiché : « {outputs} » (dans « PosixPath('{outputs}/cpu/a.png') »)"
    ]
    html = [stream("display_data", data={"text/html": f"<td>{REPO_ROOT}/data</td>"})]
    assert course.output_problems(html)[0].startswith(f"chemin de la machine affiché : « {REPO_ROOT} » (dans « <td>")
    monkeypatch.setattr(course, "machine_folders", lambda: ["/srv/cours", "/home/eleve"])
    lookalike = [stream("stream", name="stdout", text="/srv/cours-copie, /home/eleve2 : d'autres dossiers")]
    assert course.output_problems(lookalike) == []
    assert course.output_problems([stream("stream", name="stdout", text="dans /home/eleve.")]) != []


def test_execute_notebook_lists_what_the_student_should_not_see(tmp_path):
    path = _notebook(tmp_path, "import sys, warnings\nwarnings.warn('attention')\nprint('ok')")
    res = course.execute_notebook(path, tmp_path / "out.ipynb", timeout=120)
    assert res["status"] == "ok"
    assert len(res["shown_problems"]) == 1 and res["shown_problems"][0].startswith("cellule 0 : texte sur la sortie")


@pytest.mark.slow
def test_nbval_fails_a_cell_that_shows_a_warning_or_a_path(tmp_path):
    """Le crochet de conftest.py (racine du dépôt), tel que make test le charge avec nbval ; la
    dernière cellule passe, parce que Jupyter n'afficherait pas son résultat."""
    import subprocess
    import sys

    from helpers.paths import REPO_ROOT

    cells = [
        "print('propre')",
        "import sys\nprint('attention', file=sys.stderr)",
        "from helpers.paths import REPO_ROOT\nREPO_ROOT",
        "REPO_ROOT;  # le « ; » final : Jupyter n'affiche pas le résultat",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(nb, tmp_path / "essai.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider"]
        + ["-p", "conftest", "-q", "-rf", str(tmp_path / "essai.ipynb")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "2 passed" in run.stdout and "2 failed" in run.stdout, run.stdout[-2000:]
    assert "texte sur la sortie d'erreur : « attention »" in run.stdout
    assert f"chemin de la machine affiché : « {REPO_ROOT} »" in run.stdout


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
