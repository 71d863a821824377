"""Le code Python d'une cellule de notebook, pour les tests qui la lisent avec ``ast``."""

import re

_COMMAND = re.compile(r"^(\s*)[!%].*$", re.M)


def python_code(source: str) -> str:
    """``source`` sans ses commandes Jupyter (``!git …``, ``%cd …``, celles des cellules Colab) : chacune
    devient ``pass`` à la même indentation. ``ast`` peut alors lire la cellule, les numéros de ligne ne
    bougent pas et un bloc ``if`` qui ne contenait que des commandes reste valide."""
    return _COMMAND.sub(r"\1pass", source)
