"""Les versions installées sont celles épinglées, et les appels de bibliothèque du cours existent.

La dérive d'API est la première cause de notebooks cassés dans ce domaine : ces tests échouent
dès qu'une mise à jour change un argument ou un chemin de module dont le cours dépend.
"""

import importlib.metadata as md
import inspect
import re

import pytest

from helpers.paths import REPO_ROOT


def _pins(name):
    pins = {}
    for line in (REPO_ROOT / name).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==([^\s#]+)", line.strip())
        if m:
            pins[m.group(1)] = m.group(3)
    return pins


@pytest.mark.parametrize(
    "package,version", sorted({**_pins("requirements.txt"), **_pins("requirements-nodeps.txt")}.items())
)
def test_installed_version_matches_pin(package, version):
    installed = md.version(package)
    assert installed.split("+")[0] == version, f"{package} : {installed} installé, {version} épinglé"


def test_sentence_transformers_6_api():
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    params = inspect.signature(InformationRetrievalEvaluator).parameters
    for arg in ("truncate_dim", "query_prompt", "corpus_prompt", "mrr_at_k", "ndcg_at_k"):
        assert arg in params, arg
    assert "matryoshka_dims" in inspect.signature(MatryoshkaLoss).parameters
    assert "prompts" in inspect.signature(SentenceTransformerTrainingArguments).parameters
    assert MultipleNegativesRankingLoss and Normalize and Pooling and Transformer


def test_sentence_transformers_training_and_search_api():
    """Appels des notebooks 02–03 : trainer, échantillonneur, perte cachée, recherche quantifiée."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from sentence_transformers.util import cos_sim, semantic_search
    from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss

    assert BatchSamplers.NO_DUPLICATES
    assert "evaluator" in inspect.signature(SentenceTransformerTrainer).parameters
    assert "mini_batch_size" in inspect.signature(CachedMultipleNegativesRankingLoss).parameters
    assert "truncate_dim" in inspect.signature(SentenceTransformer).parameters
    for method in ("encode_query", "encode_document", "get_embedding_dimension", "save_pretrained"):
        assert hasattr(SentenceTransformer, method), method
    assert "score_function" in inspect.signature(semantic_search).parameters and cos_sim
    params = inspect.signature(semantic_search_faiss).parameters
    for arg in ("corpus_index", "corpus_precision", "rescore", "rescore_multiplier"):
        assert arg in params, arg
    assert "calibration_embeddings" in inspect.signature(quantize_embeddings).parameters
    assert hasattr(SentenceEvaluator, "store_metrics_in_model_card_data")


def test_transformers_training_arguments_accept_ratios():
    """warmup_steps / eval_steps / save_steps / logging_steps < 1 = proportion des pas (transformers 5)."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments(
        output_dir="/tmp/x",
        warmup_steps=0.1,
        eval_strategy="steps",
        eval_steps=0.5,
        save_steps=0.25,
        logging_steps=0.1,
        report_to="none",
    )
    assert args.warmup_steps == 0.1 and args.save_steps == 0.25


def test_faiss_and_scipy_api():
    import faiss
    from scipy.stats import bootstrap

    assert faiss.ScalarQuantizer.QT_8bit is not None and faiss.IndexBinaryFlat and faiss.serialize_index_binary
    params = inspect.signature(bootstrap).parameters
    assert "method" in params and "rng" in params and "confidence_level" in params


def test_quantisation_and_lora_api():
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
    assert cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
    lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    assert lora.r == 16
    assert "use_gradient_checkpointing" in inspect.signature(prepare_model_for_kbit_training).parameters
    assert get_peft_model


def test_trl_1_api():
    from trl import SFTConfig, SFTTrainer

    params = inspect.signature(SFTConfig).parameters
    assert "max_length" in params and "max_seq_length" not in params
    assert "processing_class" in inspect.signature(SFTTrainer).parameters
    # trl 1.16 active par défaut bf16 (refusé sans GPU : il faut use_cpu=True) et le gradient
    # checkpointing : sur CPU, le cours doit le couper explicitement (plus lent, cache désactivé).
    from helpers.runtime import cuda_available

    if not cuda_available():
        with pytest.raises(ValueError, match="use_cpu"):
            SFTConfig(output_dir="/tmp/x", report_to="none")
    assert SFTConfig(output_dir="/tmp/x", report_to="none", use_cpu=True).gradient_checkpointing is True


def test_sft_arguments_used_by_notebook_04_exist():
    """Chaque argument de la cellule SFTConfig du notebook 04 existe dans trl / transformers épinglés."""
    from transformers.training_args import OptimizerNames
    from trl import SFTConfig

    params = inspect.signature(SFTConfig).parameters
    used = (
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "warmup_steps",
        "lr_scheduler_type",
        "optim",
        "max_length",
        "bf16",
        "fp16",
        "use_cpu",
        "gradient_checkpointing",
        "per_device_eval_batch_size",
        "eval_strategy",
        "eval_steps",
        "logging_steps",
        "save_strategy",
        "report_to",
        "seed",
        "completion_only_loss",
    )
    assert [a for a in used if a not in params] == []
    assert "adamw_8bit" in {o.value for o in OptimizerNames} and "paged_adamw_8bit" in {o.value for o in OptimizerNames}
    args = SFTConfig(
        output_dir="/tmp/x",
        report_to="none",
        use_cpu=True,
        optim="adamw_8bit",
        warmup_steps=0.1,
        eval_strategy="steps",
        eval_steps=0.5,
        max_steps=3,
    )
    assert args.completion_only_loss in (None, True)  # None = perte sur la réponse pour prompt/completion


def test_peft_inference_and_merge_api():
    from peft import PeftModel
    from transformers import BitsAndBytesConfig, TextStreamer

    assert hasattr(PeftModel, "from_pretrained") and hasattr(PeftModel, "disable_adapter")
    from peft.tuners.lora import LoraModel

    assert hasattr(LoraModel, "merge_and_unload")  # atteint depuis PeftModel par délégation
    assert {"skip_prompt"} <= set(inspect.signature(TextStreamer).parameters)
    assert "bnb_4bit_compute_dtype" in inspect.signature(BitsAndBytesConfig).parameters


def test_bitsandbytes_8bit_optimizer_and_nf4_layer():
    import bitsandbytes as bnb

    assert hasattr(bnb.optim, "AdamW8bit") and hasattr(bnb.optim, "PagedAdamW8bit")
    assert hasattr(bnb.nn, "Linear4bit")
    import torch

    assert issubclass(bnb.nn.Linear4bit, torch.nn.Linear)  # helpers.memory.lora_parameters en dépend


def test_nbval_current_env_kernel():
    from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

    assert NbvalKernelspecManager().get_kernel_spec(CURRENT_ENV_KERNEL_NAME).argv


def test_multi_gpu_docs_rely_on_gather_across_devices():
    """docs/multi_gpu.rst cite l'option de la perte qui rassemble les négatifs de tous les GPU."""
    import inspect

    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    assert "gather_across_devices" in inspect.signature(MultipleNegativesRankingLoss.__init__).parameters


def test_package_metadata_uses_an_spdx_license_with_its_files():
    """``license`` en expression SPDX (la forme table sera refusée par setuptools en 2027) ; les
    fichiers de licence nommés existent, celui des données aussi."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 et plus
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert isinstance(project["license"], str) and re.fullmatch(r"[A-Za-z0-9.\- ]+", project["license"])
    assert project["license-files"] and all((REPO_ROOT / name).is_file() for name in project["license-files"])
    assert "CC BY 4.0" in (REPO_ROOT / "data" / "LICENSE").read_text(encoding="utf-8")
