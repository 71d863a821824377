"""Les analytes du bilan sanguin : valeurs de référence, statut d'une valeur, accords en français.

Sources : ``data/reference/analytes_fr.csv`` (valeurs de référence et interprétations, avec
leurs sources publiques et les corrections de la revue) et ``data/reference/analytes_details_fr.csv``
(rôle, conditions de prélèvement, suivi, synonymes, rédigés pour le cours).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from .paths import REFERENCE_DIR

STATUSES = ("bas", "normal", "élevé")
SEXES = ("homme", "femme")

_REF_COLUMNS = (
    "code",
    "nom_fr",
    "famille",
    "unite",
    "min_homme",
    "max_homme",
    "min_femme",
    "max_femme",
    "interpretation_haute",
    "interpretation_basse",
    "source",
)
_DETAIL_COLUMNS = (
    "code",
    "nom_court",
    "article",
    "genre",
    "nombre",
    "abreviation",
    "synonymes",
    "mots_courants",
    "role",
    "prelevement",
    "suivi",
    "decimales",
    "plausible_min",
    "plausible_max",
)


class ReferenceDataError(ValueError):
    """Fichier de référence des analytes invalide (message en français, fichier/ligne/colonne)."""


@dataclass(frozen=True)
class Analyte:
    """Un analyte, ses bornes de référence par sexe et de quoi en parler correctement en français."""

    code: str
    nom: str
    nom_court: str
    famille: str
    unite: str
    bornes: dict  #: {"homme": (min, max), "femme": (min, max)} ; None = pas de borne
    interpretation_haute: str
    interpretation_basse: str
    source: str
    article: str  #: "l'", "le", "la" ou "les"
    genre: str  #: "m" ou "f"
    nombre: str  #: "s" ou "p"
    abreviation: str
    synonymes: tuple[str, ...]
    mots_courants: tuple[str, ...]
    role: str
    prelevement: str
    suivi: str
    decimales: int
    plausible: tuple[float, float]

    # ------------------------------------------------------------------ valeurs
    def bounds(self, sexe: str) -> tuple[float | None, float | None]:
        """Bornes (min, max) de référence pour ``sexe`` (« homme » ou « femme »)."""
        if sexe not in SEXES:
            raise ValueError(f"Sexe inconnu : « {sexe} » (attendu : homme ou femme).")
        return self.bornes[sexe]

    def status(self, value: float, sexe: str) -> str:
        """« bas », « normal » ou « élevé » ; les bornes elles-mêmes sont normales."""
        if not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"{self.code} : valeur non numérique {value!r}.")
        lo, hi = self.bounds(sexe)
        if lo is not None and value < lo:
            return "bas"
        if hi is not None and value > hi:
            return "élevé"
        return "normal"

    def possible_statuses(self, sexe: str) -> tuple[str, ...]:
        """Statuts possibles : pas de « bas » sans borne basse, pas d'« élevé » sans borne haute."""
        lo, hi = self.bounds(sexe)
        return tuple(s for s in STATUSES if not (s == "bas" and lo is None) and not (s == "élevé" and hi is None))

    def fmt(self, value: float) -> str:
        """Valeur écrite à la française, avec le nombre de décimales de l'analyte (« 10,9 »)."""
        return fmt_number(value, self.decimales)

    def range_text(self, sexe: str) -> str:
        """Intervalle de référence en toutes lettres : « 12 à 16 g/dL », « < 5 mg/L »…"""
        lo, hi = self.bounds(sexe)
        return range_text(lo, hi, self.unite)

    def reference_sentence(self) -> str:
        """Les intervalles des deux sexes en une phrase."""
        if self.bornes["homme"] == self.bornes["femme"]:
            return f"{self.range_text('homme')}, chez l'homme comme chez la femme"
        return f"homme : {self.range_text('homme')} ; femme : {self.range_text('femme')}"

    # ------------------------------------------------------------------ grammaire
    @property
    def titre(self) -> str:
        """Nom court avec une majuscule initiale : « Hémoglobine », « TSH »."""
        return self.nom_court[:1].upper() + self.nom_court[1:]

    def result_line(self, value: float) -> str:
        """Une ligne de compte rendu, sans statut : « Ferritine : 8 µg/L »."""
        return f"{self.titre} : {self.fmt(value)} {self.unite}"

    @property
    def le(self) -> str:
        """« l'hémoglobine », « le sodium », « les plaquettes »."""
        return f"{self.article}{self.nom_court}" if self.article == "l'" else f"{self.article} {self.nom_court}"

    @property
    def du(self) -> str:
        """« de l'hémoglobine », « du sodium », « de la CRP », « des plaquettes »."""
        return {"l'": "de l'", "le": "du ", "la": "de la ", "les": "des "}[self.article] + self.nom_court

    @property
    def mon(self) -> str:
        """« mon hémoglobine », « ma CRP », « mes plaquettes »."""
        if self.nombre == "p":
            return f"mes {self.nom_court}"
        if self.genre == "f" and self.article != "l'":
            return f"ma {self.nom_court}"
        return f"mon {self.nom_court}"

    @property
    def un(self) -> str:
        """« une hémoglobine », « un sodium », « des plaquettes »."""
        if self.nombre == "p":
            return f"des {self.nom_court}"
        return f"{'une' if self.genre == 'f' else 'un'} {self.nom_court}"

    @property
    def est(self) -> str:
        """« est » ou « sont » selon le nombre."""
        return "sont" if self.nombre == "p" else "est"

    @property
    def avoir(self) -> str:
        """« a » ou « ont » selon le nombre (« les triglycérides n'ont pas de limite basse »)."""
        return "ont" if self.nombre == "p" else "a"

    def accord(self, adjectif: str) -> str:
        """Accorde « élevé », « haut », « bas », « bon », « normal », « anormal » avec l'analyte."""
        fem, plur = self.genre == "f", self.nombre == "p"
        if adjectif == "bas":
            return ("basses" if plur else "basse") if fem else "bas"
        if adjectif == "bon":
            return ("bonne" if fem else "bon") + ("s" if plur else "")
        if adjectif in ("normal", "anormal"):
            if fem:
                return adjectif + ("es" if plur else "e")
            return adjectif[:-1] + "ux" if plur else adjectif
        return adjectif + ("e" if fem else "") + ("s" if plur else "")


def fmt_number(value: float, decimals: int) -> str:
    """Nombre à la française : virgule décimale, ``decimals`` chiffres après la virgule."""
    text = f"{value:.{decimals}f}"
    return text.replace(".", ",")


def range_text(lo: float | None, hi: float | None, unite: str) -> str:
    """Intervalle en français : « 12 à 16 g/dL », « inférieur ou égal à 5 mg/L »…"""

    def g(x: float) -> str:
        return f"{x:g}".replace(".", ",")

    if lo is not None and hi is not None:
        return f"{g(lo)} à {g(hi)} {unite}"
    if hi is not None:
        return f"≤ {g(hi)} {unite}"
    if lo is not None:
        return f"≥ {g(lo)} {unite}"
    return "pas d'intervalle défini"


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ReferenceDataError(f"{path} : encodage invalide (UTF-8 attendu) à l'octet {err.start}.") from err
    rows = list(csv.DictReader(text.splitlines()))
    missing = [c for c in required if rows and c not in rows[0]]
    if not rows or missing:
        raise ReferenceDataError(f"{path} : colonne(s) manquante(s) : {', '.join(missing) or 'fichier vide'}.")
    return rows


def _num(path: Path, line: int, column: str, raw: str) -> float | None:
    raw = raw.strip()
    if raw == "":
        return None
    try:
        return float(raw.replace(",", "."))
    except ValueError:
        raise ReferenceDataError(
            f"{path}, ligne {line}, colonne « {column} » : nombre attendu, trouvé « {raw} »."
        ) from None


@functools.lru_cache(maxsize=4)
def load_analytes(reference_dir: Path = REFERENCE_DIR) -> dict[str, Analyte]:
    """Charge les 46 analytes (dictionnaire ordonné par code, dans l'ordre du fichier)."""
    ref_path = Path(reference_dir) / "analytes_fr.csv"
    det_path = Path(reference_dir) / "analytes_details_fr.csv"
    refs = _read_csv(ref_path, _REF_COLUMNS)
    details = {r["code"]: (i, r) for i, r in enumerate(_read_csv(det_path, _DETAIL_COLUMNS), start=2)}
    analytes: dict[str, Analyte] = {}
    for line, r in enumerate(refs, start=2):
        code = r["code"].strip()
        if code in analytes:
            raise ReferenceDataError(f"{ref_path}, ligne {line}, colonne « code » : doublon « {code} ».")
        if code not in details:
            raise ReferenceDataError(
                f"{det_path} : aucune ligne pour l'analyte « {code} » (déclaré ligne {line} de {ref_path})."
            )
        dline, d = details[code]
        bornes = {
            s: (_num(ref_path, line, f"min_{s}", r[f"min_{s}"]), _num(ref_path, line, f"max_{s}", r[f"max_{s}"]))
            for s in SEXES
        }
        for s, (lo, hi) in bornes.items():
            if lo is None and hi is None:
                raise ReferenceDataError(f"{ref_path}, ligne {line} : aucune borne pour « {code} » ({s}).")
            if lo is not None and hi is not None and lo >= hi:
                raise ReferenceDataError(f"{ref_path}, ligne {line} : min ≥ max pour « {code} » ({s}).")
        pmin = _num(det_path, dline, "plausible_min", d["plausible_min"])
        pmax = _num(det_path, dline, "plausible_max", d["plausible_max"])
        if d["article"] not in ("l'", "le", "la", "les"):
            raise ReferenceDataError(
                f"{det_path}, ligne {dline}, colonne « article » : « {d['article']} » n'est pas l', le, la ou les."
            )
        analytes[code] = Analyte(
            code=code,
            nom=r["nom_fr"].strip(),
            nom_court=d["nom_court"],
            famille=r["famille"],
            unite=r["unite"],
            bornes=bornes,
            interpretation_haute=r["interpretation_haute"].strip(),
            interpretation_basse=r["interpretation_basse"].strip(),
            source=r["source"],
            article=d["article"],
            genre=d["genre"],
            nombre=d["nombre"],
            abreviation=d["abreviation"],
            synonymes=tuple(x for x in d["synonymes"].split("|") if x),
            mots_courants=tuple(x for x in d["mots_courants"].split("|") if x),
            role=d["role"],
            prelevement=d["prelevement"],
            suivi=d["suivi"],
            decimales=int(d["decimales"]),
            plausible=(pmin, pmax),
        )
    extra = sorted(set(details) - set(analytes))
    if extra:
        raise ReferenceDataError(f"{det_path} : analyte(s) sans valeurs de référence : {', '.join(extra)}.")
    return analytes


def get_analyte(code: str) -> Analyte:
    """L'analyte de code ``code`` (« HB ») ; erreur française s'il n'est pas dans le référentiel."""
    analytes = load_analytes()
    if code not in analytes:
        raise ValueError(f"Analyte inconnu dans les étiquettes : « {code} ».")
    return analytes[code]


# Variation biologique intra-individuelle (CVi) et analytique (CVa), en % : ordres de grandeur
# inspirés de la base de données EFLM de variation biologique, arrondis, à but pédagogique.
BIOLOGICAL_VARIATION = {
    "HB": (2.7, 1.5),
    "CREAT": (4.5, 3.0),
    "GLY": (5.0, 2.5),
    "LDL": (7.0, 3.0),
    "TSH": (18.0, 4.0),
    "ALAT": (10.0, 5.0),
    "FERRITINE": (10.0, 5.0),
}


def rcv_from_cv(cvi: float, cva: float, z: float = 1.96) -> float:
    """Valeur de référence du changement (RCV, en fraction) : z × √2 × √(CVa² + CVi²), CV en % ;
    ``z = 1,96`` : seuil bilatéral à 95 % (2,58 : à 99 %)."""
    if z <= 0:
        raise ValueError(f"z doit être positif (reçu {z}).")
    return z * math.sqrt(2) * math.hypot(cvi, cva) / 100


def reference_change_value(code: str) -> float:
    """RCV (fraction) d'un analyte de la vue longitudinale, depuis ses CV biologique et analytique."""
    return rcv_from_cv(*BIOLOGICAL_VARIATION[code])
