"""Parité des recettes : les arguments d'entraînement, de LoRA et de quantification écrits dans les
cellules des notebooks 02 et 04 sont lus (``ast``) et comparés à ceux de ``helpers/training.py``
(scripts, notebook 06, études). Toute différence doit figurer dans ``ALLOWED`` avec sa raison : la
leçon et les scripts ne peuvent pas diverger en silence."""

from __future__ import annotations

import ast
import json
from dataclasses import fields

import pytest
from notebook_code import python_code

from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT

TRAINING = REPO_ROOT / "helpers" / "training.py"
NB02 = NOTEBOOKS_DIR / "02_finetuning_embeddings_matryoshka.ipynb"
NB04 = NOTEBOOKS_DIR / "04_qlora_mistral_unsloth.ipynb"

#: (notebook, appel, fonction de training.py qui doit faire le même appel). « appel:argument » :
#: parmi plusieurs appels, celui qui passe cet argument (le chargement en 4 bits, pas la fusion).
RECIPES = [
    (NB02, "MultipleNegativesRankingLoss", "embedding_trainer"),
    (NB02, "MatryoshkaLoss", "embedding_trainer"),
    (NB02, "SentenceTransformerTrainingArguments", "embedding_trainer"),
    (NB02, "load_sentence_transformer", "embedding_trainer"),
    (NB04, "BitsAndBytesConfig", "load_qlora_model"),
    (NB04, "AutoModelForCausalLM.from_pretrained:quantization_config", "load_qlora_model"),
    (NB04, "FastLanguageModel.from_pretrained", "load_qlora_model"),
    (NB04, "FastLanguageModel.get_peft_model", "load_qlora_model"),
    (NB04, "prepare_model_for_kbit_training", "load_qlora_model"),
    (NB04, "LoraConfig", "load_qlora_model"),
    (NB04, "SFTConfig", "qlora_trainer"),
    (NB04, "SFTTrainer", "qlora_trainer"),
]

#: Même valeur, écrite autrement (nom local du notebook → écriture de training.py).
SAME = {
    "base_source": "source",
    "inner_loss": "base",
    "bnb_config": "bnb",
    "compute_dtype": "torch_dtype(cfg.precision)",  # voir test_notebook_compute_dtype_is_torch_dtype
    "torch.cuda.is_available()": "cuda_available()",
    "**layers": "**lora_layers(cfg, model)",
    "train_dataset": "train_dataset",
}

#: Différences voulues : (appel, argument) → raison. Un argument absent d'un côté vaut « — ».
ALLOWED = {
    (
        "MultipleNegativesRankingLoss",
        "gather_across_devices",
    ): "scripts multi-processus (torchrun) : négatifs des autres processus ; un seul processus au notebook",
    (
        "MatryoshkaLoss",
        "matryoshka_weights",
    ): "levier d'étude ; aucun profil de leçon ne le règle (test_study_levers_keep_their_defaults)",
    ("SentenceTransformerTrainingArguments", "output_dir"): "dossier de sortie propre à chaque appelant",
    ("SentenceTransformerTrainingArguments", "max_steps"): "courbes et reprises ; -1 = les époques du profil",
    ("SentenceTransformerTrainingArguments", "dataloader_pin_memory"): "fourni par **device_args() côté scripts",
    (
        "SentenceTransformerTrainingArguments",
        "**device_args()",
    ): "use_cpu, mémoire épinglée et gloo pour torchrun ; le notebook ne règle que la mémoire épinglée",
    (
        "SentenceTransformerTrainingArguments",
        "eval_strategy",
    ): "le notebook suit la validation pendant l'entraînement ; les scripts évaluent avant et après",
    ("SentenceTransformerTrainingArguments", "eval_steps"): "idem eval_strategy",
    ("SentenceTransformerTrainingArguments", "save_strategy"): "checkpoints à la demande (save_steps)",
    ("SentenceTransformerTrainingArguments", "save_steps"): "idem save_strategy",
    ("SentenceTransformerTrainingArguments", "save_total_limit"): "idem save_strategy",
    ("SentenceTransformerTrainingArguments", "**checkpoints"): "idem save_strategy",
    ("SentenceTransformerTrainingArguments", "logging_steps"): "journal affiché au notebook, muet dans les scripts",
    ("SentenceTransformerTrainingArguments", "disable_tqdm"): "idem logging_steps",
    (
        "AutoModelForCausalLM.from_pretrained:quantization_config",
        "device_map",
    ): "torchrun : chaque processus sur son GPU (local_rank) ; le notebook n'a qu'un processus",
    ("LoraConfig", "layers_to_transform"): "même valeur, lue par lora_layers(cfg, model) dans les deux cas",
    ("LoraConfig", "**lora_layers(cfg, model)"): "idem layers_to_transform",
    ("SFTConfig", "output_dir"): "dossier de sortie propre à chaque appelant",
    ("SFTConfig", "max_steps"): "le bras B' du notebook 06 et les interruptions imposent leur nombre de pas",
    ("SFTConfig", "use_cpu"): "fourni par **device_args() côté scripts",
    ("SFTConfig", "**device_args()"): "use_cpu, mémoire épinglée et gloo pour torchrun",
    ("SFTConfig", "logging_steps"): "journal affiché au notebook, muet dans les scripts",
    ("SFTConfig", "disable_tqdm"): "idem logging_steps",
    ("SFTConfig", "save_strategy"): "checkpoints à la demande (save_steps)",
    ("SFTConfig", "save_steps"): "idem save_strategy",
    ("SFTConfig", "save_total_limit"): "idem save_strategy",
    ("SFTConfig", "**checkpoints"): "idem save_strategy",
    ("SFTTrainer", "callbacks"): "interruption et dtype des adaptateurs à la reprise (scripts)",
}


def _code_cells(path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [python_code("".join(c["source"])) for c in cells if c["cell_type"] == "code"]


def _arguments(call: ast.Call) -> dict[str, str]:
    """Arguments d'un appel : position (``#0``…), nom, ou ``**expression``, valeurs normalisées."""
    args = {f"#{i}": ast.unparse(a) for i, a in enumerate(call.args)}
    for kw in call.keywords:
        if kw.arg is None:
            splat = "**" + ast.unparse(kw.value)
            args[SAME.get(splat, splat)] = "**"
        else:
            args[kw.arg] = ast.unparse(kw.value)
    return {k: SAME.get(v, v) for k, v in args.items()}


def calls_in(tree: ast.AST, name: str) -> list[dict[str, str]]:
    """Tous les appels à ``name`` (``f`` ou ``a.f``, ``f:argument`` pour ceux qui passent cet
    argument) dans l'arbre, avec leurs arguments."""
    name, _, needed = name.partition(":")
    calls = [
        _arguments(node) for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func) == name
    ]
    return [c for c in calls if not needed or needed in c]


def notebook_calls(path, name: str) -> list[dict[str, str]]:
    return [c for src in _code_cells(path) for c in calls_in(ast.parse(src), name)]


def training_calls(function: str, name: str, source: str | None = None) -> list[dict[str, str]]:
    tree = ast.parse(source if source is not None else TRAINING.read_text(encoding="utf-8"))
    defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    assert len(defs) == 1, f"fonction {function} introuvable dans helpers/training.py"
    return calls_in(defs[0], name)


def differences(name: str, lesson: dict[str, str], script: dict[str, str]) -> dict[str, tuple]:
    """Arguments dont la valeur diffère (absent = « — ») et qui ne sont pas dans ``ALLOWED``."""
    keys = set(lesson) | set(script)
    return {
        k: (lesson.get(k, "—"), script.get(k, "—"))
        for k in sorted(keys)
        if lesson.get(k, "—") != script.get(k, "—") and (name, k) not in ALLOWED
    }


@pytest.mark.parametrize(
    "path, name, function", RECIPES, ids=[f"{p.name[:2]}-{n.split(':')[0]}" for p, n, _ in RECIPES]
)
def test_lesson_and_scripts_use_the_same_recipe(path, name, function):
    lesson, script = notebook_calls(path, name), training_calls(function, name)
    assert len(lesson) == 1, f"{path.name} : {len(lesson)} appels à {name} (1 attendu)"
    assert len(script) == 1, f"training.{function} : {len(script)} appels à {name} (1 attendu)"
    assert differences(name, lesson[0], script[0]) == {}, (
        f"{name} : le notebook {path.name[:2]} et training.{function} divergent (notebook, script). "
        "Alignez-les, ou ajoutez la différence voulue à ALLOWED avec sa raison."
    )


def test_every_allowed_difference_is_still_a_difference():
    """Une exception devenue inutile (les deux côtés sont alignés) doit être retirée de ``ALLOWED``."""
    found = set()
    for path, name, function in RECIPES:
        lesson, script = notebook_calls(path, name)[0], training_calls(function, name)[0]
        found |= {(name, k) for k in set(lesson) | set(script) if lesson.get(k, "—") != script.get(k, "—")}
    assert set(ALLOWED) <= found, f"exceptions sans objet : {sorted(set(ALLOWED) - found)}"


def test_a_changed_argument_is_caught():
    """Le contrôle échoue vraiment : un taux d'apprentissage modifié dans training.py est signalé."""
    source = TRAINING.read_text(encoding="utf-8")
    changed = source.replace("learning_rate=cfg.learning_rate", "learning_rate=2 * cfg.learning_rate")
    assert changed != source
    lesson = notebook_calls(NB04, "SFTConfig")[0]
    assert differences("SFTConfig", lesson, training_calls("qlora_trainer", "SFTConfig", changed)[0]) == {
        "learning_rate": ("cfg.learning_rate", "2 * cfg.learning_rate")
    }
    lesson = {**notebook_calls(NB02, "MatryoshkaLoss")[0], "matryoshka_dims": "[64]"}
    assert "matryoshka_dims" in differences(
        "MatryoshkaLoss", lesson, training_calls("embedding_trainer", "MatryoshkaLoss")[0]
    )


def test_study_levers_keep_their_defaults():
    """Les leviers que training.py connaît et que le notebook 02 n'écrit pas (études de la section
    « aller plus loin ») gardent leur valeur par défaut dans tous les profils de leçon : sinon les
    scripts n'entraîneraient pas le modèle de la leçon."""
    from helpers.profiles import PROFILE_NAMES, EmbeddingSettings, get_profile

    defaults = {f.name: f.default for f in fields(EmbeddingSettings)}
    for name in ("hard_negatives", "loss_mini_batch", "frozen_layers", "matryoshka_weights"):
        for profile in map(get_profile, PROFILE_NAMES):
            assert getattr(profile.embedding, name) == defaults[name], (profile.name, name)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_notebook_compute_dtype_is_torch_dtype(precision):
    """La précision de calcul écrite dans la cellule du notebook 04 est celle de ``runtime.torch_dtype``."""
    import torch

    from helpers.runtime import torch_dtype

    cell = next(src for src in _code_cells(NB04) if "compute_dtype = " in src)
    line = next(line for line in cell.splitlines() if line.startswith("compute_dtype = "))
    namespace = {"torch": torch, "cfg": type("Cfg", (), {"precision": precision})}
    exec(line, namespace)
    assert namespace["compute_dtype"] == torch_dtype(precision)
