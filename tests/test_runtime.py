import os

import pytest

from helpers import runtime


def test_hub_offline_env_means_unreachable(clean_env):
    clean_env.setenv("HF_HUB_OFFLINE", "1")
    assert runtime.hub_reachable() is False


def test_unreachable_endpoint_is_detected(clean_env):
    # Port fermé sur la boucle locale : refus immédiat, aucune requête vers l'extérieur.
    clean_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert runtime.hub_reachable(timeout=1.0) is False


def test_go_offline_sets_all_flags(clean_env):
    runtime.go_offline()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        assert os.environ[var] == "1"


def test_threads_never_exceed_cores(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        n = runtime.configure_threads(10_000)
        assert 1 <= n <= runtime.available_cores()
        assert torch.get_num_threads() == n
        assert os.environ["OMP_NUM_THREADS"] == str(n)
    finally:
        torch.set_num_threads(before)


def test_reset_peak_rss_measures_one_step():
    """Après reset, le pic suit la mémoire d'une étape et non celle du passé du processus."""
    import numpy as np

    from helpers.memory import peak_rss_mb, reset_peak_rss

    big = np.ones(400_000_000 // 8)  # 400 Mo touchés
    big_peak = peak_rss_mb()
    del big
    if not reset_peak_rss():
        import pytest

        pytest.skip("clear_refs indisponible sur ce système")
    assert peak_rss_mb() < big_peak - 300
    small = np.ones(100_000_000 // 8)
    assert peak_rss_mb() < big_peak - 200, "le pic après reset ne doit compter que la nouvelle étape"
    del small


def test_quiet_known_warnings_silences_only_the_listed_messages():
    import logging
    import warnings

    from helpers import runtime

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.quiet_known_warnings()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("`autre_chose` is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["`autre_chose` is deprecated"]
    assert logging.getLogger("bitsandbytes.backends.cpu.ops").level == logging.ERROR
    assert all(
        why
        for *_, why in runtime.KNOWN_HARMLESS_WARNINGS
        + runtime.KNOWN_HARMLESS_LOGGERS
        + runtime.KNOWN_HARMLESS_LOG_MESSAGES
    )


def test_quiet_known_warnings_drops_unsloth_path_line_but_keeps_the_logger(caplog):
    import logging

    from helpers import runtime

    runtime.quiet_known_warnings()
    runtime.quiet_known_warnings()  # deux appels (deux notebooks du même noyau) : un seul filtre
    logger = logging.getLogger("transformers.models.llama.modeling_llama")
    assert sum(isinstance(f, runtime._DropMessages) for f in logger.filters) == 1
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            logger.warning("Unsloth: Restored added_tokens_decoder metadata in /tmp/x/tokenizer_config.json.")
            logger.warning("Un autre message du modèle Llama")
    finally:
        logger.removeHandler(caplog.handler)
    assert {r.getMessage() for r in caplog.records} == {"Un autre message du modèle Llama"}


def test_checkpoints_saved_within_a_second_are_ranked_by_step_without_a_message(tmp_path, caplog):
    """transformers (version épinglée) range les checkpoints par date pour n'en garder que les
    derniers ; à dates égales, il les range par pas et l'annonce : setup_course retire cette ligne."""
    import logging
    import os

    from transformers import trainer_utils

    from helpers import runtime

    for step in (10, 2):
        (tmp_path / f"checkpoint-{step}").mkdir()
        os.utime(tmp_path / f"checkpoint-{step}", (1_000_000, 1_000_000))
    logger = logging.getLogger("transformers.trainer_utils")
    logger.addHandler(caplog.handler)
    try:
        logging.Logger.warning_once.cache_clear()  # transformers ne l'écrit qu'une fois par processus
        filters = list(logger.filters)
        for f in filters:
            logger.removeFilter(f)
        with caplog.at_level(logging.WARNING, logger=logger.name):
            trainer_utils.sort_checkpoints(str(tmp_path), use_mtime=True)
        assert any("mtime may not be reliable" in r.getMessage() for r in caplog.records)  # le message existe
        caplog.clear()
        logging.Logger.warning_once.cache_clear()
        runtime.quiet_known_warnings()
        with caplog.at_level(logging.WARNING, logger=logger.name):
            ranked = trainer_utils.sort_checkpoints(str(tmp_path), use_mtime=True)
    finally:
        logger.removeHandler(caplog.handler)
        logger.filters[:] = filters  # les filtres d'avant le test, sans celui ajouté pendant
    assert [os.path.basename(p) for p in ranked] == ["checkpoint-2", "checkpoint-10"]
    assert caplog.records == []


def test_library_messages_collects_a_warning_instead_of_printing_it(capfd):
    import logging

    from helpers import runtime

    library = logging.getLogger("transformers")
    before = (list(library.handlers), library.propagate)
    with runtime.library_messages("transformers") as said:
        logging.getLogger("transformers.generation.utils").warning("right-padding was detected!")
        logging.getLogger("transformers.generation.utils").info("détail sans importance")
    assert said == ["right-padding was detected!"]
    assert "right-padding" not in capfd.readouterr().err
    assert (list(library.handlers), library.propagate) == before  # journal rendu tel quel


def test_quiet_known_warnings_silences_torchao_syntax_warnings_only(tmp_path, monkeypatch):
    # Une SyntaxWarning de compilation porte le chemin du fichier comme module : le filtre vise le
    # dossier torchao, pas les SyntaxWarning d'un étudiant.
    import importlib
    import sys
    import warnings

    from helpers import runtime

    for package in ("torchao", "mon_code"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text('MOTIF = "\\d+"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.quiet_known_warnings()
        for package in ("torchao", "mon_code"):
            sys.modules.pop(package, None)
            importlib.import_module(package)
    category = SyntaxWarning if sys.version_info >= (3, 12) else DeprecationWarning
    sources = {
        w.filename.split("/")[-2]
        for w in caught
        if issubclass(w.category, category) and "invalid escape" in str(w.message)
    }
    assert sources == {"mon_code"}
    sys.modules.pop("torchao", None)
    sys.modules.pop("mon_code", None)


def test_tables_show_decimal_commas_but_files_keep_points(tmp_path):
    import pandas as pd

    from helpers import runtime
    from helpers.text import french_float

    assert [french_float(x) for x in (0.9021, 293.5, 1410.0, 0.000123)] == ["0,9021", "293,5", "1410", "0,000123"]
    with pd.option_context("display.float_format", None):
        runtime.french_number_display()
        table = pd.DataFrame({"ndcg": [0.902, float("nan")], "n": [3, 4]})
        assert "0,902" in repr(table) and "0,902" in table.to_html() and "NaN" in repr(table)
        table.to_csv(tmp_path / "t.csv", index=False)
        assert "0.902" in (tmp_path / "t.csv").read_text()


def test_fallback_warnings_go_through_warnings_and_show_no_path():
    import warnings

    runtime.quiet_known_warnings()
    with pytest.warns(runtime.CourseFallbackWarning, match="modèle hors ligne"):
        runtime.warn_fallback("Hub injoignable : modèle hors ligne.")
    shown = warnings.formatwarning("Hub injoignable.", runtime.CourseFallbackWarning, "/home/x/helpers/models.py", 3)
    assert shown == "Attention (repli) : Hub injoignable.\n"
    other = warnings.formatwarning("autre", UserWarning, "/tmp/a.py", 1)
    assert "/tmp/a.py" in other  # les autres avertissements gardent le format de Python


def test_the_outputs_registry_names_every_file_once(tmp_path, monkeypatch):
    """Chaque sortie a une clé ; une clé inconnue, une mauvaise extension ou une sortie absente
    donnent une erreur française qui nomme le notebook producteur."""
    import pandas as pd

    from helpers import outputs

    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path))

    path = outputs.save_table(pd.DataFrame({"a": [1]}), "cpu", "comparison/oubli.csv")
    assert path == tmp_path / "cpu" / "comparison" / "oubli.csv"
    assert outputs.load_table("cpu", "comparison/oubli.csv")["a"].tolist() == [1]
    assert outputs.lookup("data/patient_P01.png").key == "data/patient_{patient}.png"
    with pytest.raises(KeyError, match="absente du registre"):
        outputs.save_table(pd.DataFrame(), "cpu", "comparison/inconnu.csv")
    with pytest.raises(ValueError, match="extension .json"):
        outputs.save_json({}, "cpu", "comparison/oubli.csv")
    with pytest.raises(FileNotFoundError, match="exécutez d'abord le notebook 04"):
        outputs.require_output("cpu", "llm/adapter")
    outputs.output_path("cpu", "llm/adapter").mkdir()  # le dossier existe, mais pas son marqueur
    with pytest.raises(FileNotFoundError, match="Adaptateur LoRA introuvable"):
        outputs.require_output("cpu", "llm/adapter")
    assert set(outputs.reread_outputs("cpu")) == {"02", "03", "04", "05", "06", "07", "08"}


def test_output_file_names_are_written_only_in_the_registry():
    """Aucun nom de fichier de sortie du registre n'apparaît en dur ailleurs : les notebooks, le
    bilan, la documentation et make course passent par les clés (« topic/fichier »)."""
    import json
    import re

    from helpers.outputs import OUTPUTS, lookup
    from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT

    names = {key.rsplit("/", 1)[-1] for key in OUTPUTS if "{" not in key and "." in key}
    names -= {"training.json", "inference.json", "README.md"}  # aussi des noms de fichiers des bibliothèques
    sources = {p: p.read_text(encoding="utf-8") for p in (REPO_ROOT / "helpers").glob("*.py") if p.name != "outputs.py"}
    for nb in list(NOTEBOOKS_DIR.glob("*.ipynb")) + list((NOTEBOOKS_DIR / "solutions").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        sources[nb] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    offenders = []
    for path, text in sources.items():
        for name in names:
            for m in re.finditer(r"[\"']([^\"'\s]*" + re.escape(name) + r")[\"']", text):
                try:
                    lookup(m.group(1))  # la clé complète du registre : permis
                except KeyError:
                    offenders.append(f"{path.name} : {m.group(1)}")
    assert offenders == [], offenders


def test_cpu_4bit_kernel_reads_the_processor_flags(tmp_path):
    """bitsandbytes ne prend son noyau 4 bits fusionné qu'avec AVX512-BF16 (sinon : déquantification)."""
    from helpers.runtime import CPU_4BIT_KERNELS, CPU_4BIT_SHORT, cpu_4bit_kernel

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_4bit_kernel(info) == "fusionné"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert cpu_4bit_kernel(info) == "déquantifié"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n")  # ARM : pas d'AVX
    assert cpu_4bit_kernel(info) == "déquantifié"
    assert cpu_4bit_kernel(tmp_path / "absent") is None
    assert set(CPU_4BIT_KERNELS) == set(CPU_4BIT_SHORT) == {"fusionné", "déquantifié"}


def test_describe_memory_names_each_reading_in_french():
    from helpers.memory import describe_memory

    text = describe_memory({"peak_rss_mb": 1375, "peak_gpu_reserved_mb": 5234, "model_footprint_mb": 166.5})
    assert text == "pic du processus 1\u202f375 Mo ; pic GPU réservé 5\u202f234 Mo ; empreinte du modèle 166,5 Mo"
    with pytest.raises(ValueError, match="inconnue.*vram"):
        describe_memory({"vram": 1})
