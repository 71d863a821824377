"""Fiche (« dataset card ») du jeu de données MedAnalyzer-FR, écrite par le générateur.

Les chiffres de la fiche sont calculés au moment de la génération : la fiche ne peut pas
diverger des fichiers qu'elle décrit.
"""

from __future__ import annotations

from collections import Counter


def _table(rows: list[tuple], header: tuple) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_card(stats: dict, analytes: dict) -> str:
    """Texte Markdown de la fiche à partir des statistiques du générateur."""
    families = Counter(a.famille for a in analytes.values())
    test_names = ", ".join(f"{analytes[c].nom} ({c})" for c in stats["test_analytes"])
    rp = stats["retrieval_pairs"]
    ins = stats["instructions"]
    test_share = round(100 * len(stats["test_analytes"]) / stats["analytes"])
    n_natural = sum(stats["natural_questions"].values())
    natural_styles = ", ".join(f"{k} ({v})" for k, v in stats["natural_styles"].items())
    max_overlap = round(100 * stats["natural_max_overlap"])
    return f"""# MedAnalyzer-FR — jeu de données synthétique et pédagogique

> **Avertissement médical.** Ce jeu de données est **synthétique** : aucun patient réel, aucune
> donnée de santé réelle. Il sert à apprendre le fine-tuning de modèles. Les interprétations
> qu'il contient sont des formulations pédagogiques simplifiées, **pas des avis médicaux**, et
> n'ont pas été validées cliniquement. Seul un professionnel de santé peut interpréter des
> résultats d'analyses, dans leur contexte.

## Provenance

* Faits de départ : `data/reference/analytes_fr.csv` — {stats['analytes']} analytes d'un bilan
  sanguin adulte français (unité, valeurs de référence par sexe, signification d'une valeur
  haute ou basse) avec, pour chaque ligne, les sources publiques d'où les chiffres ont été tirés
  et une colonne `note_revue` pour les corrections apportées lors de la revue.
* Rôle, conditions de prélèvement, suivi, synonymes : `data/reference/analytes_details_fr.csv`,
  rédigé pour ce cours.
* Génération : `python -m helpers.generate` (graine {stats['seed']}). Régénérer produit des
  fichiers identiques à l'octet près (empreintes SHA-256 dans `manifest.json`, vérifiées par les
  tests).
* Le jeu de données du hub autour duquel le cours a été conçu est en anglais et ne peut pas être
  téléchargé sur une machine hors ligne : celui-ci le remplace, en français. Un jeu du hub au
  format Alpaca peut être chargé en plus sur le profil `gpu` (`COURSE_HUB_DATASET`).

Familles d'analytes : {", ".join(f"{f} ({n})" for f, n in sorted(families.items()))}.

## Vue 1 — recherche (RAG) : `corpus.jsonl`, `retrieval_*.jsonl`

* {stats['corpus_passages']} passages : pour chaque analyte, six aspects (rôle, valeurs de
  référence, valeur élevée, valeur basse, prélèvement, suivi).
* Paires (question, passage) :

{_table([(k, v) for k, v in rp.items()] + [("total", sum(rp.values()))], ("split", "paires"))}

* Styles de questions : {", ".join(f"{k} ({v})" for k, v in stats['retrieval_styles'].items())} —
  termes cliniques, mots courants, abréviations, situations chiffrées d'un patient, fautes de
  frappe (accents perdus, lettres inversées ou oubliées), et, dans l'entraînement seulement,
  {stats.get('retrieval_described_pairs', 0)} questions qui désignent l'analyte par une description tirée de sa phrase
  « rôle » au lieu de son nom (« Faut-il être à jeun pour doser la protéine de stockage du fer ? ») :
  toutes les autres le nomment, et un modèle entraîné sur elles seules apprend surtout à repérer ce
  nom. Essayées par l'étude du notebook 02 sans gain sur la validation, elles ne servent pas par
  défaut (réglage ``described_pairs`` des profils).
* Doublons : une question identique (à la casse près) à une question déjà générée n'est pas
  gardée ; le générateur en tire une autre variante, et compte celles qu'il n'a pas pu remplacer :
  {", ".join(f"{k} {v}" for k, v in stats['retrieval_duplicates_skipped'].items()) or "aucune"}.
* `test_questions` : questions inédites sur des passages vus à l'entraînement. Les questions
  sont regroupées par (passage, gabarit) et un groupe entier part dans un seul split : aucune
  variante d'une question de test n'est dans l'entraînement.
* `test_analytes` : {len(stats['test_analytes'])} analytes ({test_share} %)
  totalement absents de l'entraînement et de la validation : {test_names}.
  Leurs passages restent dans le corpus (comme distracteurs et comme cibles).
* `validation` sert aux réglages ; les deux splits de test ne servent qu'à la mesure finale.

### Questions naturelles : `retrieval_naturel_validation.jsonl`, `retrieval_naturel_test.jsonl`

Toutes les questions ci-dessus sortent des gabarits du générateur : un modèle fine-tuné sur les
unes reconnaît la forme des autres, et les splits de test générés **surestiment** ce qu'il a
appris. Ces {n_natural} questions-ci ont été **écrites à la main** pour le cours (novembre 2026),
sans partir des gabarits, comme les poserait un patient ou un soignant pressé, puis relues une à
une contre leur passage (source : `data/reference/questions_naturelles_fr.csv`).

* Styles : {natural_styles} — mots d'un
  patient, fautes de frappe, médicament nommé par sa marque, valeur chiffrée dans la phrase,
  abréviations de clinicien, chose décrite sans son nom.
* Passages pertinents : un principal (`passage_id`), parfois un second aussi juste
  (`passages_pertinents`, ex. une valeur sous la borne : passage « valeurs de référence » et
  passage « valeur basse »).
* Aucune n'est un quasi-doublon d'une question générée : au plus {max_overlap} % de mots communs
  (indice de Jaccard, sans accents ni casse) avec la plus proche ; le générateur refuse au-delà
  de 60 %.
* Deux moitiés, coupées style par style : {", ".join(f"`{k}` {v}" for k, v in stats['natural_questions'].items())}.
  `naturel_validation` sert aux choix ; `naturel_test` n'est que mesuré.
* Limites : un seul auteur, des questions plausibles mais pas recueillies auprès de vrais
  patients ; 80 questions par moitié donnent des intervalles de confiance larges.

## Vue 2 — instructions (Alpaca) : `instructions_*.jsonl`

* {sum(ins.values())} lignes : {", ".join(f"{k} {v}" for k, v in ins.items())}.
* `instruction` : la consigne (6 formulations) ; `input` : sexe, âge, contexte du bilan et
  3 à 6 résultats avec unités (nom complet ou abréviation, virgule ou point décimal) ;
  `output` : pour chaque valeur, le statut **bas / normal / élevé** par rapport à l'intervalle
  de référence du sexe, sa signification habituelle, puis une synthèse et une recommandation
  prudente, et la mention que l'interprétation ne remplace pas un médecin.
* `labels` : pour chaque valeur, `code`, `analyte`, `valeur`, `unite` et le `statut` attendu,
  pour noter automatiquement les réponses d'un modèle.
* Statuts : {", ".join(f"{k} {v}" for k, v in stats['instruction_statuses'].items())}. Une valeur égale à une
  borne est « normal ». La recommandation « contacter rapidement » est déclenchée par un écart
  d'au moins 50 % au-delà de la borne : règle pédagogique, pas un seuil clinique.

## Vue 3 — longitudinale : `longitudinal.csv`

{stats['longitudinal_patients']} patients fictifs, 6 à 10 visites espacées de 60 à 270 jours, 7 analytes
(hémoglobine, créatinine, glycémie, LDL, TSH, ALAT, ferritine) — {stats['longitudinal_rows']} lignes.

Processus de génération, pour chaque (patient, analyte) :

1. **Point de consigne** personnel tiré dans l'intervalle de référence du sexe (15 % des séries :
   hors normes, comme une pathologie chronique) — colonne `point_consigne`.
2. **Tendance** : 12 % en hausse, 12 % en baisse, de 6 à 15 % du point de consigne par an
   (`tendance`, `pente_relative_par_an`) ; sinon stable.
3. **Variation intra-individuelle** : bruit log-normal d'écart-type relatif √(CVi² + CVa²), avec
   des coefficients de variation biologique (CVi) et analytique (CVa) de l'ordre de ceux de la
   base EFLM de variation biologique (arrondis, pédagogiques).
4. **Anomalies étiquetées** (`anomalie`) : `pic` — une visite isolée multipliée par exp(± 1,3 à 2,5 ×
   la valeur de référence du changement (RCV = 1,96 × √2 × √(CVa² + CVi²))) ; `rupture` — à partir
   d'une visite, le niveau est multiplié durablement par exp(± 1,3 à 2 RCV) (seule la visite de rupture est
   étiquetée). Décompte : {", ".join(f"{k} {v}" for k, v in stats['longitudinal_anomalies'].items())}.
5. `statut` : bas / normal / élevé de chaque valeur par rapport aux bornes du sexe.

## Limites

* Les intervalles de référence varient selon les laboratoires ; les seuils lipidiques sont des
  seuils usuels sans facteur de risque ; les cibles de vitamine D sont discutées ; grossesse et
  enfants sont hors champ.
* Les questions sont produites par gabarits : elles sont plus régulières que de vraies
  questions de patients. Les scores mesurés dessus surestiment ce qu'on obtiendrait en
  conditions réelles.

## Licence

Données synthétiques publiées sous licence CC BY 4.0 ; code du générateur sous licence MIT.
Les sources citées dans `analytes_fr.csv` restent la propriété de leurs auteurs : seuls des
faits (valeurs numériques, causes usuelles) en ont été repris.
"""
