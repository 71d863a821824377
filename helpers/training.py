"""Les deux entraînements du cours hors notebook : scripts, reprise, plusieurs processus.

Les notebooks 02 et 04 montrent chaque ligne de l'entraînement (c'est la leçon). Ce module
reprend **la même recette** (même perte, mêmes arguments, mêmes réglages du profil) pour :

* les scripts ``scripts/train_embeddings.py`` et ``scripts/train_qlora.py`` (voir
  :mod:`helpers.cli`), lançables avec ``python``, ``accelerate launch`` ou ``torchrun`` ;
* la reprise après interruption (``resume=True`` : dernier checkpoint du dossier de sortie) ;
* le notebook 06 (courbe d'apprentissage, :func:`train_embeddings` sans checkpoint).

Sur plusieurs processus, chacun reçoit une part différente de chaque lot global : les gradients
sont moyennés par ``DistributedDataParallel`` (NCCL sur GPU, gloo sur CPU), et les poids restent
identiques d'un processus à l'autre.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from .runtime import is_main_process, world


class TrainingInterrupted(RuntimeError):
    """Interruption volontaire (démonstration ou test de la reprise) après un checkpoint."""


def interrupt_after(step: int):
    """Rappel du ``Trainer`` qui interrompt l'entraînement juste **après** le checkpoint du pas
    ``step`` (:class:`TrainingInterrupted`).

    Simule une session Colab perdue : le processus s'arrête, le checkpoint reste sur disque, et
    un nouvel appel avec ``resume=True`` repart de là. (transformers n'est importé qu'ici : le
    moteur Unsloth doit l'être avant lui.)
    """
    from transformers import TrainerCallback

    if step < 1:
        raise ValueError(f"Pas d'interruption invalide : {step} (au moins 1).")

    class InterruptAfterStep(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= step:
                raise TrainingInterrupted(
                    f"Entraînement interrompu volontairement après le pas "
                    f"{state.global_step} (checkpoint dans {args.output_dir})."
                )
            return control

    return InterruptAfterStep()


# --------------------------------------------------------------------------- processus
def threads_per_process() -> int:
    """Threads de calcul par processus : les cœurs répartis entre les processus de la machine
    (2 cœurs et 2 processus : 1 thread chacun ; sinon la sur-souscription ralentit tout)."""
    from .runtime import available_cores

    return max(1, available_cores() // max(1, world()["local_world_size"]))


def device_args() -> dict:
    """Arguments d'appareil communs : CPU sans GPU (sans mémoire épinglée), avec gloo si plusieurs
    processus."""
    from .runtime import cuda_available

    if cuda_available():
        return {}
    args = {"use_cpu": True, "dataloader_pin_memory": False}  # épingler ne sert qu'à copier vers un GPU
    if world()["world_size"] > 1:
        args["ddp_backend"] = "gloo"
    return args


def weights_digest(model) -> str:
    """Empreinte SHA-256 des paramètres entraînables (égale d'un processus à l'autre en DDP)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def gather_digests(model) -> list[str]:
    """Les empreintes des poids de **tous** les processus (une seule s'il n'y en a qu'un)."""
    digest = weights_digest(model)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            out: list = [None] * dist.get_world_size()
            dist.all_gather_object(out, digest)
            return out
    except ImportError:
        pass
    return [digest]


def set_seed(seed: int) -> None:
    """Graine de Python, NumPy et torch, posée juste avant ``trainer.train()``."""
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def resume_checkpoint(output_dir: Path | str, resume: bool) -> str | None:
    """Dernier checkpoint de ``output_dir`` si ``resume``, sinon ``None`` ; le dit en français."""
    from .outputs import last_checkpoint

    checkpoint = last_checkpoint(Path(output_dir)) if resume else None
    if is_main_process():
        print(f"Reprise depuis {checkpoint}" if checkpoint else "Nouvel entraînement (aucun checkpoint).")
    return checkpoint


# --------------------------------------------------------------------------- embeddings
def _quiet(trainer, log: bool):
    """Sans journal demandé (``log=False``), le trainer n'imprime rien : sans barre de progression,
    transformers imprimerait chaque dictionnaire de métriques (``PrinterCallback``)."""
    if not log:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def embedding_trainer(
    profile,
    pairs,
    output_dir: Path | str,
    *,
    evaluator=None,
    max_steps: int = -1,
    save_steps: int | None = None,
    log: bool = False,
    callbacks=(),
    gather_across_devices: bool = False,
):
    """Le ``SentenceTransformerTrainer`` du notebook 02 : même modèle de départ, même perte
    (``MatryoshkaLoss`` autour de ``MultipleNegativesRankingLoss``), mêmes arguments.

    ``save_steps`` : un checkpoint tous les ``save_steps`` pas (``None`` : aucun) ;
    ``gather_across_devices`` : en multi-processus, les passages des autres processus servent
    aussi de négatifs (le lot effectif de la perte est alors le lot global).
    """
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from .embeddings import add_hard_negatives, freeze_lower_layers, freeze_word_embeddings, matryoshka_dims
    from .models import load_sentence_transformer

    cfg = profile.embedding
    if list(pairs.column_names[:2]) != ["anchor", "positive"]:
        raise ValueError(
            f"Paires d'entraînement : colonnes « anchor », « positive » attendues en tête, trouvé {pairs.column_names}."
        )
    model = load_sentence_transformer(cfg.model_id, cfg.offline_model)
    model.max_seq_length = cfg.max_seq_length
    dims = matryoshka_dims(cfg, model)  # un modèle de repli apporte ses dimensions
    if cfg.freeze_word_embeddings:
        freeze_word_embeddings(model)
    if cfg.frozen_layers:
        freeze_lower_layers(model, cfg.frozen_layers)
    if cfg.hard_negatives:  # minés par le modèle de départ, avant toute mise à jour
        pairs = add_hard_negatives(pairs, model, cfg.hard_negatives)
    if cfg.loss_mini_batch:
        base = CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=cfg.loss_mini_batch, gather_across_devices=gather_across_devices
        )
    else:
        base = MultipleNegativesRankingLoss(model, gather_across_devices=gather_across_devices)
    weights = cfg.matryoshka_weights
    if weights is not None and len(weights) != len(dims):
        raise ValueError(f"matryoshka_weights : {len(weights)} poids pour {len(dims)} dimensions {dims}.")
    loss = MatryoshkaLoss(
        model, base, matryoshka_dims=list(dims), matryoshka_weights=list(weights) if weights else None
    )
    checkpoints = (
        {"save_strategy": "no"}
        if not save_steps
        else {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1}
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts={"anchor": model.prompts["query"], "positive": model.prompts["document"]},
        logging_steps=1 if log else 10_000,
        report_to="none",
        seed=profile.seed,
        disable_tqdm=not log,
        **checkpoints,
        **device_args(),
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=pairs, loss=loss, evaluator=evaluator, callbacks=list(callbacks)
    )
    return _quiet(trainer, log)


def train_embeddings(profile, pairs, output_dir: Path | str, *, resume: bool = False, trainer=None, **kwargs) -> dict:
    """Entraîne (ou reprend, ``resume=True``) le modèle d'embeddings ; voir :func:`embedding_trainer`
    (``trainer`` : un trainer déjà construit par elle, par exemple pour évaluer la base avant).

    Renvoie ``{"model", "trainer", "seconds", "steps", "peak_rss_mb", "resumed_from"}`` ; le pic est
    celui de l'entraînement seul si le système le permet.
    """
    from .memory import peak_rss_mb, reset_peak_rss

    trainer = trainer or embedding_trainer(profile, pairs, output_dir, **kwargs)
    checkpoint = resume_checkpoint(Path(output_dir), resume)
    reset_peak_rss()
    start = time.perf_counter()
    set_seed(profile.seed)  # même ordre des exemples, qu'on reprenne ou non
    output = trainer.train(resume_from_checkpoint=checkpoint)
    return {
        "model": trainer.model,
        "trainer": trainer,
        "seconds": time.perf_counter() - start,
        "steps": output.global_step,
        "peak_rss_mb": peak_rss_mb(),
        "resumed_from": checkpoint,
    }


# --------------------------------------------------------------------------- QLoRA
def load_qlora_model(profile, backend: str):
    """Modèle de base en 4 bits (nf4) + adaptateurs LoRA, comme aux cellules des sections 4 et 6
    du notebook 04. Renvoie ``(model, tokenizer, source)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from .models import resolve_model
    from .qlora import disable_cpu_weight_packing
    from .runtime import cuda_available, torch_dtype

    cfg = profile.llm
    source, why = resolve_model(cfg.model_id, cfg.offline_model, what="modèle de langage")
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=source, max_seq_length=cfg.max_seq_length, dtype=torch_dtype(cfg.precision), load_in_4bit=True
        )
        model = FastLanguageModel.get_peft_model(
            model,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            bias="none",
            use_gradient_checkpointing="unsloth",
            random_state=profile.seed,
            **lora_layers(cfg, model),
        )
        return model, tokenizer, why
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    compute_dtype = torch_dtype(cfg.precision)
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    device_map = {"": world()["local_rank"]} if cuda_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=bnb, dtype=compute_dtype, device_map=device_map
    )
    disable_cpu_weight_packing(model)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    set_seed(profile.seed)  # initialisation aléatoire des matrices A de LoRA
    model = get_peft_model(
        model,
        LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
            **lora_layers(cfg, model),
        ),
    )
    return model, AutoTokenizer.from_pretrained(source), why


def lora_layers(cfg, model) -> dict:
    """``{"layers_to_transform": [...]}`` si le profil limite LoRA aux couches hautes
    (``cfg.lora_layers_from``), sinon ``{}`` (toutes les couches). ``model`` : le modèle (ou
    directement son nombre de couches). Erreur française si l'indice dépasse ce nombre."""
    first = cfg.lora_layers_from
    if first is None:
        return {}
    num_layers = model if isinstance(model, int) else model.config.num_hidden_layers
    if not 0 <= first < num_layers:
        raise ValueError(
            f"lora_layers_from={first} : le modèle n'a que {num_layers} couches (indices 0 à {num_layers - 1})."
        )
    return {"layers_to_transform": list(range(first, num_layers))}


def qlora_datasets(profile, tokenizer, instructions=None, task: str | None = None):
    """``(train, validation)`` au format prompt / completion du notebook 04 (section 7).

    ``instructions`` : un ``DatasetDict`` ``train`` / ``validation`` (par défaut MedAnalyzer-FR
    réduit par le profil) ; ``task`` : ``"analyte"`` (une valeur par prompt) ou ``"rapport"``.
    """
    from .data import load_instructions
    from .llm import analyte_cases, balance_statuses, check_lengths, format_prompt

    cfg = profile.llm
    task = task or cfg.task
    user_data = instructions is not None
    instructions = instructions if user_data else load_instructions(profile)
    splits = {name: instructions[name] for name in ("train", "validation")}
    if task == "rapport" and not user_data:
        from .data import with_hub_examples

        splits["train"], source = with_hub_examples(splits["train"], profile)  # comme au notebook 04
        print(source)
    if task == "analyte":
        splits = {name: analyte_cases(split, cfg.answer_format, cfg.instruction) for name, split in splits.items()}
        if cfg.balance_statuses:
            splits["train"] = balance_statuses(splits["train"], seed=profile.seed)
    eos = tokenizer.eos_token

    def to_prompt_completion(example):
        return {
            "prompt": format_prompt(example["instruction"], example["input"], cfg.prompt_style),
            "completion": example["output"] + eos,
        }

    validation = splits["validation"]
    if cfg.val_loss_examples:
        validation = validation.select(range(min(cfg.val_loss_examples, len(validation))))
    out = [
        split.map(to_prompt_completion, remove_columns=split.column_names) for split in (splits["train"], validation)
    ]
    if task == "analyte" and (cfg.drill_examples or cfg.table_drills):
        out[0] = with_drills(out[0], cfg, eos, profile.seed)
    check_lengths(out[0], tokenizer, cfg.max_seq_length)
    return out[0], out[1]


def drill_dataset(cfg, eos: str, seed: int):
    """Les exercices du profil au format prompt / completion : ``cfg.drill_examples`` comparaisons de
    ``cfg.drill_pairs`` paires (:func:`helpers.stepwise.drills`) et ``cfg.table_drills`` exercices de
    la table des signes (:func:`helpers.stepwise.digit_table_drills`)."""
    from datasets import Dataset

    from .llm import format_prompt
    from .stepwise import digit_table_drills, drills

    exercises = drills(cfg.drill_examples, seed=seed, pairs=cfg.drill_pairs) + digit_table_drills(
        cfg.table_drills, seed=seed
    )
    return Dataset.from_list(
        [
            {"prompt": format_prompt(r["instruction"], r["input"], cfg.prompt_style), "completion": r["output"] + eos}
            for r in exercises
        ]
    )


def with_drills(train, cfg, eos: str, seed: int):
    """``train`` (prompt / completion) avec les exercices de :func:`drill_dataset`, mélangés
    (graine ``seed``)."""
    from datasets import concatenate_datasets

    return concatenate_datasets([train, drill_dataset(cfg, eos, seed)]).shuffle(seed=seed)


def _saved_state_dtypes(checkpoint: str | Path | None) -> dict:
    """``{(indice du paramètre, clé): dtype}`` des états de l'optimiseur d'un checkpoint."""
    import torch

    path = Path(checkpoint) / "optimizer.pt" if checkpoint else None
    if path is None or not path.is_file():
        return {}
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return {
        (i, key): value.dtype
        for i, st in saved.get("state", {}).items()
        for key, value in st.items()
        if torch.is_tensor(value)
    }


def keep_adapter_dtype(trainer, checkpoint: str | Path | None = None):
    """Rappel qui rend une reprise de QLoRA exacte : poids LoRA et états de l'optimiseur
    retrouvent, au début de l'entraînement, le type qu'ils avaient avant l'interruption.

    ``SFTTrainer`` (TRL 1.x) passe les adaptateurs d'un modèle quantifié en bf16 (recommandation
    de l'article QLoRA). À la reprise, ``Trainer`` recharge l'adaptateur avec peft, qui le remet
    en fp32, puis l'optimiseur convertit ses états au type des poids : la suite ne serait pas
    celle d'un entraînement sans interruption (mesuré : gradients différents de 0,3 %). Le rappel
    remet chaque poids entraînable dans son type à la création du trainer, et chaque état de
    l'optimiseur dans son type enregistré dans ``checkpoint/optimizer.pt``.
    """
    from transformers import TrainerCallback

    dtypes = {name: p.dtype for name, p in trainer.model.named_parameters() if p.requires_grad}

    class KeepAdapterDtype(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            for name, p in trainer.model.named_parameters():
                if name in dtypes and p.dtype != dtypes[name]:
                    p.data = p.data.to(dtypes[name])
            optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
            saved = _saved_state_dtypes(checkpoint)
            if optimizer is None or not saved:
                return control
            ordered = [p for group in optimizer.param_groups for p in group["params"]]
            for i, p in enumerate(ordered):
                for key, value in list(optimizer.state.get(p, {}).items()):
                    want = saved.get((i, key))
                    if want is not None and value.dtype != want:
                        optimizer.state[p][key] = value.to(want)
            return control

    return KeepAdapterDtype()


def score_completion_only_on_cpu() -> bool:
    """Sur CPU, fait calculer par TRL la tête de sortie **seulement aux positions notées** (la
    réponse), comme il le fait déjà sur GPU ; renvoie ``True`` si c'est en place.

    TRL 1.x calcule la perte sans matérialiser tous les logits (``ChunkedLogProbFunction``). Sur un
    appareil sans Triton, il projette pourtant **toutes** les positions du lot (prompt et remplissage
    compris) pour ne pas recompiler sur les accélérateurs qui compilent chaque forme de tenseur ; un
    CPU en mode eager ne compile rien. Ne projeter que les positions de la réponse donne exactement
    la même perte (les autres ont l'étiquette -100) et, pour SmolLM2 (49 152 mots de vocabulaire),
    environ 9 % de temps en moins par pas (mesuré, ``make bench-llm``). Le choix « toutes les
    positions ou seulement les notées » est lu par TRL dans ``trl.trainer.utils._use_triton`` : on
    l'étend au CPU. Version de TRL épinglée ; le test ``tests/test_training.py`` vérifie que la perte
    reste identique et avertit si TRL change.
    """
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    if current is None:
        print(
            "TRL ne choisit plus les positions notées par _use_triton : toutes les positions sont "
            "projetées (plus lent sur CPU, même perte)."
        )
        return False
    if getattr(current, "_cours_cpu", False):
        return True

    def use_compact_positions(device):
        return device.type == "cpu" or current(device)

    use_compact_positions._cours_cpu = True
    trl_utils._use_triton = use_compact_positions
    return True


def qlora_trainer(
    profile,
    model,
    tokenizer,
    train_dataset,
    eval_dataset,
    output_dir: Path | str,
    *,
    max_steps: int | None = None,
    save_steps: int | None = None,
    callbacks=(),
    log: bool = False,
):
    """Le ``SFTTrainer`` du notebook 04 (mêmes ``SFTConfig``), avec checkpoints si ``save_steps``."""
    from trl import SFTConfig, SFTTrainer

    from .runtime import cuda_available

    cfg = profile.llm
    if not cuda_available():
        score_completion_only_on_cpu()
    checkpoints = (
        {"save_strategy": "no"}
        if not save_steps
        else {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1}
    )
    args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if max_steps is None else max_steps,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        optim=cfg.optim,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        # Sans remplissage, trl ne tronque plus : qlora_datasets a déjà vérifié les longueurs.
        padding_free=cfg.padding_free,
        max_length=None if cfg.padding_free else cfg.max_seq_length,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        # trl 1.x l'active par défaut : utile sur GPU (mémoire des activations), ~40 % de temps en
        # plus par pas et aucun gain sur CPU (exercice 3 du notebook 04)
        activation_checkpointing=cuda_available(),
        per_device_eval_batch_size=cfg.eval_batch_size,
        eval_strategy="no",
        logging_steps=1 if log else 10,
        disable_tqdm=not log,
        report_to="none",
        seed=profile.seed,
        **checkpoints,
        **device_args(),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    if cfg.precision != "bf16":  # fp16 (GradScaler) ou fp32 (CPU) : adaptateurs en fp32 (TRL les a mis en bf16)
        from .llm import upcast_adapters

        upcast_adapters(trainer.model)
    return _quiet(trainer, log)


def train_qlora(
    profile,
    output_dir: Path | str,
    *,
    backend: str = "bitsandbytes",
    instructions=None,
    task: str | None = None,
    resume: bool = False,
    evaluate: bool = True,
    **kwargs,
) -> dict:
    """Charge, entraîne (ou reprend) et évalue le QLoRA ; voir :func:`qlora_trainer`.

    Renvoie ``{"model", "tokenizer", "trainer", "seconds", "steps", "peak_rss_mb", "resumed_from",
    "eval_loss_base", "eval_loss_finetuned", "source", "train_examples"}``.
    Les deux pertes de validation sont mesurées après l'entraînement, celle de la base avec
    l'adaptateur désactivé (même valeur qu'avant, les matrices B de LoRA partant de zéro).
    """
    from .memory import peak_rss_mb, reset_peak_rss

    reset_peak_rss()
    model, tokenizer, source = load_qlora_model(profile, backend)
    train_dataset, eval_dataset = qlora_datasets(profile, tokenizer, instructions, task)
    trainer = qlora_trainer(profile, model, tokenizer, train_dataset, eval_dataset, output_dir, **kwargs)
    checkpoint = resume_checkpoint(Path(output_dir), resume)
    trainer.add_callback(keep_adapter_dtype(trainer, checkpoint))
    # Graine posée juste avant train() : l'ordre des exemples ne dépend pas de ce qui précède,
    # et une reprise retrouve l'ordre de l'entraînement interrompu.
    set_seed(profile.seed)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    base_loss = final_loss = None
    if evaluate:
        # La perte du modèle de base est mesurée *après* l'entraînement, adaptateur désactivé :
        # sous DDP, un trainer.evaluate() avant train() laisse le modèle hors de
        # DistributedDataParallel et chaque processus entraîne alors sa propre copie (mesuré).
        final_loss = trainer.evaluate()["eval_loss"]
        with trainer.model.disable_adapter():
            base_loss = trainer.evaluate()["eval_loss"]
    return {
        "model": trainer.model,
        "tokenizer": tokenizer,
        "trainer": trainer,
        "seconds": seconds,
        "steps": output.global_step,
        "peak_rss_mb": peak_rss_mb(),
        "resumed_from": checkpoint,
        "eval_loss_base": base_loss,
        "eval_loss_finetuned": final_loss,
        "source": source,
        "train_examples": len(train_dataset),
    }
