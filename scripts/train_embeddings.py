"""Fine-tuning Matryoshka du modèle d'embeddings en ligne de commande (recette du notebook 02).

python scripts/train_embeddings.py --help
torchrun --nproc_per_node 2 scripts/train_embeddings.py --profil smoke
"""

from helpers.cli import embeddings_main

if __name__ == "__main__":
    raise SystemExit(embeddings_main())
