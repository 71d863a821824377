"""La mémoire d'un bras du notebook 06, seule : pas à exemples égaux, tableau, sonde du noyau et
erreurs du processus à part."""

import pytest

from helpers import isolated, memory
from helpers.profiles import get_profile


def test_matched_steps_cover_the_examples():
    assert isolated.matched_steps(80, 4) == 20
    assert isolated.matched_steps(81, 4) == 21
    assert isolated.matched_steps(2400, 8) == 300
    with pytest.raises(ValueError, match="positifs"):
        isolated.matched_steps(0, 4)


def test_memory_table_subtracts_the_start():
    runs = {
        "B": {
            "pas": 5,
            "rss_bibliotheques_mo": 300.4,
            "rss_modele_charge_mo": 1350.0,
            "pic_rss_premier_pas_mo": 2300,
            "pic_rss_mo": 2800,
        },
        "C": {
            "methode": "noyau, pic remis à zéro (vérifié)",
            "pas": 20,
            "rss_depart_mo": 1310.0,
            "rss_modele_charge_mo": None,
            "pic_rss_mo": 4000,
            "pic_gpu_reserve_mo": 1200,
        },
    }
    table = isolated.memory_table(runs)
    assert table.loc["B", "propre_au_bras_mo"] == 2500 and table.loc["C", "propre_au_bras_mo"] == 2690
    assert table.loc["B", "mesure"] == "processus à part" and table.loc["C", "pic_gpu_reserve_mo"] == 1200
    assert (
        table.loc["B", "chargement_mo"] == 1050 and table.loc["C", "chargement_mo"] != table.loc["C", "chargement_mo"]
    )


def test_memory_probe_sees_an_allocation_after_a_verified_reset():
    import numpy as np

    probe = memory.MemoryProbe()
    assert probe.verified  # Linux : VmHWM ramené à VmRSS
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 Mo touchés
    probe.mark("modele_charge")
    record = probe.stop(steps=1)
    del block
    assert record["methode"].endswith("(vérifié)") and record["pas"] == 1
    assert record["pic_rss_mo"] - record["rss_depart_mo"] >= 60
    assert record["rss_modele_charge_mo"] >= record["rss_depart_mo"] + 60


def test_measure_arm_reports_a_failed_child_in_french(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)Bras B en processus à part : échec \\(code 1\\).*entier positif"):
        isolated.measure_arm(get_profile("smoke"), "B", 0, tmp_path)
    with pytest.raises(ValueError, match="Bras inconnu « Z »"):
        isolated.measure_arm(get_profile("smoke"), "Z", 1, tmp_path)


def test_run_arm_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="Bras inconnu"):
        isolated.run_arm(get_profile("smoke"), "D", 1, tmp_path)
    with pytest.raises(ValueError, match="entier positif"):
        isolated.run_arm(get_profile("smoke"), "B", 0, tmp_path)
