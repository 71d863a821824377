# Cours « Fine-tuning pour l'analyse de bilans biologiques » — commandes principales.
#   make course   installe, prépare les modèles hors ligne, exécute tous les notebooks (meilleur profil)
#   make test     installe, puis lint, tests unitaires, nbval de tous les notebooks (profil smoke),
#                 tests d'intégration et documentation
#   make unit     tests unitaires rapides seulement (sans exécution complète de notebook ni torchrun)
#   make docs     construit la documentation (docs/_build/html), sans exécuter les notebooks
#   make assistant  sert la page web de l'assistant (notebook 08) sur http://127.0.0.1:7860
#   make gpu-check  contrôle hors ligne du chemin GPU (machine CUDA avec requirements-gpu.txt installé)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
# Exemple pour un portable sans roue torch CPU locale : make course PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
export MPLBACKEND ?= Agg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup course test unit lint integration notebooks models lab clean help bench-embeddings bench-llm docs assistant browser \
	docs-check gpu-check platforms

help:
	@echo "make course  — exécute tout le cours sur le meilleur profil et écrit outputs/<profil>/"
	@echo "make test    — lint, tests unitaires, nbval (profil smoke), tests d'intégration, documentation"
	@echo "make unit    — tests unitaires rapides seulement (quelques minutes)"
	@echo "make lint    — ruff check + ruff format --check (helpers, scripts, tests, notebooks)"
	@echo "make docs    — construit la documentation française dans docs/_build/html"
	@echo "make lab     — ouvre les notebooks dans JupyterLab"
	@echo "make assistant — page web locale de l'assistant (après make course) : http://127.0.0.1:7860"
	@echo "make bench-embeddings — mesure qualité et coût des notebooks 02–03 et imprime le bilan"
	@echo "make bench-llm        — mesure qualité et coût des notebooks 04–05 et imprime le bilan"
	@echo "make gpu-check        — contrôle du chemin GPU sur une machine CUDA (requirements-gpu.txt installé)"
	@echo "make platforms        — résout les versions épinglées pour macOS, Windows, Colab… (réseau vers PyPI)"

setup: $(STAMP)

# torch est épinglé dans requirements.txt et installé dans la même commande pip que le reste :
# sinon pip tirerait la dernière version CUDA de torch (plusieurs Go).
# Le bytecode est indispensable : avec PYTHONDONTWRITEBYTECODE=1, réglé sur certaines machines (celle
# où le cours est développé), chaque processus recompilerait torch et transformers à chaque import
# (mesuré : nbval 485 s au lieu de 297 s). pip le compile fichier après fichier ; compileall le fait
# sur tous les cœurs : 59 + 70 s au lieu de 162 s (2 cœurs, cache pip chaud, mesuré le 27 novembre
# 2026). Son code de sortie est ignoré : quelques fichiers de gabarits livrés dans les paquets ne
# sont pas du Python valide, et ne pas les compiler ne coûte rien.
# Python 3.11 au moins : transformers 5.23 et NumPy 2.4 n'existent pas pour 3.10 (docs : Installation).
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "Python 3.11 ou plus est requis ; $(PYTHON) est $$($(PYTHON) --version 2>&1)." >&2; \
		echo "Installez-en un (par exemple python3.12), puis : make $(MAKECMDGOALS) PYTHON=python3.12" >&2; \
		exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile $(PIP_EXTRA) -r requirements.txt
	$(PY) -m pip install -q --no-compile --no-deps -r requirements-nodeps.txt
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

models: setup
	$(PY) -m helpers.models --prepare $${COURSE_PROFILE:-cpu}

course: setup
	$(PY) -m helpers.course

# La page web de l'assistant du notebook 08, sur cette machine seulement (après make course).
assistant: setup
	$(PY) -m helpers.assistant_app

# Les versions épinglées se résolvent-elles sur macOS, Windows, Linux ARM, Colab (selon son torch) ?
# Réseau vers PyPI requis ; installe uv dans .venv s'il manque ; écrit docs/mesures/plateformes.csv.
platforms: setup
	$(PY) -m helpers.platforms

# Mesure qualité + coût des notebooks 02–03 sur le meilleur profil, puis imprime le bilan.
bench-embeddings: setup
	$(PY) -m helpers.course --only 02 03

# Mesure qualité + coût des notebooks 04–05 (QLoRA puis inférence) et imprime le bilan.
bench-llm: setup
	$(PY) -m helpers.course --only 04 05

# Dossier des résultats de l'exécution nbval (profil smoke) : le test de reproductibilité le
# compare à une seconde exécution au lieu d'exécuter deux fois les notebooks 02 et 04.
SMOKE_RUN := $(CURDIR)/.cache/smoke-run

LINT = $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
MODELS = $(PY) -m helpers.models --prepare smoke
UNIT = $(PY) -m pytest tests -m "not integration"
NBVAL_RUN = COURSE_PROFILE=smoke COURSE_OUTPUTS_DIR=$(SMOKE_RUN) \
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider
NBVAL = rm -rf $(SMOKE_RUN) && $(NBVAL_RUN) notebooks
INTEGRATION = COURSE_REFERENCE_RUN=$(SMOKE_RUN) $(PY) -m pytest tests -m integration
DOCS_CHECK = $(PY) -m sphinx -b html -q -W --keep-going -E docs docs/_build/html && \
	$(PY) -m helpers.docs --check docs/_build/html

lint: setup
	$(LINT)

unit: setup
	$(MODELS)
	$(UNIT)

notebooks: setup
	$(MODELS)
	$(NBVAL)

# Exécutions complètes : reproductibilité (contre l'exécution nbval si elle existe), torchrun, etc.
integration: setup
	$(MODELS)
	$(INTEGRATION)

# Documentation : rend les notebooks exécutés par make course s'ils existent (jamais d'exécution ici).
docs: setup
	$(PY) -m sphinx -b html -q docs docs/_build/html
	@echo "Documentation : docs/_build/html/index.html"

# Même construction, avertissements = erreurs, puis vérification des liens internes.
docs-check: setup
	$(DOCS_CHECK)

# make test : les mêmes paliers, deux à la fois sur 2 cœurs (un seul processus n'en occupe en moyenne
# qu'un et tiers : imports, démarrage des noyaux). Tests unitaires et nbval des leçons en parallèle ;
# puis les solutions, la reproductibilité (qui relit l'exécution nbval), les autres tests
# d'intégration et la documentation, deux à la fois. Un thread de calcul par palier :
# deux paliers à deux threads sur deux cœurs (sur-souscription) prenaient 1,5 à 2,4 fois plus de
# temps (mesuré). Sortie regroupée par palier.
test: setup browser
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target _test

# Le test de la page de l'assistant pilote un vrai Chromium sans écran (paquets Debian chromium et
# chromium-driver) : installés ici s'ils manquent et si l'on est root (CI) ; sinon le test le dit.
browser:
	@command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
		>/dev/null; } || echo "Chromium absent : installez chromium et chromium-driver pour le test de la page."

.PHONY: _test _lint _models _unit _lessons _solutions _integration _old_keys _integration_other _docs
_test: _solutions _integration _old_keys _integration_other _docs
_lint:
	$(LINT)
_models: _lint
	$(MODELS)
_unit: _models
	$(UNIT)
# nbval en deux temps : les leçons, puis les solutions (qui relisent les sorties des leçons). Dès
# que les leçons sont passées, la reproductibilité (qui ne relit que les notebooks 02 et 04)
# peut tourner à côté des solutions : les deux cœurs restent occupés.
_lessons: _models
	rm -rf $(SMOKE_RUN) && $(NBVAL_RUN) notebooks/*.ipynb
_solutions: _lessons
	$(NBVAL_RUN) notebooks/solutions
_integration: _lessons
	$(INTEGRATION) -k reproducibility
# Les clés des sorties : tout ce qu'a écrit nbval, leçons et solutions.
_old_keys: _solutions
	$(INTEGRATION) -k old_french_key
# Les autres tests d'intégration (torchrun, exécution d'un notebook manquant) et la documentation.
_integration_other: _unit
	$(PY) -m pytest tests -m integration -k "not reproducibility and not old_french_key"
_docs: _integration_other
	$(DOCS_CHECK)

# Chemin GPU, hors ligne, sur des doublures à poids aléatoires (voir docs/gpu.rst). Pas de
# dépendance à setup : sur une machine GPU, .venv est installé avec requirements-gpu.txt (jamais
# requirements.txt, qui prendrait torch CPU).
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m helpers.gpu_check

lab: setup
	$(PY) -m pip install -q jupyterlab==4.6.6
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf outputs .pytest_cache docs/_build docs/_generated docs/notebooks
