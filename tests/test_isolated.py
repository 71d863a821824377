"""Un bras du notebook 06 dans un processus à part : pas à exemples égaux, tableau, erreurs, et
arguments du bras C identiques dans le notebook et dans ``training.full_trainer``."""
import ast
import json
from pathlib import Path

import pytest

from helpers import isolated
from helpers.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent


def test_matched_steps_cover_the_examples():
    assert isolated.matched_steps(80, 4) == 20
    assert isolated.matched_steps(81, 4) == 21
    assert isolated.matched_steps(2400, 8) == 300
    with pytest.raises(ValueError, match="positifs"):
        isolated.matched_steps(0, 4)


def test_memory_table_subtracts_the_start():
    runs = {"B": {"pas": 5, "rss_bibliotheques_mo": 300.4, "rss_modele_charge_mo": 1350.0,
                  "pic_rss_premier_pas_mo": 2300, "pic_rss_mo": 2800},
            "C": {"methode": "noyau, pic remis à zéro (vérifié)", "pas": 20, "rss_depart_mo": 1310.0,
                  "rss_modele_charge_mo": None, "pic_rss_mo": 4000, "pic_gpu_reserve_mo": 1200}}
    table = isolated.memory_table(runs)
    assert table.loc["B", "propre_au_bras_mo"] == 2500 and table.loc["C", "propre_au_bras_mo"] == 2690
    assert table.loc["B", "mesure"] == "processus à part" and table.loc["C", "pic_gpu_reserve_mo"] == 1200
    assert table.loc["B", "chargement_mo"] == 1050 and table.loc["C", "chargement_mo"] != table.loc["C", "chargement_mo"]


def test_memory_probe_sees_an_allocation_after_a_verified_reset():
    import numpy as np

    probe = isolated.MemoryProbe()
    assert probe.verified  # Linux : VmHWM ramené à VmRSS
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 Mo touchés
    probe.mark("modele_charge")
    record = probe.stop(steps=1)
    del block
    assert record["methode"].endswith("(vérifié)") and record["pas"] == 1
    assert record["pic_rss_mo"] - record["rss_depart_mo"] >= 60
    assert record["rss_modele_charge_mo"] >= record["rss_depart_mo"] + 60


def test_measure_arm_reports_a_failed_child_in_french(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)Bras C en processus à part : échec \\(code 1\\).*entier positif"):
        isolated.measure_arm(get_profile("smoke"), "C", 0, tmp_path)
    with pytest.raises(ValueError, match="Bras inconnu « Z »"):
        isolated.measure_arm(get_profile("smoke"), "Z", 1, tmp_path)


def test_run_arm_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="Bras inconnu"):
        isolated.run_arm(get_profile("smoke"), "D", 1, tmp_path)
    with pytest.raises(ValueError, match="entier positif"):
        isolated.run_arm(get_profile("smoke"), "C", 0, tmp_path)


def _sftconfig_keywords(tree) -> dict[str, str]:
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "SFTConfig"]
    assert len(calls) == 1
    return {k.arg: ast.unparse(k.value) for k in calls[0].keywords}


def test_arm_c_arguments_match_between_notebook_and_helper():
    """Le bras C mesuré à part (training.full_trainer) est entraîné comme celui du notebook 06."""
    nb = json.loads((ROOT / "notebooks" / "06_embeddings_vs_modele_complet.ipynb").read_text(encoding="utf-8"))
    cell = next("".join(c["source"]) for c in nb["cells"]
                if c["cell_type"] == "code" and "SFTConfig(" in "".join(c["source"]))
    lesson = _sftconfig_keywords(ast.parse(cell))
    source = (ROOT / "helpers" / "training.py").read_text(encoding="utf-8")
    helper_fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "full_trainer")
    helper = _sftconfig_keywords(helper_fn)
    normalise = {"cmp_cfg.": "cmp.", "torch.cuda.is_available()": "cuda_available()"}
    for name in (lesson, helper):
        for key, value in name.items():
            for old, new in normalise.items():
                value = value.replace(old, new)
            name[key] = value
    allowed = {"output_dir",  # dossier de checkpoints propre à chacun
               "max_steps",  # le helper reçoit le nombre de pas de la mesure
               "disable_tqdm"}  # pas de barre de progression dans le processus à part
    assert set(lesson) - allowed == set(helper) - allowed
    differ = {k: (lesson[k], helper[k]) for k in set(lesson) - allowed if lesson[k] != helper[k]}
    assert not differ
    assert "max_steps" in lesson and "cmp.full_max_steps" in helper["max_steps"]
