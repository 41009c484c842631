"""Notebook (HTML) and text displays of fitkit's results, and `fk.fit_report`.

Each display is parsed back (lxml) and checked against the object it shows: header cells,
one row per param, the numbers (kept in full in each cell's `title`), the validity cells and
their colour classes, and the same words in the text `repr`.
"""

import re
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import lxml.html
import numpy as np
import optax
import pytest

import fitkit as fk
from fitkit._flags import describe_flags
from fitkit.display import _html
from fitkit.display._format import significant, value_error


class Curve(fk.Observation):
    """Data at abscissae `x` of a polynomial `offset + slope x + curv x^2` (missing params are 0)."""

    x: jax.Array

    def predict(self, p, model):
        return p.get("offset", 0.0) + p["slope"] * self.x + p.get("curv", 0.0) * self.x**2


def _observation(y, x, sigma=0.1, **kw):
    return Curve(data=jnp.asarray(y), error=jnp.full(len(y), sigma), x=jnp.asarray(x), **kw)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    x = np.linspace(0.0, 1.0, 40)
    return x, 2.0 * x - 0.5 + rng.normal(0.0, 0.1, x.size)  # the data want offset -0.5


@pytest.fixture(scope="module")
def bounded(data):
    """A line with a bounded slope and an offset held at its bound (the minimum lies below 0)."""
    x, y = data
    problem = fk.Problem(None, _observation(y, x), bounds={"slope": (0.0, 10.0), "offset": (0.0, None)})
    res = fk.solve(problem, {"slope": 1.0, "offset": 0.5})
    return problem, res, fk.covariance(problem, res)


@pytest.fixture(scope="module")
def free(data):
    """The line without bounds: a valid fit, its covariance and its profile intervals."""
    x, y = data
    problem = fk.Problem(None, _observation(y, x))
    res = fk.solve(problem, {"slope": 1.0, "offset": 0.0})
    return problem, res, fk.covariance(problem, res), fk.intervals(problem, res)


@pytest.fixture(scope="module")
def quadratic(data):
    x, y = data
    problem = fk.Problem(None, _observation(y + 0.3 * x**2, x))
    start = {"offset": 0.0, "slope": 1.0, "curv": 0.0}
    res = fk.solve(problem, start)
    return problem, start, res, fk.covariance(problem, res)


# ---------------------------------------------------------------------------------- parsing
def _root(html):
    root = lxml.html.fromstring(html)
    assert root.get("class") == "fitkit-display"
    return root


def _boxes(html) -> dict[str, dict[str, tuple[str, list[str], str]]]:
    """Validity boxes by title: each cell's key -> (text, classes, style)."""
    out = {}
    for table in _root(html).xpath('//table[contains(@class, "fitkit-validity")]'):
        title = table.xpath(".//th")[0].text_content()
        out[title] = {
            td.get("data-key"): (td.text_content(), td.get("class").split(), td.get("style"))
            for td in table.xpath(".//td")
        }
    return out


def _tables(html) -> list[dict]:
    """Parameter tables: headers and rows of (text, title, classes)."""
    out = []
    for table in _root(html).xpath('//table[contains(@class, "fitkit-params")]'):
        caption = table.xpath("./caption")
        rows = [
            [(td.text_content(), td.get("title"), td.get("class").split()) for td in tr.xpath("./td")]
            for tr in table.xpath("./tbody/tr")
        ]
        out.append(
            {
                "title": caption[0].text_content() if caption else "",
                "headers": [th.text_content() for th in table.xpath("./thead/tr/th")],
                "rows": rows,
            }
        )
    return out


def _column(table, name):
    index = table["headers"].index(name)
    return {row[0][0]: row[index] for row in table["rows"]}


def _flat(params):
    return dict(zip(fk.tree.names(params), np.asarray(fk.tree.ravel(params)[0])))


def _report_value(report, label):
    match = re.search(rf"^    {re.escape(label)}\s+= (.+)$", report, re.MULTILINE)
    assert match, f"{label!r} not in the report"
    return match.group(1)


# ---------------------------------------------------------------------------------- number formatting
def test_values_get_the_digits_their_error_justifies():
    assert value_error(1.23456, 0.0123) == ("1.235", "0.012")
    assert value_error(-1.23456, 0.0996) == ("-1.23", "0.10")  # the error rounds up a digit
    assert value_error(123456789.0, 1234.0) == ("1.234568e+08", "1.2e+03")
    assert value_error(2.5, float("nan")) == ("2.5", "nan")
    assert value_error(2.5, None) == ("2.5", "")
    assert value_error(2.5, 0.0) == ("2.5", "0")
    assert significant(0.012345) == "0.012" and significant(12345.0) == "12000"


# ---------------------------------------------------------------------------------- (a) a fit with bounds
def test_a_bounded_fit_shows_bounds_initial_values_and_the_param_at_its_bound(bounded):
    problem, res, cov = bounded
    assert res.valid and res.at_limit == ("offset",)
    html = fk.display.display(res, covariance=cov, problem=problem)._repr_html_()
    (table,) = _tables(html)
    assert table["headers"] == ["Name", "Value", "Error", "Lower", "Upper", "Initial", "Mark"]
    assert [row[0][0] for row in table["rows"]] == ["offset", "slope"]
    values, errors = _column(table, "Value"), _column(table, "Error")
    std = _flat(cov.std)
    for name, value in _flat(res.params).items():
        assert float(values[name][1]) == value  # the title keeps every digit
    slope_error = std["slope"]
    assert float(errors["slope"][1]) == pytest.approx(slope_error, rel=1e-15)
    assert float(errors["slope"][0]) == pytest.approx(slope_error, rel=0.05)
    assert float(values["slope"][0]) == pytest.approx(_flat(res.params)["slope"], abs=slope_error / 10)
    # No error at the bound, and the reason is in the cell's title and its colour
    assert errors["offset"][0] == "at limit" and "fitkit-warn" in errors["offset"][2]
    assert "at a bound" in errors["offset"][1]
    lower, upper, initial = _column(table, "Lower"), _column(table, "Upper"), _column(table, "Initial")
    assert (lower["offset"][0], upper["offset"][0]) == ("0", "")
    assert (lower["slope"][0], upper["slope"][0]) == ("0", "10")
    assert float(initial["offset"][1]) == 0.5 and float(initial["slope"][1]) == 1.0
    marks = _column(table, "Mark")
    assert marks["offset"][0] == "at lower limit" and marks["slope"][0] == ""

    box = _boxes(html)["Fit"]
    assert box["valid"][0] == "valid: yes" and "fitkit-good" in box["valid"][1]
    assert box["at_limit"][0] == "at a bound: offset" and "fitkit-warn" in box["at_limit"][1]
    assert box["edm"][0] == f"EDM: {res.edm:.3g} (max_edm 1e-08)" and "fitkit-good" in box["edm"][1]
    assert box["steps"][0] == f"steps: {res.steps}"
    for counter, count in res.stats.items():
        if counter.endswith("_evals"):
            assert f"{counter[:-6]} {count}" in box["evaluations"][0]
    assert box["method"][0] == f"method: {res.method}"
    assert box["message"][0] == f"reason: {res.message}"
    assert _html.COLOURS["good"] in box["valid"][2]  # inline: notebooks may strip <style>
    assert _boxes(html)["Covariance"]["positive_definite"][0] == "matrix: positive definite"

    text = str(fk.display.display(res, covariance=cov, problem=problem))
    for field in ("valid: yes", "at a bound: offset", f"steps: {res.steps}", "Initial", "at lower limit"):
        assert field in text
    assert text.splitlines()[0].startswith(f"FitResult({res.method}: valid")


def test_a_result_displays_itself_and_keeps_its_start_through_save_and_load(bounded, tmp_path):
    _, res, _ = bounded
    assert _flat(res.initial) == {"offset": 0.5, "slope": 1.0}
    html = res._repr_html_()
    (table,) = _tables(html)
    assert table["headers"] == ["Name", "Value", "Initial", "Mark"]  # no covariance, no problem
    assert "valid: yes" in repr(res) and "Initial" in repr(res)
    res.save(tmp_path / "fit.npz")
    back = fk.FitResult.load(tmp_path / "fit.npz")
    assert _flat(back.initial) == _flat(res.initial)
    # A file from before `initial` existed still loads
    fields = fk._io.load_npz(tmp_path / "fit.npz")
    del fields["initial"]
    fk._io.save_npz(tmp_path / "old.npz", dict(fields))
    old = fk.FitResult.load(tmp_path / "old.npz")
    assert old.initial is None and "Initial" not in _tables(old._repr_html_())[0]["headers"]


def test_fit_records_its_start(free):
    problem, _, _, _ = free
    res = fk.fit(problem, {"slope": 1.0, "offset": 0.0}, optax.adam(0.05), steps=5, warn=False)
    assert _flat(res.initial) == {"offset": 0.0, "slope": 1.0}
    assert "max_edm" in res.stats


# ---------------------------------------------------------------------------------- (b) failed fits
def test_a_fit_out_of_steps_is_red_with_its_reasons(free):
    problem = free[0]
    res = fk.solve(problem, {"slope": 1.0, "offset": 0.0}, max_steps=1, retries=0, warn=False)
    assert not res.valid and "call_limit" in res.flags
    box = _boxes(res._repr_html_())["Fit"]
    assert box["valid"][0] == f"valid: NO ({', '.join(res.flags)})" and "fitkit-bad" in box["valid"][1]
    assert _html.COLOURS["bad"] in box["valid"][2]
    assert box["call_limit"][0] == "call limit: REACHED" and "fitkit-bad" in box["call_limit"][1]
    assert "fitkit-bad" in box["steps"][1]
    assert ("fitkit-bad" in box["edm"][1]) == ("above_max_edm" in res.flags)
    assert "fitkit-good" in box["solver"][1] and "fitkit-bad" in box["message"][1]
    text = repr(res)
    assert f"valid: NO ({', '.join(res.flags)})" in text and "call limit: REACHED" in text
    report = fk.fit_report(res, problem=problem)
    assert _report_value(report, "valid") == f"NO ({', '.join(res.flags)})"
    assert _report_value(report, "flags") == f"{', '.join(res.flags)}: {describe_flags(res.flags)}"


def test_a_first_order_fit_with_too_few_steps_is_not_valid(free):
    problem = free[0]
    res = fk.fit(problem, {"slope": 1.0, "offset": 0.0}, optax.sgd(1e-4), steps=2, warn=False)
    assert not res.valid and "call_limit" in res.flags
    box = _boxes(res._repr_html_())["Fit"]
    assert "fitkit-bad" in box["valid"][1] and box["call_limit"][0] == "call limit: REACHED"
    assert ("fitkit-bad" in box["curvature"][1]) == ("curvature_not_positive_definite" in res.flags)
    assert res.stats["max_edm"] is None and "max_edm 1e-08" in box["edm"][0]  # the default, resolved


def test_a_result_never_judged_says_unchecked():
    res = fk.FitResult(params={"a": jnp.asarray(1.0)}, loss=0.5, steps=0, converged=False, message="")
    text = repr(res)
    assert "NOT VALID (unchecked)" in text and "edm=nan" in text and "valid: NO (unchecked)" in text
    box = _boxes(res._repr_html_())["Fit"]
    assert "fitkit-bad" in box["valid"][1]
    assert box["call_limit"][0] == "call limit: not checked" and "fitkit-info" in box["call_limit"][1]
    assert box["edm"][0] == "EDM: nan"  # no tolerance recorded: none is claimed


def test_names_and_messages_are_escaped():
    res = fk.FitResult(
        params={"<i>x</i>": jnp.asarray(1.0)}, loss=0.0, steps=1, converged=True, message="<script>x</script>"
    )
    root = _root(res._repr_html_())
    assert not root.xpath("//i") and not root.xpath("//script")
    assert _tables(res._repr_html_())[0]["rows"][0][0][0] == "<i>x</i>"


def test_a_display_that_cannot_be_built_falls_back_to_its_summary():
    res = fk.FitResult(params={"f": lambda x: x}, loss=0.0, steps=0, converged=False, message="")
    assert "display failed" in repr(res) and repr(res).startswith("FitResult(fit: NOT VALID")
    assert res._repr_html_().startswith("<pre>") and "display failed" in res._repr_html_()
    with pytest.raises(TypeError, match="cannot display a dict"):
        fk.display.display({"a": 1.0})


def test_showing_a_result_imports_no_engine():
    code = (
        "import sys, jax.numpy as jnp, fitkit as fk\n"
        "r = fk.FitResult(params={'a': jnp.asarray(1.0)}, loss=0.0, steps=0, converged=False, message='')\n"
        "repr(r); r._repr_html_(); fk.fit_report(r)\n"
        "print(sorted(m for m in ('numpyro', 'optax', 'optimistix', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------- (c) posteriors
@pytest.fixture(scope="module")
def posterior(free):
    problem, res, _, _ = free
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.sample(problem, res, num_warmup=50, num_samples=60, num_chains=2, progress=False, key=0)


def test_a_posterior_shows_mean_std_ess_and_r_hat(posterior):
    html = posterior._repr_html_()
    (table,) = _tables(html)
    assert table["headers"] == ["Name", "Post. mean", "Post. std", "ESS bulk", "R-hat"]
    assert [row[0][0] for row in table["rows"]] == list(posterior.names)
    summary = posterior.summary()
    for header, column in (
        ("Post. mean", "mean"),
        ("Post. std", "std"),
        ("ESS bulk", "ess_bulk"),
        ("R-hat", "r_hat"),
    ):
        for name, (_, title, classes) in _column(table, header).items():
            assert float(title) == pytest.approx(summary.loc[name, column], rel=1e-12)
            if header == "R-hat":
                assert ("fitkit-good" in classes) == (summary.loc[name, column] <= 1.01)
                assert ("fitkit-bad" in classes) == (summary.loc[name, column] > 1.01)
    box = _boxes(html)["Posterior"]
    assert box["draws"][0] == "draws: 2 chain(s) x 60"
    divergences = posterior.diagnostics["divergences"]
    assert box["divergences"][0] == f"divergences: {divergences}"
    assert ("fitkit-good" in box["divergences"][1]) == (divergences == 0)
    assert box["r_hat"][0].startswith(f"max R-hat: {summary['r_hat'].max():.4g}")
    text = repr(posterior)
    assert text.startswith("Posterior(2 chain(s) x 60 draws") and "max R-hat" in text and "ESS bulk" in text


def test_chains_that_disagree_are_red():
    rng = np.random.default_rng(0)
    draws = np.stack([rng.normal(0.0, 1.0, 80), rng.normal(5.0, 1.0, 80)])  # two chains far apart
    post = fk.Posterior(
        samples={"a": draws},
        latent=draws[..., None],
        names=("a",),
        diagnostics={"divergences": 3, "accept_prob": 0.5, "step_size": np.ones(2), "mean_num_steps": 3.0},
        config={},
    )
    html = post._repr_html_()
    box = _boxes(html)["Posterior"]
    assert "fitkit-bad" in box["r_hat"][1] and "fitkit-bad" in box["divergences"][1]
    rhat = _column(_tables(html)[0], "R-hat")["a"]
    assert "fitkit-bad" in rhat[2] and float(rhat[1]) > 1.5
    assert "R-hat" in repr(post) and " !" in repr(post)  # text marks the bad value


def test_a_result_shown_with_its_posterior(free, posterior):
    problem, res, cov, _ = free
    (table,) = _tables(fk.display.display(res, covariance=cov, posterior=posterior)._repr_html_())
    assert table["headers"][-4:] == ["Post. mean", "Post. std", "ESS bulk", "R-hat"]
    with pytest.raises(TypeError, match="go with a FitResult"):
        fk.display.display(posterior, covariance=cov)


# ---------------------------------------------------------------------------------- (d) covariances, intervals, analyses
def test_a_covariance_shows_its_errors_and_correlations(free):
    _, res, cov, _ = free
    html = cov._repr_html_()
    params, correlations = _tables(html)
    assert params["headers"] == ["Name", "Value", "Error"]
    std = _flat(cov.std)
    for name, (_, title, _) in _column(params, "Error").items():
        assert float(title) == pytest.approx(std[name], rel=1e-15)
    assert correlations["title"] == "Correlations" and correlations["headers"] == ["Name", "offset", "slope"]
    matrix = np.asarray(cov.correlation)
    assert float(correlations["rows"][0][2][1]) == pytest.approx(matrix[0, 1], rel=1e-15)
    box = _boxes(html)["Covariance"]
    assert (
        box["positive_definite"][0] == "matrix: positive definite"
        and "fitkit-good" in box["positive_definite"][1]
    )
    assert box["method"][0] == "method: hessian"
    text = repr(cov)
    assert text.startswith("Covariance(hessian: 2 params") and "matrix: positive definite" in text


@pytest.mark.parametrize(
    "matrix, cell, reason",
    [
        ([[-1.0, 0.2], [0.2, 1.0]], "NOT positive definite (1 negative variances)", "not positive definite"),
        ([[np.nan, 0.0], [0.0, 1.0]], "NOT finite (it holds NaN or inf)", "holds NaN"),
        ([[1.0, 2.0], [2.0, 1.0]], "NOT positive definite (a negative eigenvalue)", None),
    ],
)
def test_an_invalid_covariance_is_red_and_says_why(free, matrix, cell, reason):
    problem, res, _, _ = free
    bad = fk.Covariance(jnp.asarray(matrix), res.params)
    html = bad._repr_html_()
    box = _boxes(html)["Covariance"]
    assert box["positive_definite"][0] == f"matrix: {cell}" and "fitkit-bad" in box["positive_definite"][1]
    report = fk.fit_report(res, bad, problem=problem)
    assert _report_value(report, "covariance") == f"given, {cell}"
    first = next(line for line in report.splitlines() if line.startswith("    offset:"))
    if reason is None:  # both variances positive: the errors are shown, the box says the matrix is wrong
        assert "+/-" in first
    else:
        assert "no error:" in first and reason in first
        error = _column(_tables(html)[0], "Error")["offset"]
        assert "fitkit-bad" in error[2] and reason in error[1]


def test_intervals_show_asymmetric_errors(free):
    _, res, _, iv = free
    html = iv._repr_html_()
    (table,) = _tables(html)
    assert table["headers"] == ["Name", "Value", "Profile -", "Profile +"]
    minus, plus = iv.errors
    for name, m, p in zip(iv.names, minus, plus):
        assert float(_column(table, "Profile -")[name][1]) == pytest.approx(m, rel=1e-15)
        assert float(_column(table, "Profile +")[name][1]) == pytest.approx(p, rel=1e-15)
        assert _column(table, "Profile -")[name][0].startswith("-")
    box = _boxes(html)["Profile intervals"]
    assert box["valid"][0] == "valid: yes" and box["sides"][0] == "sides converged: 4 of 4"
    assert repr(iv).startswith("Intervals(cl=0.6827, valid") and "Profile -" in repr(iv)
    report = fk.fit_report(res, intervals=iv)
    assert "(profile 68.3%)" in report and _report_value(report, "profile intervals (68.3%)") == "valid"


def test_intervals_that_failed_are_red(free):
    _, res, _, iv = free
    broken = fk.Intervals(
        params=iv.params, lower=iv.lower, upper=iv.upper, names=iv.names, value=iv.value,
        flat_lower=iv.flat_lower, flat_upper=iv.flat_upper, lower_valid=np.array([False, True]),
        upper_valid=iv.upper_valid, lower_at_bound=iv.lower_at_bound, upper_at_bound=np.array([False, True]),
        new_minimum=iv.params, cl=iv.cl, delta=iv.delta, messages=("the lower limit of offset did not converge",),
    )  # fmt: skip
    html = broken._repr_html_()
    box = _boxes(html)["Profile intervals"]
    assert box["valid"][0] == "valid: NO (1 side(s) did not converge; a lower minimum was found)"
    assert all("fitkit-bad" in box[k][1] for k in ("valid", "sides", "new_minimum", "messages"))
    assert box["one_sided"][0] == "one-sided: slope (upper)" and "fitkit-warn" in box["one_sided"][1]
    table = _tables(html)[0]
    assert "fitkit-bad" in _column(table, "Profile -")["offset"][2]
    assert _column(table, "Mark")["slope"][0] == "one-sided (upper at bound)"
    report = fk.fit_report(res, intervals=broken)
    assert "the lower side did not converge" in report and "the upper side is at its bound" in report


@pytest.fixture(scope="module")
def analysis(free):
    problem = free[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.analyse(
            problem,
            {"slope": 1.0, "offset": 0.0},
            sample={"num_warmup": 50, "num_samples": 60, "num_chains": 2},
            intervals=True,
            progress=False,
        )


def test_an_analysis_shows_every_stage(analysis):
    html = analysis._repr_html_()
    boxes = _boxes(html)
    assert {"Covariance", "Profile intervals", "Posterior", "Polish (fk.solve)"} <= set(boxes)
    assert "fitkit-good" in boxes["Polish (fk.solve)"]["valid"][1]
    (table,) = _tables(html)
    assert table["headers"] == [
        "Name", "Value", "Error", "Profile -", "Profile +", "Initial", "Post. mean", "Post. std", "ESS bulk", "R-hat",
    ]  # fmt: skip
    std = _flat(analysis.covariance.std)
    for name, (_, title, _) in _column(table, "Error").items():
        assert float(title) == pytest.approx(std[name], rel=1e-15)
    assert repr(analysis).startswith("Analysis(") and "Polish (fk.solve):" in repr(analysis)


def test_the_analysis_report_holds_the_fit_report(analysis):
    report = analysis.report()
    stage = analysis.solve
    for section in ("[[Fit]]", "[[Validity]]", "[[Variables]]", "[[Correlations]]"):
        assert section in report
    assert float(_report_value(report, "AIC")) == pytest.approx(stage.aic, rel=1e-9)
    assert float(_report_value(report, "BIC")) == pytest.approx(stage.bic, rel=1e-9)
    assert "(init = 0)" in report and "(init = 1)" in report  # the analysis's start, not the polish's
    assert _report_value(report, "valid") == "yes"
    ((a, b, corr),) = fk.display.correlations(analysis.covariance)
    assert f"C({a}, {b}) = {corr:+.4f}" in report
    assert "reduced chi-squared: start" in report  # the summary above it is still there


# ---------------------------------------------------------------------------------- fit_report
def test_fit_report_has_every_section_and_field(quadratic):
    problem, start, res, cov = quadratic
    report = fk.fit_report(res, cov, problem=problem)
    for section in ("[[Fit]]", "[[Validity]]", "[[Variables]]", "[[Correlations]] (|corr| > 0.1, sorted)"):
        assert section in report
    assert _report_value(report, "method") == res.method
    assert _report_value(report, "data points") == str(res.n_data) == "40"
    assert _report_value(report, "free parameters") == "3"
    assert float(_report_value(report, "chi-squared")) == pytest.approx(
        float(problem.chi2(res.params)), rel=1e-9
    )
    chi2r = float(problem.chi2r(res.params))
    assert float(_report_value(report, "reduced chi-squared")) == pytest.approx(chi2r, rel=1e-5)
    assert float(_report_value(report, "log-likelihood")) == pytest.approx(res.log_likelihood, rel=1e-9)
    assert float(_report_value(report, "AIC")) == pytest.approx(res.aic, rel=1e-9)
    assert float(_report_value(report, "BIC")) == pytest.approx(res.bic, rel=1e-9)
    assert _report_value(report, "steps") == str(res.steps)
    assert _report_value(report, "evaluations") == ", ".join(
        f"{k[:-6]} {v}" for k, v in res.stats.items() if k.endswith("_evals")
    )
    for field in ("wall time", "compile time", "message"):
        _report_value(report, field)
    assert _report_value(report, "valid") == "yes" and _report_value(report, "flags") == "none"
    assert _report_value(report, "EDM") == f"{res.edm:.3g} (max_edm 1e-08)"
    values, std = _flat(res.params), _flat(cov.std)
    for name in ("offset", "slope", "curv"):
        line = re.search(
            rf"^    {name}:\s+(\S+) \+/- (\S+) \((\S+)%\) \(init = (\S+)\)$", report, re.MULTILINE
        )
        assert line, name
        value, error, percent, init = map(float, line.groups())
        assert value == pytest.approx(values[name], abs=std[name] / 10)
        assert error == pytest.approx(std[name], rel=0.05)
        assert percent == pytest.approx(100 * std[name] / abs(values[name]), rel=0.01)
        assert init == start[name]


def test_correlations_are_thresholded_and_sorted(quadratic):
    _, _, res, cov = quadratic
    matrix = np.asarray(cov.correlation)
    names = list(cov.names)
    pairs = {(names[i], names[j]): matrix[i, j] for i in range(3) for j in range(i + 1, 3)}
    sizes = sorted(abs(c) for c in pairs.values())
    threshold = 0.5 * (sizes[0] + sizes[1])  # keeps two of the three pairs
    report = fk.fit_report(res, cov, correlation_threshold=threshold)
    listed = re.findall(r"^    C\((\w+), (\w+)\)\s+= ([+-]\d\.\d{4})$", report, re.MULTILINE)
    assert len(listed) == 2
    expected = sorted(
        ((a, b, c) for (a, b), c in pairs.items() if abs(c) > threshold), key=lambda t: -abs(t[2])
    )
    assert [(a, b) for a, b, _ in listed] == [(a, b) for a, b, _ in expected]
    for (_, _, text), (_, _, c) in zip(listed, expected):
        assert float(text) == pytest.approx(c, abs=5e-5)
    assert f"(|corr| > {threshold:g}, sorted)" in report
    assert "none above the threshold" in fk.fit_report(res, cov, correlation_threshold=0.9999)
    assert "C(" not in fk.fit_report(res, cov, correlation_threshold=0.9999)


def test_why_an_error_is_missing(quadratic, bounded):
    problem, start, _, _ = quadratic
    held = fk.solve(problem, start, fixed=["curv"])
    cov = fk.covariance(problem, held)
    report = fk.fit_report(held, cov, problem=problem)
    assert re.search(r"^    curv:\s+0 \(no error: fixed: held at its start value", report, re.MULTILINE)
    assert "C(curv" not in report and "curv)" not in report  # a fixed param has no correlation
    (table,) = _tables(fk.display.display(held, covariance=cov)._repr_html_())
    assert _column(table, "Error")["curv"][0] == "fixed" and _column(table, "Mark")["curv"][0] == "fixed"
    # at a bound
    problem_b, res_b, cov_b = bounded
    report = fk.fit_report(res_b, cov_b, problem=problem_b)
    assert re.search(
        r"^    offset: 0 \(no error: at a bound: the minimum lies beyond it", report, re.MULTILINE
    )
    assert "[bounds 0, inf]" in report and "[bounds 0, 10]" in report
    assert _report_value(report, "at a bound") == "offset"
    # no covariance at all
    report = fk.fit_report(res_b)
    assert "no error: no covariance was computed" in report
    assert "none: no covariance was given" in report and "unknown (give problem=" in report


def test_fit_report_where_there_is_no_chi_squared():
    x = jnp.linspace(0.0, 1.0, 5)
    counts = fk.Problem(None, Curve(data=jnp.array([1.0, 2, 3, 4, 5]), x=x, likelihood=fk.Poisson()))
    res = fk.FitResult(params={"slope": jnp.asarray(4.0), "offset": jnp.asarray(1.0)}, loss=0.0, steps=0,
                       converged=False, message="", n_data=5, n_free=2, log_likelihood=-3.0)  # fmt: skip
    report = fk.fit_report(res, problem=counts)
    assert (
        _report_value(report, "chi-squared") == "not defined: the data are not all Gaussian with fixed errors"
    )
    assert _report_value(report, "valid") == "NO (unchecked)"
    assert float(_report_value(report, "AIC")) == pytest.approx(res.aic) and res.aic == 10.0
    two = fk.Problem(None, _observation([1.0, 2.0], [0.0, 1.0]))
    report = fk.fit_report(res, problem=two)  # 2 points, 2 params: no reduced chi-squared
    assert _report_value(report, "reduced chi-squared") == "undefined (ddof <= 0)"


def test_fit_report_refuses_what_it_cannot_report(quadratic):
    _, _, res, cov = quadratic
    with pytest.raises(TypeError, match="needs an fk.FitResult"):
        fk.fit_report(cov)
    for threshold in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="correlation_threshold"):
            fk.fit_report(res, cov, correlation_threshold=threshold)
    assert fk.fit_report is fk.display.fit_report
