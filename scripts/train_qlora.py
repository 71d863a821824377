"""Fine-tuning QLoRA du modèle de langage en ligne de commande (recette du notebook 04).

python scripts/train_qlora.py --help
accelerate launch --num_processes 2 scripts/train_qlora.py
"""

from helpers.cli import qlora_main

if __name__ == "__main__":
    raise SystemExit(qlora_main())
