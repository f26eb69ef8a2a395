"""Server-side SVG charts: well-formed, proportional, and safe with hostile labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tracker import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def _bars(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{SVG}rect"))


def test_volume_chart_bar_heights_are_proportional_to_the_values() -> None:
    root = _parse(
        charts.payout_volume_per_day(
            [("2026-11-01", 100), ("2026-11-02", 400), ("2026-11-03", 200)]
        )
    )
    heights = [float(r.get("height", "0")) for r in _bars(root)]
    assert len(heights) == 3
    assert heights[1] == max(heights)
    assert abs(heights[1] / heights[0] - 4.0) < 0.01
    assert abs(heights[2] / heights[0] - 2.0) < 0.01


def test_every_bar_sits_on_the_same_baseline() -> None:
    root = _parse(charts.taps_per_station([("north", 3), ("south", 9)]))
    bottoms = {round(float(r.get("y", "0")) + float(r.get("height", "0")), 1) for r in _bars(root)}
    assert len(bottoms) == 1


def test_labels_are_escaped_and_survive_as_text() -> None:
    hostile = "<script>alert(1)</script>&\"'"
    svg = charts.top_cards([(hostile, 5000, "/cards/04AABBCCDDEEFF"), ("plain", 10, None)])
    assert "<script>" not in svg
    root = _parse(svg)
    assert not list(root.iter(f"{SVG}script"))
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    # The label is truncated to fit but keeps its characters literally.
    assert any(t.startswith("<script>alert(1)") for t in texts)
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert links == ["/cards/04AABBCCDDEEFF"]


def test_top_cards_longest_bar_is_the_largest_value() -> None:
    root = _parse(charts.top_cards([("a", 30, None), ("b", 120, None), ("c", 60, None)]))
    widths = [float(r.get("width", "0")) for r in _bars(root)]
    assert widths.index(max(widths)) == 1
    assert abs(widths[1] / widths[0] - 4.0) < 0.01


def test_empty_data_renders_a_message_not_an_error() -> None:
    for svg in (
        charts.payout_volume_per_day([]),
        charts.taps_per_station([]),
        charts.top_cards([]),
    ):
        root = _parse(svg)
        assert "no data" in "".join(root.itertext())
        assert not _bars(root)


def test_axis_maximum_is_a_round_number_at_or_above_the_largest_value() -> None:
    for value, expected in [(7, 10), (10, 10), (11, 20), (420, 500), (1999, 2000), (0, 1)]:
        assert charts._nice_max(value) == expected


def test_many_days_do_not_overlap_their_labels() -> None:
    rows = [(f"2026-10-{d:02d}", d * 10) for d in range(1, 32)]
    root = _parse(charts.payout_volume_per_day(rows))
    assert len(_bars(root)) == 31
    day_labels = [t for t in root.iter(f"{SVG}text") if (t.text or "").startswith("2026-")]
    assert 0 < len(day_labels) <= 16


def test_counts_get_whole_number_gridlines() -> None:
    root = _parse(charts.taps_per_station([("north", 2), ("south", 1)]))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks == ["0", "1", "2"]


def test_count_gridlines_stay_whole_for_odd_maxima() -> None:
    root = _parse(charts.taps_per_station([("north", 3), ("south", 2)]))  # axis up to 5
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks == ["0", "1", "2", "3", "4", "5"]
