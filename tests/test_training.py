"""Entraînements hors notebook (helpers.training, helpers.cli) : reprise exacte après interruption,
deux processus gloo avec torchrun, replis du moteur QLoRA. Profil smoke."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import training
from helpers.paths import REPO_ROOT


class StepCounter:
    """Compte les pas réellement exécutés dans *cet* appel à train()."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Counter(TrainerCallback):
            steps = 0

            def on_step_end(self, args, state, control, **kwargs):
                self.steps += 1

        return _Counter()


# --------------------------------------------------------------------------- reprise : embeddings
def test_embedding_resume_gives_the_uninterrupted_weights(smoke, tmp_path):
    from helpers.data import load_retrieval
    from helpers.embeddings import training_pairs

    retrieval = load_retrieval(smoke)
    pairs = training_pairs(retrieval["train"], retrieval["corpus"])
    straight = training.train_embeddings(smoke, pairs, tmp_path / "a", save_steps=2)
    assert straight["steps"] == 4

    with pytest.raises(training.TrainingInterrupted, match="après le pas 2"):
        training.train_embeddings(smoke, pairs, tmp_path / "b", save_steps=2, callbacks=[training.interrupt_after(2)])
    assert (tmp_path / "b" / "checkpoint-2").is_dir()
    counter = StepCounter()
    resumed = training.train_embeddings(smoke, pairs, tmp_path / "b", save_steps=2, resume=True, callbacks=[counter])
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert counter.steps == 2, "la reprise doit exécuter les 2 pas restants, pas tout refaire"
    assert resumed["steps"] == 4
    assert training.weights_digest(resumed["model"]) == training.weights_digest(straight["model"])


# --------------------------------------------------------------------------- reprise : QLoRA
def _qlora(profile, out, **kwargs):
    return training.train_qlora(profile, out, max_steps=4, save_steps=2, **kwargs)


def test_qlora_resume_gives_the_uninterrupted_adapter(smoke, tmp_path):
    assert smoke.llm.optim == "adamw_8bit"  # l'optimiseur 8 bits de la recette
    straight = _qlora(smoke, tmp_path / "a")
    with pytest.raises(training.TrainingInterrupted):
        _qlora(smoke, tmp_path / "b", callbacks=[training.interrupt_after(2)], evaluate=False)
    counter = StepCounter()
    resumed = _qlora(smoke, tmp_path / "b", resume=True, callbacks=[counter])
    assert counter.steps == 2 and resumed["steps"] == 4
    assert training.weights_digest(resumed["model"]) == training.weights_digest(straight["model"])
    assert resumed["eval_loss_finetuned"] == pytest.approx(straight["eval_loss_finetuned"], abs=1e-6)
    # la perte de base, mesurée adaptateur désactivé, est la même pour les deux
    assert resumed["eval_loss_base"] == pytest.approx(straight["eval_loss_base"], abs=1e-6)


def test_qlora_resume_differs_without_the_dtype_callback(smoke, tmp_path, monkeypatch):
    """Preuve que le test précédent peut échouer : sur un GPU bf16, TRL laisse les adaptateurs en
    bf16 (le cours ne les remet en fp32 qu'en fp16 et fp32) ; sans keep_adapter_dtype, l'adaptateur
    rechargé en fp32 par peft ne suit plus le même chemin que l'entraînement d'une traite."""
    from transformers import TrainerCallback

    from helpers import llm

    monkeypatch.setattr(llm, "upcast_adapters", lambda model: 0)  # adaptateurs bf16, comme sur GPU bf16
    straight = _qlora(smoke, tmp_path / "a", evaluate=False)
    monkeypatch.setattr(training, "keep_adapter_dtype", lambda trainer, checkpoint=None: TrainerCallback())
    with pytest.raises(training.TrainingInterrupted):
        _qlora(smoke, tmp_path / "b", callbacks=[training.interrupt_after(2)], evaluate=False)
    resumed = _qlora(smoke, tmp_path / "b", resume=True, evaluate=False)
    assert training.weights_digest(resumed["model"]) != training.weights_digest(straight["model"])


def test_interrupt_after_refuses_step_zero():
    with pytest.raises(ValueError, match="au moins 1"):
        training.interrupt_after(0)


# --------------------------------------------------------------------------- CLI
def test_qlora_cli_interrupt_then_resume_on_your_own_results(smoke, tmp_path, capsys):
    """Le script QLoRA sur un fichier de résultats utilisateur : coupure (code 3, checkpoint
    gardé), puis --reprendre (adaptateur en safetensors, résumé, checkpoints effacés)."""
    from helpers import cli

    results = tmp_path / "mes_resultats.csv"
    lines = ["patient_id,sexe,age,analyte,valeur,unite"]
    for i in range(6):
        lines += [
            f"P{i},femme,{30 + i},Hémoglobine,\"{10.5 + i * 0.8:.1f}\",g/dL",
            f"P{i},femme,{30 + i},TSH,{0.2 + i * 1.1:.1f},mUI/L",
        ]
    results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "sortie"
    base = [
        "--profil",
        "smoke",
        "--sortie",
        str(out),
        "--donnees",
        str(results),
        "--pas-max",
        "3",
        "--sauver-tous",
        "1",
    ]
    assert cli.qlora_main(base + ["--interrompre-apres", "2"]) == cli.EXIT_INTERRUPTED
    assert "--reprendre" in capsys.readouterr().err
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    assert cli.qlora_main(base + ["--reprendre"]) == 0
    summary = json.loads((out / "resume_entrainement.json").read_text(encoding="utf-8"))
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["steps"] == 3
    assert summary["tache"] == "analyte" and summary["donnees"] == str(results)
    assert summary["train_examples"] > 0 and "pas un avis médical" in summary["avertissement"]
    assert (out / "adaptateur" / "adapter_model.safetensors").is_file()
    assert not (out / "checkpoints").exists()


@pytest.mark.integration
def test_embeddings_cli_with_two_gloo_processes(tmp_path):
    """torchrun lance 2 processus CPU (gloo) : chacun voit la moitié de chaque lot global, les
    gradients sont moyennés, et les poids finaux sont identiques d'un processus à l'autre."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_PROFILE": "smoke", "PYTHONPATH": str(REPO_ROOT)}
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(REPO_ROOT / "scripts" / "train_embeddings.py"),
            "--profil",
            "smoke",
            "--sortie",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "resume_entrainement.json").read_text(encoding="utf-8"))
    assert summary["processus"] == 2 and summary["global_batch"] == 2 * summary["per_process_batch"]
    # 32 paires, lots globaux de 16 : 2 pas (un seul processus en ferait 4)
    assert summary["steps"] == -(-summary["train_pairs"] // summary["global_batch"]) == 2
    digests = summary["empreintes_poids_par_processus"]
    assert len(digests) == 2 and digests[0] == digests[1], "poids différents entre processus : pas de DDP"
    assert digests[0] != summary["empreinte_poids_depart"], "l'entraînement n'a rien changé"
    for scores in (summary["validation_base"], summary["validation_finetune"]):
        assert 0.0 < scores["validation_dim384_ndcg@10"] <= 1.0
    assert (out / "modele" / "model.safetensors").is_file()
    assert not (out / "checkpoints").exists()


# --------------------------------------------------------------------------- moteur du QLoRA
def test_multi_process_auto_backend_is_bitsandbytes(monkeypatch):
    from helpers.profiles import get_profile
    from helpers.runtime import select_backend

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg, module = select_backend(get_profile("gpu").llm, "auto")
    assert cfg.backend == "bitsandbytes" and module is None
    with pytest.raises(ValueError, match="Moteur inconnu"):
        select_backend(get_profile("gpu").llm, "deepspeed")
    cfg, _ = select_backend(get_profile("gpu").llm, "bitsandbytes")
    assert cfg.backend == "bitsandbytes"


def test_world_and_threads_follow_torchrun_variables(monkeypatch):
    from helpers import runtime

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runtime.world() == {"rank": 1, "local_rank": 1, "world_size": 2, "local_world_size": 2}
    assert not runtime.is_main_process()
    assert training.threads_per_process() == max(1, runtime.available_cores() // 2)
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    assert training.device_args() == {"use_cpu": True, "dataloader_pin_memory": False, "ddp_backend": "gloo"}


def test_qlora_datasets_keep_the_notebook_format(smoke):
    from transformers import AutoTokenizer

    from helpers.models import model_path

    tokenizer = AutoTokenizer.from_pretrained(model_path(smoke.llm.offline_model))
    train, val = training.qlora_datasets(smoke, tokenizer)
    assert train.column_names == ["prompt", "completion"] == val.column_names
    assert train[0]["completion"].endswith(tokenizer.eos_token)
    assert train[0]["prompt"].endswith("### Response:\n")
    too_short = replace(smoke, llm=replace(smoke.llm, max_seq_length=8))
    with pytest.raises(ValueError, match="max_length"):
        training.qlora_datasets(too_short, tokenizer)


# --------------------------------------------------------------------------- économies de calcul sur CPU
def _eval_loss(profile, out):
    """Perte de validation du modèle smoke (LoRA neuf), et nombre de positions projetées par la tête."""
    from trl.kernels import ChunkedLogProbFunction

    model, tokenizer, _ = training.load_qlora_model(profile, "bitsandbytes")
    train, val = training.qlora_datasets(profile, tokenizer)
    trainer = training.qlora_trainer(profile, model, tokenizer, train, val, out)
    seen = []
    original = ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        seen.append(hidden.shape[0])
        return original(hidden, *args)

    ChunkedLogProbFunction.apply = spy
    try:
        loss = trainer.evaluate()["eval_loss"]
    finally:
        ChunkedLogProbFunction.apply = original
    return loss, sum(seen)


def test_scoring_only_the_completion_on_cpu_keeps_the_loss(smoke, tmp_path, monkeypatch):
    import trl.trainer.utils as trl_utils

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL tel quel sur CPU
    monkeypatch.setattr(training, "score_completion_only_on_cpu", lambda: False)
    full, full_positions = _eval_loss(smoke, tmp_path / "a")
    monkeypatch.undo()
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    assert training.score_completion_only_on_cpu() is True
    compact, compact_positions = _eval_loss(smoke, tmp_path / "b")
    assert compact == pytest.approx(full, rel=1e-5)
    assert compact_positions < full_positions / 2  # prompts et remplissage ne sont plus projetés


def test_padding_free_batches_keep_the_loss_without_padding(smoke, tmp_path):
    padded, padded_positions = _eval_loss(replace(smoke, llm=replace(smoke.llm, padding_free=False)), tmp_path / "a")
    free_profile = replace(smoke, llm=replace(smoke.llm, padding_free=True))
    free, free_positions = _eval_loss(free_profile, tmp_path / "b")
    # Exemples mis bout à bout : même perte (masque par blocs de transformers), sans jeton de remplissage.
    assert free == pytest.approx(padded, rel=1e-4)
    assert free_positions == padded_positions  # seules les positions de réponse sont projetées, dans les deux cas


def test_lora_on_the_upper_layers_only(smoke):
    from helpers.memory import lora_parameters

    upper = replace(smoke, llm=replace(smoke.llm, lora_layers_from=1))
    model, _, _ = training.load_qlora_model(upper, "bitsandbytes")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.1." in name for name in trainable)
    from transformers import AutoModelForCausalLM

    from helpers.models import model_path

    base = AutoModelForCausalLM.from_pretrained(model_path(smoke.llm.offline_model))
    expected = lora_parameters(base, smoke.llm.lora_r, smoke.llm.target_modules, first_layer=1)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert expected == lora_parameters(base, smoke.llm.lora_r, smoke.llm.target_modules) / 2  # 1 bloc sur 2
    assert training.lora_layers(smoke.llm, 2) == {}
    with pytest.raises(ValueError, match="que 2 couches"):
        training.lora_layers(replace(smoke.llm, lora_layers_from=2), 2)


def test_qlora_training_does_not_recompute_activations_on_cpu(smoke, tmp_path):
    # trl 1.x active le gradient checkpointing par défaut (SFTConfig) : sur CPU, il ne fait que
    # recalculer les activations (≈ 40 % de temps en plus par pas, exercice 3 du notebook 04).
    from transformers import TrainerCallback

    model, tokenizer, _ = training.load_qlora_model(smoke, "bitsandbytes")
    train, val = training.qlora_datasets(smoke, tokenizer)
    seen = []

    class Spy(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            seen.append(model.get_base_model().model.gradient_checkpointing)

    trainer = training.qlora_trainer(smoke, model, tokenizer, train, val, tmp_path, max_steps=1, callbacks=[Spy()])
    assert trainer.args.activation_checkpointing is False
    trainer.train()
    assert seen == [False]


def test_trainers_print_nothing_without_a_journal(smoke, tmp_path):
    from transformers.trainer_callback import PrinterCallback

    model, tokenizer, _ = training.load_qlora_model(smoke, "bitsandbytes")
    train, val = training.qlora_datasets(smoke, tokenizer)
    quiet = training.qlora_trainer(smoke, model, tokenizer, train, val, tmp_path / "a")
    loud = training.qlora_trainer(smoke, model, tokenizer, train, val, tmp_path / "b", log=True)
    assert not any(isinstance(c, PrinterCallback) for c in quiet.callback_handler.callbacks)
    assert quiet.args.disable_tqdm is True  # ni barre ni dictionnaires : rien n'est imprimé
    assert loud.args.disable_tqdm is False
