"""Agreement statistics against published worked examples, hand-worked ties and degenerate cases,
and their errors on bad input."""

from __future__ import annotations

import math

import pytest

from ragline.evaluation.agreement import cohen_kappa, krippendorff_alpha, spearman

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12
# units, "." (None) where an observer did not code the unit. Unit 12 has one value: not pairable.
_ = None
OBSERVERS = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    "C": [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
}
UNITS = [list(values) for values in zip(*OBSERVERS.values(), strict=True)]


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_alpha_matches_the_published_example(level, published):
    assert krippendorff_alpha(UNITS, level) == pytest.approx(published, abs=5e-4)
    # The unpairable unit 12 changes nothing.
    assert krippendorff_alpha(UNITS[:11], level) == krippendorff_alpha(UNITS, level)


def test_krippendorff_alpha_nominal_takes_labels_and_nan_is_missing():
    names = {1: "no", 2: "partly", 3: "yes", 4: "other", 5: "fifth"}
    labelled = [[names.get(v) for v in unit] for unit in UNITS]
    assert krippendorff_alpha(labelled) == pytest.approx(krippendorff_alpha(UNITS))
    with_nan = [[math.nan if v is None else v for v in unit] for unit in UNITS]
    assert krippendorff_alpha(with_nan, "interval") == krippendorff_alpha(UNITS, "interval")


def test_krippendorff_alpha_by_hand_on_two_coders():
    # Units (0, 0), (1, 1), (0, 1) at the nominal level. Coincidences (each pair counted both ways,
    # weight 1/(m_u - 1) = 1): o_00 = 2, o_11 = 2, o_01 = o_10 = 1; n_0 = n_1 = 3, n = 6.
    # D_o = (o_01 + o_10) / n = 2/6; D_e = (n_0 n_1 + n_1 n_0) / (n (n - 1)) = 18/30.
    # alpha = 1 - (1/3) / (3/5) = 1 - 5/9 = 4/9.
    assert krippendorff_alpha([[0, 0], [1, 1], [0, 1]]) == pytest.approx(4 / 9)


def test_krippendorff_alpha_is_one_when_everybody_always_gives_the_same_value():
    # Expected disagreement 0 (one value throughout) and observed 0: documented as 1.0.
    assert krippendorff_alpha([[1, 1, None], [1, 1, 1], [None, 1, 1]], "interval") == 1.0
    assert krippendorff_alpha([["yes", "yes"], ["yes", "yes"]]) == 1.0


def test_krippendorff_alpha_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown level of measurement 'ratio'"):
        krippendorff_alpha(UNITS, "ratio")
    with pytest.raises(ValueError, match="at least 2 units with 2 or more values, got 1"):
        krippendorff_alpha([[1, 2], [3, None], [None, None]])
    with pytest.raises(ValueError, match="got 0"):
        krippendorff_alpha([])
    with pytest.raises(ValueError, match="one value .or None. per coder"):
        krippendorff_alpha([[1, 2], [1, 2, 3]])
    with pytest.raises(ValueError, match="unit 1 .ordinal level.: 'yes' is not a number"):
        krippendorff_alpha([[1, 2], ["yes", 1]], "ordinal")
    with pytest.raises(ValueError, match="unit 0 .interval level.: inf is not a finite number"):
        krippendorff_alpha([[1, math.inf], [1, 2]], "interval")


def test_cohen_kappa_matches_the_wikipedia_example():
    # 50 proposals, readers A and B: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no.
    # p_o = 35/50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Items either reader left unlabelled do not count.
    assert cohen_kappa([*a, None, "yes"], [*b, "no", None]) == pytest.approx(0.4)


def test_cohen_kappa_degenerate_and_bad_input():
    assert cohen_kappa(["yes", "yes", "yes"], ["yes", "yes", "yes"]) == 1.0
    # p_o = 0, p_e = 0.5: kappa = -1 (systematic disagreement).
    assert cohen_kappa(["yes", "no"], ["no", "yes"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="labelled 3 and 2 items"):
        cohen_kappa(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="at least 2 items labelled by both coders, got 1"):
        cohen_kappa(["a", None, "b"], ["a", "b", None])


def test_spearman_matches_the_wikipedia_example():
    # IQ vs hours of TV per week; sum d^2 = 194, rho = 1 - 6 * 194 / (10 * 99) = -29/165.
    iq = [106, 86, 100, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 0, 27, 50, 28, 29, 20, 12, 6, 17]
    assert spearman(iq, tv) == pytest.approx(-29 / 165)


def test_spearman_gives_ties_their_average_rank():
    # x = [1, 2, 2, 3] ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] ranks [1, 3, 2, 4]; both mean 2.5.
    # dx = [-1.5, 0, 0, 1.5], dy = [-1.5, 0.5, -0.5, 1.5]: sum dx dy = 4.5, sum dx^2 = 4.5,
    # sum dy^2 = 5 -> rho = 4.5 / sqrt(22.5) = sqrt(0.9).
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # Pairs with a missing value are left out.
    assert spearman([1, 2, None, 2, 3], [1, 3, 9, 2, 4]) == pytest.approx(math.sqrt(0.9))


def test_spearman_rejects_bad_input():
    with pytest.raises(ValueError, match="3 and 2 values"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 complete pairs, got 1"):
        spearman([1, None], [2, 3])
    with pytest.raises(ValueError, match="undefined when one sample has a single value"):
        spearman([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match=r"x\[1\]: 'high' is not a number"):
        spearman([1, "high"], [1, 2])
    with pytest.raises(ValueError, match=r"y\[0\]: inf is not a finite number"):
        spearman([1, 2], [math.inf, 2])
