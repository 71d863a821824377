"""Anomalies, tendances et prévisions (notebook 07) sur des séries synthétiques aux réponses connues."""

import datetime as dt
import math

import pandas as pd
import pytest

from helpers import longitudinal as lg
from helpers.analytes import BIOLOGICAL_VARIATION, reference_change_value


def series(values, code="HB", pid="P1", step_days=365.25 / 4, start=dt.date(2020, 1, 1)):
    rows = []
    for i, v in enumerate(values):
        date = start + dt.timedelta(days=round(i * step_days))
        rows.append({"patient_id": pid, "visite": i + 1, "date": date.isoformat(), "code": code, "valeur": v})
    return pd.DataFrame(rows)


def test_rcv_matches_the_generator():
    rcv = lg.reference_change_values(BIOLOGICAL_VARIATION)
    for code in BIOLOGICAL_VARIATION:
        assert rcv[code] == pytest.approx(reference_change_value(code))
    strict = lg.reference_change_values(BIOLOGICAL_VARIATION, z=2.58)  # seuil à 99 % (exercice 1)
    assert strict["HB"] == pytest.approx(rcv["HB"] * 2.58 / 1.96)
    with pytest.raises(ValueError, match="z doit être positif"):
        lg.reference_change_values(BIOLOGICAL_VARIATION, z=0)


def test_previous_baseline_flags_the_peak_and_the_return():
    df = series([100, 101, 150, 100, 99])
    flagged = lg.flag_changes(df, {"HB": 0.2}, baseline="previous")
    assert list(flagged["change_significatif"]) == [False, False, True, True, False]
    assert flagged["variation"].iloc[2] == pytest.approx(math.log(150 / 101))


def test_median_baseline_flags_only_the_peak_and_a_lasting_shift_once_then_adapts():
    peak = lg.flag_changes(series([100, 101, 150, 100, 99]), {"HB": 0.2}, baseline="median")
    assert list(peak["change_significatif"]) == [False, False, True, False, False]
    shift = lg.flag_changes(series([100, 100, 100, 160, 160, 160, 160, 160]), {"HB": 0.2}, baseline="median")
    flags = list(shift["change_significatif"])
    assert flags[3] and flags[-1] is False  # la médiane finit par rejoindre le nouveau niveau


def test_flag_changes_is_per_patient_and_analyte_and_validates():
    df = pd.concat([series([100, 100, 100], pid="P1"), series([150, 150, 150], pid="P2")])
    assert not lg.flag_changes(df, {"HB": 0.2})["change_significatif"].any()  # pas de saut P1 → P2
    with pytest.raises(ValueError, match="RCV manquante pour : HB"):
        lg.flag_changes(df, {"TSH": 0.5})
    with pytest.raises(ValueError, match="Référence inconnue"):
        lg.flag_changes(df, {"HB": 0.2}, baseline="moyenne")
    with pytest.raises(ValueError, match="Colonnes manquantes.*valeur"):
        lg.flag_changes(df.drop(columns="valeur"), {"HB": 0.2})
    bad = series([100, -1, 100], pid="P9")
    with pytest.raises(ValueError, match="patient P9, visite 2, analyte HB"):
        lg.flag_changes(bad, {"HB": 0.2})


def test_precision_recall_counts():
    flags = pd.Series([True, True, False, False, True])
    labels = pd.Series([True, False, True, False, True])
    pr = lg.precision_recall(flags, labels)
    assert (pr["true_positives"], pr["false_positives"], pr["misses"]) == (2, 1, 1)
    assert pr["precision"] == pytest.approx(2 / 3) and pr["recall"] == pytest.approx(2 / 3)
    assert pr["f1"] == pytest.approx(2 / 3)
    assert lg.precision_recall(pd.Series([False]), pd.Series([True]))["f1"] == 0.0
    with pytest.raises(ValueError, match="2 détections pour 1"):
        lg.precision_recall(pd.Series([True, False]), pd.Series([True]))


def test_slopes_recover_a_known_exponential_trend():
    up = series([100 * 1.10 ** (i / 4) for i in range(8)])  # +10 % par an, une visite par trimestre
    down = series([50 * 0.92 ** (i / 4) for i in range(8)], pid="P2")
    slopes = lg.series_slopes(pd.concat([up, down])).set_index("patient_id")["pente_relative_par_an"]
    assert slopes["P1"] == pytest.approx(0.10, abs=2e-3)
    assert slopes["P2"] == pytest.approx(-0.08, abs=2e-3)
    with pytest.raises(ValueError, match="il en faut au moins 3"):
        lg.series_slopes(series([1.0, 2.0]))


def test_forecasts_on_known_series():
    linear = series([10.0, 12.0, 14.0, 16.0, 18.0], step_days=100)
    f = lg.forecast_last_visit(linear, alpha=0.5).iloc[0]
    assert f["observe"] == 18.0 and f["last_value"] == 16.0
    assert f["linear_trend"] == pytest.approx(18.0) and f["ae_linear_trend"] == pytest.approx(0.0, abs=1e-9)
    expected_ewm = pd.Series([10.0, 12.0, 14.0, 16.0]).ewm(alpha=0.5).mean().iloc[-1]
    assert f["exponential_smoothing"] == pytest.approx(expected_ewm)
    assert f["ae_last_value"] == pytest.approx(2.0)
    flat = lg.forecast_last_visit(series([5.0] * 6, pid="P2")).iloc[0]
    assert flat[["ae_last_value", "ae_linear_trend", "ae_exponential_smoothing"]].max() == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="alpha"):
        lg.forecast_last_visit(linear, alpha=0)


def test_forecast_mae_is_relative_by_default():
    f = lg.forecast_last_visit(series([10.0, 12.0, 14.0, 16.0, 18.0], step_days=100))
    mae = lg.forecast_mae(f)
    assert mae.loc["HB", "last_value"] == pytest.approx(100 * 2 / 18)
    assert lg.forecast_mae(f, relative=False).loc["HB", "last_value"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="ae_"):
        lg.forecast_mae(f.drop(columns=[c for c in f.columns if c.startswith("ae_")]))


def test_plots_show_flags_labels_and_methods():
    import matplotlib

    matplotlib.use("Agg")
    df = series([100, 101, 150, 100, 99])
    df["anomalie"] = ["", "", "pic", "", ""]
    df["unite"] = "g/dL"
    flagged = lg.flag_changes(df, {"HB": 0.2}, baseline="median")
    fig = lg.plot_series(flagged, "P1", "HB", bounds=(90, 140))
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["valeur", "bornes de référence", "changement > RCV", "anomalie étiquetée"]
    assert len(ax.collections[0].get_offsets()) == 1  # un seul changement signalé
    with pytest.raises(ValueError, match="patient P2 et l'analyte HB"):
        lg.plot_series(flagged, "P2", "HB")
    mae = lg.forecast_mae(lg.forecast_last_visit(pd.concat([df, series([5.0, 6, 7, 8], code="TSH")])))
    fig = lg.plot_forecast_mae(mae)
    assert len(fig.axes[0].patches) == mae.size


def test_plot_slopes_draws_one_group_per_trend():
    import matplotlib

    matplotlib.use("Agg")
    up = series([100 * 1.10 ** (i / 4) for i in range(8)])
    flat = series([100.0] * 8, pid="P2")
    slopes = lg.series_slopes(pd.concat([up, flat]))
    slopes["pente_vraie"] = [0.10, 0.0]
    slopes["tendance"] = ["hausse", "stable"]
    fig = lg.plot_slopes(slopes)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["hausse", "stable"]
    with pytest.raises(ValueError, match="pente_vraie"):
        lg.plot_slopes(slopes.drop(columns="pente_vraie"))


def test_labelled_anomalies_accepts_empty_strings_and_nan():
    df = pd.DataFrame({"anomalie": ["", None, "pic", float("nan"), "rupture", " "]})
    assert list(lg.labelled_anomalies(df)) == [False, False, True, False, True, False]
    with pytest.raises(ValueError, match="anomalie"):
        lg.labelled_anomalies(pd.DataFrame({"x": [1]}))


def _peak_and_trend_series():
    rows = []
    for pid, trend, values, labels in (
        ("p1", "stable", [10.0, 10.1, 20.0, 10.0, 10.1], ["", "", "pic", "", ""]),
        ("p2", "hausse", [10.0, 13.0, 16.9], ["", "", ""]),
    ):
        for v, (value, label) in enumerate(zip(values, labels)):
            rows.append(
                {
                    "patient_id": pid,
                    "code": "HB",
                    "visite": v + 1,
                    "date": f"2020-0{v + 1}-01",
                    "valeur": value,
                    "sexe": "F",
                    "anomalie": label,
                    "tendance": trend,
                }
            )
    df = pd.DataFrame(rows)
    df["date"] = pd.to_datetime(df["date"])
    return df


def test_false_alarm_sources_find_the_visit_after_a_peak():
    df = _peak_and_trend_series()
    table = lg.false_alarm_sources(lg.flag_changes(df, {"HB": 0.1}))
    assert table.loc["visite après un pic", "fausses_alertes"] == 1  # 20 → 10 : le retour est signalé
    assert table.loc["série avec tendance", "fausses_alertes"] == 2  # +30 % à chaque visite
    assert table.loc["série stable", "fausses_alertes"] == 0
    assert table.loc["total", "comparaisons"] == 5  # 4 + 2 comparaisons, moins la visite du pic (étiquetée)
    with pytest.raises(ValueError, match="tendance"):
        lg.false_alarm_sources(lg.flag_changes(df.drop(columns="tendance"), {"HB": 0.1}))


def test_the_median_forgets_the_peak_but_lags_behind_a_trend():
    table = lg.false_alarms_by_baseline(_peak_and_trend_series(), {"HB": 0.1})
    assert list(table.columns) == [
        ("", "comparaisons"),
        ("previous", "fausses_alertes"),
        ("previous", "taux"),
        ("median", "fausses_alertes"),
        ("median", "taux"),
    ]
    # après le pic (10 ; 10,1 ; 20 → 10) : médiane des visites passées 10,1, pas d'alerte
    assert table.loc["visite après un pic", ("previous", "fausses_alertes")] == 1
    assert table.loc["visite après un pic", ("median", "fausses_alertes")] == 0
    # la tendance de +30 % par visite : alertée par les deux références (la médiane traîne derrière)
    assert table.loc["série avec tendance", ("median", "fausses_alertes")] == 2
    lines = lg.describe_baselines(table)
    peak = next(line for line in lines if line.startswith("visite après un pic"))
    assert "100,0 % d'alertes avec la visite précédente, 0,0 % avec la médiane" in peak.replace("\u00a0", " ")
    assert peak.endswith("moins avec la médiane des visites précédentes")
    trend = next(line for line in lines if line.startswith("série avec tendance"))
    assert "moins" not in trend  # autant d'alertes avec l'une et l'autre
    with pytest.raises(ValueError, match="Deux références"):
        lg.describe_baselines(table.drop(columns=["median"], level=0))


def test_lesson_07_reading_of_the_two_baselines_holds_on_the_course_data():
    """Notebook 07, section 2 : ce que la prose dit des deux références, sur les données du profil cpu."""
    from helpers.analytes import BIOLOGICAL_VARIATION
    from helpers.data import load_longitudinal
    from helpers.profiles import get_profile

    df = load_longitudinal(get_profile("cpu")).to_pandas()
    rates = lg.false_alarms_by_baseline(df, lg.reference_change_values(BIOLOGICAL_VARIATION))
    previous, median = rates[("previous", "taux")], rates[("median", "taux")]
    assert abs(previous["total"] - median["total"]) < 0.01  # « avec l'une comme avec l'autre »
    assert 0.12 < previous["total"] < 0.14  # « environ 13 % »
    assert previous["visite après un pic"] > 0.9 > 0.3 > median["visite après un pic"]  # « presque chacune »
    assert median["série avec tendance"] > previous["série avec tendance"] > 1.5 * previous["série stable"]
    assert previous["visite après une rupture"] < 0.2 < 0.8 < median["visite après une rupture"]
    assert median["série stable"] < 0.05 < previous["série stable"]
