//! Bar charts drawn on the server as SVG: bars scaled to a round top value, a value axis
//! with grid lines, day labels under the axis, each value written on its bar when it fits
//! (else on the tallest), a title on every bar (what a tooltip shows), and, when nothing was
//! recorded, a sentence saying what will appear.

pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub title: String,
    /// The value written above the bar, when there is room for it.
    pub value: Option<String>,
}

pub struct Tick {
    pub x: i64,
    pub label: String,
}

/// A line of the value axis: its height and what it reads.
pub struct Grid {
    pub y: i64,
    pub label: String,
}

pub struct BarChart {
    pub label: String,
    /// What the chart counts, for the axis title ("beads", "ms").
    pub unit: String,
    pub width: i64,
    pub height: i64,
    /// Where the plot starts (right of the value axis) and its bottom (the day axis).
    pub left: i64,
    pub bottom: i64,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub grid: Vec<Grid>,
    /// The largest value, as the top of the scale reads.
    pub max: String,
    pub empty: bool,
    /// What will appear here once there is data.
    pub empty_note: String,
}

const WIDTH: i64 = 900;
const HEIGHT: i64 = 180;
/// Room left of the plot for the value axis, above it for values, under it for days.
const LEFT: i64 = 44;
const TOP: i64 = 16;
const AXIS: i64 = 22;
/// About how wide a character of a value label is (11 px font).
const CHAR_W: i64 = 7;

/// The smallest round number (1, 2 or 5 times a power of ten) at least `v`.
fn round_up(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|t| *t >= v).unwrap_or(10.0 * p)
}

/// A chart of `points` (label, value) with `unit` in each bar's title; every
/// `points.len() / 6`th label is printed under the axis. `empty_note` says what will appear
/// when every value is zero.
pub fn bars(label: &str, points: &[(String, f64)], unit: &str, empty_note: &str) -> BarChart {
    let max = points.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let top = round_up(max);
    let n = points.len().max(1) as i64;
    let slot = ((WIDTH - LEFT) / n).max(2);
    let every = (points.len() / 6).max(1);
    let bottom = HEIGHT - AXIS;
    let plot = (bottom - TOP) as f64;
    let fits = points.iter().all(|(_, v)| format_value(*v).len() as i64 * CHAR_W <= slot);
    let tallest = points.iter().position(|(_, v)| *v == max);
    let counts = points.iter().all(|(_, v)| v.fract() == 0.0);
    let mut chart = BarChart {
        label: label.to_owned(),
        unit: unit.to_owned(),
        width: LEFT + slot * n,
        height: HEIGHT,
        left: LEFT,
        bottom,
        bars: Vec::with_capacity(points.len()),
        ticks: Vec::new(),
        // Counts read in whole numbers: no "0.5 beads" line.
        grid: [0.0, 0.5, 1.0]
            .iter()
            .filter(|f| **f != 0.5 || (top / 2.0).fract() == 0.0 || !counts)
            .map(|f| Grid { y: bottom - (f * plot).round() as i64, label: format_value(top * f) })
            .collect(),
        max: format_value(max),
        empty: max <= 0.0,
        empty_note: empty_note.to_owned(),
    };
    for (i, (name, value)) in points.iter().enumerate() {
        let h = ((value / top) * plot).round() as i64;
        let x = LEFT + i as i64 * slot;
        let labelled = *value > 0.0 && (fits || tallest == Some(i));
        chart.bars.push(Bar {
            x: x + 1,
            y: bottom - h,
            w: (slot - 2).max(1),
            h,
            title: format!("{name}: {} {unit}", format_value(*value)),
            value: labelled.then(|| format_value(*value)),
        });
        if i % every == 0 {
            chart.ticks.push(Tick { x, label: name.clone() });
        }
    }
    chart
}

/// 1234567 → "1.2M", 12345 → "12.3k", 12.5 → "12.5".
pub fn format_value(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[(&str, f64)]) -> Vec<(String, f64)> {
        values.iter().map(|(l, v)| (l.to_string(), *v)).collect()
    }

    #[test]
    fn bars_scale_to_a_round_top_and_carry_their_values() {
        let c = bars("x", &points(&[("a", 0.0), ("b", 5.0), ("c", 10.0)]), "beads", "later");
        let plot = HEIGHT - AXIS - TOP;
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[0].h, 0);
        assert_eq!(c.bars[2].h, plot, "10 is a round top");
        assert_eq!(c.bars[1].h, plot / 2);
        assert_eq!(c.bars[2].y, TOP);
        assert_eq!(c.bars[1].title, "b: 5 beads");
        let values: Vec<Option<&str>> = c.bars.iter().map(|b| b.value.as_deref()).collect();
        assert_eq!(values, [None, Some("5"), Some("10")], "zero bars carry no label");
        let axis: Vec<&str> = c.grid.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(axis, ["0", "5", "10"]);
        assert_eq!(c.grid[2].y, TOP);
        assert_eq!(c.bars[0].x, LEFT + 1, "bars start right of the value axis");
        assert!(!c.empty);
    }

    #[test]
    fn the_top_of_the_scale_is_round_and_crowded_bars_label_only_the_tallest() {
        let many: Vec<(String, f64)> =
            (0..90).map(|i| (format!("d{i}"), 1000.0 + i as f64)).collect();
        let c = bars("x", &many, "tokens", "later");
        assert_eq!(c.grid.last().map(|g| g.label.as_str()), Some("2000"));
        let labelled: Vec<usize> =
            c.bars.iter().enumerate().filter(|(_, b)| b.value.is_some()).map(|(i, _)| i).collect();
        assert_eq!(labelled, [89]);
        assert!(c.ticks.len() <= 7);
    }

    #[test]
    fn a_count_of_one_has_no_half_line() {
        let c = bars("x", &points(&[("a", 0.0), ("b", 1.0)]), "beads", "later");
        let axis: Vec<&str> = c.grid.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(axis, ["0", "1"]);
        let c = bars("x", &points(&[("a", 0.4), ("b", 1.0)]), "ms", "later");
        assert_eq!(c.grid.len(), 3);
    }

    #[test]
    fn an_all_zero_chart_says_it_is_empty_and_what_will_appear() {
        let c = bars("x", &[("a".into(), 0.0)], "", "Beads closed each day appear here.");
        assert!(c.empty);
        assert_eq!(c.bars[0].h, 0);
        assert_eq!(c.empty_note, "Beads closed each day appear here.");
    }

    #[test]
    fn values_read_short() {
        assert_eq!(format_value(1_234_567.0), "1.2M");
        assert_eq!(format_value(12_345.0), "12.3k");
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(2.25), "2.2");
        assert_eq!(round_up(7.0), 10.0);
        assert_eq!(round_up(0.3), 0.5);
        assert_eq!(round_up(1200.0), 2000.0);
    }
}
